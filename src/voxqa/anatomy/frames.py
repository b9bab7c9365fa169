"""The stored frame of a volume with patient geometry: axial, radiological convention.

After ``voxqa.io.canonicalize`` the array is RAS+: index i grows towards the patient's
right, j towards anterior, k towards superior. Frame k is the axial slice ``data[:, :, k]``
shown the way radiologists read axial images: **patient's right on the image left,
anterior at the top**. Frames are ordered inferior -> superior (k = 0 is the lowest slice).

So pixel (x, y) of frame k shows voxel (i, j, k) with

    x = n_i - 1 - i        (image left = patient's right = high i)
    y = n_j - 1 - j        (image top = anterior = high j)

and a voxel box [i0, i1) x [j0, j1) becomes the pixel box
[n_i - i1, n_j - j1, n_i - i0, n_j - j0] (max exclusive). Every box voxqa stores for such a
volume is on this frame; renderers must draw exactly this image.
"""

from __future__ import annotations

import numpy as np

FRAME_CONVENTION = {
    "view": "axial",
    "orientation": "radiological: patient right on image left, anterior on image top",
    "frame_order": "inferior -> superior (frame 0 is the most inferior slice)",
    "pixel_from_voxel": "x = n_i - 1 - i, y = n_j - 1 - j on the RAS+ canonical array",
}


def axial_frame(data: np.ndarray, k: int) -> np.ndarray:
    """The 2D image (rows, cols) = (n_j, n_i) of axial frame k of a RAS+ canonical array."""
    return data[::-1, ::-1, k].T


def frame_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) of the axial frames of a RAS+ array of this shape."""
    return int(shape[0]), int(shape[1])


def voxel_box_to_frame_box(
    i0: int, j0: int, i1: int, j1: int, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Voxel box [i0, i1) x [j0, j1) -> pixel box [x0, y0, x1, y1) on the axial frame."""
    n_i, n_j = int(shape[0]), int(shape[1])
    return (n_i - i1, n_j - j1, n_i - i0, n_j - j0)

