"""An optional LLM jury for free-text answers: OpenAI-compatible judges and a vote.

How judges are asked and how their votes decide is the jury's protocol
(``voxqa.eval.jury_protocols``): by default (``voxqa``) each of 1-3 judges sees the question,
the reference and the candidate (text only) and answers yes or no to "is the candidate
correct?", and the item's ``judge`` score is the majority (ties: no); ``ct-spatialvqa`` asks
CT-SpatialVQA's fixed prompt of three judges, five items a request, 2 of 3 to be correct.
Verdicts are cached in RUN/jury.jsonl by (judge, question, reference, candidate), and the
protocol when it is not the default, so re-scoring never asks twice. With a jury, text items
also get SGMRI-VQA's AR-score: 0.4 x judge + 0.6 x mean(similarity, BLEU, ROUGE-L), where
similarity is token F1 (the paper's BERTScore needs a language model, which voxqa never
downloads).

Verdicts are keyed by item id, never by position: CT-SpatialVQA combined its judges by list
position, and one judge that dropped three items shifted every later verdict (published
accuracies moved by up to 0.009). With ``batch`` > 1 a judge grades several items in one
request and its reply names each verdict's item (voxqa: ``{"id", "correct"}``; ct-spatialvqa:
``{"index", "is_correct"}``, the item's number in the request); a reply that leaves an item
out, answers an id it was not asked, or cannot be read (not text, nested past the JSON
depth, ...), and a request that fails (broken gzip, a timeout, ...), is a recorded failure
of that judge for that item: the item gets no jury score (None, left out
of the means) and its failures are listed, instead of the item silently taking a
neighbour's verdict. Failures are not cached, so re-scoring asks again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from voxqa.errors import InputError
from voxqa.eval.jury_protocols import PROTOCOLS, VOXQA, Case, JuryProtocol
from voxqa.eval.models.base import ServerConfigError
from voxqa.eval.models.openai_chat import OpenAIChat
from voxqa.eval.prompts import Prompt
from voxqa.fileio import JsonlAppender, read_own

CACHE = "jury.jsonl"


@dataclass
class Verdict:
    """One item's jury result: the protocol's decision (1.0 / 0.0), or None when a judge failed it."""

    score: float | None
    failures: list[str] = field(default_factory=list)


class JudgeChat(OpenAIChat):
    """A judge: an OpenAI-compatible chat model whose requests start with the protocol's
    system message, if it has one."""

    def __init__(self, model: str, base_url: str, *, system: str | None = None, **options: Any):
        super().__init__(model, base_url, **options)
        self.system = system

    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + super()._messages(prompt)


class Jury:
    def __init__(self, judges: Sequence[OpenAIChat], run: Path, concurrency: int = 4, batch: int | None = None,
                 protocol: JuryProtocol = VOXQA):
        fewest, most = protocol.judges
        if not fewest <= len(judges) <= most:
            wanted = f"{fewest}" if fewest == most else f"{fewest} to {most}"
            raise InputError(f"the {protocol.name} jury protocol takes {wanted} judges, got {len(judges)}")
        batch = protocol.batch if batch is None else batch
        if batch < 1:
            raise InputError(f"batch must be at least 1, got {batch}")
        self.judges, self.path, self.concurrency, self.batch = list(judges), Path(run) / CACHE, concurrency, batch
        self.protocol = protocol
        self.cache: dict[str, bool] = {}
        if self.path.is_file():
            for line in read_own(self.path).splitlines():  # a link planted in the run folder is refused
                if line.strip():
                    rec = orjson.loads(line)
                    if "verdict" in rec:  # other lines: other protocols' replies (voxqa.eval.gptscore)
                        self.cache[rec["key"]] = rec["verdict"]

    @staticmethod
    def _key(judge: OpenAIChat, *texts: str) -> str:
        return hashlib.sha256("\x1f".join([judge.spec, judge.base_url, *texts]).encode()).hexdigest()

    def _case_key(self, judge: OpenAIChat, case: Case) -> str:
        """The cache key of a verdict: the default protocol's keys as they always were; another
        protocol's name is part of its keys (another prompt, another verdict)."""
        if self.protocol is VOXQA:
            return self._key(judge, *case)
        return self._key(judge, f"protocol={self.protocol.name}", *case)

    async def _ask(self, judge: OpenAIChat, cases: Mapping[str, Case], gate: asyncio.Semaphore,
                   out: JsonlAppender) -> dict[str, bool | str]:
        """One request for ``cases`` (item id -> case): item id -> verdict, or the failure."""
        batched = self.batch > 1
        text = self.protocol.prompt(cases, batched)
        try:
            async with gate:
                reply = await judge.answer(Prompt(item_id=next(iter(cases)), parts=(("text", text),), target=""), None)
        except ServerConfigError:  # the judges' server cannot judge at all: scoring stops
            raise
        except Exception as exc:  # any other failure is these items' (not cached: asked again)
            return dict.fromkeys(cases, judge.redact(f"{judge.spec}: request failed ({type(exc).__name__}: {exc})"))
        if not isinstance(reply, str):  # e.g. a JSON number or list as the content
            return dict.fromkeys(cases, f"{judge.spec}: the reply is a {type(reply).__name__}, not text")
        found = self.protocol.read(reply, list(cases), batched)
        verdicts: dict[str, bool | str] = {}
        for item_id, case in cases.items():
            if item_id not in found:
                verdicts[item_id] = f"{judge.spec}: no verdict for this item in its reply"
                continue
            verdicts[item_id] = found[item_id]
            key = self._case_key(judge, case)
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
                        key = self._case_key(judge, case)
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
            verdicts = [v for v in by_judge.values() if isinstance(v, bool)]
            result[item_id] = Verdict(None if failures else self.protocol.decide(verdicts), failures)
        return result

    def describe(self) -> dict[str, Any]:
        """What results.json records of the jury: its protocol, vote rule and judges."""
        return {"protocol": self.protocol.name, "rule": self.protocol.rule, "batch": self.batch,
                "judges": [j.spec for j in self.judges]}


def make_jury(specs: Sequence[str], base_url: str | None, run: Path, api_key_env: str = "OPENAI_API_KEY",
              protocol: str = VOXQA.name) -> Jury:
    """The jury of ``--judge openai:MODEL`` (as many as the protocol takes) on the server at
    ``base_url``, asking and voting by the protocol named ``protocol``."""
    if not base_url or any(not j.startswith("openai:") for j in specs):
        raise InputError("--judge takes openai:MODEL and needs --judge-base-url")
    if protocol not in PROTOCOLS:
        raise InputError(f"--jury-protocol {protocol!r}: known protocols are {', '.join(PROTOCOLS)}")
    chosen = PROTOCOLS[protocol]
    return Jury([JudgeChat(j.split(":", 1)[1], base_url, system=chosen.system, api_key_env=api_key_env,
                           max_tokens=chosen.max_tokens) for j in specs], run, protocol=chosen)
