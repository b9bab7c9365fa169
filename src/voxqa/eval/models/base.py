"""The model adapter protocol: one prompt in, raw text out.

Every adapter, the weightless baselines included, answers with text that goes through the
same parser and metrics, so a baseline also exercises the whole scoring path (the oracle
must score 100%).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from voxqa.errors import VoxqaError
from voxqa.eval.prompts import Prompt
from voxqa.schema import Item


class ModelAdapter(ABC):
    """What the runner asks of a model: its identity, one answer per prompt, and the two
    lifecycle hooks ``preflight`` and ``close`` (no-ops unless the model holds a server or
    a resource). Every adapter, the baselines included, subclasses it."""

    spec: str

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What defines this model's answers (recorded in run.json; runs must not mix)."""

    @abstractmethod
    async def answer(self, prompt: Prompt, item: Item) -> str:
        """Raw model text for one item (raise on failure; the runner retries and records)."""

    async def preflight(self) -> None:
        """Check, before anything is written, that the model can serve the run at all (raise
        ``ServerConfigError`` if not); called once per run. Default: nothing to check."""
        return None

    async def close(self) -> None:
        """Release what the run used (connections, actors); called once when the run's
        answering ends, also when it ends in an error. Default: nothing to release."""
        return None


class PermanentError(VoxqaError, RuntimeError):
    """A failure retrying cannot fix (bad request, missing model): recorded, not retried."""


class ServerConfigError(VoxqaError, ValueError):
    """The server cannot serve this run at all (unreachable, bad URL, key refused, model not
    found): the run stops at once instead of recording every item as failed."""
