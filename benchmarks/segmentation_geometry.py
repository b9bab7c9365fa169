"""Benchmark: structure geometry of a TotalSegmentator-sized label map vs. loading it, in one run.

Builds a synthetic 512x512x400 uint8 label map with 117 labels (large organ-like, thin
rib-like and small ellipsoids; fixed seed), saves it as .nii.gz, then times
(a) ``open_volume`` (the floor any consumer pays), (b) ``measure``, (b+) everything a build
does after loading: measure, contacts, interior points and all spatial items, and
(c) ``naive_measure`` (one full-volume mask per label).
Targets: (b+)/(a) <= 1.5 and (c)/(b) >= 10.

    python benchmarks/segmentation_geometry.py [--repeat 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np

from voxqa.build import relate
from voxqa.io import open_header, open_volume
from voxqa.anatomy.labelnames import midline, pair_of
from voxqa.schema import Study
from voxqa.sources.segmentation import SegmentationInput
from voxqa.anatomy.structures import measure, naive_measure
from voxqa.tasks import Context, StudyView
from voxqa.tasks.spatial import Spatial

SHAPE = (512, 512, 400)
SPACING = (0.8, 0.8, 1.5)
N_ORGANS, N_RIBS, N_SMALL = 12, 24, 81  # 117 labels, like TotalSegmentator's "total" task
TARGET_LOAD_RATIO = 1.5
TARGET_NAIVE_RATIO = 10.0


def _ellipsoid(labels: np.ndarray, label: int, centre: np.ndarray, radii: np.ndarray, angle: float) -> None:
    """Paint an ellipsoid rotated by ``angle`` about the k axis, touching only its bounding box."""
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    half = np.sqrt(((rot * radii) ** 2).sum(axis=1))
    lo = np.maximum(np.floor(centre - half), 0).astype(int)
    hi = np.minimum(np.ceil(centre + half) + 1, labels.shape).astype(int)
    if np.any(hi <= lo):
        return
    d = [np.arange(lo[a], hi[a]).reshape([-1 if b == a else 1 for b in range(3)]) - centre[a] for a in range(3)]
    inside = sum(((rot[0, a] * d[0] + rot[1, a] * d[1] + rot[2, a] * d[2]) / radii[a]) ** 2 for a in range(3)) <= 1
    labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside] = label


def synthetic_labels(seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """Organs first, then ribs around the body, then small structures (painted last, so all survive)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    size = np.array(shape, dtype=float)
    label = 0
    for _ in range(N_ORGANS):
        label += 1
        _ellipsoid(labels, label, rng.uniform(0.25, 0.75, 3) * size, rng.uniform([30, 30, 25], [85, 85, 80]),
                   rng.uniform(0, np.pi))
    for r in range(N_RIBS):
        label += 1
        side = 1 if r % 2 else -1
        angle = side * rng.uniform(0.3, 1.2)
        centre = size * [0.5 + side * 0.3, rng.uniform(0.3, 0.7), 0.1 + 0.8 * (r // 2) / (N_RIBS // 2)]
        _ellipsoid(labels, label, centre, rng.uniform([60, 4, 4], [100, 6, 6]), angle)
    for _ in range(N_SMALL):
        label += 1
        centre = rng.uniform(0.05, 0.95, 3) * size
        _ellipsoid(labels, label, centre, rng.uniform(1.5, 25, 3), rng.uniform(0, np.pi))
    return labels


def _best_time(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def structures_and_items(vol) -> int:
    """Measure, relate and generate every spatial item for one label volume; item count."""
    seg = SegmentationInput(
        image=open_header(vol.path), labels=vol.data, masks=None, affine=vol.affine, names={}, raw_names={},
        spacing=vol.spacing, modality_hint=None, labels_path=vol.path,
    )
    _, geometry = relate(seg)
    study = Study(id="bench", patient_id="bench", source="segmentation", modality="CT",
                  anatomy="abdomen", view_axis=2, frame_count=vol.shape[2],
                  frame_size=(vol.shape[0], vol.shape[1]), frame_size_source="volume",
                  split="test")
    ctx = Context(seed=0, is_pathology=lambda name: True)
    view = StudyView(study, ctx.is_pathology, geometry)
    return len(Spatial(midline=midline, pair_of=pair_of).generate([view], ctx))


def run(labels_path: Path, repeat: int = 3, naive: bool = True) -> dict[str, float]:
    """Seconds for (a) load, (b) measure, (b+) measure + relations + items, (c) naive."""
    t_load, vol = _best_time(lambda: open_volume(labels_path), repeat)
    t_measure, structures = _best_time(lambda: measure(vol.data, vol.affine, {}), repeat)
    t_full, n_items = _best_time(lambda: structures_and_items(vol), repeat)
    timings = {"load": t_load, "measure": t_measure, "structures": float(len(structures)),
               "full": t_full, "items": float(n_items)}
    if naive:
        t0 = time.perf_counter()
        reference = naive_measure(vol.data, vol.affine, {})
        timings["naive"] = time.perf_counter() - t0
        if [s.voxels for s in reference] != [s.voxels for s in structures]:
            raise SystemExit("measure and naive_measure disagree")
    tracemalloc.start()
    measure(vol.data, vol.affine, {})
    timings["measure_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    labels = synthetic_labels(args.seed)
    print(f"synthetic {SHAPE} uint8, {len(np.unique(labels)) - 1} labels, "
          f"{np.count_nonzero(labels) / labels.size:.1%} foreground ({time.perf_counter() - t0:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.nii.gz"
        nib.save(nib.Nifti1Image(labels, np.diag([*SPACING, 1.0])), path)
        del labels
        t = run(path, repeat=args.repeat)
    print(f"(a) open_volume   {t['load']:7.2f} s")
    print(f"(b) measure       {t['measure']:7.2f} s   {int(t['structures'])} structures")
    print(f"(b+) + relations + all spatial items {t['full']:7.2f} s   {int(t['items'])} items")
    print(f"(c) naive_measure {t['naive']:7.2f} s")
    print(f"(b)/(a) = {t['measure'] / t['load']:.2f}x")
    print(f"(b+)/(a) = {t['full'] / t['load']:.2f}x (target <= {TARGET_LOAD_RATIO}x)")
    print(f"(c)/(b) = {t['naive'] / t['measure']:.1f}x (target >= {TARGET_NAIVE_RATIO}x)")
    print(f"peak memory: measure allocates {t['measure_peak_mb']:.0f} MiB beyond its input (tracemalloc); "
          f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
