"""The model adapter protocol: one prompt in, raw text out.

Every adapter, the weightless baselines included, answers with text that goes through the
same parser and metrics, so a baseline also exercises the whole scoring path (the oracle
must score 100%).
"""

from __future__ import annotations

from typing import Any, Protocol

from voxqa.errors import VoxqaError
from voxqa.eval.prompts import Prompt
from voxqa.schema import Item


class ModelAdapter(Protocol):
    spec: str

    def identity(self) -> dict[str, Any]:
        """What defines this model's answers (recorded in run.json; runs must not mix)."""
        ...

    async def answer(self, prompt: Prompt, item: Item) -> str:
        """Raw model text for one item (raise on failure; the runner retries and records)."""
        ...


class PermanentError(VoxqaError, RuntimeError):
    """A failure retrying cannot fix (bad request, missing model): recorded, not retried."""


class ServerConfigError(VoxqaError, ValueError):
    """The server cannot serve this run at all (unreachable, bad URL, key refused, model not
    found): the run stops at once instead of recording every item as failed."""
