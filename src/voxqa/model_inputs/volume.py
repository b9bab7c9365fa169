"""3D-array recipes: the volume (or its foreground) resampled (to a size, or to a spacing then centre crop/pad)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxqa.model_inputs.base import (
    STORED_AXES,
    AxisMap,
    Transform,
    Window,
    crop_pad,
    pad_value,
    resize,
)

CHANNEL = "channel"


Crop = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # [lo, hi) per stored axis


def nearest_step(n: int, step: int, cap: int) -> int:
    """RadFM's depth: the multiple of ``step`` in [step, cap] nearest to ``min(n, cap)``, the
    smaller on a tie (``radiopaedia.py`` caps at 64, ``multi_dataset_test.py`` picks from
    ``range(4, 65, 4)`` with a strict ``<``)."""
    d, best = min(n, cap), step
    for t in range(step, cap + 1, step):
        if abs(t - d) < abs(best - d):
            best = t
    return best


def foreground(stack: np.ndarray, floor: float) -> Crop | None:
    """MONAI ``CropForeground``'s box after the intensity map sends ``floor`` to 0: [lo, hi) per
    stored axis of the voxels above it (None: nothing above, nothing to crop to)."""
    fg = stack > floor
    if not fg.any():
        return None
    box = []
    for axis in range(3):
        hits = np.flatnonzero(fg.any(axis=tuple(d for d in range(3) if d != axis)))
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return box[0], box[1], box[2]


@dataclass(frozen=True)
class VolumeRecipe:
    """``layout`` names each array axis: "channel" (the volume repeated ``channels`` times) or a
    stored axis ("frame", "y", "x"; "-x" / "-y" flipped). ``size`` is the grid per spatial axis
    in layout order. Without ``spacing`` the stack is resized to ``size``; with it, resampled to
    that spacing (mm per spatial axis) and centre cropped / padded (with air) to ``size``.
    ``frame_step`` > 0: the frame axis is not resized to its ``size`` but to the multiple of
    ``frame_step`` nearest the frame count, at most ``size`` (RadFM). ``crop_foreground``: the
    stack is first cropped to its voxels the window maps above 0 (M3D's and Med3DVLM's MONAI
    ``CropForeground``), so the transform depends on the pixels: read it from the record."""

    name: str
    source: str
    layout: tuple[str, ...]
    size: tuple[int, int, int]
    window: Window
    spacing: tuple[float, float, float] | None = None
    channels: int = 1
    frame_step: int = 0
    crop_foreground: bool = False

    @property
    def needs_spacing(self) -> bool:
        return self.spacing is not None

    @property
    def needs_hu(self) -> bool:
        return self.window.lo is not None

    def _spatial(self) -> list[tuple[int, bool]]:
        """(stored axis index, flipped) per spatial array axis."""
        return [(STORED_AXES.index(ax.lstrip("-")), ax.startswith("-")) for ax in self.layout if ax != CHANNEL]

    def _size(self, stored: tuple[int, int, int]) -> list[int]:
        """The grid per spatial axis for a stack of this shape."""
        if not self.frame_step:
            return list(self.size)
        return [nearest_step(stored[0], self.frame_step, size) if i == 0 else size
                for (i, _), size in zip(self._spatial(), self.size, strict=True)]

    def _resampled(self, extent: Sequence[int], spacing: tuple[float, float, float] | None,
                   size: list[int]) -> list[int]:
        """Grid length per spatial axis after resampling, before crop/pad."""
        if self.spacing is None:
            return size
        assert spacing is not None, "checked by check_study"
        return [max(1, round(extent[i] * spacing[i] / target))
                for (i, _), target in zip(self._spatial(), self.spacing, strict=False)]

    def plan(self, stored: tuple[int, int, int], spacing: tuple[float, float, float] | None,
             crop: Crop | None = None) -> Transform:
        """The transform; ``crop`` is the foreground box ``make`` found (None: the whole stack)."""
        box = crop or tuple((0, n) for n in stored)
        extent = [hi - lo for lo, hi in box]
        size = self._size(stored)
        maps = []
        for (i, flip), m, n in zip(self._spatial(), self._resampled(extent, spacing, size), size, strict=False):
            cut, pad = crop_pad(m, n)
            scale = m / extent[i]  # oriented edge (e - lo, or hi - e when flipped) -> resampled -> crop/pad
            lo, hi = box[i]
            maps.append(AxisMap(STORED_AXES[i], n, -scale if flip else scale,
                                (scale * hi if flip else -scale * lo) - cut + pad))
        spatial = iter(maps)
        axes = tuple(None if ax == CHANNEL else next(spatial) for ax in self.layout)
        shape = tuple(self.channels if ax == CHANNEL else a.size for ax, a in zip(self.layout, axes, strict=False))
        return Transform(stored, shape, axes)

    def make(self, stack: np.ndarray, spacing: tuple[float, float, float] | None,
             modality: str) -> tuple[np.ndarray, Transform, dict[str, Any]]:
        lo, hi = self.window.bounds(stack)  # min-max recipes: over the full stored volume
        crop = foreground(stack, lo) if self.crop_foreground else None
        transform = self.plan(stack.shape, spacing, crop)
        if crop is not None:
            stack = stack[tuple(slice(a, b) for a, b in crop)]
        spatial = self._spatial()
        size = [a.size for a in transform.spatial]
        oriented = stack.transpose([i for i, _ in spatial])[tuple(
            slice(None, None, -1) if flip else slice(None) for _, flip in spatial)]
        resampled = resize(oriented, self._resampled(stack.shape, spacing, size))
        fill = pad_value(stack, modality, self.window)
        grid = np.full(size, fill, np.float32)  # padded before normalisation
        src, dst = [], []
        for m, n in zip(resampled.shape, size, strict=False):
            cut, pad = crop_pad(m, n)
            keep = min(m, n)
            src.append(slice(cut, cut + keep))
            dst.append(slice(pad, pad + keep))
        grid[tuple(dst)] = resampled[tuple(src)]
        array = Window.apply(grid, lo, hi, self.window.out)
        for axis, ax in enumerate(self.layout):
            if ax == CHANNEL:
                array = np.repeat(np.expand_dims(array, axis), self.channels, axis=axis)
        extra: dict[str, Any] = {"intensity": {"from": [lo, hi], "to": list(self.window.out)}}
        if crop is not None:
            extra["foreground"] = {ax: list(b) for ax, b in zip(STORED_AXES, crop, strict=True)}
        if any(m < n for m, n in zip(resampled.shape, size, strict=False)):
            extra["pad_value"] = fill  # in the volume's units, before normalisation
        if spacing is not None:  # the spacing each model voxel really has, in mm
            extra["spacing_mm"] = [spacing[STORED_AXES.index(a.source)] / abs(a.scale) for a in transform.spatial]
        return array, transform, extra
