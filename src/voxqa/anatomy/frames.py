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



# --- the sagittal knee convention ---------------------------------------------------------------
#
# Knee MRI (3DReasonKnee's DESS, OAI) is read sagittally, so knee studies store sagittal frames
# of the same RAS+ canonical array instead. Frame f is the sagittal slice i = n_i - 1 - f, shown
# with **superior at the top and anterior at the image left**; frames are ordered from the
# patient's right to left (f = 0 is the right-most slice). Pixel (x, y) of frame f shows voxel
#
#     i = n_i - 1 - f,   j = n_j - 1 - x,   k = n_k - 1 - y
#
# and a voxel box [i0, i1) x [j0, j1) x [k0, k1) becomes frames n_i - i1 .. n_i - 1 - i0
# (inclusive) with pixel box [n_j - j1, n_k - k1, n_j - j0, n_k - k0] (max exclusive). A study
# records which convention its frames follow in ``Study.view_axis`` (the RAS+ axis frames are
# taken along): 2 = axial, 0 = sagittal.

SAGITTAL_FRAME_CONVENTION = {
    "view": "sagittal",
    "orientation": "superior on image top, anterior on image left",
    "frame_order": "patient right -> left (frame 0 is the right-most slice)",
    "pixel_from_voxel": "f = n_i - 1 - i, x = n_j - 1 - j, y = n_k - 1 - k on the RAS+ canonical array",
}
AXIAL_VIEW_AXIS, SAGITTAL_VIEW_AXIS = 2, 0


def sagittal_view(data: np.ndarray) -> np.ndarray:
    """A view of a RAS+ array whose *axial* frames (``axial_frame``) are its sagittal frames.

    Axis order (j, k, frame) with the frame axis reversed, so the axial code path
    (``anatomy.structures.measure``, ``voxel_box_to_frame_box``) gives sagittal frame boxes.
    """
    return data[::-1].transpose(1, 2, 0)


def sagittal_frame(data: np.ndarray, f: int) -> np.ndarray:
    """The 2D image (rows, cols) = (n_k, n_j) of sagittal frame f of a RAS+ canonical array."""
    return axial_frame(sagittal_view(data), f)


def sagittal_frame_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) of the sagittal frames of a RAS+ array of this shape."""
    return int(shape[1]), int(shape[2])


def frame_image(data: np.ndarray, view_axis: int, k: int) -> np.ndarray:
    """Frame k of a RAS+ canonical array under its study's convention (``Study.view_axis``)."""
    if view_axis == SAGITTAL_VIEW_AXIS:
        return sagittal_frame(data, k)
    return axial_frame(data, k)
