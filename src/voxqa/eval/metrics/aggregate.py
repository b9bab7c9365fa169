"""Aggregation: per-group means of per-item scores with 95% CIs, chance and parse failures.

``aggregate(records, group_keys)`` -> per-group means with 95% CIs (Wilson score intervals
for proportions, i.e. metrics that are 0/1 per item; percentile bootstrap for the rest; and
beside them a patient-clustered bootstrap interval, ``ci_patient``),
chance, parse failures and a below-chance flag: a one-sided exact test of the correct count
against the items' chance (binomial when every item has the same chance, Poisson-binomial
otherwise), Holm-corrected across every group of the results file.

Paper-compatible names: ``a_score`` (SGMRI-VQA: closed-form accuracy, set F1 for
multi-choice), ``v_score`` (SGMRI-VQA: mean IoU over ground-truth boxes after Hungarian
matching within frames), accuracy per CT-SpatialVQA ``category`` group, and RadGrounder's
keyword grounding: ``g_iou`` (mean per-item G-IoU over items with gold keywords),
``keyword_iou`` (mean over items with a match of their matches' mean IoU) and
``keyword_precision`` / ``keyword_recall`` / ``keyword_f1`` (micro, and ``@0.5``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from voxqa.eval.metrics.boxes import AP_IOU, BOX3D_THRESHOLDS, THRESHOLDS, coco_ap
from voxqa.eval.metrics.grounding import IOU_AT
from voxqa.eval.metrics.statistics import below_chance_p, holm, wilson

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
    "g_iou": "g_iou",
    "keyword_iou": "keyword_iou",
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


@dataclass
class _Metric:
    """A metric as a function of column sums over items. Columns are built once for all
    records; a group's point estimate uses the sums over its rows, each bootstrap resample
    the count-weighted sums (one matmul for every metric of the group)."""

    name: str
    cols: np.ndarray  # (items, k), zero rows for items the metric does not cover
    stat: Callable[[np.ndarray], np.ndarray]  # (..., k) sums -> (...)
    has: np.ndarray  # (items,) bool: the items the metric covers


def _ratio(s: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return s[..., 0] / s[..., 1]


def _score(r: Mapping[str, Any], key: str) -> float | None:
    return r["scores"].get(key)


def _mean_metrics(records: Sequence[Mapping[str, Any]]) -> list[_Metric]:
    # one pass over the records' own (few) scores, not one pass per metric
    wanted: dict[str, list[tuple[int, float]]] = {key: [] for key in MEAN_METRICS.values()}
    for i, r in enumerate(records):
        for key, v in r["scores"].items():
            if v is not None and key in wanted:
                wanted[key].append((i, v))
    out = []
    for name, key in MEAN_METRICS.items():
        if not wanted[key]:
            continue
        v = np.zeros(len(records))
        has = np.zeros(len(records), bool)
        rows, vals = zip(*wanted[key], strict=False)
        v[list(rows)] = vals
        has[list(rows)] = True
        out.append(_Metric(name, np.column_stack([v, has]), _ratio, has))
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
    return coco_ap(tp[..., None], fp[..., None], tp + fn)


def _counts(records: Sequence[Mapping[str, Any]], keys: tuple[str, str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(items, 3) columns of the scores ``keys`` (TP, FP, FN; zero rows for records without
    them) and which records have them, in one pass over the records."""
    cols = np.zeros((len(records), 3))
    has = np.zeros(len(records), bool)
    tp, fp, fn = keys
    for i, r in enumerate(records):
        s = r["scores"]
        if s.get(tp) is not None:
            cols[i] = (s[tp], s[fp], s[fn])
            has[i] = True
    return cols, has


def _box_metrics(records: Sequence[Mapping[str, Any]]) -> list[_Metric]:
    out = []
    for t in THRESHOLDS:
        cols, has = _counts(records, (f"tp@{t}", f"fp@{t}", f"fn@{t}"))
        if not has.any():
            continue
        out += [_Metric(f"{kind}@{t}", cols, _micro_stat(kind), has)
                for kind in ("precision", "recall", "f1")]
        if t == AP_IOU:
            out.append(_Metric(f"ap@{t}", cols, _ap_stat, has))
    return out


def _keyword_metrics(records: Sequence[Mapping[str, Any]]) -> list[_Metric]:
    """Keyword grounding (RadGrounder): micro precision / recall / F1 of matched keywords over
    predicted / gold ones, overall and counting a match only at IoU >= 0.5 (``@0.5``)."""
    out = []
    for at in ("", f"@{IOU_AT:g}"):
        cols, has = _counts(records, (f"keyword_tp{at}", f"keyword_fp{at}", f"keyword_fn{at}"))
        if not has.any():
            continue
        out += [_Metric(f"keyword_{kind}{at}", cols, _micro_stat(kind), has) for kind in ("precision", "recall", "f1")]
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
    values = np.array(sorted({v for pair, h in zip(pairs, has, strict=True) if h for v in pair if v is not None}))
    n_lab = len(values)
    cols = np.zeros((len(records), n_lab * n_lab))
    for i in np.flatnonzero(has):
        g, p = (int(np.searchsorted(values, cast(float, v))) for v in pairs[i])  # both known: has[i]
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
#: Fewest patients a patient-clustered interval is given for: with fewer, the cluster bootstrap
#: has a handful of distinct resamples (2 patients: 3) and its interval means nothing.
MIN_PATIENTS = 10


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


def _finite(x: float | np.ndarray) -> float | None:
    return float(x) if np.isfinite(x) else None


def all_groups(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every group stats dict of an ``aggregate`` output: overall, then each grouping's."""
    return [results["overall"], *(g for groups in results["by"].values() for g in groups.values())]


def _patient_cis(metrics: Sequence[_Metric], cols: Sequence[np.ndarray], has: Sequence[np.ndarray],
                 clusters: np.ndarray, n_boot: int, seed: int, tail: float) -> list[tuple[list[float] | None, int]]:
    """Per metric, the percentile interval of the cluster bootstrap (patients drawn with
    replacement, each with all of its items) and the number of patients it covers. Clusters
    are numbered in order of first appearance, so with one item per patient the resamples are
    the item bootstrap's."""
    _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # cluster code -> rank of its first item
    inverse = order[inverse]
    g = len(first)
    stacked = np.hstack(cols)
    sums = np.zeros((g, stacked.shape[1]))
    np.add.at(sums, inverse, stacked)
    rng = np.random.default_rng(seed)
    n_boot = max(min(n_boot, MIN_BOOT), min(n_boot, BOOT_BUDGET // max(g, 1)))
    boot_sums = _resampled_sums(sums, n_boot, rng)
    out, start = [], 0
    for m, c, h in zip(metrics, cols, has, strict=True):
        k = c.shape[1]
        boot = m.stat(boot_sums[:, start:start + k])
        boot = boot[np.isfinite(boot)]
        ci = [float(v) for v in np.percentile(boot, [tail, 100.0 - tail])] if len(boot) else None
        covered = np.zeros(g, bool)
        covered[inverse[h]] = True
        out.append((ci, int(covered.sum())))
        start += k
    return out


def _group_stats(metrics: Sequence[_Metric], rows: np.ndarray, chance: np.ndarray,
                 correct: np.ndarray, parse_ok: np.ndarray, n_boot: int, seed: int,
                 confidence: float, patients: np.ndarray | None = None) -> dict[str, Any]:
    """Statistics of the records at ``rows``; metrics covering none of them are omitted.
    With ``patients`` (a cluster code per record), each metric also gets ``ci_patient``."""
    metrics = [m for m in metrics if m.has[rows].any()]
    cols = [m.cols[rows] for m in metrics]
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
        boot = m.stat(cast(np.ndarray, sums)[:, start:start + k])  # set: this metric is bootstrapped
        boot = boot[np.isfinite(boot)]  # resamples where the metric is undefined
        ci = [float(v) for v in np.percentile(boot, [tail, 100.0 - tail])] if len(boot) else None
        out[m.name] = {"mean": _finite(m.stat(total)), "ci": ci, "ci_method": "bootstrap", "n": n}
        start += k
    if patients is not None and metrics:
        has = [m.has[rows] for m in metrics]
        for m, (ci, n_patients) in zip(metrics, _patient_cis(metrics, cols, has, patients[rows], n_boot, seed, tail),
                                       strict=True):
            item_ci = out[m.name]["ci"]
            if n_patients < MIN_PATIENTS or ci is None:
                ci = None  # a bootstrap over a handful of patients has no coverage to speak of
            elif item_ci is not None:  # clustering never makes an estimate surer than independent items
                ci = [min(ci[0], item_ci[0]), max(ci[1], item_ci[1])]
            out[m.name] |= {"ci_patient": ci, "n_patients": n_patients}
    ch, co = chance[rows], correct[rows]
    tested = ~np.isnan(ch) & ~np.isnan(co)
    test = None
    if tested.any():
        p, method = below_chance_p(co[tested], ch[tested])
        test = {"n": int(tested.sum()), "correct": int(round(float(co[tested].sum()))),
                "expected": float(ch[tested].sum()), "p": p, "method": method,
                "p_holm": None, "family_size": None}
    # chance is over the items accuracy covers (those with a ``correct`` score), the same
    # items as the accuracy beside it; undefined (None) when one of them has no chance
    judged = ~np.isnan(co)
    group_chance = ch[judged] if judged.any() and not np.isnan(ch[judged]).any() else np.array([])
    failures = int((~parse_ok[rows]).sum())
    return {
        "n": len(rows),
        "metrics": out,
        "chance": float(group_chance.mean()) if len(group_chance) else None,
        "below_chance_test": test,
        "below_chance": None,  # set by holm() once every group of the file is known
        "parse_failures": {"count": failures, "rate": failures / len(rows)},
    }


def aggregate(records: Sequence[Mapping[str, Any]],
              group_keys: Sequence[str | tuple[str, ...]] = DEFAULT_GROUP_KEYS, *,
              n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """Group statistics: ``{"overall": stats, "by": {key: {value: stats}}}``.

    A record is ``{"task", "subtask", "level", "label", "category", "anatomy" (optional),
    "template", "answer_type", "chance", "parse_ok", "scores"}`` with ``scores`` from
    ``score_item``. A tuple key groups by joined values ("task/subtask": subtask names repeat
    across tasks); records whose key value is None (no label, no category) are left out of
    that key's groups. Means are over items having the score (MAE over every number / grade
    item: an unparsed one is charged its scale's fixed penalty, ``answers.number.unparsed_penalty``);
    ``chance`` is the mean chance of the items ``accuracy`` covers (None if one lacks it); CIs are Wilson for ``BINARY_METRICS``, else percentile bootstrap over items
    (``n_boot`` resamples, seeded numpy Generator, deterministic). When every record has a
    ``patient``, each metric also gets ``ci_patient``: a percentile cluster bootstrap that draws
    patients with replacement, each with all its items (items of one patient are not
    independent: one CT yields dozens), widened to contain the item-level ``ci``, None with
    fewer than ``MIN_PATIENTS`` patients; and ``n_patients``. Below-chance tests are
    Holm-corrected across the groups of this output (``holm`` again over a whole results file
    when it holds several outputs).
    """
    records = list(records)
    if not records:
        raise ValueError("no records to aggregate")
    metrics = (_mean_metrics(records) + _balanced_accuracy(records) + _box_metrics(records)
               + _keyword_metrics(records) + _qwk(records))
    chance = np.array([np.nan if r.get("chance") is None else r["chance"] for r in records])
    correct = np.array([np.nan if _score(r, "correct") is None else _score(r, "correct")
                        for r in records])
    # a failed request (no answer came back) is counted as failed, never as a parse failure
    parse_ok = np.array([bool(r["parse_ok"]) or bool(r.get("failed")) for r in records])
    # patient-clustered intervals when every record names its patient
    patients = (np.unique([str(r["patient"]) for r in records], return_inverse=True)[1]
                if all(r.get("patient") is not None for r in records) else None)

    def stats(rows: Sequence[int]) -> dict[str, Any]:
        return _group_stats(metrics, np.asarray(rows), chance, correct, parse_ok, n_boot, seed,
                            confidence, patients)

    by: dict[str, dict[str, Any]] = {}
    for key in group_keys:
        groups: dict[str, list[int]] = {}
        parts = (key,) if isinstance(key, str) else key
        for i, values in enumerate(zip(*([r.get(k) for r in records] for k in parts), strict=True)):
            if None not in values:
                groups.setdefault("/".join(map(str, values)), []).append(i)
        name = key if isinstance(key, str) else "/".join(key)
        by[name] = {v: stats(rows) for v, rows in sorted(groups.items())}
    out = {"overall": stats(range(len(records))), "by": by}
    holm(all_groups(out), alpha=1.0 - confidence)
    return out
