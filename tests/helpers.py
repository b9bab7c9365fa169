"""Helpers shared by the tests (fixtures stay in conftest.py): real-data skips and small
phantom datasets built and rendered through the library."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def data_unavailable(reason: str) -> None:
    """Skip a real-data test locally; in CI (CI set) real-data tests must run, so fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (real-data tests may not skip in CI)")
    pytest.skip(reason)


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
