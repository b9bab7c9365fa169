"""Text metrics: BLEU, ROUGE-L, token F1 and entity F1 of free-text answers, and the AR-score.

BLEU and ROUGE-L come from sacrebleu and rouge-score (the eval extra), built once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any

from voxqa.eval.metrics.statistics import set_prf

Scores = dict[str, float | None]
MAX_FRAME_RANGE = 4096  # "frames 0-999999999" in a model's text must not exhaust memory


def token_f1(hypothesis: str, reference: str) -> float:
    """Bag-of-words F1 over lower-cased word tokens (SQuAD-style): a model-free similarity."""
    hyp, ref = _normalize(hypothesis).split(), _normalize(reference).split()
    common = sum((Counter(hyp) & Counter(ref)).values())
    if not hyp or not ref or not common:
        return float(hyp == ref)
    p, r = common / len(hyp), common / len(ref)
    return 2 * p * r / (p + r)


def ar_score(judge: float, scores: Scores) -> float:
    """SGMRI-VQA's AR-score with token F1 standing in for BERTScore."""
    sims = [scores.get(k) or 0.0 for k in ("token_f1", "bleu", "rouge_l")]
    return 0.4 * judge + 0.6 * sum(sims) / len(sims)


@cache
def _bleu_metric() -> Any:
    """sacrebleu.sentence_bleu's settings (exp smoothing, effective order), built once."""
    from sacrebleu.metrics import BLEU  # the eval extra

    return BLEU(effective_order=True)


@cache
def _rouge_scorer() -> Any:
    from rouge_score.rouge_scorer import RougeScorer  # the eval extra

    return RougeScorer(["rougeL"], use_stemmer=False)


def bleu(hypothesis: str, reference: str) -> float:
    """Sentence BLEU as ``sacrebleu.sentence_bleu(hypothesis, [reference])``, scaled to 0-1."""
    return _bleu_metric().sentence_score(hypothesis, [reference]).score / 100.0


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F-measure of rouge-score (no stemming)."""
    return _rouge_scorer().score(reference, hypothesis)["rougeL"].fmeasure


_FRAME_NUM = r"\d+(?:\s*(?:-|–|to)\s*\d+)?"
_FRAMES = re.compile(rf"\bframes?\s*#?\s*({_FRAME_NUM}(?:\s*(?:,|and|&)\s*{_FRAME_NUM})*)")
_SIDE = re.compile(r"\b(left|right)\b")


def _normalize(text: str) -> str:
    """Lower case, ``_`` as space, single spaces: 'kidney_right' and 'Kidney right' agree."""
    return " ".join(text.lower().replace("_", " ").split())


@cache
def _label_pattern(vocabulary: tuple[str, ...]) -> re.Pattern[str] | None:
    """Longest label first, so 'meniscus tear' is found whole rather than as 'tear'."""
    labels = sorted({_normalize(v) for v in vocabulary if v.strip()}, key=len, reverse=True)
    if not labels:
        return None
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, labels)) + r")(?![a-z0-9])")


def extract_entities(text: str, vocabulary: Sequence[str]) -> set[tuple[str, str | int]]:
    """Grounded entities a text mentions: ("label", name) for vocabulary labels, ("side",
    "left"/"right"), ("frame", k) for "frame 12", "frames 3-5, 9" (ranges expanded)."""
    t = _normalize(text)
    entities: set[tuple[str, str | int]] = {("side", s) for s in _SIDE.findall(t)}
    pattern = _label_pattern(tuple(vocabulary))
    if pattern is not None:
        entities |= {("label", m) for m in pattern.findall(t)}
    for group in _FRAMES.findall(t):
        for a, b in re.findall(r"(\d+)(?:\s*(?:-|–|to)\s*(\d+))?", group):
            lo = int(a)
            hi = min(int(b), lo + MAX_FRAME_RANGE) if b else lo
            entities |= {("frame", k) for k in range(lo, max(lo, hi) + 1)}
    return entities


def entity_f1(hypothesis: str, reference: str, vocabulary: Sequence[str]) -> float:
    """F1 over grounded entities: rewards naming the right findings, sides and frames, which
    n-gram overlap barely distinguishes from naming wrong ones."""
    return set_prf(extract_entities(reference, vocabulary),
                   extract_entities(hypothesis, vocabulary))[2]
