"""The answer-type protocol: every hook the pipeline needs from one kind of answer.

An item's ``answer.type`` (``voxqa.schema``) names one ``AnswerType`` in
``voxqa.answers.ANSWER_TYPES``; prompts, the training target, parsing, scoring, the
weight-free baselines, the blind audit and the views ask it instead of branching on the
type string, so a new kind of answer is one module here, its registration and its test.

Values are an answer's ``value`` in JSON form (boxes as ``{"frame", "box"}`` dicts) or as
the pydantic models of ``voxqa.schema``; a prediction is what ``parse`` returned, or None
when the reply could not be read (scored as wrong / zero).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import orjson

from voxqa.answers.reply import ParseContext, Reply
from voxqa.boxes.profiles import Profile
from voxqa.schema import Item

Scores = dict[str, float | None]


@dataclass(frozen=True)
class ScoreContext:
    """What scoring needs beyond gold and prediction: a number's absolute ``tolerance``, the
    answer's ``scale`` (a grade's grades, a number template's stated (low, high) range: an
    unparsed answer is charged its span), the finding labels a
    text may mention (``vocabulary``, for entity F1) and whether boxes were asked for as
    points (a point profile)."""

    tolerance: float = 0.0
    scale: Sequence[int] = ()
    vocabulary: Sequence[str] = ()
    points: bool = False


class TargetWriter(Protocol):
    """How the training target writes text and boxes (``voxqa.conversation``)."""

    def text(self, text: str) -> str:
        """``text`` as a JSON string literal, the boxes it quotes in the box style."""
        ...

    def box(self, frame: int, box: Sequence[int]) -> str:
        """A stored-frame box on ``frame`` as JSON text in the box style."""
        ...

    def frame(self, frame: int) -> int:
        """A stored (0-based) frame as the prompt labels it (the profile's ``frame_base``)."""
        ...

    def native(self, boxes: Sequence[tuple[int, Sequence[int], str | None]]) -> str | None:
        """Stored-frame boxes (frame, box, label) in the family's own text form, one
        ``Frame k: <box>`` line each, as a JSON string literal; None unless the profile's
        target style is ``native`` (or without boxes): then boxes are JSON numbers."""
        ...


class AnswerType:
    """One kind of answer. Subclasses set ``name`` and ``instruction`` and implement
    ``parse``, ``score`` and ``random_reply``; the other hooks have the defaults most types
    share."""

    #: the ``answer.type`` string of ``voxqa.schema`` this type handles
    name: ClassVar[str]
    #: the minimal prompt mode's line saying how to answer
    instruction: ClassVar[str]
    #: the answer holds (or, for text, may quote) boxes: the user turn gets the profile's box hint
    holds_boxes: ClassVar[bool] = False
    #: free text: judged by text metrics and the jury; the boxes it quotes are scored as the
    #: training target writes them (in the profile's convention)
    free_text: ClassVar[bool] = False
    #: values are numbers: the random baseline draws them from the template's train values
    numeric: ClassVar[bool] = False
    #: the blind audit fits a text-only learner for it (``voxqa.dataset.audit``)
    audited: ClassVar[bool] = False
    #: how many of the item's options an answer selects: "one", "many", or None (no options)
    selects: ClassVar[Literal["one", "many"] | None] = None
    #: a text-only guess of it means something (not so for a location): the ``prior`` baseline answers it
    blind_prior: ClassVar[bool] = True
    #: the ``prior`` baseline's reply for a template it never saw in train
    constant_reply: ClassVar[str] = ""

    def parse(self, reply: Reply, ctx: ParseContext) -> Any:
        """The value a reply gives (raises ``ParseError`` when it gives none)."""
        raise NotImplementedError

    def score(self, gold: Any, pred: Any, ctx: ScoreContext) -> Scores:
        """Per-item scores of ``pred`` (None: unparseable, scored as wrong / zero)."""
        raise NotImplementedError

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        """A uniform draw from the item's answer space, written as the minimal prompt asks
        (``numbers``: the template's pool of values, for number-like answers)."""
        raise NotImplementedError

    def target(self, item: Item, write: TargetWriter) -> str:
        """The answer as JSON text in the training target (``"answer": ...``)."""
        return json.dumps(item.answer.value)

    def target_fields(self, item: Item) -> str:
        """More target fields after the answer, each JSON member followed by ", "; none by default."""
        return ""

    def chance(self, item: Item) -> float | None:
        """P(a uniform random answer is right), where the answer space is finite."""
        return None

    def reply_text(self, value: Any, frame_base: int = 0) -> str:
        """``value`` written as the minimal prompt asks (the blind baseline's reply), frame
        numbers counted from ``frame_base`` (the profile's)."""
        return str(value)

    def released_text(self, value: Any) -> str:
        """A value read at the item's ``json_path`` in a benchmark's own reply JSON, as the
        text this type reads (a grade's number, a 3D box's six numbers)."""
        return json.dumps(value)

    def display(self, item: Item, value: Any) -> str:
        """A parsed answer as people read it (the HTML report)."""
        return orjson.dumps(value).decode()

    def boxes_of(self, value: Any) -> list[tuple[int, list[int]]]:
        """(frame, box) pairs of a JSON-form value, for drawing and quoting; none by default."""
        return []

    def on_image(self, value: Any, to_image: Callable[[Sequence[int]], list[int]]) -> Any:
        """A JSON-form value with its stored-frame boxes mapped to the rendered image."""
        return value

    def hashable(self, value: Any) -> Any:
        """The value as a hashable class label (the blind audit's learners)."""
        return value

    def matches(self, answer: Any, pred: Any) -> bool:
        """Whether the audit's predicted value ``pred`` is the schema answer ``answer``."""
        return pred == answer.value

    def balance_key(self, value: Any) -> str | None:
        """The value as a key of the answer-balance check (``voxqa inspect``); None: not checked."""
        return None
