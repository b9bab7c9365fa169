"""Benchmark: `voxqa build segmentation` of one study as the label count grows.

A label map with thousands of labels (instance maps of lesions, nodules, cells) must build in
time and memory that grow with the labels, not with their pairs. Writes one synthetic
192x192x128 CT and label map per count (``--labels``, fixed seed: that many small boxes and
ellipsoids placed at random, every tenth named a lesion so containers and components are
measured too), builds each in a fresh process and prints structures, items, wall and CPU
seconds, peak RSS and the CPU growth per doubling of the label count (2x: linear; 4x:
quadratic). On a shared machine the CPU seconds are the steadier ones.

    python benchmarks/label_heavy.py [--labels 250,500,1000,2000,4000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (192, 192, 128)
SPACING = (1.0, 1.0, 1.5)
LESION_EVERY = 10


def synthetic_study(folder: Path, n_labels: int, seed: int) -> tuple[Path, Path, Path]:
    """(image, labels, label names): ``n_labels`` boxes and ellipsoids of 2-7 voxels' radius."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint16)
    for label in range(1, n_labels + 1):
        centre = rng.integers(0, SHAPE, 3)
        radii = rng.integers(2, 8, 3)
        lo, hi = np.maximum(centre - radii, 0), np.minimum(centre + radii + 1, SHAPE)
        block = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        if label % 2:
            block[...] = label
        else:
            d = np.ogrid[tuple(slice(a - c, b - c) for a, b, c in zip(lo, hi, centre, strict=True))]
            block[sum((x / r) ** 2 for x, r in zip(d, radii, strict=True)) <= 1] = label
    names = {str(i): f"lesion_{i}" if i % LESION_EVERY == 0 else f"structure_{i}" for i in range(1, n_labels + 1)}
    affine = np.diag([*SPACING, 1.0])
    paths = folder / "ct.nii.gz", folder / "labels.nii.gz", folder / "names.json"
    nib.save(nib.Nifti1Image((labels % 200).astype(np.int16) - 100, affine), paths[0])
    nib.save(nib.Nifti1Image(labels, affine), paths[1])
    paths[2].write_text(json.dumps(names))
    return paths


def one(n_labels: int, seed: int) -> dict[str, float]:
    """Build the study with ``n_labels`` labels in this process: its numbers."""
    from voxqa.build import build_segmentation
    from voxqa.sources.segmentation import SegSpec

    with tempfile.TemporaryDirectory() as tmp:
        image, labels, names = synthetic_study(Path(tmp), n_labels, seed)
        present = len(np.unique(nib.load(labels).get_fdata(dtype=np.float32))) - 1
        t0, c0 = time.perf_counter(), time.process_time()
        build_segmentation([SegSpec(study_id="heavy", image=image, labels=labels, label_names=names)],
                           Path(tmp) / "ds")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        items = sum(1 for _ in (Path(tmp) / "ds" / "items.jsonl").open())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"labels": n_labels, "structures": present, "items": items, "seconds": seconds, "cpu": cpu,
            "max_rss_mib": rss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default="250,500,1000,2000,4000", help="label counts, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process: one count
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.seed)))
        return
    print(f"synthetic {SHAPE} CT + uint16 label map, every {LESION_EVERY}th label a lesion; one process per count")
    print(f"{'labels':>7} {'present':>8} {'items':>7} {'wall s':>8} {'CPU s':>8} {'max RSS MiB':>12} "
          f"{'CPU x per doubling':>19}")
    previous: dict | None = None
    for n in (int(v) for v in args.labels.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--seed", str(args.seed)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.splitlines()[-1])
        growth = ""
        if previous is not None:
            doublings = np.log2(r["labels"] / previous["labels"])
            growth = f"{(r['cpu'] / previous['cpu']) ** (1 / doublings):.2f}"
        print(f"{r['labels']:>7} {r['structures']:>8} {r['items']:>7} {r['seconds']:>8.2f} {r['cpu']:>8.2f} "
              f"{r['max_rss_mib']:>12.0f} {growth:>19}", flush=True)
        previous = r


if __name__ == "__main__":
    main()
