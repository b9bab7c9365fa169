"""Synthetic MR-like phantom in fastMRI / fastMRI+ layout: the built-in demo and test data.

Each volume is a noisy elliptical "joint" with spherical lesions of known labels spanning
adjacent slices. Files mirror the real ones exactly:

* ``volumes/<name>.h5`` with ``reconstruction_rss`` of shape (slices, height, width), stored
  the way fastMRI stores it, i.e. up/down flipped relative to the annotated image;
* ``annotations.csv`` with ``file,slice,study_level,x,y,width,height,label`` where the box is
  the tight box of the lesion's pixels on the *flipped* image (fastMRI+ convention);
* ``file_list.csv`` listing every volume, including normal ones without rows.

A few real-world quirks are planted on purpose so the build report has something to show:
a label with a trailing space, an exact duplicate row, and a box starting at y = -1.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

# Lesion labels (knee vocabulary of fastMRI+) and their intensity relative to tissue.
LESIONS = {
    "Meniscus Tear": 0.25,
    "Joint Effusion ": 2.0,  # trailing space as in the real CSV
    "Bone- Subchondral edema": 1.7,
    "Periarticular cysts": 2.2,
    "Cartilage - Partial Thickness loss/defect": 0.4,
    "Bone - Lesion": 0.1,
    "Soft Tissue Lesion": 1.8,
    "Joint Bodies": 0.15,
}
TISSUE = 100.0


@dataclass(frozen=True)
class Lesion:
    label: str
    center: tuple[float, float, float]  # slice, row, col on the annotated (flipped) image
    radius: float  # in-plane radius in pixels
    half_span: int  # slices on each side of the centre slice


def _place_lesions(r: np.random.Generator, shape: tuple[int, int, int], n: int) -> list[Lesion]:
    """Lesions well apart in-plane, so boxes of different lesions never overlap."""
    slices, h, w = shape
    placed: list[Lesion] = []
    labels = list(LESIONS)
    for _ in range(200):
        if len(placed) == n:
            break
        radius = float(r.uniform(4, 9))
        half = int(r.integers(1, 3))
        z = float(r.integers(half + 1, slices - half - 1))
        y = float(r.uniform(0.3 * h, 0.7 * h))
        x = float(r.uniform(0.3 * w, 0.7 * w))
        if all(np.hypot(y - o.center[1], x - o.center[2]) > radius + o.radius + 6 for o in placed):
            label = labels[int(r.integers(len(labels)))]
            placed.append(Lesion(label, (z, y, x), radius, half))
    return placed


def _lesion_mask(les: Lesion, k: int, h: int, w: int) -> np.ndarray:
    dz = abs(k - round(les.center[0]))
    if dz > les.half_span:
        return np.zeros((h, w), bool)
    rad = les.radius * np.sqrt(1 - (dz / (les.half_span + 1)) ** 2)
    yy, xx = np.ogrid[:h, :w]
    return (yy - les.center[1]) ** 2 + (xx - les.center[2]) ** 2 <= rad**2


def make_volume(
    r: np.random.Generator, shape: tuple[int, int, int], lesions: list[Lesion]
) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int], str]]]:
    """Image on the annotated orientation and its boxes (slice, xywh, label)."""
    slices, h, w = shape
    yy, xx = np.ogrid[:h, :w]
    body = ((yy - h / 2) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.38 * w)) ** 2 <= 1
    img = np.where(body, TISSUE, 5.0)[None].repeat(slices, 0).astype(np.float32)
    boxes = []
    for k in range(slices):
        for les in lesions:
            m = _lesion_mask(les, k, h, w)
            if not m.any():
                continue
            img[k][m] = TISSUE * LESIONS[les.label]
            rows, cols = np.nonzero(m)
            x0, y0 = int(cols.min()), int(rows.min())
            boxes.append((k, (x0, y0, int(cols.max()) + 1 - x0, int(rows.max()) + 1 - y0), les.label))
    img += r.normal(0, 4.0, img.shape).astype(np.float32)
    return np.abs(img), boxes


def write_phantom(out: Path, n: int = 12, seed: int = 0, shape=(12, 128, 128)) -> dict:
    """Write ``n`` volumes (about a quarter normal) with CSV and file list; returns paths."""
    r = np.random.default_rng(seed)
    vol_dir = out / "volumes"
    vol_dir.mkdir(parents=True, exist_ok=True)
    names = [f"file{9000000 + i}" for i in range(n)]
    rows: list[list[object]] = []
    for i, name in enumerate(names):
        normal = i % 4 == 3
        lesions = [] if normal else _place_lesions(r, shape, int(r.integers(1, 5)))
        img, boxes = make_volume(r, shape, lesions)
        with h5py.File(vol_dir / f"{name}.h5", "w") as f:
            # fastMRI stores the image up/down flipped relative to what fastMRI+ annotated.
            f.create_dataset("reconstruction_rss", data=img[:, ::-1, :], compression="gzip")
        for k, (x, y, bw, bh), label in boxes:
            rows.append([name, k, "No", x, y, bw, bh, label])
    if rows:  # planted quirks: a duplicate row and a box reaching above the frame (y = -1)
        rows.append(list(rows[0]))
        name, k, _, x, y, bw, bh, label = rows[1]
        rows[1] = [name, k, "No", x, -1, bw, int(bh) + int(y) + 1, label]
    if n > 1:
        rows.append([names[1], 0, "Yes", "", "", "", "", "artifact"])
    ann = out / "annotations.csv"
    with ann.open("w", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["file", "slice", "study_level", "x", "y", "width", "height", "label"])
        wr.writerows(rows)
    file_list = out / "file_list.csv"
    file_list.write_text("".join(f"{name}\n" for name in names))
    return {"annotations": ann, "file_list": file_list, "volumes": vol_dir, "names": names}
