"""Text metrics: BLEU, ROUGE-L, token F1 and entity F1 of free-text answers, and the AR-score.

BLEU and ROUGE-L come from sacrebleu and rouge-score (the eval extra), built once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any


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
_NUM = r"-?\d+(?:\.\d+)?"
#: A box as 4 numbers in the written forms of the box profiles (on normalised text): ``[a, b, c, d]``
#: or with parentheses, Qwen's ``(a,b),(c,d)``, ``<box>a b c d</box>``, Florence / PaliGemma locs.
_BOXES = re.compile("|".join((
    rf"[\[(]\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*[\])]",
    rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)",
    rf"<box>\s*({_NUM})\s+({_NUM})\s+({_NUM})\s+({_NUM})\s*</box>",
    r"<loc ?(\d+)>\s*<loc ?(\d+)>\s*<loc ?(\d+)>\s*<loc ?(\d+)>",
)))
#: Where a clause ends: a sentence end, a semicolon, a line break.
_CLAUSE_END = re.compile(r"\.(?=\s|$)|;|\n")
#: (label, frame, box) entities are matched when label and frame agree and the boxes overlap this much.
BOX_IOU = 0.5

Entity = tuple[str, str | int]
BoxEntity = tuple[str, int, tuple[float, ...]]


def _normalize(text: str) -> str:
    """Lower case, ``_`` as space, single spaces (line breaks kept): 'kidney_right' and
    'Kidney right' agree."""
    return "\n".join(" ".join(line.lower().replace("_", " ").split()) for line in text.splitlines())


@cache
def _label_pattern(vocabulary: tuple[str, ...]) -> re.Pattern[str] | None:
    """Longest label first, so 'meniscus tear' is found whole rather than as 'tear'."""
    labels = sorted({_normalize(v) for v in vocabulary if v.strip()}, key=len, reverse=True)
    if not labels:
        return None
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, labels)) + r")(?![a-z0-9])")


def extract_grounded(text: str, vocabulary: Sequence[str]) -> tuple[set[Entity], list[BoxEntity]]:
    """What a text states, grounded: ("label", name) is only a label the text places nowhere;
    a label placed is ("label@frame", "name@k") per frame its clause names ("frames 3-5, 9"
    expanded), and (name, k, box) per box its clause quotes, k being the frame named last before
    the box. A clause ends at a sentence end, ";" or a line break; one that names frames or boxes
    but no label continues the labels of the clause before (a citation list). Sides are
    ("side", "left"/"right")."""
    t = _normalize(text)
    boxes = [(m.start(), m.end(), tuple(float(g) for g in m.groups() if g is not None)) for m in _BOXES.finditer(t)]
    inside = [(a, b) for a, b, _ in boxes]
    ends = [m.start() for m in _CLAUSE_END.finditer(t) if not any(a <= m.start() < b for a, b in inside)]

    def clause(pos: int) -> int:
        return sum(1 for e in ends if e < pos)

    labels: dict[int, set[str]] = {}
    pattern = _label_pattern(tuple(vocabulary))
    for m in pattern.finditer(t) if pattern is not None else ():
        if not any(a <= m.start() < b for a, b in inside):
            labels.setdefault(clause(m.start()), set()).add(m.group())
    frames: list[tuple[int, int, int]] = []  # (clause, position, frame)
    for m in _FRAMES.finditer(t):
        for n in re.finditer(r"(\d+)(?:\s*(?:-|–|to)\s*(\d+))?", m.group(1)):
            lo = int(n[1])
            hi = min(int(n[2]), lo + MAX_FRAME_RANGE) if n[2] else lo
            pos = m.start(1) + n.start()
            frames += [(clause(pos), pos, k) for k in range(lo, max(lo, hi) + 1)]

    owners: dict[int, set[str]] = {}  # the labels each clause's frames and boxes belong to
    last: set[str] = set()
    for c in range(len(ends) + 1):
        last = labels.get(c) or last
        owners[c] = last
    pairs = {(lab, k) for c, _, k in frames for lab in owners[c]}
    placed: list[BoxEntity] = []
    for start, _, box in boxes:
        c = clause(start)
        before = [k for fc, pos, k in frames if fc == c and pos < start]
        in_clause = sorted({k for fc, _, k in frames if fc == c})
        k = before[-1] if before else in_clause[0] if len(in_clause) == 1 else None
        if k is not None:
            placed += [(lab, k, box) for lab in sorted(owners[c])]
            pairs |= {(lab, k) for lab in owners[c]}
    grounded = {lab for lab, _ in pairs} | {lab for lab, _, _ in placed}
    entities: set[Entity] = {("side", s) for s in _SIDE.findall(t)}
    entities |= {("label", lab) for found in labels.values() for lab in found if lab not in grounded}
    entities |= {("label@frame", f"{lab}@{k}") for lab, k in pairs}
    return entities, sorted(set(placed))


def extract_entities(text: str, vocabulary: Sequence[str]) -> set[Entity]:
    """The entities of ``extract_grounded`` in one set (each quoted box as ("box", "label@k:box"))."""
    entities, placed = extract_grounded(text, vocabulary)
    return entities | {("box", f"{lab}@{k}:{list(box)}") for lab, k, box in placed}


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes in one space (identical boxes 1, whatever their shape)."""
    if tuple(a) == tuple(b):
        return 1.0
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matched_boxes(gold: list[BoxEntity], pred: list[BoxEntity]) -> int:
    """One-to-one matches (same label and frame, IoU >= ``BOX_IOU``), greedy by IoU."""
    pairs = sorted(((_iou(g[2], p[2]), i, j) for i, g in enumerate(gold) for j, p in enumerate(pred)
                    if g[:2] == p[:2]), reverse=True)
    used_g: set[int] = set()
    used_p: set[int] = set()
    for iou, i, j in pairs:
        if iou >= BOX_IOU and i not in used_g and j not in used_p:
            used_g.add(i)
            used_p.add(j)
    return len(used_g)


def entity_f1(hypothesis: str, reference: str, vocabulary: Sequence[str]) -> float:
    """F1 over grounded entities (``extract_grounded``): a finding counts only on the frames its
    reference gives it (label + frame) and with its box there (label + frame + box, IoU >= 0.5),
    so a caption that names the right findings on each other's frames scores 0, however much
    its words overlap the reference. Both empty is 1 (a correct "none"), one empty 0."""
    gold, gold_boxes = extract_grounded(reference, vocabulary)
    pred, pred_boxes = extract_grounded(hypothesis, vocabulary)
    n_gold, n_pred = len(gold) + len(gold_boxes), len(pred) + len(pred_boxes)
    if not n_gold or not n_pred:
        return float(n_gold == n_pred)
    hit = len(gold & pred) + _matched_boxes(gold_boxes, pred_boxes)
    return 2 * hit / (n_gold + n_pred)
