"""Jury protocols: how judges are asked about free-text answers and how their votes decide.

A ``JuryProtocol`` is everything about a jury that a published benchmark fixes: the prompt a
judge gets for one or several (question, reference, candidate) cases, the system message, how
many cases go in one request, how a reply is read into verdicts keyed by item id, how many
judges it takes and how their votes become the item's score. ``voxqa.eval.jury.Jury`` does
the rest the same for every protocol: caching, concurrency, and a judge that leaves an item
out, answers unreadably or fails is a recorded failure for that item, never a shifted or
guessed verdict. ``PROTOCOLS`` holds them by the name ``voxqa score --jury-protocol`` takes.

* ``voxqa`` (the default): one item per request ("Reply with yes or no only"; with
  ``batch`` > 1 a JSON list of ``{"id", "correct"}`` keyed by the item's own id), asking whether
  the candidate "states the same findings and locations as the reference"; 1 to 3 judges,
  majority yes (ties: no).
* ``ct-spatialvqa``: CT-SpatialVQA's judge as released (github.com/Mashrafi27/CT-SpatialVQA @
  e25374c, ``benchmarking/eval_scripts/scripts/evaluate_with_{gpt,qwen,gemini}.py``): its fixed
  prompt verbatim (``PROMPT_TEMPLATE``, L24-32 of each), five items per request numbered
  1-5 as ``{offset}. Question: ...\\n   Answer: ...\\n   Prediction: ...`` (L175-184), the system
  message "You are a strict medical QA evaluator." (gpt/qwen L140), up to 512 reply tokens
  (L43), a JSON list of ``{"index", "is_correct"}``; three judges, an item correct iff
  ``floor(100 * mean(votes)) / 100 >= 0.66``, i.e. at least 2 of 3
  (``build_correctness_matrix.py`` L227-234, ``compute_llm_jury_accuracy.py`` L76). The
  released evaluators pair the returned list with the batch by position (``zip(parsed,
  batch)``, gpt L244) and ignore ``index``; here each verdict goes to the item its ``index``
  names, and an index missing from the reply is a recorded failure (the released code then
  shifted every later verdict of the batch, or dropped it). Use it to set a new model's jury
  accuracy beside the paper's table, with the paper's judge models (gpt-4o-mini, qwen-plus,
  gemini-2.0-flash).

Why ``voxqa`` stays the default (docs/reports.md, "Jury protocols"): one item per request
keeps a blocked, truncated or misnumbered reply from touching other items (VILA-M3's released
Gemini file lost a whole batch of five to one blocked reply, entries 4155-4159), there is no
numbering to get wrong, and the question names locations, which a spatial benchmark is about.
With three judges both protocols decide by the same 2-of-3 vote.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import orjson

#: (question, reference, candidate)
Case = tuple[str, str, str]
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def _json_list(reply: str) -> list[object]:
    """The JSON list a reply holds (from its first "[" to its last "]"), else []."""
    start, end = reply.find("["), reply.rfind("]")
    try:
        rows = orjson.loads(reply[start:end + 1]) if 0 <= start < end else []
    except orjson.JSONDecodeError:
        return []
    return rows if isinstance(rows, list) else []


@dataclass(frozen=True)
class JuryProtocol:
    """How judges are asked and how their votes decide (see the module docstring)."""

    name: ClassVar[str]
    #: cases per request when the caller does not say
    batch: ClassVar[int] = 1
    #: how many judges the protocol takes (fewest, most)
    judges: ClassVar[tuple[int, int]] = (1, 3)
    #: the judge's reply budget in tokens
    max_tokens: ClassVar[int] = 8
    #: the system message every request starts with (None: none)
    system: ClassVar[str | None] = None
    #: the vote rule in words (results.json ``jury.rule``)
    rule: ClassVar[str] = ""

    def prompt(self, cases: Mapping[str, Case], batched: bool) -> str:
        """The user message asking about ``cases`` (item id -> case); ``batched`` says the
        request is one of a batched run (a batch of one included)."""
        raise NotImplementedError

    def read(self, reply: str, ids: Sequence[str], batched: bool) -> dict[str, bool]:
        """Item id -> verdict from a judge's reply; ids it does not answer readably are left out."""
        raise NotImplementedError

    def decide(self, votes: Sequence[bool]) -> float:
        """The item's jury score (1.0 / 0.0) from every judge's verdict."""
        raise NotImplementedError


class VoxqaProtocol(JuryProtocol):
    name = "voxqa"
    rule = "majority of the judges says yes (ties: no)"
    QUESTION = (
        "You grade answers about medical images.\nQuestion: {question}\nReference answer: {reference}\n"
        "Candidate answer: {candidate}\nIs the candidate answer correct, i.e. does it state the same "
        "findings and locations as the reference? Reply with yes or no only."
    )
    BATCH_QUESTION = (
        "You grade answers about medical images. For each item decide whether the candidate answer "
        "states the same findings and locations as the reference answer.\n{items}\nReply with a JSON "
        'list only, one element per item: {{"id": "<the item\'s id>", "correct": true or false}}.'
    )
    BATCH_ITEM = "Item id: {id}\nQuestion: {question}\nReference answer: {reference}\nCandidate answer: {candidate}\n"

    def prompt(self, cases: Mapping[str, Case], batched: bool) -> str:
        if not batched:
            ((q, r, c),) = cases.values()
            return self.QUESTION.format(question=q, reference=r, candidate=c)
        return self.BATCH_QUESTION.format(items="\n".join(
            self.BATCH_ITEM.format(id=i, question=q, reference=r, candidate=c) for i, (q, r, c) in cases.items()))

    def read(self, reply: str, ids: Sequence[str], batched: bool) -> dict[str, bool]:
        if not batched:
            m = _YES_NO.match(reply or "")
            return {ids[0]: m[1].lower() == "yes"} if m else {}
        out: dict[str, bool] = {}
        for row in _json_list(reply):
            if isinstance(row, dict) and str(row.get("id")) in ids and isinstance(row.get("correct"), bool):
                out.setdefault(str(row["id"]), row["correct"])
        return out

    def decide(self, votes: Sequence[bool]) -> float:
        return 1.0 if sum(votes) * 2 > len(votes) else 0.0


#: CT-SpatialVQA's vote threshold on floor(100 * mean) / 100: 2 of 3 judges.
CT_JURY_THRESHOLD = 0.66


def ct_spatialvqa_correct(votes: Sequence[bool | None]) -> bool:
    """CT-SpatialVQA's rule: the mean vote rounded down to hundredths, at least 0.66; a null
    vote (no verdict) counts 0 (``build_correctness_matrix.py`` L230-234: ``1.0 if val is True
    else 0.0``)."""
    return math.floor(100 * sum(v is True for v in votes) / len(votes)) / 100 >= CT_JURY_THRESHOLD


class CtSpatialVqaProtocol(JuryProtocol):
    name = "ct-spatialvqa"
    batch = 5
    judges = (3, 3)
    max_tokens = 512
    system = "You are a strict medical QA evaluator."
    rule = "floor(100 * mean(votes)) / 100 >= 0.66: at least 2 of 3 judges (CT-SpatialVQA)"
    #: ``PROMPT_TEMPLATE`` of evaluate_with_{gpt,qwen,gemini}.py L24-32, verbatim
    TEMPLATE = (
        "You are a medical QA evaluator.\n"
        "For each item determine if the model prediction semantically matches the ground-truth answer.\n"
        "Consider synonyms and equivalent medical phrasing as correct, but require the same clinical fact.\n"
        "Respond strictly as JSON list where each element is:\n"
        '{{"index": <int>, "is_correct": true/false}}\n'
        "\n"
        "Batch:\n"
        "{batch}\n"
    )
    ENTRY = "{offset}. Question: {question}\n   Answer: {answer}\n   Prediction: {prediction}"

    def prompt(self, cases: Mapping[str, Case], batched: bool) -> str:
        return self.TEMPLATE.format(batch="\n".join(
            self.ENTRY.format(offset=n, question=q, answer=r, prediction=c)
            for n, (q, r, c) in enumerate(cases.values(), start=1)))

    def read(self, reply: str, ids: Sequence[str], batched: bool) -> dict[str, bool]:
        """Verdicts by the ``index`` each element names (1-based, as the prompt numbers the
        items), never by list position; trailing commas are dropped first, as the released
        ``sanitize_json`` (gpt L109-116) does."""
        text = re.sub(r",\s*]", "]", reply or "")
        out: dict[str, bool] = {}
        for row in _json_list(text):
            if not isinstance(row, dict):
                continue
            index, verdict = row.get("index"), row.get("is_correct")
            if isinstance(index, int) and not isinstance(index, bool) and 1 <= index <= len(ids) \
                    and isinstance(verdict, bool):
                out.setdefault(ids[index - 1], verdict)
        return out

    def decide(self, votes: Sequence[bool]) -> float:
        return 1.0 if ct_spatialvqa_correct(votes) else 0.0


VOXQA = VoxqaProtocol()
CT_SPATIALVQA = CtSpatialVqaProtocol()
PROTOCOLS: dict[str, JuryProtocol] = {p.name: p for p in (VOXQA, CT_SPATIALVQA)}
