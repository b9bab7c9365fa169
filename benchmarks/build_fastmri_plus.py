"""Benchmark: full fastMRI+ knee + brain build vs. the I/O floor, in one run.

Baseline (the floor any builder pays): read both CSVs with the csv module and write an
items file of the same size as the one the build produced. Prints the ratio
build / baseline (target <= 3x), and for context the ratio to a second floor that also
serialises the same items to JSON (orjson) instead of copying bytes.

    python benchmarks/build_fastmri_plus.py [--data ../shared/data/fastmri_plus] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import orjson

from voxqa.build import build_fastmri_plus

TARGET = 3.0


def baseline(pairs: list[tuple[Path, Path]], items_file: Path, out: Path) -> float:
    t0 = time.perf_counter()
    n = 0
    for ann, lst in pairs:
        with ann.open(newline="") as fh:
            n += sum(1 for _ in csv.DictReader(fh))
        n += len(lst.read_text().splitlines())
    with items_file.open("rb") as src, (out / "items_copy.jsonl").open("wb") as dst:
        for line in src:
            dst.write(line)
    return time.perf_counter() - t0


def serialising_baseline(pairs: list[tuple[Path, Path]], items_file: Path, out: Path) -> float:
    """Like ``baseline`` but the items are JSON-encoded from Python objects, as a builder must."""
    rows = [orjson.loads(line) for line in items_file.open("rb")]
    t0 = time.perf_counter()
    for ann, _ in pairs:
        with ann.open(newline="") as fh:
            sum(1 for _ in csv.DictReader(fh))
    with (out / "items_json.jsonl").open("wb") as dst:
        dst.write(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fastmri_plus"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    pairs = [(args.data / f"{a}.csv", args.data / f"{a}_file_list.csv") for a in ("knee", "brain")]
    for p in (p for pair in pairs for p in pair):
        if not p.is_file():
            raise SystemExit(f"missing {p}: pass --data DIR with the fastMRI+ CSVs")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        builds, bases, ser = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            manifest = build_fastmri_plus(pairs, out / "ds", seed=0)
            builds.append(time.perf_counter() - t0)
            bases.append(baseline(pairs, out / "ds" / "items.jsonl", out))
            ser.append(serialising_baseline(pairs, out / "ds" / "items.jsonl", out))
        size = (out / "ds" / "items.jsonl").stat().st_size
    build_s, base_s = min(builds), min(bases)
    ratio = build_s / base_s
    print(f"items: {manifest['counts']['items']}  items.jsonl: {size / 1e6:.1f} MB")
    print(f"build (best of {args.repeat}): {build_s:.3f} s")
    print(f"baseline read CSVs + write same-size items file: {base_s:.3f} s")
    print(f"ratio build / baseline: {ratio:.2f}x (target <= {TARGET}x) "
          f"{'OK' if ratio <= TARGET else 'ABOVE TARGET'}")
    print(f"context: read CSVs + JSON-encode and write the same items: {min(ser):.3f} s, "
          f"ratio {build_s / min(ser):.2f}x")


if __name__ == "__main__":
    main()
