"""yes_no: "yes" or "no".

Reading: yes/no/true/false/y/n, any case: the first such word in scope (the first line after
an answer phrase, or the structured answer); without either only the very first word counts
("Yes, ..." but not "There is no ..."). "not sure", "n/a", "yes/no" decide nothing -> failure.
Scores: ``correct`` (= ``a_score``) and ``gold_class`` for balanced accuracy. Chance 1/2.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

from voxqa.answers.base import AnswerType, Scores, ScoreContext
from voxqa.answers.reply import ParseContext, ParseError, Reply
from voxqa.boxes.profiles import Profile
from voxqa.schema import Item

_YES_NO = {"yes": "yes", "y": "yes", "true": "yes", "no": "no", "n": "no", "false": "no"}
_WORD = re.compile(r"[a-z]+(?:/[a-z]+)*")  # "n/a" and "yes/no" stay one (undecided) token


def score_single(gold: Any, pred: Any) -> Scores:
    """yes_no and choice. ``gold_class`` feeds balanced accuracy (classes are gold values)."""
    correct = float(pred is not None and pred == gold)
    gold_class = {"no": 0.0, "yes": 1.0}[gold] if isinstance(gold, str) else float(gold)
    return {"correct": correct, "a_score": correct, "gold_class": gold_class}


class YesNo(AnswerType):
    name = "yes_no"
    instruction = "Answer with yes or no."
    audited = True
    constant_reply = "no"

    def parse(self, reply: Reply, ctx: ParseContext) -> str:
        """The first decisive word: hedges ("not sure") contain none, so they fail."""
        words = _WORD.findall(reply.scope().lower())
        if not reply.explicit:
            words = words[:1]  # without an answer phrase only a leading "Yes"/"No" is an answer
        for word in words:
            if word in _YES_NO:
                return _YES_NO[word]
        raise ParseError("no yes/no answer found")

    def score(self, gold: Any, pred: Any, ctx: ScoreContext) -> Scores:
        return score_single(gold, pred)

    def chance(self, item: Item) -> float | None:
        return 0.5

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        return rng.choice(["yes", "no"])

    def released_text(self, value: Any) -> str:
        """3DReasonKnee's ``"presence": 0 | 1``: 1 is yes, 0 no."""
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return "yes" if value else "no"
        return json.dumps(value)

    def balance_key(self, value: Any) -> str | None:
        return str(value)


YES_NO = YesNo()
