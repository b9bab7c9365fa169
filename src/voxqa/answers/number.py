"""number: a count or measurement, right within the answer's absolute ``tolerance``.

Reading: digits (-3, 12.5, 1,234; units ignored) or words zero..twenty, thirty..ninety,
"twenty-one": the last number in scope; without an answer phrase, the only number. A "."
makes a float, otherwise an int. Markup (``<points x1=...>``) is not read; "none" / "there
are no ..." is 0. Scores: ``correct`` (within tolerance) and the absolute error (MAE).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from voxqa.answers.base import AnswerType, Scores, ScoreContext
from voxqa.answers.reply import Number, ParseContext, ParseError, Reply
from voxqa.boxes.profiles import Profile
from voxqa.schema import Item

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_NUMBER = re.compile(
    r"(?<![\w.])(?P<digits>-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?)"
    rf"|\b(?P<tens>{'|'.join(_TENS)})(?:[\s-]+(?P<unit>{'|'.join(_UNITS[1:10])}))?\b"
    rf"|\b(?P<word>{'|'.join(_UNITS)})\b",
    re.IGNORECASE,
)


def _numbers(text: str) -> list[Number]:
    """Every number in ``text``, in order: digits (ints unless they have a point) and words."""
    found: list[Number] = []
    for m in _NUMBER.finditer(text):
        if m["digits"]:
            digits = m["digits"].replace(",", "")
            found.append(float(digits) if "." in digits else int(digits))
        elif m["tens"]:
            found.append(_WORD_VALUE[m["tens"].lower()] + (_WORD_VALUE[m["unit"].lower()] if m["unit"] else 0))
        else:
            found.append(_WORD_VALUE[m["word"].lower()])
    return found


_MARKUP = re.compile(r"<[^<>]*>")  # point lists and box tags carry coordinates, not counts
_NONE_COUNT = re.compile(r"\bnone\b|\bthere\s+(?:are|is)\s+no\b", re.IGNORECASE)


def the_number(reply: Reply) -> Number:
    """The last number of an explicit answer, else the reply's only number; markup (a
    ``<points x1=...>`` list) is not read, and "none" / "there are no ..." is 0."""
    scope = _MARKUP.sub(" ", reply.scope())
    found = _numbers(scope)
    if not found and _NONE_COUNT.search(scope):
        return 0
    if not found:
        raise ParseError("no number found")
    if reply.explicit:
        return found[-1]
    if len(set(found)) > 1:
        raise ParseError(f"several numbers and no answer phrase: {sorted(set(found))}")
    return found[0]


def random_number(rng: random.Random, numbers: Sequence[float]) -> str:
    """A draw from the template's values (``numbers``), else from 0..10."""
    return str(rng.choice(list(numbers) or list(range(11))))


def within(answer: Any, pred: Any) -> bool:
    """``pred`` within the schema answer's tolerance (none for grades)."""
    return abs(float(pred) - float(answer.value)) <= getattr(answer, "tolerance", 0.0) + 1e-9


def stated_range(values: Sequence[float]) -> tuple[float, float]:
    """A number template's stated range, from its gold answers (every split): from 0 (or its
    least value, when negative) to its largest value, at least 1 wide. Counts and sizes never
    go below 0, so "0" is always in range."""
    low = min(0, *values) if values else 0
    high = max(values) if values else 1
    return low, max(high, low + 1)


def unparsed_penalty(scale: Sequence[float]) -> float | None:
    """The absolute error an unparsed answer is charged: the span of its scale (a grade's
    grades, a number's stated range), the worst error any answer on the scale can make; None
    without a scale."""
    return float(max(scale) - min(scale)) if len(scale) else None


def uniform_chance(gold: float, tolerance: float, scale: Sequence[float]) -> float | None:
    """P(a uniform draw on the scale is within ``tolerance`` of ``gold``): over its integers
    when the scale and gold are integers (counts), else over the interval; None without one."""
    if not len(scale):
        return None
    low, high = min(scale), max(scale)
    if all(float(v).is_integer() for v in (low, high, gold)):
        hits = [v for v in range(int(low), int(high) + 1) if abs(v - gold) <= tolerance + 1e-9]
        return len(hits) / (int(high) - int(low) + 1)
    overlap = min(high, gold + tolerance) - max(low, gold - tolerance)
    return max(0.0, overlap) / (high - low) if high > low else None


class NumberType(AnswerType):
    name = "number"
    instruction = "Answer with a number."
    audited = True
    numeric = True
    constant_reply = "0"

    def parse(self, reply: Reply, ctx: ParseContext) -> Number:
        """The answer's last number, or a phrase-less reply's only one (units are ignored)."""
        return the_number(reply)

    def score(self, gold: float, pred: float | None, ctx: ScoreContext) -> Scores:
        """An unparseable number is charged the fixed penalty of its template's stated range
        (``ctx.scale`` = (low, high), ``unparsed_penalty``: high - low, at least any in-range
        answer's error); without a stated range it has no absolute error."""
        if pred is None:
            return {"correct": 0.0, "within_tolerance": 0.0, "a_score": 0.0,
                    "abs_error": unparsed_penalty(ctx.scale)}
        err = abs(float(pred) - float(gold))
        ok = float(err <= ctx.tolerance + 1e-9)  # 1e-9: "0.3" must be within 0.1 of 0.2 in floats
        return {"correct": ok, "within_tolerance": ok, "a_score": ok, "abs_error": err}

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        return random_number(rng, numbers)

    def matches(self, answer: Any, pred: Any) -> bool:
        return within(answer, pred)

    def balance_key(self, value: Any) -> str | None:
        return str(value)


NUMBER = NumberType()
