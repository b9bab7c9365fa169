"""Benchmark: `voxqa build knee-grading` on synthetic box-only knee studies.

3DReasonKnee has 7,970 knees with ~62 questions each; a build must not hold volumes, and a
box-only study (regions from boxes.csv) holds only its region boxes and its grades. This
writes ``--studies`` such studies (two knees per patient, right and left; every region a 3D box
in the sagittal convention, medial on the side ``knee_side`` says; ``--grades`` random
(region, feature) grades per study, half of them 0; tear-location codes uniform), builds them in-process and prints
studies, items, seconds, items/s and the peak RSS of the process (``ru_maxrss``).

    python benchmarks/knee_scale.py [--studies 2000] [--grades 62] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import tempfile
import time
from pathlib import Path

from voxqa.build import build_knee_grading
from voxqa.anatomy.knee import FEATURES, REGIONS

N_FRAMES = 160  # OAI DESS: 160 sagittal frames of 384 x 384


def region_box(region: str, side: str, r: random.Random) -> list[int]:
    """[start_frame, end_frame, x_min, x_max, y_min, y_max]: medial compartments on high frames
    in a right knee (frames run patient right -> left), on low frames in a left knee."""
    medial_high = side == "RIGHT"
    if "medial" in region:
        lo = 95 if medial_high else 15
    elif "lateral" in region:
        lo = 15 if medial_high else 95
    else:
        lo = 70
    f0 = lo + r.randrange(0, 10)
    x0, y0 = r.randrange(40, 250), r.randrange(40, 250)
    return [f0, f0 + r.randrange(8, 40), x0, x0 + r.randrange(20, 120), y0, y0 + r.randrange(20, 120)]


def write_inputs(folder: Path, n: int, grades_per_study: int, seed: int) -> dict[str, Path]:
    r = random.Random(seed)
    pairs = sorted((region, f.name) for f in FEATURES.values() for region in f.regions)
    paths = {k: folder / f"{k}.csv" for k in ("studies", "boxes", "grades")}
    with paths["studies"].open("w", newline="") as s, paths["boxes"].open("w", newline="") as b, \
            paths["grades"].open("w", newline="") as g:
        studies, boxes, grades = (csv.writer(fh, lineterminator="\n") for fh in (s, b, g))
        studies.writerow(["study_id", "image", "labels", "patient_id", "knee_side"])
        boxes.writerow(["study_id", "region", "start_frame", "end_frame", "x_min", "x_max", "y_min", "y_max"])
        grades.writerow(["study_id", "region", "feature", "grade"])
        for i in range(n):
            sid, side = f"k{i:05d}", "RIGHT" if i % 2 == 0 else "LEFT"
            studies.writerow([sid, "", "", f"p{i // 2:05d}", side])
            for region in REGIONS:
                boxes.writerow([sid, region, *region_box(region, side, r)])
            for region, feature in r.sample(pairs, grades_per_study):
                f = FEATURES[feature]
                if f.nominal:  # a code (the tear location), not a grade: no "0 = none" to skew towards
                    grades.writerow([sid, region, feature, r.choice(f.scale)])
                else:
                    grades.writerow([sid, region, feature, 0 if r.random() < 0.5 else r.choice(f.scale[1:])])
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=2000)
    ap.add_argument("--grades", type=int, default=62, help="graded (region, feature) pairs per study")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_inputs(Path(tmp), args.studies, args.grades, args.seed)
        t0 = time.perf_counter()
        manifest = build_knee_grading(paths["studies"], paths["grades"], Path(tmp) / "ds",
                                      boxes_csv=paths["boxes"], seed=args.seed)
        seconds = time.perf_counter() - t0
    items = manifest["counts"]["items"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"studies {manifest['counts']['studies']}, items {items}, {seconds:.1f} s, "
          f"{items / seconds:.0f} items/s, peak RSS {peak_mib:.0f} MiB, audit {manifest['audit']['status']}")


if __name__ == "__main__":
    main()
