"""grade: an ordinal grade (e.g. MOAKS), on the answer's ``scale`` when it has one.

Reading: "grade k" (the last one), else a number read as for ``number``; or 3DReasonKnee's
``{"MOAKS_scores": {"<region> <group>": {"<component>": k}}}`` (the item's entry; beside a
structured answer both must agree); it must be an int in the item's ``answer.scale`` (when
the scale is not empty). Scores: ``correct``, absolute error and the (gold, pred) pair for
quadratic weighted kappa; an unparsed grade counts as the farthest grade of the scale (QWK)
and is charged the scale's span (MAE).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any, cast

from voxqa.answers.base import AnswerType, Scores, ScoreContext
from voxqa.answers.number import random_number, the_number, unparsed_penalty, within
from voxqa.answers.reply import ParseContext, ParseError, Reply, json_values, released_value
from voxqa.anatomy.knee import FEATURES, moaks_key, moaks_scores
from voxqa.boxes.profiles import Profile
from voxqa.schema import GradeAnswer, Item

_GRADE = re.compile(r"\bgrade\s*:?\s*(\d+)\b", re.IGNORECASE)
MOAKS_KEYS = ("MOAKS_scores", "MOAKS_grade")  # 3DReasonKnee's Q45/51/52 write "MOAKS_grade"


def _norm_key(key: str) -> str:
    return " ".join(re.findall(r"[a-z0-9%]+", key.lower()))


def _moaks_entry(scores: dict[str, Any], item: Item) -> Any:
    """The item's grade in a ``MOAKS_scores`` object: its ``"<region> <group>"`` entry (or the
    only entry: 3DReasonKnee asks one region per question), then its component (or
    ``"grade"``, or the only value; Q46/47 nest ``{"grade": g}``, Q44/45 do not)."""
    known = item.subtask in FEATURES and item.label in FEATURES[item.subtask].regions
    group, component = moaks_key(item.label or "", item.subtask) if known else ("", None)
    entries = {_norm_key(k): v for k, v in scores.items()}
    entry = entries.get(_norm_key(group), next(iter(entries.values())) if len(entries) == 1 else None)
    if isinstance(entry, dict):
        values = {_norm_key(k): v for k, v in entry.items()}
        for key in (component, "grade"):
            if key is not None and _norm_key(key) in values:
                return values[_norm_key(key)]
        return next(iter(values.values())) if len(values) == 1 else None
    return entry


def _moaks_grade(text: str, item: Item) -> Any:
    """The grade a 3DReasonKnee-style ``{"MOAKS_scores": {...}}`` reply gives the item (at its
    template's key path, wrapper added, dropped or swapped; else its entry), or None."""
    feature = FEATURES.get(item.subtask)
    if feature is not None and item.label in feature.regions:
        found = released_value(text, list(feature.released(item.label).path))
        if found is not None:
            return found
    for _, value in json_values(text):
        scores = next((value[k] for k in MOAKS_KEYS if k in value), None) if isinstance(value, dict) else None
        if isinstance(scores, dict) and (found := _moaks_entry(scores, item)) is not None:
            return found
    return None


class Grade(AnswerType):
    name = "grade"
    instruction = "Answer with the grade number."
    audited = True
    numeric = True
    constant_reply = "0"

    def parse(self, reply: Reply, ctx: ParseContext) -> int:
        """"grade k", else the number, or the item's entry of a 3DReasonKnee ``MOAKS_scores``
        object (beside a structured answer, the two must agree); off the item's scale is a
        failure, not a clipped grade."""
        moaks = _moaks_grade(reply.text, ctx.item)
        if moaks is not None and not reply.explicit:
            value = moaks
        else:
            named = _GRADE.findall(reply.scope())
            value = int(named[-1]) if named else the_number(reply)
            if moaks is not None and moaks != value:
                raise ParseError(f"the answer {value} and the MOAKS_scores grade {moaks} differ")
        if not isinstance(value, int):
            raise ParseError(f"grade {value} is not an integer")
        scale = getattr(ctx.item.answer, "scale", [])
        if scale and value not in scale:
            raise ParseError(f"grade {value} is not on the scale {scale}")
        return value

    def score(self, gold: int, pred: int | None, ctx: ScoreContext) -> Scores:
        """An unparseable grade is charged the scale's span as its absolute error (the worst
        error any grade can make) and counts for QWK as the grade farthest from gold; without a
        scale it has neither (it still counts as wrong)."""
        scale = ctx.scale
        if pred is None:
            worst = max(scale, key=lambda s: abs(s - gold)) if scale else None
            return {"correct": 0.0, "a_score": 0.0, "abs_error": unparsed_penalty(scale),
                    "grade_gold": float(gold), "grade_pred": None if worst is None else float(worst)}
        correct = float(pred == gold)
        return {"correct": correct, "a_score": correct, "abs_error": float(abs(pred - gold)),
                "grade_gold": float(gold), "grade_pred": float(pred)}

    def target_fields(self, item: Item) -> str:
        """A knee grade's 3DReasonKnee structured target, ``"MOAKS_scores": {...}, ``, so exports
        and the structured mode speak ReasonKnee-Bench's format as well as voxqa's."""
        if item.task != "grading" or item.subtask not in FEATURES or item.label not in FEATURES[item.subtask].regions:
            return ""
        grade = cast(GradeAnswer, item.answer).value
        region = cast(str, item.label)  # a grading item names its region
        return json.dumps(moaks_scores(region, item.subtask, grade))[1:-1] + ", "

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        return random_number(rng, numbers)

    def matches(self, answer: Any, pred: Any) -> bool:
        return within(answer, pred)


GRADE = Grade()
