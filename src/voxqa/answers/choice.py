"""choice: exactly one of the item's options, ``value`` its 0-based index.

Reading: the exact text of exactly one option (case/whitespace-insensitive), else one
letter: "(B)", "B.", "B)", "B:", "Option B", a lone "b", or a bare capital B..Z; a bare A or
I (English words: "A meniscus tear") only when alone or before ",", ";", "/", "and", "or"
("A and B" names two). Option texts are blanked before letters are sought, so an option such
as "Grade C" cannot add a letter. Two different letters, or a letter past the last option
-> failure. "(C) Meniscus Tear": the letter decides. With no letter, exactly one option text
inside a sentence is the answer ("So the sequence is Turn Left, Turn Right."; options that
are letters: "D. D."). Scores as yes_no does. Chance 1/k for k options.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, cast

import orjson

from voxqa.answers.base import AnswerType, Scores, ScoreContext, TargetWriter
from voxqa.answers.options import (
    PLACEHOLDER,
    letter,
    letter_index,
    mark_options,
    marked,
    named_letters,
    option_by_text,
)
from voxqa.answers.reply import ParseContext, ParseError, Reply
from voxqa.answers.yes_no import score_single
from voxqa.boxes.profiles import Profile
from voxqa.schema import ChoiceAnswer, Item


class Choice(AnswerType):
    name = "choice"
    instruction = "Answer with the letter of one option."
    audited = True
    selects = "one"
    constant_reply = letter(0)

    def parse(self, reply: Reply, ctx: ParseContext) -> int:
        """An option's whole text, else exactly one letter; a second letter is a second answer."""
        options = ctx.options()
        scope = reply.scope()
        by_text = option_by_text(scope, options)
        if by_text is not None:
            return by_text
        blanked = mark_options(scope, options)
        named = named_letters(blanked)
        if not named:  # one option's text inside a sentence ("So the sequence is Turn Left, Turn Right.")
            texts = set(PLACEHOLDER.findall(blanked))
            if len(texts) == 1:
                return int(texts.pop())
            raise ParseError("no option letter, or not exactly one option text, found"
                             if texts else "no option letter or option text found")
        if len(named) > 1:
            raise ParseError(f"several options named: {', '.join(sorted(named))}")
        return letter_index(named.pop(), options)

    def score(self, gold: Any, pred: Any, ctx: ScoreContext) -> Scores:
        return score_single(gold, pred)

    def target(self, item: Item, write: TargetWriter) -> str:
        index = cast(ChoiceAnswer, item.answer).value
        return write.text(f"{marked(index)} {(item.options or [])[index]}")

    def chance(self, item: Item) -> float | None:
        return 1 / len(item.options or [])

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        return letter(rng.randrange(len(item.options or [1])))

    def reply_text(self, value: Any, frame_base: int = 0) -> str:
        return letter(int(value))

    def released_text(self, value: Any) -> str:
        """A released code (3DReasonKnee's tear location 0-3) is the option at that index:
        imported legends are listed in code order."""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 26:
            return letter(value)
        return orjson.dumps(value).decode()

    def display(self, item: Item, value: Any) -> str:
        options = item.options or []
        if isinstance(value, int) and 0 <= value < len(options):
            return f"{letter(value)}. {options[value]}"
        return orjson.dumps(value).decode()

    def balance_key(self, value: Any) -> str | None:
        return str(value)


CHOICE = Choice()
