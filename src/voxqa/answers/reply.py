"""Reading a model's reply down to its answer: the part of parsing every answer type shares.

Every reply is first reduced to its answer (``read_reply``):

1. ``<think>...</think>`` and MedGemma's ``<unused94>thought ... <unused95>`` blocks are dropped, as is everything up to a ``</think>`` whose
   ``<think>`` was in the prompt and everything after an unclosed ``<think>`` (a truncated
   chain of thought has no answer); then markdown code fences and ``\\boxed{}`` wrappers.
2. If the text is or contains a JSON object with an ``"answer"`` key (the structured
   target), that field is the answer and its ``"bboxes"`` are kept as a fallback for box
   answers, whatever the prompt mode was. A structured reply cut off after its answer
   (the target writes ``bboxes`` last) still gives its ``"answer": <JSON value>``.
3. Else the text after the last answer phrase ("Answer:", "**Answer:**", "the (final)
   answer is") is the answer; short answers are read from its first non-empty line, so an
   explanation on the following lines cannot add letters or numbers.
4. Else the whole text is the answer, read more strictly (each answer type says how).

Each answer type (``voxqa.answers``) then reads its value from the ``Reply`` with the item's
``ParseContext``, raising ``ParseError`` when the reply holds none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from voxqa.anatomy.knee import MOAKS_WRAPPERS
from voxqa.boxes.profiles import Profile
from voxqa.errors import VoxqaError
from voxqa.schema import Item

Number = int | float


class ParseError(VoxqaError, ValueError):
    """Why a reply holds no answer of the expected type (becomes ``ParseResult.error``)."""


# --- reducing a reply to its answer -----------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THOUGHT_BLOCK = re.compile(r"<unused94>.*?(?:<unused95>|$)", re.DOTALL)  # MedGemma's thinking
_FENCE = re.compile(r"```[\w+-]*")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_PHRASE = re.compile(r"\b(?:final\s+answer|answer)\**\s*(?:is\b\s*:?|:)", re.IGNORECASE)
_JSON_START = re.compile(r"[{\[]")
_MARKDOWN = re.compile(r"[*`]")
_ANSWER_KEY = re.compile(r'"answer"\s*:\s*')


def clean_reply(raw: str) -> str:
    """``raw`` without chain-of-thought, code fences and ``\\boxed{}``, stripped."""
    text = _THINK_BLOCK.sub("", _THOUGHT_BLOCK.sub("", raw))
    closing = text.lower().rfind("</think>")
    if closing >= 0:  # the <think> was part of the prompt (chat templates that open it)
        text = text[closing + len("</think>"):]
    opening = text.lower().find("<think>")
    if opening >= 0:  # a chain of thought cut off before it ended holds no answer
        text = text[:opening]
    return _BOXED.sub(r"\1", _FENCE.sub("", text)).strip()


def json_values(text: str) -> Iterator[tuple[int, Any]]:
    """Every top-level JSON object or array embedded in ``text``, with its start offset."""
    decoder = json.JSONDecoder()
    pos = 0
    while (m := _JSON_START.search(text, pos)) is not None:
        try:
            value, end = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            pos = m.start() + 1
            continue
        yield m.start(), value
        pos = end


@dataclass(frozen=True)
class Reply:
    """A cleaned reply and where its answer is.

    ``answer`` is the structured answer field (JSON text unless it was a string), else the
    text after the last answer phrase, else the whole text; ``explicit`` says it was one of
    the first two; ``bboxes`` are the structured target's boxes, if any.
    """

    text: str
    answer: str
    explicit: bool
    bboxes: Any = None

    def scope(self) -> str:
        """Where a short answer is read: the first non-empty line of an explicit answer, else
        the whole reply; markdown emphasis removed."""
        if not self.explicit:
            return _MARKDOWN.sub("", self.text).strip()
        line = next((ln for ln in self.answer.splitlines() if ln.strip()), "")
        return _MARKDOWN.sub("", line).strip()


def _structured(text: str) -> tuple[Any, Any] | None:
    """(answer, bboxes) of the last JSON object with an "answer" key; else of a structured
    reply cut off after its answer (a long ``bboxes`` list hitting the token limit)."""
    objects = [v for _, v in json_values(text) if isinstance(v, dict) and "answer" in v]
    if objects:
        return objects[-1]["answer"], objects[-1].get("bboxes")
    for key in reversed(list(_ANSWER_KEY.finditer(text))):
        try:
            return json.JSONDecoder().raw_decode(text, key.end())[0], None
        except json.JSONDecodeError:
            continue
    return None


def read_reply(raw: str) -> Reply:
    """``raw`` reduced to its answer (see the module docstring)."""
    text = clean_reply(raw)
    structured = _structured(text)
    if structured is not None:
        answer, bboxes = structured
        return Reply(text, answer if isinstance(answer, str) else json.dumps(answer), True, bboxes)
    phrases = list(_PHRASE.finditer(text))
    if phrases:
        return Reply(text, text[phrases[-1].end():].strip(), True)
    return Reply(text, text, False)


# --- a benchmark's own reply JSON ------------------------------------------------------------

def key_words(key: str) -> str:
    """A JSON key compared case- and separator-insensitively ("Complete_Tear" = "complete tear")."""
    return " ".join(re.findall(r"[a-z0-9%/]+", key.lower()))


def _at(value: Any, path: list[str]) -> Any:
    """The value at ``path`` (keys compared case- and separator-insensitively), else None."""
    for key in path:
        if not isinstance(value, dict):
            return None
        found = {key_words(k): v for k, v in value.items() if isinstance(k, str)}
        if key_words(key) not in found:
            return None
        value = found[key_words(key)]
    if isinstance(value, dict) and len(value) == 1 and key_words(next(iter(value))) == "grade":
        value = next(iter(value.values()))  # Q46/47 nest {"grade": g}, Q44/45 do not
    return value


def released_value(text: str, path: list[str]) -> Any:
    """The value at ``path`` in the last JSON object of ``text`` that holds it (with or
    without, or with the other of, 3DReasonKnee's ``MOAKS_WRAPPERS``: "MOAKS_scores" in most
    templates, "MOAKS_grade" in Q45/51/52, none in Q33/35/37); None when none does."""
    rest = path[1:] if path and path[0] in MOAKS_WRAPPERS else path
    tries = [path, rest, *([w, *rest] for w in MOAKS_WRAPPERS)]
    found = None
    for _, value in json_values(text):
        for p in tries:
            if (v := _at(value, p)) is not None:
                found = v
                break
    return found


def read_released(reply: Reply, path: list[str], as_text: Callable[[Any], str]) -> Reply:
    """``reply`` with its answer read at ``path`` of the benchmark's reply JSON (written by
    ``as_text`` as the answer type reads it) when it has no structured ``"answer"`` or answer
    phrase of its own, which then stands."""
    if reply.explicit:
        return reply
    value = released_value(reply.text, path)
    return reply if value is None else Reply(reply.text, as_text(value), True)


# --- per-item facts the parsers need ----------------------------------------------------------


@dataclass(frozen=True)
class ParseContext:
    """The item, its box profile, the study frame size (no images) and, for 3D boxes in a
    model's volume grid, the function that maps them back to the stored frames."""

    item: Item
    profile: Profile
    frame_size: tuple[int, int] | None = None
    volume_box: Callable[[list[Number]], dict[str, Any]] | None = None

    def options(self) -> list[str]:
        if not self.item.options:
            raise ParseError(f"item {self.item.id} has no options")
        return self.item.options

    def size(self, frame: int) -> tuple[int, int]:
        """(width, height) of the rendered image boxes on ``frame`` are written on."""
        images = self.item.images or []
        for im in images:
            if im.frame == frame:
                return im.width, im.height
        if images:  # an unshown frame: the export sizes it like the item's first image
            return images[0].width, images[0].height
        if self.frame_size is not None:
            return self.frame_size
        raise ParseError("the item has no images and no frame_size was given: cannot size boxes")

    def only_frame(self) -> int | None:
        """The frame of the item's one image, None unless it shows exactly one."""
        images = self.item.images or []
        return images[0].frame if len(images) == 1 else None


NONE_ANSWERS = {"none", "none of the above", "none of them", "[]"}


def normal(text: str) -> str:
    """Case-, whitespace- and edge-punctuation-insensitive form, for exact text matches."""
    return " ".join(text.split()).strip(" .,;:!?\"'").casefold()
