"""Shared fixtures: a built phantom dataset, and the shared real-data root (or a skip)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import data_unavailable

PHANTOM_N = 24
PHANTOM_SEED = 11
BUILD_SEED = 5
FRACTIONS = (0.6, 0.2, 0.2)


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """write_phantom(n=24) built with build_fastmri_plus(volumes=..., fractions=(0.6, 0.2, 0.2)).

    Attributes: ``src`` (the dict write_phantom returns), ``out`` (dataset folder),
    ``manifest``, ``n``, ``phantom_seed``, ``seed`` (build seed), ``fractions``.
    """
    from voxqa.build import build_fastmri_plus
    from voxqa.phantom import write_phantom

    root = tmp_path_factory.mktemp("phantom")
    src = write_phantom(root / "src", n=PHANTOM_N, seed=PHANTOM_SEED)
    out = root / "dataset"
    manifest = build_fastmri_plus(
        [(src["annotations"], src["file_list"])],
        out,
        volumes=src["volumes"],
        seed=BUILD_SEED,
        fractions=FRACTIONS,
    )
    return SimpleNamespace(
        src=src, out=out, manifest=manifest, n=PHANTOM_N, phantom_seed=PHANTOM_SEED,
        seed=BUILD_SEED, fractions=FRACTIONS,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data root from VOXQA_TEST_DATA; skips (fails in CI) when absent."""
    root = os.environ.get("VOXQA_TEST_DATA")
    if not root:
        data_unavailable("VOXQA_TEST_DATA is not set (export VOXQA_TEST_DATA=../shared/data)")
    path = Path(root)
    if not path.is_dir():
        data_unavailable(f"VOXQA_TEST_DATA={root} is not a directory")
    return path


@pytest.fixture(scope="session")
def shared_reference(shared_data: Path) -> Path:
    """The shared reference folder: VOXQA_TEST_REFERENCE, else ``reference/`` beside
    VOXQA_TEST_DATA (so the README's one variable runs every real-data test)."""
    path = Path(os.environ.get("VOXQA_TEST_REFERENCE") or shared_data.parent / "reference")
    if not (path / "samples").is_dir():
        data_unavailable(f"{path} has no samples/ (set VOXQA_TEST_REFERENCE=../shared/reference)")
    return path


@pytest.fixture(scope="module")
def reports_dir(shared_reference: Path) -> Path:
    """The shared English and German reports with the verdict each sentence should get."""
    root = shared_reference / "reports"
    if not all((root / name).is_file() for name in ("studies.csv", "reports.jsonl", "expected_verdicts.jsonl")):
        data_unavailable(f"{root} lacks studies.csv, reports.jsonl or expected_verdicts.jsonl (set VOXQA_TEST_REFERENCE)")
    return root
