"""Grounded captions: G-IoU (RadGrounder), done right."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from voxqa.boxes.geometry import iou


#: Keywords match when their similarity reaches this. Offline similarity is exact-or-synonym
#: (1.0 or 0.0), so only the same structure matches; an embedding similarity may set its own.
KEYWORD_MATCH_THRESHOLD = 1.0


@dataclass(frozen=True)
class Grounded:
    """One grounded keyword: the word and its box (pixel xyxy), kept together through matching."""

    keyword: str
    box: tuple[float, float, float, float]


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


def grounding_scores(samples: Sequence[tuple[Sequence[Grounded], Sequence[Grounded]]],
                     similarity: Callable[[str, str], float] = keyword_similarity,
                     threshold: float = KEYWORD_MATCH_THRESHOLD, iou_at: float = 0.5) -> dict[str, float | int | None]:
    """G-IoU and keyword detection over (gold, pred) samples.

    Per sample G-IoU = sum over matched pairs of IoU x similarity, divided by
    max(#gold, #pred): missed and invented keywords both lower it, and a sample without
    predictions scores 0 (RadGrounder skips such samples). ``g_iou`` averages it over samples
    with gold keywords; ``iou`` is the mean IoU of matched pairs; precision, recall and F1
    count matched keywords over all predicted / gold ones (empty predictions included);
    ``*_at`` count a match only when its IoU >= ``iou_at``.
    """
    n_gold = n_pred = n_match = n_hit = 0
    ious: list[float] = []
    per_sample: list[float] = []
    for gold, pred in samples:
        matches = match_keywords(gold, pred, similarity, threshold)
        pair_iou = [iou(gold[i].box, pred[j].box) for i, j, _ in matches]
        n_gold, n_pred, n_match = n_gold + len(gold), n_pred + len(pred), n_match + len(matches)
        n_hit += sum(v >= iou_at for v in pair_iou)
        ious += pair_iou
        if gold:
            per_sample.append(sum(v * s for v, (_, _, s) in zip(pair_iou, matches, strict=False)) / max(len(gold), len(pred)))

    def f1(p: float | None, r: float | None) -> float | None:
        return None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)

    precision = n_match / n_pred if n_pred else None
    recall = n_match / n_gold if n_gold else None
    p_at = n_hit / n_pred if n_pred else None
    r_at = n_hit / n_gold if n_gold else None
    return {"g_iou": float(np.mean(per_sample)) if per_sample else None,
            "iou": float(np.mean(ious)) if ious else None,
            "precision": precision, "recall": recall, "f1": f1(precision, recall),
            "precision_at": p_at, "recall_at": r_at, "f1_at": f1(p_at, r_at),
            "gold_keywords": n_gold, "pred_keywords": n_pred, "matched": n_match, "samples": len(samples)}
