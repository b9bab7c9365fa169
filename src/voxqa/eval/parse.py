"""Model replies -> typed answers: the one entry point that reads what a model wrote.

Scoring compares a typed prediction with the item's typed answer, so every reply goes
through ``parse_answer`` first. A reply is reduced to its answer (``voxqa.answers.reply``:
chain of thought dropped; the structured target's ``"answer"`` field, else the text after
the last answer phrase, else the whole reply), then read by the item's answer type
(``voxqa.answers``; each type's module documents the formats it accepts); an item whose
question states its own reply JSON (``Item.json_path``) is read at that path when the reply
gives no answer of voxqa's own. The parser reads
exactly what the exports teach a model to write (``voxqa.conversation``: ``{"reasoning":
..., "answer": ..., "bboxes": [...]}``), what the prompt modes ask for
(``voxqa.eval.prompts``) and the common free-text habits of vision-language models. It never
guesses: a box is read in the profile's own form and space (``voxqa.boxes.profiles``; never
inferred from the numbers' size, and another family's form is refused), and a reply naming
two different answers fails. Parsing takes time linear in the reply's length, and reads at
most ``voxqa.answers.reply.MAX_REPLY_CHARS`` of it (``ParseResult.truncated`` says when a
reply was longer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voxqa.answers import ANSWER_TYPES
from voxqa.answers.reply import (Number, ParseContext, ParseError, bounded_reply, max_reply_chars, read_released,
                                 reduce_reply)
from voxqa.boxes.profiles import get_profile
from voxqa.schema import Item


@dataclass(frozen=True)
class ParseResult:
    """A reply read as the item's answer type: ``value`` when ``ok``, else ``error`` says why;
    ``truncated`` when only the reply's first ``MAX_REPLY_CHARS`` were read."""

    ok: bool
    value: Any = None
    error: str | None = None
    truncated: bool = False


def parse_answer(
    raw: str, item: Item, profile: str = "pixel", frame_size: tuple[int, int] | None = None,
    volume_box: Callable[[list[Number]], dict[str, Any]] | None = None,
) -> ParseResult:
    """``raw`` read as ``item``'s answer type; boxes in pixels of the rendered image.

    ``profile`` is the spec of the box profile the model was prompted with
    (``voxqa.boxes.profiles``); an unknown one raises, as it is a caller's mistake, not a
    model's. ``frame_size`` (width, height) sizes boxes of items that have no rendered
    images; ``volume_box`` maps a 3D box in a model's volume grid to stored frames (M3D).
    """
    ctx = ParseContext(item, get_profile(profile), frame_size, volume_box)
    kind = ANSWER_TYPES[item.answer.type]
    text, truncated, limit = "", False, max_reply_chars()  # a bad VOXQA_MAX_REPLY_CHARS is the caller's error
    try:
        text, truncated = bounded_reply(raw or "", limit)
        reply = reduce_reply(text, truncated)
        if item.json_path:  # the question stated its own reply JSON (3DReasonKnee's templates)
            reply = read_released(reply, item.json_path, kind.released_text)
        return ParseResult(True, kind.parse(reply, ctx), truncated=truncated)
    except ParseError as exc:
        error = str(exc)
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:  # text no reader expected
        error = f"unreadable reply ({type(exc).__name__}: {exc})"
    if truncated:
        error += f" (only the reply's first {len(text)} characters were read)"
    return ParseResult(False, None, error, truncated)
