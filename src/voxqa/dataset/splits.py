"""Deterministic splits by patient/volume, never by item.

A study's split depends only on (seed, patient_id): sha256 maps it to a number in [0, 1)
that is compared with the cumulative split fractions. Adding or removing other studies
never moves a study between splits, and all items of a study share its split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from voxqa.errors import InputError
from voxqa.schema import Split, Study

SPLITS: tuple[Split, ...] = ("train", "val", "test")


def parse_fractions(text: str) -> tuple[float, float, float]:
    """"0.8,0.1,0.1" -> (0.8, 0.1, 0.1); they must be >= 0 and sum to 1."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise InputError(f"split fractions must be numbers, got {text!r}") from None
    if (len(parts) != 3 or not all(math.isfinite(p) and p >= 0 for p in parts)
            or abs(sum(parts) - 1) > 1e-6):
        raise InputError(f"split fractions must be three finite, non-negative numbers summing to 1: {text!r}")
    return parts  # type: ignore[return-value]


def unit_interval(*key: object) -> float:
    """A stable pseudo-random number in [0, 1) for the given key."""
    digest = hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(patient_id: str, seed: int, fractions: Sequence[float]) -> Split:
    u = unit_interval("split", seed, patient_id)
    edge = 0.0
    for name, fraction in zip(SPLITS, fractions, strict=False):
        edge += fraction
        if u < edge:
            return name
    return SPLITS[max(i for i, f in enumerate(fractions) if f > 0)]


def assign_splits(studies: Sequence[Study], seed: int, fractions: Sequence[float]) -> None:
    for study in studies:
        study.split = split_of(study.patient_id, seed, fractions)
