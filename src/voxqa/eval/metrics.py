"""Metrics: score one prediction against its gold answer, then aggregate with bootstrap CIs.

Two layers, both pure:

* ``score_item(answer_type, gold, pred, ...)`` -> ``{score_name: float | None}`` for one item.
  ``gold`` is the answer's ``value`` (JSON form or the pydantic models of ``voxqa.schema``),
  ``pred`` the parsed prediction in the same form, or ``None`` when the output could not be
  parsed. ``None`` always scores as wrong / zero, so a model cannot gain by failing to parse.
* ``aggregate(records, group_keys)`` -> per-group means with 95% CIs (Wilson score
  intervals for proportions, i.e. metrics that are 0/1 per item; percentile bootstrap for the
  rest), chance, parse failures and a below-chance flag: a one-sided exact test of the
  correct count against the items' chance (binomial when every item has the same chance,
  Poisson-binomial otherwise), Holm-corrected across every group of the results file.

All scores lie in [0, 1] (BLEU is sacrebleu's 0-100 divided by 100) except ``abs_error``.
Paper-compatible names: ``a_score`` (SGMRI-VQA: closed-form accuracy, set F1 for
multi-choice), ``v_score`` (SGMRI-VQA: mean IoU over ground-truth boxes after Hungarian
matching within frames) and accuracy per CT-SpatialVQA ``category`` group.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import binom, binomtest, norm

from voxqa.boxes.geometry import iou, iou3d

THRESHOLDS = (0.1, 0.25, 0.5)  # IoU thresholds for box TP/FP/FN counts
BOX3D_THRESHOLDS = (0.25, 0.5)
AP_IOU = 0.5
#: COCO's 101 recall points, built exactly as pycocotools builds them (same floats).
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
DEFAULT_GROUP_KEYS: tuple[str | tuple[str, ...], ...] = (
    "task", ("task", "subtask"), "level", "label", "category", "anatomy",
)
#: Aggregate name -> per-item score averaged for it (items without that score do not count).
MEAN_METRICS = {
    "accuracy": "correct",
    "a_score": "a_score",
    "exact_match": "exact_match",
    "set_f1": "set_f1",
    "within_tolerance": "within_tolerance",
    "mae": "abs_error",
    "frame_precision": "frame_precision",
    "frame_recall": "frame_recall",
    "frame_f1": "frame_f1",
    "miou": "miou",
    "v_score": "v_score",
    "point_hit": "point_hit",
    "point_in_box": "point_in_box",
    "iou3d": "iou3d",
    **{f"acc@{t}": f"acc@{t}" for t in BOX3D_THRESHOLDS},
    "bleu": "bleu",
    "rouge_l": "rouge_l",
    "entity_f1": "entity_f1",
    "token_f1": "token_f1",
    "judge": "judge",
    "ar_score": "ar_score",
}
#: Metrics that are 0/1 per item (proportions): Wilson score CIs instead of the bootstrap.
BINARY_METRICS = frozenset({"accuracy", "exact_match", "within_tolerance",
                            *(f"acc@{t}" for t in BOX3D_THRESHOLDS)})
MAX_FRAME_RANGE = 4096  # "frames 0-999999999" in a model's text must not exhaust memory

Scores = dict[str, float | None]


# --- per-item scores --------------------------------------------------------------------------


def score_item(answer_type: str, gold: Any, pred: Any, *, tolerance: float = 0.0,
               scale: Sequence[int] = (), vocabulary: Sequence[str] = (), points: bool = False) -> Scores:
    """Scores of one prediction; ``pred=None`` (unparseable) scores as wrong / zero.

    ``tolerance`` is a number answer's absolute tolerance, ``scale`` a grade answer's scale
    (used to score an unparseable grade as the farthest grade), ``vocabulary`` the finding
    labels a text answer may mention (for ``entity_f1``); ``points`` says a box answer was
    asked for as points (a point profile), scored by ``point_hit`` / ``point_in_box``.
    """
    if answer_type in ("yes_no", "choice"):
        return _score_single(gold, pred)
    if answer_type == "multi_choice":
        return _score_multi(gold, pred)
    if answer_type == "number":
        return _score_number(gold, pred, tolerance)
    if answer_type == "grade":
        return _score_grade(gold, pred, scale)
    if answer_type == "frames":
        return _score_frames(gold, pred)
    if answer_type == "boxes" and points:
        return _score_points([_as_dict(b) for b in gold], pred)
    if answer_type == "boxes":
        return _score_boxes(gold, pred)
    if answer_type == "box3d":
        return _score_box3d(gold, pred)
    if answer_type == "text":
        return _score_text(gold, pred, vocabulary)
    raise ValueError(f"unknown answer type {answer_type!r}")


def score_answer(answer: Any, pred: Any, *, vocabulary: Sequence[str] = ()) -> Scores:
    """``score_item`` for a ``voxqa.schema`` answer model, taking tolerance and scale from it."""
    return score_item(answer.type, answer.value, pred, tolerance=getattr(answer, "tolerance", 0.0),
                      scale=getattr(answer, "scale", ()), vocabulary=vocabulary)


def _score_single(gold: Any, pred: Any) -> Scores:
    """yes_no and choice. ``gold_class`` feeds balanced accuracy (classes are gold values)."""
    correct = float(pred is not None and pred == gold)
    gold_class = {"no": 0.0, "yes": 1.0}[gold] if isinstance(gold, str) else float(gold)
    return {"correct": correct, "a_score": correct, "gold_class": gold_class}


def _score_multi(gold: Sequence[int], pred: Sequence[int] | None) -> Scores:
    """Exact match is what chance (1 / (2^k - 1)) refers to; set F1 gives partial credit."""
    if pred is None:
        return {"correct": 0.0, "exact_match": 0.0, "set_f1": 0.0, "a_score": 0.0}
    exact = float(set(gold) == set(pred))
    f1 = set_prf(gold, pred)[2]
    return {"correct": exact, "exact_match": exact, "set_f1": f1, "a_score": f1}


def _score_number(gold: float, pred: float | None, tolerance: float) -> Scores:
    """An unparseable number has no error of its own; ``unparsed_error`` (|gold|, the error of
    answering 0) is the least it is charged: ``aggregate`` gives it the largest absolute error
    of its group's parsed answers when that is larger, so MAE never improves by not parsing."""
    if pred is None:
        return {"correct": 0.0, "within_tolerance": 0.0, "a_score": 0.0, "abs_error": None,
                "unparsed_error": abs(float(gold))}
    err = abs(float(pred) - float(gold))
    ok = float(err <= tolerance + 1e-9)  # 1e-9: "0.3" must be within 0.1 of 0.2 in floats
    return {"correct": ok, "within_tolerance": ok, "a_score": ok, "abs_error": err}


def _score_grade(gold: int, pred: int | None, scale: Sequence[int]) -> Scores:
    """An unparseable grade counts for QWK as the grade farthest from gold (the worst answer);
    without a scale it cannot be placed and is left out of QWK (it still counts as wrong)."""
    if pred is None:
        worst = max(scale, key=lambda s: abs(s - gold)) if scale else None
        floor = abs(worst - gold) if worst is not None else abs(gold)
        return {"correct": 0.0, "a_score": 0.0, "abs_error": None, "unparsed_error": float(floor),
                "grade_gold": float(gold), "grade_pred": None if worst is None else float(worst)}
    correct = float(pred == gold)
    return {"correct": correct, "a_score": correct, "abs_error": float(abs(pred - gold)),
            "grade_gold": float(gold), "grade_pred": float(pred)}


def _score_frames(gold: Sequence[int], pred: Sequence[int] | None) -> Scores:
    p, r, f1 = set_prf(gold, pred)
    return {"frame_precision": p, "frame_recall": r, "frame_f1": f1}


def _score_boxes(gold: Sequence[Any], pred: Sequence[Any] | None) -> Scores:
    """Mean IoU over gold boxes (= SGMRI-VQA's V-score) and TP/FP/FN per IoU threshold.

    Mean IoU uses the matching with the largest total IoU; hits at each threshold use their
    own matching (``hits_at``): the most pairs with IoU >= t, which the max-total-IoU matching
    can miss. No gold boxes: mean IoU is 1 for an empty prediction and 0 otherwise. An
    unparseable prediction predicts nothing: every gold box is a false negative, mean IoU 0.
    """
    gold = [_as_dict(b) for b in gold]
    boxes = [_as_dict(b) for b in pred] if pred is not None else []
    ious = [v for _, _, v in match_boxes(gold, boxes)]
    miou = sum(ious) / len(gold) if gold else float(pred is not None and not boxes)
    scores: Scores = {"miou": miou, "v_score": miou}
    m = _iou_matrix(gold, boxes)
    for t in THRESHOLDS:
        tp = hits_at(m, t)
        scores |= {f"tp@{t}": float(tp), f"fp@{t}": float(len(boxes) - tp),
                   f"fn@{t}": float(len(gold) - tp)}
    return scores


def _inside(point: Mapping[str, Any], box: Mapping[str, Any]) -> bool:
    x, y = point["point"]
    x0, y0, x1, y1 = box["box"]
    return point["frame"] == box["frame"] and x0 <= x < x1 and y0 <= y < y1


def _score_points(gold: Sequence[Mapping[str, Any]], pred: Sequence[Any] | None) -> Scores:
    """Point answers (Molmo-style profiles): ``point_hit`` is the share of gold boxes holding
    a point on their frame; ``point_in_box`` the share of points inside some gold box (no
    gold boxes: 1 for no points, else 0). An unparseable answer scores 0 on both. Box
    metrics do not apply to points."""
    if pred is None:
        return {"point_hit": 0.0, "point_in_box": 0.0}
    points = [_as_dict(p) for p in pred]
    hit = sum(any(_inside(p, g) for p in points) for g in gold) / len(gold) if gold else float(not points)
    inside = sum(any(_inside(p, g) for g in gold) for p in points) / len(points) if points else float(not gold)
    return {"point_hit": hit, "point_in_box": inside}


def _score_box3d(gold: Any, pred: Any) -> Scores:
    v = box3d_iou(gold, pred) if pred is not None else 0.0
    return {"iou3d": v, **{f"acc@{t}": float(v >= t) for t in BOX3D_THRESHOLDS}}


def _score_text(gold: str, pred: str | None, vocabulary: Sequence[str]) -> Scores:
    if pred is None:
        return {"bleu": 0.0, "rouge_l": 0.0, "entity_f1": 0.0, "token_f1": 0.0}
    return {"bleu": bleu(pred, gold), "rouge_l": rouge_l(pred, gold),
            "entity_f1": entity_f1(pred, gold, vocabulary), "token_f1": token_f1(pred, gold)}


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


# --- building blocks --------------------------------------------------------------------------


def set_prf(gold: Iterable[Any], pred: Iterable[Any] | None) -> tuple[float, float, float]:
    """Precision, recall, F1 of two sets. Both empty is a correct "none" answer (1, 1, 1); one
    empty or ``pred=None`` gives (0, 0, 0), so abstaining never earns vacuous precision."""
    g = set(gold)
    p = set(pred) if pred is not None else None
    if p is None or not g or not p:
        ok = float(p is not None and not g and not p)
        return ok, ok, ok
    hit = len(g & p)
    precision, recall = hit / len(p), hit / len(g)
    f1 = 2 * hit / (len(g) + len(p))
    return precision, recall, f1


def _as_dict(x: Any) -> Mapping[str, Any]:
    """Accept schema models (Box, Box3D) as well as their JSON form."""
    return x.model_dump() if hasattr(x, "model_dump") else x


def match_boxes(gold: Sequence[Any], pred: Sequence[Any]) -> list[tuple[int, int, float]]:
    """(gold index, pred index, IoU) of the one-to-one matching with the largest total IoU.

    Hungarian assignment (scipy ``linear_sum_assignment``) on the IoU matrix; boxes on
    different frames have IoU 0 and so never match; zero-IoU pairs are not reported.
    """
    gold = [_as_dict(b) for b in gold]
    pred = [_as_dict(b) for b in pred]
    if not gold or not pred:
        return []
    m = _iou_matrix(gold, pred)
    rows, cols = linear_sum_assignment(m, maximize=True)
    pairs = zip(rows, cols, strict=True)
    return [(int(i), int(j), float(m[i, j])) for i, j in pairs if m[i, j] > 0]


def _iou_matrix(gold: Sequence[Mapping[str, Any]], pred: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """(gold, pred) IoU; boxes on different frames have IoU 0."""
    return np.array([[iou(g["box"], p["box"]) if g["frame"] == p["frame"] else 0.0 for p in pred]
                     for g in gold], dtype=float).reshape(len(gold), len(pred))


def hits_at(ious: np.ndarray, t: float) -> int:
    """True positives at IoU threshold ``t``: the largest one-to-one matching of gold and
    predicted boxes whose pairs all have IoU >= t (Hungarian assignment on the thresholded
    matrix). Order-independent; COCO's greedy matching (detections in score order, each
    taking its best free gold box) finds the same count whenever its order allows it, and
    never more."""
    if ious.size == 0:
        return 0
    ok = (ious >= t).astype(float)
    rows, cols = linear_sum_assignment(ok, maximize=True)
    return int(ok[rows, cols].sum())


def box3d_iou(gold: Any, pred: Any) -> float:
    """3D IoU of {frame_start, frame_end, box}: frames are inclusive, so the frame extent is
    the half-open [frame_start, frame_end + 1) that ``geometry.iou3d`` expects."""
    def xyz(b: Mapping[str, Any]) -> tuple[int, ...]:
        x0, y0, x1, y1 = b["box"]
        return (x0, y0, b["frame_start"], x1, y1, b["frame_end"] + 1)

    return iou3d(xyz(_as_dict(gold)), xyz(_as_dict(pred)))


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


def _coco_ap(tp_cum: np.ndarray, fp_cum: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """COCO's 101-point interpolated AP from cumulative TP/FP counts at each operating point.

    Arrays are (..., points) with leading batch axes (n_gt: (...)), so bootstrap resamples go
    in one call. The steps mirror pycocotools' ``accumulate``: precision made non-increasing
    from the right, then read at the first point whose recall reaches each threshold.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = tp_cum / n_gt[..., None]
        pr = np.where(tp_cum + fp_cum > 0, tp_cum / (tp_cum + fp_cum), 0.0)
    envelope = np.flip(np.maximum.accumulate(np.flip(pr, -1), axis=-1), -1)
    first = (rc[..., None, :] < RECALL_THRESHOLDS[:, None]).sum(-1)  # searchsorted 'left'
    points = pr.shape[-1]
    q = np.take_along_axis(envelope, np.minimum(first, points - 1), axis=-1)
    ap = np.where(first < points, q, 0.0).mean(-1)
    return np.where(n_gt > 0, ap, np.nan)


def average_precision(scores: Sequence[float], is_tp: Sequence[bool], n_gt: int) -> float | None:
    """COCO-style AP of scored detections already labelled TP/FP (None without gold boxes).

    Equal scores form one operating point (COCO would walk them in arbitrary order), so the
    result never depends on input order. voxqa's predicted boxes carry no confidence: with
    every score 1.0 there is one point (P, R) and AP = P * #{r in 0, .01, ..., 1 : r <= R} / 101,
    i.e. about precision * recall.
    """
    if n_gt <= 0:
        return None
    if len(scores) == 0:
        return 0.0
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    tp = np.asarray(is_tp, dtype=bool)[order]
    last_of_tie = np.r_[s[order][1:] != s[order][:-1], True]
    tp_cum, fp_cum = np.cumsum(tp)[last_of_tie], np.cumsum(~tp)[last_of_tie]
    return float(_coco_ap(tp_cum.astype(float), fp_cum.astype(float), np.asarray(float(n_gt))))


# --- aggregation ------------------------------------------------------------------------------


@dataclass
class _Metric:
    """A metric as a function of column sums over items. Columns are built once for all
    records; a group's point estimate uses the sums over its rows, each bootstrap resample
    the count-weighted sums (one matmul for every metric of the group)."""

    name: str
    cols: np.ndarray  # (items, k), zero rows for items the metric does not cover
    stat: Callable[[np.ndarray], np.ndarray]  # (..., k) sums -> (...)
    has: np.ndarray  # (items,) bool: the items the metric covers
    #: (items,) least value charged to an unparsed item (NaN for parsed ones), for means of
    #: errors: such an item gets max(this, the largest value of the group's parsed items)
    floor: np.ndarray | None = None


def _ratio(s: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return s[..., 0] / s[..., 1]


def _score(r: Mapping[str, Any], key: str) -> float | None:
    return r["scores"].get(key)


def _mean_metrics(records: Sequence[Mapping[str, Any]]) -> list[_Metric]:
    # one pass over the records' own (few) scores, not one pass per metric
    wanted = {key: [] for key in MEAN_METRICS.values()}
    for i, r in enumerate(records):
        for key, v in r["scores"].items():
            if v is not None and key in wanted:
                wanted[key].append((i, v))
    unparsed = [(i, r["scores"]["unparsed_error"]) for i, r in enumerate(records)
                if r["scores"].get("unparsed_error") is not None]
    out = []
    for name, key in MEAN_METRICS.items():
        extra = unparsed if key == "abs_error" else []
        if not wanted[key] and not extra:
            continue
        v = np.zeros(len(records))
        has = np.zeros(len(records), bool)
        floor = None
        if wanted[key]:
            rows, vals = zip(*wanted[key], strict=False)
            v[list(rows)] = vals
            has[list(rows)] = True
        if extra:
            floor = np.full(len(records), np.nan)
            rows, vals = zip(*extra, strict=False)
            floor[list(rows)] = vals
            v[list(rows)] = vals
            has[list(rows)] = True
        out.append(_Metric(name, np.column_stack([v, has]), _ratio, has, floor))
    return out


def _micro_stat(kind: str) -> Callable[[np.ndarray], np.ndarray]:
    """Micro precision / recall / F1 from summed (TP, FP, FN)."""
    def stat(s: np.ndarray) -> np.ndarray:
        tp, fp, fn = s[..., 0], s[..., 1], s[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"precision": tp / (tp + fp), "recall": tp / (tp + fn),
                    "f1": 2 * tp / (2 * tp + fp + fn)}[kind]
    return stat


def _ap_stat(s: np.ndarray) -> np.ndarray:
    """AP@0.5 with every predicted box at confidence 1.0: one operating point per resample.
    TP/FP are score_item's matches at IoU >= 0.5 (``hits_at``; COCO matches greedily in score
    order, which unscored boxes do not have)."""
    tp, fp, fn = s[..., 0], s[..., 1], s[..., 2]
    return _coco_ap(tp[..., None], fp[..., None], tp + fn)


def _box_metrics(records: Sequence[Mapping[str, Any]]) -> list[_Metric]:
    out = []
    for t in THRESHOLDS:
        rows = [[_score(r, f"{k}@{t}") for k in ("tp", "fp", "fn")] for r in records]
        has = np.array([row[0] is not None for row in rows])
        if not has.any():
            continue
        cols = np.array([row if h else [0.0] * 3 for row, h in zip(rows, has, strict=True)],
                        dtype=float)
        out += [_Metric(f"{kind}@{t}", cols, _micro_stat(kind), has)
                for kind in ("precision", "recall", "f1")]
        if t == AP_IOU:
            out.append(_Metric(f"ap@{t}", cols, _ap_stat, has))
    return out


def _balanced_accuracy(records: Sequence[Mapping[str, Any]]) -> list[_Metric]:
    """Mean over gold classes of the accuracy within the class (sklearn's definition). A
    class is (answer type, gold value): "yes" and option 1 are different classes. Classes
    absent from a group (or a resample) are left out of its mean."""
    classes = [(r["answer_type"], _score(r, "gold_class")) for r in records]
    kinds = sorted({c for c in classes if c[1] is not None})
    if not kinds:
        return []
    cols = np.zeros((len(records), 2 * len(kinds)))
    for i, (r, c) in enumerate(zip(records, classes, strict=True)):
        if c[1] is not None:
            k = kinds.index(c)
            cols[i, 2 * k: 2 * k + 2] = (_score(r, "correct"), 1.0)

    def stat(s: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = s[..., 0::2] / s[..., 1::2]
            present = ~np.isnan(recall)
            return np.where(present, recall, 0.0).sum(-1) / present.sum(-1)

    return [_Metric("balanced_accuracy", cols, stat, cols[:, 1::2].sum(1) > 0)]


def _qwk(records: Sequence[Mapping[str, Any]]) -> list[_Metric]:
    """Quadratic weighted kappa with weights (g - p)^2 on grade values (sklearn's on a
    contiguous integer scale); one column per confusion-matrix cell. Grades a group never
    uses add empty rows and columns, which leave kappa unchanged."""
    pairs = [(_score(r, "grade_gold"), _score(r, "grade_pred")) for r in records]
    has = np.array([g is not None and p is not None for g, p in pairs])
    if not has.any():
        return []
    values = np.array(sorted({v for pair, h in zip(pairs, has, strict=True) if h for v in pair}))
    n_lab = len(values)
    cols = np.zeros((len(records), n_lab * n_lab))
    for i in np.flatnonzero(has):
        g, p = (int(np.searchsorted(values, v)) for v in pairs[i])
        cols[i, g * n_lab + p] = 1.0
    weights = (values[:, None] - values[None, :]) ** 2

    def stat(s: np.ndarray) -> np.ndarray:
        o = s.reshape(*s.shape[:-1], n_lab, n_lab)
        with np.errstate(divide="ignore", invalid="ignore"):
            total = o.sum((-1, -2))[..., None, None]
            e = o.sum(-1)[..., :, None] * o.sum(-2)[..., None, :] / total
            return 1.0 - (weights * o).sum((-1, -2)) / (weights * e).sum((-1, -2))

    return [_Metric("qwk", cols, stat, has)]


BOOT_BUDGET = 20_000_000  # resampled item draws per group
MIN_BOOT = 200


def _resampled_sums(cols: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums of ``n_boot`` resamples with replacement, as item-count weights @ cols;
    in chunks so a large group never needs an n_boot x items matrix at once."""
    n = len(cols)
    chunk = max(1, 2**22 // n)
    out = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)
        out.append(counts.astype(float) @ cols)  # float: BLAS, not numpy's integer matmul
    return np.concatenate(out)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def wilson(k: float, n: int, confidence: float = 0.95) -> list[float] | None:
    """Wilson score interval of a proportion k / n (never [0, 0] for 0 / n)."""
    if n <= 0:
        return None
    z = float(norm.ppf(0.5 + confidence / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, float(centre - half)), min(1.0, float(centre + half))]


def below_chance_p(correct: np.ndarray, chance: np.ndarray) -> tuple[float, str]:
    """One-sided exact p-value of "at most this many correct" under guessing at the items'
    own chance: ``scipy.stats.binomtest(k, n, p, alternative="less")`` when every item has the
    same chance p, else the exact Poisson-binomial lower tail P(X <= k) (the binomial pmfs of
    each distinct chance value convolved). Returns (p, method)."""
    k = int(round(float(correct.sum())))
    values, counts = np.unique(chance, return_counts=True)
    if len(values) == 1:
        return float(binomtest(k, len(correct), float(values[0]), alternative="less").pvalue), "binomial"
    pmf = np.ones(1)
    for p, m in zip(values, counts, strict=True):
        pmf = np.convolve(pmf, binom.pmf(np.arange(m + 1), m, p))
    return float(min(1.0, pmf[: k + 1].sum())), "poisson_binomial"


def holm(groups: Iterable[dict[str, Any]], alpha: float = 0.05) -> None:
    """Holm step-down correction of the below-chance p-values of ``groups`` (the group stats
    of one results file), in place: sets each test's ``p_holm`` and the group's
    ``below_chance`` (``p_holm < alpha``)."""
    tests = [g for g in groups if g.get("below_chance_test")]
    order = sorted(range(len(tests)), key=lambda i: tests[i]["below_chance_test"]["p"])
    m, running = len(tests), 0.0
    for rank, i in enumerate(order):
        t = tests[i]["below_chance_test"]
        running = max(running, min(1.0, (m - rank) * t["p"]))
        t["p_holm"] = running
        t["family_size"] = m
        tests[i]["below_chance"] = bool(running < alpha)


def all_groups(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every group stats dict of an ``aggregate`` output: overall, then each grouping's."""
    return [results["overall"], *(g for groups in results["by"].values() for g in groups.values())]


def _group_stats(metrics: Sequence[_Metric], rows: np.ndarray, chance: np.ndarray,
                 correct: np.ndarray, parse_ok: np.ndarray, n_boot: int, seed: int,
                 confidence: float) -> dict[str, Any]:
    """Statistics of the records at ``rows``; metrics covering none of them are omitted."""
    metrics = [m for m in metrics if m.has[rows].any()]
    cols = []
    for m in metrics:
        c = m.cols[rows].copy()
        if m.floor is not None:  # unparsed items: max(own floor, largest parsed value of the group)
            fl = m.floor[rows]
            pending = ~np.isnan(fl)
            parsed = m.has[rows] & ~pending
            worst = c[parsed, 0].max() if parsed.any() else 0.0
            c[pending, 0] = np.maximum(fl[pending], worst)
        cols.append(c)
    # a fresh generator per group: a group's CIs do not depend on which other groups exist
    rng = np.random.default_rng(seed)
    # very large groups get fewer resamples (never under MIN_BOOT): cost stays ~BOOT_BUDGET draws
    n_boot = max(min(n_boot, MIN_BOOT), min(n_boot, BOOT_BUDGET // max(len(rows), 1)))
    boot_cols = [c for m, c in zip(metrics, cols, strict=True) if m.name not in BINARY_METRICS]
    sums = _resampled_sums(np.hstack(boot_cols), n_boot, rng) if boot_cols else None
    tail = 50.0 * (1.0 - confidence)
    out: dict[str, dict[str, Any]] = {}
    start = 0
    for m, c in zip(metrics, cols, strict=True):
        n = int(m.has[rows].sum())
        total = c.sum(0)
        if m.name in BINARY_METRICS:
            out[m.name] = {"mean": _finite(m.stat(total)), "ci": wilson(float(total[0]), n, confidence),
                           "ci_method": "wilson", "n": n}
            continue
        k = c.shape[1]
        boot = m.stat(sums[:, start:start + k])
        boot = boot[np.isfinite(boot)]  # resamples where the metric is undefined
        ci = [float(v) for v in np.percentile(boot, [tail, 100.0 - tail])] if len(boot) else None
        out[m.name] = {"mean": _finite(m.stat(total)), "ci": ci, "ci_method": "bootstrap", "n": n}
        start += k
    ch, co = chance[rows], correct[rows]
    tested = ~np.isnan(ch) & ~np.isnan(co)
    test = None
    if tested.any():
        p, method = below_chance_p(co[tested], ch[tested])
        test = {"n": int(tested.sum()), "correct": int(round(float(co[tested].sum()))),
                "expected": float(ch[tested].sum()), "p": p, "method": method,
                "p_holm": None, "family_size": None}
    group_chance = ch[~np.isnan(ch)]
    failures = int((~parse_ok[rows]).sum())
    return {
        "n": len(rows),
        "metrics": out,
        "chance": float(group_chance.mean()) if len(group_chance) else None,
        "below_chance_test": test,
        "below_chance": None,  # set by holm() once every group of the file is known
        "parse_failures": {"count": failures, "rate": failures / len(rows)},
    }


def _group_value(r: Mapping[str, Any], key: str | tuple[str, ...]) -> str | None:
    parts = [r.get(k) for k in ((key,) if isinstance(key, str) else key)]
    return None if any(p is None for p in parts) else "/".join(map(str, parts))


def aggregate(records: Sequence[Mapping[str, Any]],
              group_keys: Sequence[str | tuple[str, ...]] = DEFAULT_GROUP_KEYS, *,
              n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """Group statistics: ``{"overall": stats, "by": {key: {value: stats}}}``.

    A record is ``{"task", "subtask", "level", "label", "category", "anatomy" (optional),
    "template", "answer_type", "chance", "parse_ok", "scores"}`` with ``scores`` from
    ``score_item``. A tuple key groups by joined values ("task/subtask": subtask names repeat
    across tasks); records whose key value is None (no label, no category) are left out of
    that key's groups. Means are over items having the score (MAE over every number / grade
    item: an unparsed one is charged max(its ``unparsed_error``, the group's largest parsed
    error)); CIs are Wilson for ``BINARY_METRICS``, else percentile bootstrap over items
    (``n_boot`` resamples, seeded numpy Generator, deterministic). Below-chance tests are
    Holm-corrected across the groups of this output (``holm`` again over a whole results file
    when it holds several outputs).
    """
    records = list(records)
    if not records:
        raise ValueError("no records to aggregate")
    metrics = (_mean_metrics(records) + _balanced_accuracy(records) + _box_metrics(records)
               + _qwk(records))
    chance = np.array([np.nan if r.get("chance") is None else r["chance"] for r in records])
    correct = np.array([np.nan if _score(r, "correct") is None else _score(r, "correct")
                        for r in records])
    # a failed request (no answer came back) is counted as failed, never as a parse failure
    parse_ok = np.array([bool(r["parse_ok"]) or bool(r.get("failed")) for r in records])

    def stats(rows: Sequence[int]) -> dict[str, Any]:
        return _group_stats(metrics, np.asarray(rows), chance, correct, parse_ok, n_boot, seed,
                            confidence)

    by: dict[str, dict[str, Any]] = {}
    for key in group_keys:
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            value = _group_value(r, key)
            if value is not None:
                groups.setdefault(value, []).append(i)
        name = key if isinstance(key, str) else "/".join(key)
        by[name] = {v: stats(rows) for v, rows in sorted(groups.items())}
    out = {"overall": stats(range(len(records))), "by": by}
    holm(all_groups(out), alpha=1.0 - confidence)
    return out


# --- grounded captions: G-IoU (RadGrounder), done right ----------------------------------------

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
