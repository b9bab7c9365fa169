"""frames: which frames show something, ``value`` sorted 0-based frame indices.

Reading: ints and inclusive ranges "3-5", "3 to 5", "3 through 5": "[3, 4, 5]", "frames 3-5,
9", "frame 7"; "none" -> []. Sorted unique ints. A count given as context ("(of 24 frames
shown)") is not a frame. Numbers are frames as the prompt labels them, from the profile's
``frame_base`` (0 for voxqa's profiles, 1 for ``sgmri``), and the value is stored 0-based; the
target and the baselines' replies write them the same way. Scores: frame precision, recall
and F1.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, cast

from voxqa.answers.base import AnswerType, Scores, ScoreContext, TargetWriter
from voxqa.answers.reply import NONE_ANSWERS, ParseContext, ParseError, Reply, normal
from voxqa.boxes.profiles import Profile
from voxqa.eval.metrics.statistics import set_prf
from voxqa.schema import Item

# a range starts where a run of digits starts (matching from inside a run could only repeat
# the run's own attempt: without the look-behind a long digit run took quadratic time)
_FRAME_RANGE = re.compile(r"(?<!\d)(\d+)\s*(?:-|–|—|\bto\b|\bthrough\b)\s*(\d+)", re.IGNORECASE)
_INT = re.compile(r"\b\d+\b")
_DECIMAL = re.compile(r"\d\.\d")
MAX_RANGE = 10_000  # frames in one range; more is a misread, not a volume


def _range(first: int, last: int) -> range:
    if last < first or last - first >= MAX_RANGE:
        raise ParseError(f"frame range {first}-{last} is empty or implausibly long")
    return range(first, last + 1)


# the look-ahead first checks that the parenthesis closes, so an unclosed "(of of of ..." is
# refused in one pass instead of once per "of"
_CONTEXT_COUNT = re.compile(r"\((?=[^()]*\))[^()]*\b(?:of|out of|total)\b[^()]*\)"
                            r"|\b(?:out\s+)?of\s+\d+\s+(?:frames|slices|images)\b", re.IGNORECASE)


class Frames(AnswerType):
    name = "frames"
    instruction = "Answer with the frame numbers as labelled, e.g. 3-5, 9."
    constant_reply = "0"

    def parse(self, reply: Reply, ctx: ParseContext) -> list[int]:
        """Sorted unique frames of ints and inclusive ranges; a decimal is no frame index, and a
        count given as context ("(of 24 frames shown)", "of 24 slices") is not a frame."""
        scope = _CONTEXT_COUNT.sub(" ", reply.scope())
        if normal(scope) in NONE_ANSWERS:
            return []
        if _DECIMAL.search(scope):
            raise ParseError("frame numbers are integers")
        frames: set[int] = set()
        for m in _FRAME_RANGE.finditer(scope):
            frames.update(_range(int(m[1]), int(m[2])))
        frames.update(int(v) for v in _INT.findall(_FRAME_RANGE.sub(" ", scope)))
        if not frames:
            raise ParseError("no frame numbers found")
        base = ctx.profile.frame_base
        if min(frames) < base:
            raise ParseError(f"frame {min(frames)} is not a frame number (frames are numbered from {base})")
        return sorted(f - base for f in frames)

    def score(self, gold: Sequence[int], pred: Sequence[int] | None, ctx: ScoreContext) -> Scores:
        p, r, f1 = set_prf(gold, pred)
        return {"frame_precision": p, "frame_recall": r, "frame_f1": f1}

    def target(self, item: Item, write: TargetWriter) -> str:
        return "[" + ", ".join(str(write.frame(k)) for k in cast(list[int], item.answer.value)) + "]"

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        """A random run of consecutive shown frames."""
        frames = [im.frame for im in item.images or []] or [0]
        a, b = sorted(rng.sample(range(len(frames)), 2)) if len(frames) > 1 else (0, 0)
        return self.reply_text(frames[a:b + 1], profile.frame_base)

    def reply_text(self, value: Any, frame_base: int = 0) -> str:
        return ", ".join(str(k + frame_base) for k in value)


FRAMES = Frames()
