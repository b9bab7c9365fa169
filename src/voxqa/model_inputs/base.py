"""What every model-input recipe shares: the stored frame stack, the transform record, box maps.

A recipe starts from the *stored frame stack* of a study: ``stack[frame, y, x]``, the frames
exactly as voxqa stores boxes on them (``voxqa.anatomy.frames``: axial, radiological, inferior
-> superior; for fastMRI the flipped reconstruction fastMRI+ annotated). Every model array axis
is either a channel axis or one stored axis ("frame", "y", "x"), reached by one affine map in
continuous voxel-*edge* coordinates (voxel v spans [v, v + 1)):

    model = scale * stored + offset        (scale < 0: the axis is flipped)

which covers resampling (scale = new size / old size), crop/pad (offset) and axis order. The
maps are exact for what the recipes compute: resampling aligns the outer voxel edges
(as ``scipy.ndimage.zoom(grid_mode=True)``) and slice sampling shows, for each model slice, the
stored frame under its centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from voxqa.errors import VoxqaError
from voxqa.schema import Box3D, Study

StoredAxis = Literal["frame", "y", "x"]
STORED_AXES: tuple[StoredAxis, ...] = ("frame", "y", "x")  # the axes of the stored frame stack
AIR_HU = -1024.0  # what a CT pads with when a recipe has no clip minimum


class RecipeRefused(VoxqaError, ValueError):
    """A study a recipe cannot render (e.g. HU or spacing asked of a volume without them)."""


@dataclass(frozen=True)
class AxisMap:
    """One spatial model axis: the stored axis it shows and the edge map onto the model grid."""

    source: StoredAxis
    size: int  # grid length along this model axis
    scale: float
    offset: float

    def to_model(self, edge: float) -> float:
        return self.scale * edge + self.offset

    def to_stored(self, edge: float) -> float:
        return (edge - self.offset) / self.scale


@dataclass(frozen=True)
class Transform:
    """Stored frame stack -> model array: ``axes[i]`` maps array axis i (None: a channel axis)."""

    stored: tuple[int, int, int]  # (frames, height, width) of the stored frame stack
    shape: tuple[int, ...]  # the model array's shape
    axes: tuple[AxisMap | None, ...]

    @property
    def spatial(self) -> list[AxisMap]:
        """The spatial axes in model array order."""
        return [a for a in self.axes if a is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "stored_shape": {"frame": self.stored[0], "y": self.stored[1], "x": self.stored[2]},
            "shape": list(self.shape),
            "axes": [None if a is None else {"from": a.source, "size": a.size, "scale": a.scale,
                                             "offset": a.offset} for a in self.axes],
            "map": "model = scale * stored + offset, voxel-edge coordinates; axes null are channels",
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transform:
        stored = data["stored_shape"]
        axes = tuple(None if a is None else AxisMap(a["from"], a["size"], a["scale"], a["offset"])
                     for a in data["axes"])
        return cls((stored["frame"], stored["y"], stored["x"]), tuple(data["shape"]), axes)


class Recipe(Protocol):
    """A model's input recipe: the array it takes, computed from a study's stored frame stack."""

    name: str
    source: str  # the paper / harness the settings come from

    @property
    def needs_spacing(self) -> bool: ...

    @property
    def needs_hu(self) -> bool: ...

    def plan(self, stored: tuple[int, int, int], spacing: tuple[float, float, float] | None) -> Transform:
        """The transform for a stack of this shape and spacing (mm per stored axis), without the pixels."""
        ...

    def make(self, stack: np.ndarray, spacing: tuple[float, float, float] | None,
             modality: str) -> tuple[np.ndarray, Transform, dict[str, Any]]:
        """(model array, transform, what else the record keeps) for one stored frame stack."""
        ...


def _stored_interval(box: Box3D, axis: StoredAxis) -> tuple[int, int]:
    """[lo, hi) edges of a stored Box3D along one stored axis."""
    x0, y0, x1, y1 = box.box
    return {"frame": (box.frame_start, box.frame_end + 1), "y": (y0, y1), "x": (x0, x1)}[axis]


def box_to_model(box: Box3D, transform: Transform) -> list[tuple[float, float]]:
    """Stored Box3D -> [lo, hi) model voxel-edge floats per spatial model axis (array order), clipped to the grid."""
    out = []
    for a in transform.spatial:
        ends = sorted(a.to_model(e) for e in _stored_interval(box, a.source))
        out.append((min(max(ends[0], 0.0), a.size), min(max(ends[1], 0.0), a.size)))
    return out


def box_from_model(values: Sequence[Sequence[float]], transform: Transform) -> Box3D:
    """[lo, hi) model voxel edges per spatial model axis (array order) -> stored Box3D: nearest edges, never empty."""
    spatial = transform.spatial
    if len(values) != len(spatial):
        raise ValueError(f"expected {len(spatial)} [lo, hi) pairs, got {len(values)}")
    edges: dict[str, tuple[int, int]] = {}
    for a, (lo, hi) in zip(spatial, values, strict=False):
        n = transform.stored[STORED_AXES.index(a.source)]
        s0, s1 = sorted((a.to_stored(lo), a.to_stored(hi)))
        s0, s1 = (min(max(math.floor(v + 0.5), 0), n) for v in (s0, s1))  # ties up
        if s1 == s0:  # thinner than a stored voxel: the voxel it touches
            s0, s1 = (s0, s0 + 1) if s0 < n else (n - 1, n)
        edges[a.source] = (s0, s1)
    (f0, f1), (y0, y1), (x0, x1) = (edges[k] for k in STORED_AXES)
    return Box3D(frame_start=f0, frame_end=f1 - 1, box=(x0, y0, x1, y1))


def m3d_normalized(box: Box3D, transform: Transform) -> list[float]:
    """Stored Box3D -> M3D's [d1, h1, w1, d2, h2, w2]: model-grid edges / grid size (0-1), array axis order."""
    spans = box_to_model(box, transform)
    sizes = [a.size for a in transform.spatial]
    return [lo / n for (lo, _), n in zip(spans, sizes, strict=False)] + [hi / n for (_, hi), n in zip(spans, sizes, strict=False)]


def from_m3d_normalized(values: Sequence[float], transform: Transform) -> Box3D:
    """M3D's [d1, h1, w1, d2, h2, w2] (0-1 over the model grid, array order) -> stored Box3D."""
    sizes = [a.size for a in transform.spatial]
    if len(values) != 2 * len(sizes):
        raise ValueError(f"expected {2 * len(sizes)} numbers, got {len(values)}")
    k = len(sizes)
    return box_from_model([(values[i] * n, values[k + i] * n) for i, n in enumerate(sizes)], transform)


@dataclass(frozen=True)
class Window:
    """A linear intensity map [lo, hi] -> out, clipped; lo/hi None = the volume's min/max (min-max),
    or with ``percentiles`` its (lower, upper) percentiles (MONAI ``ScaleIntensityRangePercentiles``)."""

    lo: float | None = None
    hi: float | None = None
    out: tuple[float, float] = (0.0, 1.0)
    percentiles: tuple[float, float] | None = None

    def bounds(self, data: np.ndarray) -> tuple[float, float]:
        if self.percentiles is not None:
            lo, hi = (float(v) for v in np.percentile(data, self.percentiles))
            return lo, (hi if hi > lo else lo + 1.0)
        lo = float(data.min()) if self.lo is None else self.lo
        hi = float(data.max()) if self.hi is None else self.hi
        return lo, (hi if hi > lo else lo + 1.0)  # a constant volume maps to out[0]

    @staticmethod
    def apply(data: np.ndarray, lo: float, hi: float, out: tuple[float, float]) -> np.ndarray:
        unit = (np.clip(data, lo, hi, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
        return (unit * np.float32(out[1] - out[0]) + np.float32(out[0])).astype(np.float32)


def frame_stack(data: np.ndarray, study: Study) -> np.ndarray:
    """The stored frames as one array [frame, y, x] (a view): RAS+ data radiologically, fastMRI as read."""
    if study.volume is not None and study.volume.loader == "fastmri_h5":
        return data  # the reader already returns (slice, y, x) on the annotated image
    return data[::-1, ::-1, :].transpose(2, 1, 0)  # x = n_i-1-i, y = n_j-1-j, frame = k


def pad_value(data: np.ndarray, modality: str, window: Window) -> float:
    """Air for CT (the window's clip minimum, else -1024 HU), the volume minimum otherwise."""
    if modality.upper() == "CT":
        return AIR_HU if window.lo is None else window.lo
    return float(data.min())


def resize(data: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Linear resample to ``shape`` with the outer voxel edges aligned (scale = new / old size).

    The same numbers as ``scipy.ndimage.zoom(order=1, grid_mode=True, mode="nearest")`` (the
    tests compare them), computed one axis at a time, shrinking axes first: linear
    interpolation is separable, and this is about three times faster on model-size grids.
    """
    out = np.asarray(data, dtype=np.float32)
    for axis in sorted(range(out.ndim), key=lambda d: shape[d] / out.shape[d]):
        n, m = out.shape[axis], shape[axis]
        if m == n:
            continue
        centres = np.clip((np.arange(m) + 0.5) * (n / m) - 0.5, 0, n - 1)  # output centre -> input
        below = np.floor(centres).astype(np.intp)
        weight = (centres - below).astype(np.float32).reshape([m if d == axis else 1 for d in range(out.ndim)])
        low = np.take(out, below, axis=axis)
        out = low + (np.take(out, np.minimum(below + 1, n - 1), axis=axis) - low) * weight
    return out


def crop_pad(n: int, size: int) -> tuple[int, int]:
    """(crop start, pad before) centring n voxels in size, as CT-CLIP and MONAI's centre crop/pad do."""
    return max((n - size) // 2, 0), max((size - n) // 2, 0)


def check_study(study: Study, recipe: str, needs_spacing: bool, needs_hu: bool) -> None:
    """Refuse, in one line, a study whose volume lacks what the recipe needs."""
    no_geometry = study.affine is None or (study.volume is not None and study.volume.loader == "fastmri_h5")
    if needs_spacing and no_geometry:
        raise RecipeRefused(f"study {study.id!r}: recipe {recipe} needs physical voxel spacing, "
                            "and its volume has no patient geometry")
    if needs_hu and study.modality.upper() != "CT":
        raise RecipeRefused(f"study {study.id!r}: recipe {recipe} needs CT Hounsfield units, "
                            f"and the study is {study.modality}")


def frames_sampled(n: int, count: int) -> list[int]:
    """The frames a slice model is shown, as MedGemma's CT notebook and the CT-SpatialVQA
    harness pick them: every frame when there are at most ``count``, else
    ``round(np.linspace(0, n - 1, count))`` (Python's round, as theirs)."""
    if n <= count:
        return list(range(n))
    return [int(round(float(i))) for i in np.linspace(0, n - 1, count)]


def sampled_axis(n: int, count: int) -> AxisMap:
    """The frame axis of ``frames_sampled``: model slice s shows frame ``s * (n - 1) / (count - 1)``
    (rounded), so a stored frame centre c maps to the model centre ``(c - 1/2) * scale + 1/2``."""
    if n <= count:
        return AxisMap("frame", n, 1.0, 0.0)
    if count < 2:
        raise ValueError(f"sampling {count} of {n} frames needs at least 2 slices")
    scale = (count - 1) / (n - 1)
    return AxisMap("frame", count, scale, 0.5 - 0.5 * scale)
