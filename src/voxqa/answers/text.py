"""text: free text (captions, report findings), judged by text metrics.

Reading: the answer, stripped; fails only when empty. Scores: BLEU, ROUGE-L, token F1 and
entity F1 over the findings it places right, label + frame and label + frame + box
(``voxqa.eval.metrics.text``), since n-gram scores cannot tell a finding on its own frames from
one on another finding's.
A text answer may quote boxes, so its user turn carries the profile's box hint.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, cast

from voxqa.answers.base import AnswerType, Scores, ScoreContext, TargetWriter
from voxqa.answers.reply import ParseContext, ParseError, Reply
from voxqa.boxes.profiles import Profile
from voxqa.eval.metrics.text import bleu, entity_f1, rouge_l, token_f1
from voxqa.schema import Item, TextAnswer

NO_FINDING = "No abnormality."


class Text(AnswerType):
    name = "text"
    instruction = "Answer in a few sentences."
    holds_boxes = True
    free_text = True
    constant_reply = NO_FINDING

    def parse(self, reply: Reply, ctx: ParseContext) -> str:
        """The answer as written; free text is judged by text metrics, so only emptiness fails."""
        text = reply.answer.strip()
        if not text:
            raise ParseError("empty answer")
        return text

    def score(self, gold: str, pred: str | None, ctx: ScoreContext) -> Scores:
        if pred is None:
            return {"bleu": 0.0, "rouge_l": 0.0, "entity_f1": 0.0, "token_f1": 0.0}
        return {"bleu": bleu(pred, gold), "rouge_l": rouge_l(pred, gold),
                "entity_f1": entity_f1(pred, gold, ctx.vocabulary), "token_f1": token_f1(pred, gold)}

    def target(self, item: Item, write: TargetWriter) -> str:
        return write.text(cast(TextAnswer, item.answer).value)

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        return NO_FINDING

    def balance_key(self, value: Any) -> str | None:
        """The text itself: a template whose texts are mostly one text (a caption of
        "No findings annotated.") is as answerable blind as a constant number."""
        return str(value)


TEXT = Text()
