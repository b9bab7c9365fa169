"""Per-item scores: one prediction against its gold answer, by the answer's type.

``score_item(answer_type, gold, pred, ...)`` -> ``{score_name: float | None}``. ``gold`` is
the answer's ``value`` (JSON form or the pydantic models of ``voxqa.schema``), ``pred`` the
parsed prediction in the same form, or ``None`` when the output could not be parsed. ``None``
always scores as wrong / zero, so a model cannot gain by failing to parse. What each type
scores is its ``AnswerType.score`` (``voxqa.answers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from voxqa.answers import ANSWER_TYPES
from voxqa.answers.base import Scores, ScoreContext


def score_item(answer_type: str, gold: Any, pred: Any, *, tolerance: float = 0.0,
               scale: Sequence[int] = (), vocabulary: Sequence[str] = (), points: bool = False) -> Scores:
    """Scores of one prediction; ``pred=None`` (unparseable) scores as wrong / zero.

    ``tolerance`` is a number answer's absolute tolerance, ``scale`` a grade answer's scale or
    a number template's stated range (an unparseable answer is charged its span; a grade also
    counts as the farthest grade for QWK), ``vocabulary`` the finding
    labels a text answer may mention (for ``entity_f1``); ``points`` says a box answer was
    asked for as points (a point profile), scored by ``point_hit`` / ``point_in_box``.
    """
    kind = ANSWER_TYPES.get(answer_type)
    if kind is None:
        raise ValueError(f"unknown answer type {answer_type!r}")
    return kind.score(gold, pred, ScoreContext(tolerance, scale, vocabulary, points))


def score_answer(answer: Any, pred: Any, *, vocabulary: Sequence[str] = ()) -> Scores:
    """``score_item`` for a ``voxqa.schema`` answer model, taking tolerance and scale from it."""
    return score_item(answer.type, answer.value, pred, tolerance=getattr(answer, "tolerance", 0.0),
                      scale=getattr(answer, "scale", ()), vocabulary=vocabulary)
