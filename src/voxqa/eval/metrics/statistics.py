"""Statistics: set precision/recall/F1, Wilson intervals and the below-chance test (exact
binomial / Poisson-binomial tail, Holm-corrected across a results file's groups)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.stats import binom, binomtest, norm


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
