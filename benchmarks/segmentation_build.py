"""Benchmark: the whole ``build segmentation`` of one study vs. loading its two volumes once.

A build needs the label map's voxels but only the image's grid (shape, affine): the image's
intensities are read later, by render. So the build should cost little more than reading
both files. Writes a synthetic 512x512x400 int16 CT with a 117-label uint8 map (the shape
and label count of a TotalSegmentator "total" study; fixed seed; stored LPS like a
DICOM-converted NIfTI, so canonicalisation has axes to flip), then times
(a) reading both volumes once (``open_volume(..., canonical=False)``: the floor),
(b) ``build_segmentation`` of that study into a fresh folder (read, canonicalise, measure,
relate, mirrored twin, items, splits, audit, writing). Target: (b)/(a) <= 1.5.
Both run in this process, so their CPU seconds are printed too: on a shared machine the CPU
ratio is the steadier one. The shared TotalSegmentator CT (/work/shared/data, if present)
is timed the same way.

    python benchmarks/segmentation_build.py [--repeat 3] [--shape 512,512,400] [--orientation LPS]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from segmentation_geometry import SPACING, synthetic_labels

from voxqa.build import build_segmentation
from voxqa.io import open_volume
from voxqa.sources.segmentation import SegSpec

TARGET_RATIO = 1.5
SHARED_CT = Path("/work/shared/data/totalsegmentator")


def _best_time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Fewest (wall, CPU) seconds of ``repeat`` calls, each minimised on its own."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


def synthetic_ct(labels: np.ndarray, seed: int) -> np.ndarray:
    """int16 HU: one tissue value per label plus CT-like noise (so gzip works as on real scans)."""
    rng = np.random.default_rng(seed)
    hu = rng.integers(-100, 300, 256).astype(np.int16)
    hu[0] = -1000
    return hu[labels] + rng.integers(-20, 21, labels.shape, dtype=np.int16)


def write_study(folder: Path, shape: tuple[int, int, int], orientation: str, seed: int) -> SegSpec:
    """Save the synthetic CT and label map; axes flipped so the file's voxel order is ``orientation``."""
    labels = synthetic_labels(seed, shape)
    image = synthetic_ct(labels, seed)
    affine = np.diag([*SPACING, 1.0])
    for axis, code in enumerate(orientation):
        if code in "LPI":  # store this axis reversed, with the affine that keeps every voxel in place
            labels, image = np.flip(labels, axis), np.flip(image, axis)
            affine[axis, axis] = -SPACING[axis]
            affine[axis, 3] = (shape[axis] - 1) * SPACING[axis]
    paths = folder / "ct.nii.gz", folder / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.asfortranarray(image), affine), paths[0])
    nib.save(nib.Nifti1Image(np.asfortranarray(labels), affine), paths[1])
    return SegSpec(study_id="bench", image=paths[0], labels=paths[1])


def time_study(spec: SegSpec, out: Path, repeat: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((wall, CPU) seconds to read both volumes once, (wall, CPU) of the whole build)."""
    t_load = _best_time(lambda: (open_volume(spec.image, canonical=False),
                                 open_volume(spec.labels, canonical=False)), repeat)
    t_build = _best_time(lambda: build_segmentation([spec], out / f"ds{time.perf_counter_ns()}"), repeat)
    return t_load, t_build


def report(title: str, load: tuple[float, float], build: tuple[float, float]) -> None:
    ratios = [b / a for a, b in zip(load, build, strict=False)]
    verdicts = ["met" if r <= TARGET_RATIO else "MISSED" for r in ratios]
    print(f"{title}\n  (a) load both volumes once {load[0]:7.2f} s wall {load[1]:7.2f} s CPU\n"
          f"  (b) build segmentation     {build[0]:7.2f} s wall {build[1]:7.2f} s CPU\n"
          f"  (b)/(a) = {ratios[0]:.2f}x wall, {ratios[1]:.2f}x CPU (target <= {TARGET_RATIO}x: "
          f"{verdicts[0]} / {verdicts[1]})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", default="512,512,400", help="synthetic study shape i,j,k")
    ap.add_argument("--orientation", default="LPS", help="voxel order of the synthetic files (e.g. RAS, LPS)")
    args = ap.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        spec = write_study(Path(tmp), shape, args.orientation.upper(), args.seed)
        print(f"synthetic {shape} int16 CT + uint8 117-label map, stored {args.orientation.upper()} "
              f"({time.perf_counter() - t0:.1f} s to write)")
        report(f"synthetic study {shape}", *time_study(spec, Path(tmp), args.repeat))
        if (SHARED_CT / "example_ct_sm.nii.gz").exists():
            shared = SegSpec(study_id="example_ct_sm", image=SHARED_CT / "example_ct_sm.nii.gz",
                             labels=SHARED_CT / "example_seg.nii.gz")
            report("shared TotalSegmentator CT 122x101x30", *time_study(shared, Path(tmp), args.repeat))


if __name__ == "__main__":
    main()
