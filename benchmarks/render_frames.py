"""Benchmark: `voxqa render` throughput vs. the PNG encoder alone on the same frames, in one run.

A phantom dataset of fastMRI-sized volumes (320 x 320 frames) is built, then rendered with one
and with two worker processes (all frames; fresh output each time). The baseline encodes the
same frames, already converted to 8-bit and held in memory, with Pillow's PNG encoder in one
process: the cost no renderer can avoid. Targets: >= 0.8x with one worker, ~2x with two.

    python benchmarks/render_frames.py [--volumes 24] [--slices 16]
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from voxqa.build import build_fastmri_plus
from voxqa.dataset.folder import read_studies
from voxqa.io import open_volume
from voxqa.phantom import write_phantom
from voxqa.render import RenderSettings, intensity_range, render_dataset, to_uint8


def encoder_only(folder: Path) -> tuple[float, int]:
    """Seconds to PNG-encode every frame of every volume (8-bit, in memory)."""
    frames = []
    for s in read_studies(folder):
        vol = open_volume(s.volume.path)
        lo, hi, _ = intensity_range(vol.data, s.modality, None)
        frames += [to_uint8(vol.data[k], lo, hi) for k in range(vol.shape[0])]
    t0 = time.perf_counter()
    for f in frames:
        Image.fromarray(f, mode="L").save(io.BytesIO(), format="PNG")
    return time.perf_counter() - t0, len(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=24)
    ap.add_argument("--slices", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        p = write_phantom(root / "src", n=args.volumes, seed=0, shape=(args.slices, 320, 320))
        base = root / "base"
        build_fastmri_plus([(p["annotations"], p["file_list"])], base, volumes=p["volumes"])
        t_enc, n = encoder_only(base)
        print(f"{n} frames of 320 x 320; PNG encoder alone: {t_enc:.2f} s ({n / t_enc:.0f} frames/s)")
        for workers in (1, 2):
            run = root / f"run{workers}"
            shutil.copytree(base, run)
            t0 = time.perf_counter()
            summary = render_dataset(run, RenderSettings(context=None), workers=workers)
            t = time.perf_counter() - t0
            assert summary["counts"]["frames_written"] == n
            print(f"render, {workers} worker(s): {t:.2f} s ({n / t:.0f} frames/s), "
                  f"ratio to encoder alone {t_enc / t:.2f}x "
                  f"(target {'>= 0.8' if workers == 1 else '~2'}x)")


if __name__ == "__main__":
    main()
