"""Grounded keywords: G-IoU and keyword F1 (RadGrounder), done right.

RadGrounder's evaluator (github.com/lmb-freiburg/radgrounder @ a8f332b,
``radgrounder/grounded_gemma/g_iou/detect_grounding_evaluator.py``) matches gold and predicted
keywords greedily by similarity (L72-97), scores each match by the IoU of the two keywords'
boxes (L133-157) and G-IoU = IoU x similarity, and per sample averages the G-IoU over matches,
missed gold and extra predicted keywords alike (L236: each unmatched one adds 0, so the mean is
over max(#gold, #pred)); the dataset's G-IoU is the mean over samples with gold keywords
(L269-273), its IoU the mean over samples with a match of their matches' mean IoU (L234,
L267-271), keyword precision / recall / F1 are matched over predicted / gold keywords (L251-253)
and their "@0.5" forms count only matches with IoU >= 0.5 (L226, L256-258).

Kept as released: the greedy matching, the per-sample G-IoU and every aggregate above. Fixed:
a keyword keeps its own box (the evaluator pops matched keywords but not boxes, L92-95, so
from the second match on it scores keywords against other keywords' boxes); a sample without
predicted keywords counts in recall (the evaluator skips it before counting gold keywords,
L200-212); keywords match only at ``KEYWORD_MATCH_THRESHOLD`` (the evaluator pairs any two,
however unrelated). The offline similarity is the lexicon's (below), not embeddinggemma's
cosine (which needs a model download); any callable can stand in.

``keyword_scores`` gives one sample's numbers, the per-item scores of a grounding item
(``voxqa.answers.boxes``); ``grounding_scores`` aggregates samples as the evaluator does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from voxqa.boxes.geometry import iou


#: Keywords match when their similarity reaches this. Offline similarity is exact-or-synonym
#: (1.0 or 0.0), so only the same structure matches; an embedding similarity may set its own.
KEYWORD_MATCH_THRESHOLD = 1.0


#: The IoU a keyword match needs to count in the "@0.5" precision, recall and F1.
IOU_AT = 0.5


@dataclass(frozen=True)
class Grounded:
    """One grounded keyword: the word and its box (pixel xyxy) on its frame, kept together
    through matching; boxes on different frames have IoU 0."""

    keyword: str
    box: tuple[float, float, float, float]
    frame: int | None = None

    def iou(self, other: Grounded) -> float:
        return iou(self.box, other.box) if self.frame == other.frame else 0.0


def keyword_similarity(a: str, b: str) -> float:
    """1.0 when both words name the same structure (``voxqa.radreports.lexicon``: "Leber",
    "liver" and "hepatic" are one), else 1.0 only for the same normalised word, else 0.0."""
    from voxqa.radreports.lexicon import canonical_keyword

    return 1.0 if canonical_keyword(a) == canonical_keyword(b) else 0.0


def match_keywords(gold: Sequence[Grounded], pred: Sequence[Grounded],
                   similarity: Callable[[str, str], float] = keyword_similarity,
                   threshold: float = KEYWORD_MATCH_THRESHOLD) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by keyword similarity, highest first (ties: gold order,
    then pred order), only pairs with similarity >= ``threshold``: (gold index, pred index,
    similarity). Indices point into the original lists, so a keyword keeps its own box (the
    evaluator of RadGrounder pops keywords but not boxes, pairing later keywords with the
    wrong boxes)."""
    pairs = sorted(((similarity(g.keyword, p.keyword), i, j) for i, g in enumerate(gold)
                    for j, p in enumerate(pred)), key=lambda t: (-t[0], t[1], t[2]))
    used_g: set[int] = set()
    used_p: set[int] = set()
    out = []
    for sim, i, j in pairs:
        if sim >= threshold and i not in used_g and j not in used_p:
            used_g.add(i)
            used_p.add(j)
            out.append((i, j, sim))
    return sorted(out)


def keyword_scores(gold: Sequence[Grounded], pred: Sequence[Grounded],
                   similarity: Callable[[str, str], float] = keyword_similarity,
                   threshold: float = KEYWORD_MATCH_THRESHOLD, iou_at: float = IOU_AT) -> dict[str, float | None]:
    """One sample's keyword grounding, as per-item scores that sum and average like
    RadGrounder's totals: ``g_iou`` = sum over matches of IoU x similarity / max(#gold, #pred)
    (0 without predictions; None without gold keywords); ``keyword_iou`` the mean IoU of its
    matches (None without a match); ``keyword_tp`` / ``keyword_fp`` / ``keyword_fn`` the matched,
    unmatched predicted and unmatched gold keywords, and the same ``@0.5`` (``iou_at``) counting
    a match only when its IoU reaches it."""
    matches = match_keywords(gold, pred, similarity, threshold)
    ious = [gold[i].iou(pred[j]) for i, j, _ in matches]
    hits = sum(v >= iou_at for v in ious)
    g_iou = (sum(v * s for v, (_, _, s) in zip(ious, matches, strict=True)) / max(len(gold), len(pred))
             if gold else None)
    at = f"@{iou_at:g}"
    return {"g_iou": g_iou, "keyword_iou": float(np.mean(ious)) if ious else None,
            "keyword_tp": float(len(matches)), "keyword_fp": float(len(pred) - len(matches)),
            "keyword_fn": float(len(gold) - len(matches)),
            f"keyword_tp{at}": float(hits), f"keyword_fp{at}": float(len(pred) - hits),
            f"keyword_fn{at}": float(len(gold) - hits)}


def grounding_scores(samples: Sequence[tuple[Sequence[Grounded], Sequence[Grounded]]],
                     similarity: Callable[[str, str], float] = keyword_similarity,
                     threshold: float = KEYWORD_MATCH_THRESHOLD, iou_at: float = IOU_AT) -> dict[str, float | int | None]:
    """G-IoU and keyword detection over (gold, pred) samples, aggregated as RadGrounder's
    evaluator does (module docstring): ``g_iou`` the mean per-sample G-IoU over samples with
    gold keywords; ``iou`` the mean over samples with a match of their matches' mean IoU;
    precision, recall and F1 of matched keywords over all predicted / gold ones (empty
    predictions included); ``*_at`` the same counting a match only when its IoU >= ``iou_at``.
    """
    per = [keyword_scores(g, p, similarity, threshold, iou_at) for g, p in samples]
    at = f"@{iou_at:g}"

    def total(key: str) -> int:
        return int(sum(s[key] or 0.0 for s in per))

    def f1(p: float | None, r: float | None) -> float | None:
        return None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    tp, fp, fn = total("keyword_tp"), total("keyword_fp"), total("keyword_fn")
    hit, fp_at, fn_at = total(f"keyword_tp{at}"), total(f"keyword_fp{at}"), total(f"keyword_fn{at}")
    g_ious = [s["g_iou"] for s in per if s["g_iou"] is not None]
    ious = [s["keyword_iou"] for s in per if s["keyword_iou"] is not None]
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    p_at, r_at = ratio(hit, hit + fp_at), ratio(hit, hit + fn_at)
    return {"g_iou": float(np.mean(g_ious)) if g_ious else None,
            "iou": float(np.mean(ious)) if ious else None,
            "precision": precision, "recall": recall, "f1": f1(precision, recall),
            "precision_at": p_at, "recall_at": r_at, "f1_at": f1(p_at, r_at),
            "gold_keywords": tp + fn, "pred_keywords": tp + fp, "matched": tp, "samples": len(samples)}
