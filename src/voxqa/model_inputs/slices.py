"""Slice recipes for 2D VLMs: evenly spaced axial frames, each as an RGB image of three CT windows.

Frames are picked as MedGemma's CT notebook and the CT-SpatialVQA harness pick them (every frame
of a short volume, ``np.linspace`` over a longer one: ``base.frames_sampled``), from the stored
radiological frames (their code shows the file's own axes; voxqa keeps its orientation fix)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from voxqa.model_inputs.base import AxisMap, Transform, Window, frames_sampled, sampled_axis


@dataclass(frozen=True)
class SliceRecipe:
    """At most ``slices`` frames (``frames_sampled``: all of a volume with no more), windowed
    into R, G, B by ``windows`` and resized to ``size`` (height, width; None: the frame size).
    The array is uint8 [slice, y, x, rgb]; each slice is the image the model is shown."""

    name: str
    source: str
    slices: int
    windows: tuple[Window, Window, Window]
    size: tuple[int, int] | None = None

    needs_spacing = False  # sampled by frame index, like the harness
    needs_hu = True  # the windows are HU ranges

    def plan(self, stored: tuple[int, int, int], spacing: tuple[float, float, float] | None) -> Transform:
        n, h, w = stored
        height, width = self.size or (h, w)
        frame = sampled_axis(n, self.slices)
        axes = (frame, AxisMap("y", height, height / h, 0.0), AxisMap("x", width, width / w, 0.0), None)
        return Transform(stored, (frame.size, height, width, len(self.windows)), axes)

    def make(self, stack: np.ndarray, spacing: tuple[float, float, float] | None,
             modality: str) -> tuple[np.ndarray, Transform, dict[str, Any]]:
        transform = self.plan(stack.shape, spacing)
        frames = frames_sampled(stack.shape[0], self.slices)
        shown = stack[frames]
        rgb = np.stack([np.rint(Window.apply(shown, w.lo, w.hi, (0.0, 255.0))) for w in self.windows],
                       axis=-1).astype(np.uint8)
        height, width = transform.shape[1:3]
        if (height, width) != shown.shape[1:]:  # the RGB image resized as the model's processor does
            rgb = np.stack([np.asarray(Image.fromarray(im, mode="RGB").resize(
                (width, height), Image.Resampling.BILINEAR)) for im in rgb])
        extra = {"frames": frames, "windows": [[w.lo, w.hi] for w in self.windows]}
        return rgb, transform, extra
