"""multi_choice: select all that apply, ``value`` the sorted 0-based option indices.

Reading: "none" / "none of the above" / "[]" -> []; else items separated by "," ";" "&",
"and" or newlines, each an option text, a marked letter "(A) text", or letters separated by
spaces ("A C"). Glued letters ("AC") are rejected: they cannot be told from a word. Result:
sorted unique indices. Scores: exact match (``correct``), set F1 (``a_score``, SGMRI-VQA's).
Chance 1/(2^k - 1) for k options (exact match, at least one option).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, cast

import orjson

from voxqa.answers.base import AnswerType, Scores, ScoreContext, TargetWriter
from voxqa.answers.options import LETTER_TOKEN, PLACEHOLDER, letter, letter_index, letters, mark_options, marked
from voxqa.answers.reply import NONE_ANSWERS, ParseContext, ParseError, Reply, normal
from voxqa.boxes.profiles import Profile
from voxqa.eval.metrics.statistics import set_prf
from voxqa.schema import Item, MultiChoiceAnswer

_OPTION_WORD = re.compile(r"\boption\b", re.IGNORECASE)
_ITEM_SEPARATOR = re.compile(r"[,;&\n]|\band\b", re.IGNORECASE)


def _item_indices(piece: str, options: list[str]) -> list[int]:
    """The options one list item names: "(A) text", an option text, or letters "A C"."""
    rest = PLACEHOLDER.sub(" ", piece).strip()
    if rest:
        tokens = _OPTION_WORD.sub(" ", rest).split()
        matches = [LETTER_TOKEN.fullmatch(t) for t in tokens]
        if not all(matches):
            raise ParseError(f"{rest!r} is neither option letters nor an option text")
        return [letter_index(m[1], options) for m in matches if m]
    return [int(i) for i in PLACEHOLDER.findall(piece)]


class MultiChoice(AnswerType):
    name = "multi_choice"
    instruction = "Answer with the letters of all correct options, separated by commas."
    audited = True
    selects = "many"
    constant_reply = letter(0)

    def parse(self, reply: Reply, ctx: ParseContext) -> list[int]:
        """Sorted unique indices of a separated list; one unreadable list item fails it all."""
        options = ctx.options()
        scope = reply.scope()
        if normal(scope) in NONE_ANSWERS:
            return []
        indices: set[int] = set()
        for piece in _ITEM_SEPARATOR.split(mark_options(scope, options)):
            piece = piece.strip(" .:")
            if piece:
                indices.update(_item_indices(piece, options))
        if not indices:
            raise ParseError("no option letters or option texts found")
        return sorted(indices)

    def score(self, gold: Sequence[int], pred: Sequence[int] | None, ctx: ScoreContext) -> Scores:
        """Exact match is what chance (1 / (2^k - 1)) refers to; set F1 gives partial credit."""
        if pred is None:
            return {"correct": 0.0, "exact_match": 0.0, "set_f1": 0.0, "a_score": 0.0}
        exact = float(set(gold) == set(pred))
        f1 = set_prf(gold, pred)[2]
        return {"correct": exact, "exact_match": exact, "set_f1": f1, "a_score": f1}

    def target(self, item: Item, write: TargetWriter) -> str:
        options = item.options or []
        return write.text("; ".join(f"{marked(i)} {options[i]}" for i in cast(MultiChoiceAnswer, item.answer).value) or "none")

    def chance(self, item: Item) -> float | None:
        return 1 / (2 ** len(item.options or []) - 1)

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        n = len(item.options or [])
        picked = [i for i in range(n) if rng.random() < 0.5] or [rng.randrange(max(n, 1))]
        return letters(picked)

    def reply_text(self, value: Any, frame_base: int = 0) -> str:
        return letters(list(value)) or "none"

    def display(self, item: Item, value: Any) -> str:
        options = item.options or []
        if isinstance(value, list) and all(isinstance(p, int) and 0 <= p < len(options) for p in value):
            return "; ".join(f"{letter(p)}. {options[p]}" for p in value) or "(none)"
        return orjson.dumps(value).decode()

    def hashable(self, value: Any) -> Any:
        return tuple(sorted(value))

    def matches(self, answer: Any, pred: Any) -> bool:
        return tuple(sorted(pred)) == tuple(sorted(answer.value))

    def balance_key(self, value: Any) -> str | None:
        return ",".join(map(str, value))


MULTI_CHOICE = MultiChoice()
