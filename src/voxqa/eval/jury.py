"""An optional LLM jury for free-text answers: 1-3 OpenAI-compatible judges, majority vote.

Each judge sees the question, the reference and the candidate (text only) and answers yes or
no to "is the candidate correct?"; the item's ``judge`` score is the majority (ties: no).
Verdicts are cached in RUN/jury.jsonl by (judge, question, reference, candidate), so
re-scoring never asks twice. With a jury, text items also get SGMRI-VQA's AR-score:
0.4 x judge + 0.6 x mean(similarity, BLEU, ROUGE-L), where similarity is token F1 (the
paper's BERTScore needs a language model, which voxqa never downloads).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path

import orjson

from voxqa.eval.models.openai_chat import OpenAIChat
from voxqa.eval.prompts import Prompt

CACHE = "jury.jsonl"
QUESTION = (
    "You grade answers about medical images.\nQuestion: {question}\nReference answer: {reference}\n"
    "Candidate answer: {candidate}\nIs the candidate answer correct, i.e. does it state the same "
    "findings and locations as the reference? Reply with yes or no only."
)


class Jury:
    def __init__(self, judges: Sequence[OpenAIChat], run: Path, concurrency: int = 4):
        if not 1 <= len(judges) <= 3:
            raise ValueError(f"a jury has 1 to 3 judges, got {len(judges)}")
        self.judges, self.path, self.concurrency = list(judges), Path(run) / CACHE, concurrency
        self.cache: dict[str, bool] = {}
        if self.path.is_file():
            for line in self.path.read_bytes().splitlines():
                if line.strip():
                    rec = orjson.loads(line)
                    self.cache[rec["key"]] = rec["verdict"]

    @staticmethod
    def _key(judge: OpenAIChat, *texts: str) -> str:
        return hashlib.sha256("\x1f".join([judge.spec, judge.base_url, *texts]).encode()).hexdigest()

    async def _ask(self, judge: OpenAIChat, question: str, reference: str, candidate: str,
                   gate: asyncio.Semaphore, out) -> bool:
        key = self._key(judge, question, reference, candidate)
        if key not in self.cache:
            text = QUESTION.format(question=question, reference=reference, candidate=candidate)
            async with gate:
                reply = await judge.answer(Prompt(item_id=key, parts=(("text", text),), target=""), None)
            self.cache[key] = reply.strip().lower().startswith("yes")
            out.write(orjson.dumps({"key": key, "judge": judge.spec, "verdict": self.cache[key]}) + b"\n")
            out.flush()
        return self.cache[key]

    async def verdicts(self, cases: Sequence[tuple[str, str, str]]) -> list[float]:
        """Majority verdict (1.0 / 0.0) per (question, reference, candidate)."""
        gate = asyncio.Semaphore(self.concurrency)
        with self.path.open("ab") as out:
            try:
                votes = await asyncio.gather(*(
                    asyncio.gather(*(self._ask(j, q, r, c, gate, out) for j in self.judges))
                    for q, r, c in cases
                ))
            finally:
                for j in self.judges:
                    await j.close()
        return [1.0 if sum(v) * 2 > len(v) else 0.0 for v in votes]
