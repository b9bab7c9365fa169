"""An optional LLM jury for free-text answers: 1-3 OpenAI-compatible judges, majority vote.

Each judge sees the question, the reference and the candidate (text only) and answers yes or
no to "is the candidate correct?"; the item's ``judge`` score is the majority (ties: no).
Verdicts are cached in RUN/jury.jsonl by (judge, question, reference, candidate), so
re-scoring never asks twice. With a jury, text items also get SGMRI-VQA's AR-score:
0.4 x judge + 0.6 x mean(similarity, BLEU, ROUGE-L), where similarity is token F1 (the
paper's BERTScore needs a language model, which voxqa never downloads).

Verdicts are keyed by item id, never by position: CT-SpatialVQA combined its judges by list
position, and one judge that dropped three items shifted every later verdict (published
accuracies moved by up to 0.009). With ``batch`` > 1 a judge grades several items in one
request and replies with a JSON list of ``{"id", "correct"}``; a reply that leaves an item
out, answers an id it was not asked, or cannot be read (not text, nested past the JSON
depth, ...), and a request that fails (broken gzip, a timeout, ...), is a recorded failure
of that judge for that item: the item gets no jury score (None, left out
of the means) and its failures are listed, instead of the item silently taking a
neighbour's verdict. Failures are not cached, so re-scoring asks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from voxqa.errors import InputError
from voxqa.eval.models.base import ServerConfigError
from voxqa.eval.models.openai_chat import OpenAIChat
from voxqa.eval.prompts import Prompt
from voxqa.fileio import JsonlAppender

CACHE = "jury.jsonl"
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
#: (question, reference, candidate)
Case = tuple[str, str, str]
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


@dataclass
class Verdict:
    """One item's jury result: the majority (1.0 / 0.0), or None when a judge failed it."""

    score: float | None
    failures: list[str] = field(default_factory=list)


class Jury:
    def __init__(self, judges: Sequence[OpenAIChat], run: Path, concurrency: int = 4, batch: int = 1):
        if not 1 <= len(judges) <= 3:
            raise InputError(f"a jury has 1 to 3 judges, got {len(judges)}")
        if batch < 1:
            raise InputError(f"batch must be at least 1, got {batch}")
        self.judges, self.path, self.concurrency, self.batch = list(judges), Path(run) / CACHE, concurrency, batch
        self.cache: dict[str, bool] = {}
        if self.path.is_file():
            for line in self.path.read_bytes().splitlines():
                if line.strip():
                    rec = orjson.loads(line)
                    self.cache[rec["key"]] = rec["verdict"]

    @staticmethod
    def _key(judge: OpenAIChat, *texts: str) -> str:
        return hashlib.sha256("\x1f".join([judge.spec, judge.base_url, *texts]).encode()).hexdigest()

    async def _ask(self, judge: OpenAIChat, cases: Mapping[str, Case], gate: asyncio.Semaphore,
                   out: JsonlAppender) -> dict[str, bool | str]:
        """One request for ``cases`` (item id -> case): item id -> verdict, or the failure."""
        if len(cases) == 1 and self.batch == 1:
            ((item_id, (q, r, c)),) = cases.items()
            text = QUESTION.format(question=q, reference=r, candidate=c)
        else:
            text = BATCH_QUESTION.format(items="\n".join(
                BATCH_ITEM.format(id=i, question=q, reference=r, candidate=c) for i, (q, r, c) in cases.items()))
        try:
            async with gate:
                reply = await judge.answer(Prompt(item_id=next(iter(cases)), parts=(("text", text),), target=""), None)
        except ServerConfigError:  # the judges' server cannot judge at all: scoring stops
            raise
        except Exception as exc:  # any other failure is these items' (not cached: asked again)
            return dict.fromkeys(cases, judge.redact(f"{judge.spec}: request failed ({type(exc).__name__}: {exc})"))
        if not isinstance(reply, str):  # e.g. a JSON number or list as the content
            return dict.fromkeys(cases, f"{judge.spec}: the reply is a {type(reply).__name__}, not text")
        found = _read_reply(reply, list(cases), single=len(cases) == 1 and self.batch == 1)
        verdicts: dict[str, bool | str] = {}
        for item_id, case in cases.items():
            if item_id not in found:
                verdicts[item_id] = f"{judge.spec}: no verdict for this item in its reply"
                continue
            verdicts[item_id] = found[item_id]
            key = self._key(judge, *case)
            self.cache[key] = found[item_id]
            out.write({"key": key, "judge": judge.spec, "verdict": found[item_id]})
        return verdicts

    async def verdicts(self, cases: Mapping[str, Case]) -> dict[str, Verdict]:
        """The jury's verdict per item id."""
        gate = asyncio.Semaphore(self.concurrency)
        votes: dict[str, dict[str, bool | str]] = {i: {} for i in cases}
        with JsonlAppender(self.path) as out:
            try:
                requests = []
                for judge in self.judges:
                    todo = {}
                    for item_id, case in cases.items():
                        key = self._key(judge, *case)
                        if key in self.cache:
                            votes[item_id][judge.spec] = self.cache[key]
                        else:
                            todo[item_id] = case
                    ids = list(todo)
                    requests += [(judge, {i: todo[i] for i in ids[k:k + self.batch]})
                                 for k in range(0, len(ids), self.batch)]
                answers = await asyncio.gather(*(self._ask(j, chunk, gate, out) for j, chunk in requests))
            finally:
                for j in self.judges:
                    await j.close()
        for (judge, _), answer in zip(requests, answers, strict=False):  # a request and its own answer
            for item_id, verdict in answer.items():
                votes[item_id][judge.spec] = verdict
        result = {}
        for item_id, by_judge in votes.items():
            failures = [v for v in by_judge.values() if isinstance(v, str)]
            yes = sum(v is True for v in by_judge.values())
            result[item_id] = Verdict(None if failures else 1.0 if yes * 2 > len(by_judge) else 0.0, failures)
        return result


def _read_reply(reply: str, ids: list[str], single: bool) -> dict[str, bool]:
    """Item id -> verdict from a judge's reply; ids it does not answer readably are left out."""
    if single:
        m = _YES_NO.match(reply or "")
        return {ids[0]: m[1].lower() == "yes"} if m else {}
    start, end = reply.find("["), reply.rfind("]")
    try:
        rows = orjson.loads(reply[start:end + 1]) if 0 <= start < end else []
    except orjson.JSONDecodeError:
        return {}
    out: dict[str, bool] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and str(row.get("id")) in ids and isinstance(row.get("correct"), bool):
            out.setdefault(str(row["id"]), row["correct"])
    return out


def make_jury(specs: Sequence[str], base_url: str | None, run: Path, api_key_env: str = "OPENAI_API_KEY") -> Jury:
    """The jury of ``--judge openai:MODEL`` (1-3 of them) on the server at ``base_url``."""
    if not base_url or any(not j.startswith("openai:") for j in specs):
        raise InputError("--judge takes openai:MODEL and needs --judge-base-url")
    return Jury([OpenAIChat(j.split(":", 1)[1], base_url, api_key_env=api_key_env, max_tokens=8) for j in specs], run)
