"""Box metrics: IoU matching of 2D boxes within frames, 3D IoU and COCO-style AP.

Boxes are ``{"frame", "box"}`` dicts (or ``voxqa.schema`` models) in pixel xyxy, max
exclusive; boxes on different frames never match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from voxqa.boxes.geometry import iou, iou3d

THRESHOLDS = (0.1, 0.25, 0.5)  # IoU thresholds for box TP/FP/FN counts
BOX3D_THRESHOLDS = (0.25, 0.5)
AP_IOU = 0.5
#: COCO's 101 recall points, built exactly as pycocotools builds them (same floats).
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


def as_dict(x: Any) -> Mapping[str, Any]:
    """Accept schema models (Box, Box3D) as well as their JSON form."""
    return x.model_dump() if hasattr(x, "model_dump") else x


def match_boxes(gold: Sequence[Any], pred: Sequence[Any]) -> list[tuple[int, int, float]]:
    """(gold index, pred index, IoU) of the one-to-one matching with the largest total IoU.

    Hungarian assignment (scipy ``linear_sum_assignment``) on the IoU matrix; boxes on
    different frames have IoU 0 and so never match; zero-IoU pairs are not reported.
    """
    gold = [as_dict(b) for b in gold]
    pred = [as_dict(b) for b in pred]
    if not gold or not pred:
        return []
    m = iou_matrix(gold, pred)
    rows, cols = linear_sum_assignment(m, maximize=True)
    pairs = zip(rows, cols, strict=True)
    return [(int(i), int(j), float(m[i, j])) for i, j in pairs if m[i, j] > 0]


def iou_matrix(gold: Sequence[Mapping[str, Any]], pred: Sequence[Mapping[str, Any]]) -> np.ndarray:
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

    return iou3d(xyz(as_dict(gold)), xyz(as_dict(pred)))


def coco_ap(tp_cum: np.ndarray, fp_cum: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
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
    return float(coco_ap(tp_cum.astype(float), fp_cum.astype(float), np.asarray(float(n_gt))))
