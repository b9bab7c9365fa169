"""The claim schema: one spatial statement of a report sentence, and its verdict.

A claim is what an extractor (rules or an LLM) reads from one sentence; the verifier adds
``verdict`` and ``reason`` from the study's geometry. ``DIR/claims.jsonl`` holds one claim
per line, so a report-image consistency check needs nothing but this file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["en", "de"]
Verdict = Literal["supported", "contradicted", "unverifiable"]
Polarity = Literal["positive", "negative"]
Side = Literal["left", "right"]
#: ``present``: the structure exists (negative: absent, e.g. "status post splenectomy");
#: ``side``: on the patient's left/right of the midline; binary relations read
#: "structures[0] <relation> structures[1]" (``left_of``: on the patient's left of it).
Relation = Literal[
    "present", "side", "superior", "inferior", "anterior", "posterior", "left_of", "right_of",
    "medial", "lateral", "adjacent", "within", "larger",
]
BINARY: frozenset[str] = frozenset(
    {"superior", "inferior", "anterior", "posterior", "left_of", "right_of", "medial", "lateral",
     "adjacent", "within", "larger"})


class Claim(BaseModel):
    """One claim of one sentence. ``structures`` are label-vocabulary names
    (``voxqa.anatomy.labelnames``), or a group a label map may split into parts
    ("lung_left" -> its lobes); ``sentence`` is verbatim, ``span`` its character offsets in
    the report text."""

    model_config = ConfigDict(extra="forbid")

    study_id: str
    sentence: str
    span: tuple[int, int]
    language: Language
    structures: list[str] = Field(min_length=1, max_length=2)
    relation: Relation
    side: Side | None = None
    polarity: Polarity = "positive"
    extractor: str = "rules"
    verdict: Verdict | None = None
    reason: str | None = None
    #: the facts that decided the verdict (names, RAS+ mm), for items and their reasoning
    geometry: dict = Field(default_factory=dict)


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """The verdict of several claims read together (a sentence, a plural, a structure
    split into parts): contradicted if any is, supported only if all are."""
    seen = set(verdicts)
    if "contradicted" in seen:
        return "contradicted"
    if seen == {"supported"}:
        return "supported"
    return "unverifiable"
