"""The model adapter protocol: one prompt in, raw text out.

Every adapter, the weightless baselines included, answers with text that goes through the
same parser and metrics, so a baseline also exercises the whole scoring path (the oracle
must score 100%).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
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
        """Raw model text for one item, as shown (under a control, its reading: the mirrored
        item under ``mirrored``); raise on failure, the runner retries and records."""

    async def preflight(self) -> None:
        """Check, before anything is written, that the model can serve the run at all (raise
        ``ServerConfigError`` if not); called once per run. Default: nothing to check."""
        return None

    async def close(self) -> None:
        """Release what the run used (connections, actors); called once when the run's
        answering ends, also when it ends in an error. Default: nothing to release."""
        return None

    def size_replies(self, targets: Iterable[str]) -> None:
        """Called once before run.json is written with the selection's ideal replies (the
        structured targets, lazily): an adapter whose reply length is capped sizes the cap so
        that a perfect answer fits, and states it in ``identity``. Default: nothing to size."""
        return None


class TruncatedReply(VoxqaError):  # noqa: N818 - a reply, not an error of the run
    """The model stopped because it hit its reply-length cap: ``text`` is what it wrote so far.
    The runner records it as truncated (not read as the model's answer), never retried: the
    same greedy decoding would stop at the same place."""

    def __init__(self, text: str, limit: int):
        super().__init__(f"the reply was cut off at max_new_tokens={limit}")
        self.text, self.limit = text, limit

    def __reduce__(self) -> tuple[type[TruncatedReply], tuple[str, int]]:
        return TruncatedReply, (self.text, self.limit)  # pickled whole (a reply from a Ray replica)


@dataclass(frozen=True)
class ShownItem:
    """What a model outside voxqa (a plug-in) is given of an item: what its prompt shows and
    the ids bookkeeping needs, never the answer, its text, evidence, reasoning or twin links.
    Under ``--control mirrored`` it is the mirrored reading (question and options as shown
    with the flipped images). The built-in baselines read the whole item: the oracle's gold
    is its purpose, and random / prior draw on answer spaces and the train split."""

    id: str
    study_id: str  # names the volume (a 3D model reads its own input of it)
    task: str
    template: str
    level: str
    frames: tuple[int, ...]  # 0-based frames the question is about; () for the whole volume
    question: str
    options: tuple[str, ...] | None
    answer_type: str  # the form the answer takes (the prompt's answer instruction says it)
    language: str | None
    images: tuple[str, ...]  # absolute paths of the PNGs shown, in order (the control's, if any)
    image_frames: tuple[int, ...]  # each shown image's stored frame (the prompt labels it + the profile's frame_base)

    @classmethod
    def of(cls, item: Item, prompt: Prompt) -> ShownItem:
        """The shown part of ``item`` (already the control's reading) with ``prompt``'s images."""
        return cls(id=item.id, study_id=item.study_id, task=item.task, template=item.template,
                   level=item.level, frames=tuple(item.frames), question=prompt.question or item.question,
                   options=None if item.options is None else tuple(item.options),
                   answer_type=item.answer.type, language=item.language,
                   images=tuple(v for kind, v in prompt.parts if kind == "image"),
                   image_frames=tuple(im.frame for im in item.images or []))


class PermanentError(VoxqaError, RuntimeError):
    """A failure retrying cannot fix (bad request, missing model): recorded, not retried."""


class ServerConfigError(VoxqaError, ValueError):
    """The server cannot serve this run at all (unreachable, bad URL, key refused, model not
    found): the run stops at once instead of recording every item as failed."""
