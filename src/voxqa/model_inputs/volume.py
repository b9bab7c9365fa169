"""3D-array recipes: the whole volume resampled (to a size, or to a spacing then centre crop/pad)."""

from __future__ import annotations

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


@dataclass(frozen=True)
class VolumeRecipe:
    """``layout`` names each array axis: "channel" (the volume repeated ``channels`` times) or a
    stored axis ("frame", "y", "x"; "-x" / "-y" flipped). ``size`` is the grid per spatial axis
    in layout order. Without ``spacing`` the stack is resized to ``size``; with it, resampled to
    that spacing (mm per spatial axis) and centre cropped / padded (with air) to ``size``."""

    name: str
    source: str
    layout: tuple[str, ...]
    size: tuple[int, int, int]
    window: Window
    spacing: tuple[float, float, float] | None = None
    channels: int = 1

    @property
    def needs_spacing(self) -> bool:
        return self.spacing is not None

    @property
    def needs_hu(self) -> bool:
        return self.window.lo is not None

    def _spatial(self) -> list[tuple[int, bool]]:
        """(stored axis index, flipped) per spatial array axis."""
        return [(STORED_AXES.index(ax.lstrip("-")), ax.startswith("-")) for ax in self.layout if ax != CHANNEL]

    def _resampled(self, stored: tuple[int, int, int], spacing: tuple[float, float, float] | None) -> list[int]:
        """Grid length per spatial axis after resampling, before crop/pad."""
        if self.spacing is None:
            return list(self.size)
        assert spacing is not None, "checked by check_study"
        return [max(1, round(stored[i] * spacing[i] / target))
                for (i, _), target in zip(self._spatial(), self.spacing, strict=False)]

    def plan(self, stored: tuple[int, int, int], spacing: tuple[float, float, float] | None) -> Transform:
        maps = []
        for (i, flip), m, size in zip(self._spatial(), self._resampled(stored, spacing), self.size, strict=False):
            crop, pad = crop_pad(m, size)
            scale = m / stored[i]  # oriented edge e (n - e when flipped) -> resampled -> crop/pad
            maps.append(AxisMap(STORED_AXES[i], size, -scale if flip else scale, (m if flip else 0) - crop + pad))
        spatial = iter(maps)
        axes = tuple(None if ax == CHANNEL else next(spatial) for ax in self.layout)
        shape = tuple(self.channels if ax == CHANNEL else a.size for ax, a in zip(self.layout, axes, strict=False))
        return Transform(stored, shape, axes)

    def make(self, stack: np.ndarray, spacing: tuple[float, float, float] | None,
             modality: str) -> tuple[np.ndarray, Transform, dict[str, Any]]:
        transform = self.plan(stack.shape, spacing)
        spatial = self._spatial()
        oriented = stack.transpose([i for i, _ in spatial])[tuple(
            slice(None, None, -1) if flip else slice(None) for _, flip in spatial)]
        resampled = resize(oriented, self._resampled(stack.shape, spacing))
        lo, hi = self.window.bounds(stack)  # min-max recipes: over the full stored volume
        fill = pad_value(stack, modality, self.window)
        grid = np.full(self.size, fill, np.float32)  # padded before normalisation
        src, dst = [], []
        for m, size in zip(resampled.shape, self.size, strict=False):
            crop, pad = crop_pad(m, size)
            keep = min(m, size)
            src.append(slice(crop, crop + keep))
            dst.append(slice(pad, pad + keep))
        grid[tuple(dst)] = resampled[tuple(src)]
        array = Window.apply(grid, lo, hi, self.window.out)
        for axis, ax in enumerate(self.layout):
            if ax == CHANNEL:
                array = np.repeat(np.expand_dims(array, axis), self.channels, axis=axis)
        extra: dict[str, Any] = {"intensity": {"from": [lo, hi], "to": list(self.window.out)}}
        if any(m < size for m, size in zip(resampled.shape, self.size, strict=False)):
            extra["pad_value"] = fill  # in the volume's units, before normalisation
        if spacing is not None:  # the spacing each model voxel really has, in mm
            extra["spacing_mm"] = [spacing[STORED_AXES.index(a.source)] / abs(a.scale) for a in transform.spatial]
        return array, transform, extra
