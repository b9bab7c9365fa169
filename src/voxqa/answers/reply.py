"""Reading a model's reply down to its answer: the part of parsing every answer type shares.

Every reply is first reduced to its answer (``read_reply``); at most ``MAX_REPLY_CHARS``
characters of it (after chain-of-thought blocks are dropped) are read, the rest is cut off
and the ``Reply`` says so (``truncated``). Every step takes time linear in the reply's length.

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
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from voxqa.anatomy.knee import MOAKS_WRAPPERS
from voxqa.boxes.profiles import Profile
from voxqa.errors import InputError, VoxqaError
from voxqa.schema import Item

Number = int | float


class ParseError(VoxqaError, ValueError):
    """Why a reply holds no answer of the expected type (becomes ``ParseResult.error``)."""


#: characters of a reply (chain of thought dropped) that are read; ``VOXQA_MAX_REPLY_CHARS``
#: overrides. A reply beyond it is read from its start, and recorded as truncated.
MAX_REPLY_CHARS = 64 * 1024


def max_reply_chars() -> int:
    """``MAX_REPLY_CHARS``, or ``VOXQA_MAX_REPLY_CHARS`` when set (a positive integer)."""
    value = os.environ.get("VOXQA_MAX_REPLY_CHARS")
    if value is None:
        return MAX_REPLY_CHARS
    if not value.strip().isdigit() or int(value) < 1:
        raise InputError(f"VOXQA_MAX_REPLY_CHARS={value!r} is not a positive number of characters")
    return int(value)


# --- reducing a reply to its answer -----------------------------------------------------------

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_THINK_OPEN_EXACT = re.compile(r"<think>")
_THINK_CLOSE_EXACT = re.compile(r"</think>")
_THOUGHT_BLOCK = re.compile(r"<unused94>.*?(?:<unused95>|$)", re.DOTALL)  # MedGemma's thinking
_FENCE = re.compile(r"```[\w+-]*")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_PHRASE = re.compile(r"\b(?:final\s+answer|answer)\**\s*(?:is\b\s*:?|:)", re.IGNORECASE)
# an object or array whose first token can start one (JSON whitespace, then a key, a value or
# the closing bracket): any other "{" or "[" fails at once, so it is not handed to the reader
_JSON_START = re.compile(r'\{(?=[ \t\n\r]*["}])|\[(?=[ \t\n\r]*[\]\[{"\-0-9tfnNI])')
_MARKDOWN = re.compile(r"[*`]")
_ANSWER_KEY = re.compile(r'"answer"\s*:\s*')
# a JSON string (to its closing quote, or to where the scan stops) or a bracket
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def drop_think_blocks(text: str, ignore_case: bool = True) -> str:
    """``text`` without ``<think>...</think>`` blocks (any case, unless ``ignore_case`` is
    False): each opening tag with the first closing one after it, as ``re.sub`` of
    ``<think>.*?</think>`` (DOTALL) removes them. Once an opening tag has no closing one after
    it, no later one has, so the scan stops there: linear time however many tags a reply
    repeats."""
    opening_tag, closing_tag = (_THINK_OPEN, _THINK_CLOSE) if ignore_case else (_THINK_OPEN_EXACT, _THINK_CLOSE_EXACT)
    kept, pos = [], 0
    while (opening := opening_tag.search(text, pos)) is not None:
        closing = closing_tag.search(text, opening.end())
        if closing is None:
            break
        kept.append(text[pos:opening.start()])
        pos = closing.end()
    kept.append(text[pos:])
    return "".join(kept)


def clean_reply(raw: str) -> str:
    """``raw`` without chain-of-thought, code fences and ``\\boxed{}``, stripped."""
    text = drop_think_blocks(_THOUGHT_BLOCK.sub("", raw))
    closing = text.lower().rfind("</think>")
    if closing >= 0:  # the <think> was part of the prompt (chat templates that open it)
        text = text[closing + len("</think>"):]
    opening = text.lower().find("<think>")
    if opening >= 0:  # a chain of thought cut off before it ended holds no answer
        text = text[:opening]
    return _BOXED.sub(r"\1", _FENCE.sub("", text)).strip()


_OPENING = re.compile(r"[\[{]")
_DECODER = json.JSONDecoder()
_WINDOW = 256  # characters first read of a JSON value
_MARGIN = 32  # more than any token the JSON reader looks ahead for (-Infinity, \uXXXX)


def _decode(text: str, start: int) -> tuple[bool, Any, int]:
    """``raw_decode(text, start)`` as (True, value, end) or (False, None, error offset).

    The reader sees a window of the text that grows (fourfold) until its outcome cannot depend
    on what lies beyond it, so one try costs time in proportion to what it reads, never to
    ``start``: a JSONDecodeError counts the lines before its offset, which over a long reply
    with a failing start at every bracket took quadratic time."""
    size, total = _WINDOW, len(text)
    while True:
        whole = start + size >= total
        trusted = size - _MARGIN  # a window's outcome before this offset is the whole text's
        try:
            value, end = _DECODER.raw_decode(text[start:start + size])
            if whole or end <= trusted:
                return True, value, start + end
        except json.JSONDecodeError as exc:
            if whole or (exc.pos <= trusted and not exc.msg.startswith("Unterminated string")):
                return False, None, start + exc.pos
        size *= 4


def _open_at(text: str, start: int, stop: int) -> list[int]:
    """The brackets of the JSON prefix ``text[start:stop]`` still open at ``stop``."""
    if _OPENING.search(text, start + 1, stop) is None:  # the common case: none but the first
        return [start]
    stack: list[int] = []
    for m in _JSON_TOKEN.finditer(text, start, stop):
        token = m.group()
        if token in "[{":
            stack.append(m.start())
        elif token in "]}" and stack:
            stack.pop()
    return stack


def json_values(text: str, failed: set[int] | None = None) -> Iterator[tuple[int, Any]]:
    """Every top-level JSON object or array embedded in ``text``, with its start offset.

    Each ``{`` or ``[`` not inside a value already found is tried as a start. A start that
    fails at offset e fails every bracket still open at e with it (a nested value reads the
    same from its own start), so those are not read again: text such as ``[[[[1, 1, 1, ...``
    costs linear time, not one pass per bracket (``_decode`` keeps each try in proportion
    to what it reads). ``failed`` collects the starts known to fail."""
    doomed = set() if failed is None else failed
    pos = 0
    while (m := _JSON_START.search(text, pos)) is not None:
        start = m.start()
        if start in doomed:
            pos = start + 1
            continue
        ok, value, end = _decode(text, start)
        if not ok:
            doomed.update(_open_at(text, start, end))
            pos = start + 1
            continue
        yield start, value
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
    truncated: bool = False  # only the reply's first ``MAX_REPLY_CHARS`` were read

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
    failed: set[int] = set()
    objects = [v for _, v in json_values(text, failed) if isinstance(v, dict) and "answer" in v]
    if objects:
        return objects[-1]["answer"], objects[-1].get("bboxes")
    for key in reversed(list(_ANSWER_KEY.finditer(text))):
        if key.end() in failed:  # an array or object already known not to close
            continue
        ok, value, _ = _decode(text, key.end())
        if ok:
            return value, None
    return None


def bounded_reply(raw: str, limit: int | None = None) -> tuple[str, bool]:
    """``clean_reply(raw)``, cut to its first ``limit`` (``max_reply_chars()``) characters, and
    whether it was cut."""
    text = clean_reply(raw)
    limit = max_reply_chars() if limit is None else limit
    return (text[:limit], True) if len(text) > limit else (text, False)


def read_reply(raw: str) -> Reply:
    """``raw`` reduced to its answer (see the module docstring)."""
    return reduce_reply(*bounded_reply(raw))


def reduce_reply(text: str, truncated: bool = False) -> Reply:
    """A cleaned reply (``bounded_reply``) reduced to its answer."""
    structured = _structured(text)
    if structured is not None:
        answer, bboxes = structured
        return Reply(text, answer if isinstance(answer, str) else json.dumps(answer), True, bboxes, truncated)
    phrases = list(_PHRASE.finditer(text))
    if phrases:
        return Reply(text, text[phrases[-1].end():].strip(), True, truncated=truncated)
    return Reply(text, text, False, truncated=truncated)


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
