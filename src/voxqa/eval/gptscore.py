"""SGMRI-VQA's GPTScore: a judge's 1-10 ratings of a candidate, normalised by its rating of
the reference against itself, for ``score --as-published sgmri-vqa`` (the AR-Score's 0.4 part).

Re-enacted from github.com/lamawmouk/SGMRI-VQA @ a37aa3d, ``src/sgmriqa/metrics/ar_score.py``
``_compute_gpt_score`` (L92-182): the verbatim prompt (L108-121) with the reference and the
candidate, temperature 0 and ``max_tokens`` 20 (L131-133); the reply is split on commas into
floats (L137-138): three numbers give ``raw = sum / 3 / 10`` (L139-140); then the same prompt
with the candidate replaced by the reference (``str.replace``, L143-153) gives the judge's
self-rating ``ref``; ``normalized = min(raw / ref, 1)``, or ``raw`` when ``ref`` is 0 (L164-167)
or the self-rating is not three numbers (L168-169, then without the cap). A reply that is not
three comma-separated numbers gives no GPTScore at all (L182: the AR-Score then weighs the
text metrics alone); one with a part that is no number raises in the released code, whose
``except`` scores 0 (L179-180), and so does a self-rating with such a part.

One departure, as everywhere in voxqa: a request that fails (after the client's retries) is
no rating of the judge's: the item gets no GPTScore and the failure is listed, where the
released ``except`` scored it 0. The judge is the jury's first (SGMRI used one, gpt-4o); its
requests go to the jury's server with the jury's key, and replies are cached in the run's
``jury.jsonl`` (protocol ``sgmri-gptscore``) by (judge, prompt), so re-scoring asks nothing
twice and a shared reference is self-rated once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from voxqa.eval.jury import Jury
from voxqa.eval.models.base import ServerConfigError
from voxqa.eval.models.openai_chat import OpenAIChat
from voxqa.eval.prompts import Prompt
from voxqa.fileio import JsonlAppender, read_own

PROTOCOL = "sgmri-gptscore"
MAX_TOKENS = 20  # ar_score.py L133
PROMPT = """You are evaluating a medical imaging AI's response against a reference answer.

Reference answer:
{reference}

Candidate answer:
{candidate}

Rate the candidate on these criteria (1-10 each):
1. Accuracy: How factually correct is the candidate compared to the reference?
2. Relevance: How relevant is the candidate's content to the question?
3. Helpfulness: How complete and clinically useful is the candidate's response?

Respond with ONLY three numbers separated by commas, e.g.: 7,8,6"""


def judge_prompt(reference: str, candidate: str) -> str:
    return PROMPT.format(reference=reference, candidate=candidate)


def self_prompt(reference: str, candidate: str) -> str:
    """The self-rating prompt exactly as released: the candidate block replaced by the reference."""
    return judge_prompt(reference, candidate).replace(f"Candidate answer:\n{candidate}",
                                                      f"Candidate answer:\n{reference}")


def ratings(reply: str) -> list[float]:
    """``[float(x.strip()) for x in text.split(",")]`` of the stripped reply (ValueError when a
    part is no number, as released)."""
    return [float(x.strip()) for x in reply.strip().split(",")]


@dataclass
class GptScore:
    """One item's GPTScore: ``score`` (None: no GPTScore, the AR-Score weighs the text metrics
    alone), or a ``failure`` (a request failed: the item gets no AR-Score)."""

    score: float | None
    failure: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _candidate_stage(reply: str) -> GptScore | None:
    """The item's GPTScore when the candidate's reply alone decides it, else None (ask the
    self-rating)."""
    try:
        parts = ratings(reply)
    except ValueError as exc:  # the released except: normalized_score 0.0
        return GptScore(0.0, detail={"error": str(exc)})
    return None if len(parts) == 3 else GptScore(None, detail={"reply": reply})


def gpt_score(candidate_reply: str, self_reply: str | None) -> GptScore:
    """The released arithmetic on the judge's replies to the candidate and, when that gave
    three numbers, to the reference itself."""
    early = _candidate_stage(candidate_reply)
    if early is not None:
        return early
    raw = sum(ratings(candidate_reply)) / 3.0 / 10.0
    try:
        ref_parts = ratings(self_reply or "")
    except ValueError as exc:
        return GptScore(0.0, detail={"raw_score": raw, "error": str(exc)})
    if len(ref_parts) != 3:
        return GptScore(raw, detail={"raw_score": raw, "ref_self_score": None})
    ref = sum(ref_parts) / 3.0 / 10.0
    normalized = min(raw / ref if ref > 0 else raw, 1.0)
    return GptScore(normalized, detail={"raw_score": raw, "ref_self_score": ref})


class GptScorer:
    """The protocol on a jury's first judge (its server, key and run cache)."""

    def __init__(self, jury: Jury):
        first = jury.judges[0]
        self.judge = OpenAIChat(first.model, first.base_urls, api_key_env=first.api_key_env,
                                timeout=first.timeout, max_retries=first.max_retries, max_tokens=MAX_TOKENS)
        self.path, self.concurrency = jury.path, jury.concurrency
        self.cache: dict[str, str] = {}
        if self.path.is_file():
            for line in read_own(self.path).splitlines():  # never read through a planted link
                if line.strip() and (rec := orjson.loads(line)).get("protocol") == PROTOCOL:
                    self.cache[rec["key"]] = rec["reply"]

    @property
    def spec(self) -> str:
        return self.judge.spec

    async def _replies(self, prompts: Iterable[str], out: JsonlAppender) -> dict[str, str | Exception]:
        """Prompt -> the judge's reply (cached), or why its request failed; each prompt asked once."""
        found: dict[str, str | Exception] = {}
        todo = []
        for text in sorted(set(prompts)):
            key = Jury._key(self.judge, PROTOCOL, text)
            if key in self.cache:
                found[text] = self.cache[key]
            else:
                todo.append(text)
        gate = asyncio.Semaphore(self.concurrency)

        async def ask(text: str) -> str | Exception:
            try:
                async with gate:
                    prompt = Prompt(item_id=PROTOCOL, parts=(("text", text),), target="")
                    reply = await self.judge.answer(prompt, None)  # type: ignore[arg-type]  # text only: no item
            except ServerConfigError:  # the judge's server cannot judge at all: scoring stops
                raise
            except Exception as exc:  # any other failure is this item's (not cached: asked again)
                return RuntimeError(self.judge.redact(f"{type(exc).__name__}: {exc}"))
            if not isinstance(reply, str):  # e.g. a JSON number or list as the content
                return RuntimeError(f"the reply is a {type(reply).__name__}, not text")
            return reply

        for text, reply in zip(todo, await asyncio.gather(*(ask(t) for t in todo)), strict=True):
            found[text] = reply
            if isinstance(reply, str):
                key = Jury._key(self.judge, PROTOCOL, text)
                self.cache[key] = reply
                out.write({"key": key, "judge": self.judge.spec, "protocol": PROTOCOL, "reply": reply})
        return found

    async def scores(self, cases: Mapping[str, tuple[str, str]]) -> dict[str, GptScore]:
        """Item id -> GPTScore of its (reference, candidate), both already stripped and the
        candidate non-empty (the released code scores an empty one 0 before asking)."""
        try:
            with JsonlAppender(self.path) as out:
                first = {i: judge_prompt(r, c) for i, (r, c) in cases.items()}
                got = await self._replies(first.values(), out)
                result: dict[str, GptScore] = {}
                second: dict[str, str] = {}
                for i, prompt in first.items():
                    reply = got[prompt]
                    if isinstance(reply, Exception):
                        result[i] = GptScore(None, f"{self.spec}: request failed ({reply})")
                    elif (early := _candidate_stage(reply)) is not None:
                        result[i] = early
                    else:
                        second[i] = self_prompt(*cases[i])
                got2 = await self._replies(second.values(), out)
                for i, prompt in second.items():
                    own, reply = got[first[i]], got2[prompt]
                    assert isinstance(own, str)
                    result[i] = (GptScore(None, f"{self.spec}: request failed ({reply})")
                                 if isinstance(reply, Exception) else gpt_score(own, reply))
                return result
        finally:
            await self.judge.close()
