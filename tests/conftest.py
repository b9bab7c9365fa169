"""Shared fixtures: a built phantom dataset, and the shared real-data root (or a skip)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

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


def data_unavailable(reason: str) -> None:
    """Skip a real-data test locally; in CI (CI set) real-data tests must run, so fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (real-data tests may not skip in CI)")
    pytest.skip(reason)


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


def rendered_phantom(root: Path, *, n: int, seed: int, size: int, context: int,
                     fractions=(0.5, 0.25, 0.25), workers: int = 1) -> Path:
    """A fastMRI+-style phantom, built and rendered: the dataset folder."""
    from voxqa.build import build_fastmri_plus
    from voxqa.phantom import write_phantom
    from voxqa.render import RenderSettings, render_dataset

    p = write_phantom(root / "src", n=n, seed=seed)
    out = root / "ds"
    build_fastmri_plus([(p["annotations"], p["file_list"])], out, volumes=p["volumes"], fractions=fractions)
    render_dataset(out, RenderSettings(size=size, context=context), workers=workers)
    return out


def rendered_segmentation(root: Path, *, size: int, context: int) -> Path:
    """The segmentation phantom (one CT study), built and rendered: the dataset folder."""
    from voxqa.build import build_segmentation
    from voxqa.phantom import write_segmentation_phantom
    from voxqa.render import RenderSettings, render_dataset
    from voxqa.sources.segmentation import SegSpec

    s = write_segmentation_phantom(root / "seg_src")
    out = root / "seg"
    build_segmentation([SegSpec(study_id="s", image=s["image"], labels=s["labels"],
                                label_names=s["label_names"], modality="CT")], out, fractions=(1.0, 0.0, 0.0))
    render_dataset(out, RenderSettings(size=size, context=context), workers=1)
    return out
