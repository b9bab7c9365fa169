"""Pairwise facts between structures that need the voxels: contact, midline, interior points.

``Structure`` (voxqa.anatomy.structures) has each structure's own geometry; questions about two
structures or about a point also need the label map. Everything here is computed on crops
around bounding boxes, never on one full-volume mask per label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from voxqa.anatomy.labelnames import side_of
from voxqa.anatomy.margins import MARGINS
from voxqa.anatomy.structures import Structure

Voxel = tuple[int, int, int]

NEAR_MM = 20.0  # non-touching pairs whose bounding boxes are this close are asked as "no"


@dataclass
class SegGeometry:
    """What the spatial questions of one study are computed from."""

    structures: list[Structure]
    shape: tuple[int, int, int]
    midline_x: float
    midline_source: str
    touching: set[frozenset[str]] = field(default_factory=set)
    near_not_touching: set[frozenset[str]] = field(default_factory=set)
    interior_points: dict[str, Voxel] = field(default_factory=dict)  # deep voxel (i, j, k)
    point_owners: dict[str, set[str]] = field(default_factory=dict)  # who holds that voxel
    containers: dict[str, tuple[str, float]] = field(default_factory=dict)  # lesion -> organ
    absent: list[str] = field(default_factory=list)  # named in the label table, no voxels
    tiny: list[str] = field(default_factory=list)  # too few voxels to ask about
    #: False when the files carry no patient orientation: no side or world-direction questions.
    orientation_known: bool = True
    #: Structures whose name carries a side that geometry contradicts (flipped header,
    #: mislabelled mask): the study gets no side questions.
    side_conflicts: list[str] = field(default_factory=list)
    #: A counterfactual twin: the study flipped along patient x (only side questions asked).
    mirrored: bool = False
    #: Frames a volume-level item of this study shows (``FramePolicy.frames``); None:
    #: all. Volume-level questions cite and ask only what these frames show.
    shown_frames: set[int] | None = None

    def by_name(self) -> dict[str, Structure]:
        return {s.name: s for s in self.structures}


def estimate_midline(structures: Sequence[Structure], is_midline: Callable[[str], bool],
                     shape: tuple[int, int, int], affine: np.ndarray) -> tuple[float, str]:
    """World x of the patient's midline: median x of midline structures (spinal cord,
    vertebrae, ...) when present, else the centre of the field of view (stated)."""
    xs = [s.centroid_ras[0] for s in structures if is_midline(s.name)]
    if xs:
        names = sorted(s.name for s in structures if is_midline(s.name))
        return float(np.median(xs)), "median x of " + ", ".join(names[:4])
    centre = affine @ np.array([(shape[0] - 1) / 2, (shape[1] - 1) / 2, (shape[2] - 1) / 2, 1.0])
    return float(centre[0]), "centre of the field of view (no midline structure segmented)"


MaskIn = Callable[[Structure, tuple[slice, ...]], np.ndarray]


def label_masks(labels: np.ndarray) -> MaskIn:
    """Masks from a multi-label map: structure s inside a crop."""
    return lambda s, crop: labels[crop] == s.label_id


def mask_folder(masks: Mapping[str, np.ndarray]) -> MaskIn:
    """Masks from a folder of (possibly overlapping) binary masks, by structure name."""
    return lambda s, crop: masks[s.name][crop].astype(bool)


def _crop(box_a, box_b, pad: tuple[int, int, int], shape) -> tuple[slice, ...] | None:
    """Intersection of box_a grown by ``pad`` voxels with box_b, or None when empty."""
    sl = []
    for d in range(3):
        lo = max(box_a[d] - pad[d], box_b[d], 0)
        hi = min(box_a[d + 3] + pad[d], box_b[d + 3], shape[d])
        if hi <= lo:
            return None
        sl.append(slice(lo, hi))
    return tuple(sl)


def contacts(
    mask_in: MaskIn,
    shape: tuple[int, int, int],
    structures: Sequence[Structure],
    spacing: Sequence[float],
    tol_mm: float = MARGINS.touch_tolerance_mm,
    near_mm: float = NEAR_MM,
) -> tuple[set[frozenset[str]], set[frozenset[str]]]:
    """(pairs that touch within ``tol_mm``, pairs whose boxes are within ``near_mm`` but
    that do not touch).

    "Touch" means some voxel of A and some voxel of B are at most ``tol_mm`` apart along
    every axis, gaps measured between voxel faces (face-adjacent voxels are 0 mm apart).
    Only the overlap of the two bounding boxes grown by the tolerance can hold such voxels,
    so A is dilated there alone (separable max filters). "Near" pairs are the informative
    negatives: close enough that the question is not trivial.
    """
    touch: set[frozenset[str]] = set()
    near: set[frozenset[str]] = set()
    tol_vox = tuple(int(np.floor(tol_mm / s)) + 1 for s in spacing)
    near_vox = tuple(int(np.ceil(near_mm / s)) + 1 for s in spacing)
    for a_i, a in enumerate(structures):
        for b in structures[a_i + 1:]:
            if _crop(a.bbox_vox, b.bbox_vox, near_vox, shape) is None:
                continue
            pair = frozenset((a.name, b.name))
            region = _grown_overlap(a.bbox_vox, b.bbox_vox, tol_vox, shape)
            if region is not None:
                grown = mask_in(a, region).view(np.uint8)
                for axis, t in enumerate(tol_vox):
                    grown = ndimage.maximum_filter1d(grown, 2 * t + 1, axis=axis)
                if np.any(grown.view(bool) & mask_in(b, region)):
                    touch.add(pair)
                    continue
            near.add(pair)
    return touch, near


def _grown_overlap(box_a, box_b, pad: tuple[int, int, int], shape) -> tuple[slice, ...] | None:
    """Intersection of both boxes grown by ``pad`` voxels (clipped to the volume)."""
    sl = []
    for d in range(3):
        lo = max(box_a[d] - pad[d], box_b[d] - pad[d], 0)
        hi = min(box_a[d + 3] + pad[d], box_b[d + 3] + pad[d], shape[d])
        if hi <= lo:
            return None
        sl.append(slice(lo, hi))
    return tuple(sl)


MIN_CONTAINED = 0.5  # share of a lesion's voxels or border inside the organ that contains it


def containers(
    mask_in: MaskIn, shape: tuple[int, int, int], structures: Sequence[Structure],
    lesions: Sequence[str],
) -> dict[str, tuple[str, float]]:
    """lesion name -> (containing structure, share), when one structure holds at least
    MIN_CONTAINED of the lesion: of its voxels (overlapping masks) or of the one-voxel shell
    around it (a label map, where the lesion's voxels replace the organ's)."""
    out: dict[str, tuple[str, float]] = {}
    for lesion in (s for s in structures if s.name in set(lesions)):
        region = _grown_overlap(lesion.bbox_vox, lesion.bbox_vox, (1, 1, 1), shape)
        assert region is not None
        inside = mask_in(lesion, region)
        shell = ndimage.binary_dilation(inside) & ~inside
        best: tuple[str, float] | None = None
        for other in structures:
            if other is lesion or _crop(other.bbox_vox, lesion.bbox_vox, (1, 1, 1), shape) is None:
                continue
            m = mask_in(other, region)
            share = max(float(m[inside].mean()), float(m[shell].mean()) if shell.any() else 0.0)
            if share >= MIN_CONTAINED and (best is None or share > best[1]):
                best = (other.name, share)
        if best is not None:
            out[lesion.name] = best
    return out


def interior_point(mask_in: MaskIn, s: Structure) -> Voxel:
    """The voxel deepest inside the structure (largest distance to its boundary): a point
    that lies unambiguously in it, unlike a centroid of a curved organ."""
    i0, j0, k0, i1, j1, k1 = s.bbox_vox
    # A strided crop (at most ~32 voxels a side) keeps large organs cheap; the argmax is
    # still a voxel of the structure.
    step = max(1, -(-max(i1 - i0, j1 - j0, k1 - k0) // 32))
    sub = mask_in(s, (slice(i0, i1, step), slice(j0, j1, step), slice(k0, k1, step)))
    dist = ndimage.distance_transform_edt(np.pad(sub, 1))[1:-1, 1:-1, 1:-1]
    i, j, k = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return (i0 + int(i) * step, j0 + int(j) * step, k0 + int(k) * step)


def side_conflicts(structures: Sequence[Structure], midline_x: float, margin_mm: float) -> list[str]:
    """Structures whose name carries a side while their centroid lies more than
    ``margin_mm`` past the midline on the other side (a flipped header, a mislabelled mask)."""
    out = []
    for s in structures:
        dx = s.centroid_ras[0] - midline_x  # +x is the patient's right
        side = side_of(s.name)
        if (side == "left" and dx > margin_mm) or (side == "right" and dx < -margin_mm):
            out.append(s.name)
    return out


def owners(mask_in: MaskIn, structures: Sequence[Structure], voxel: Voxel) -> set[str]:
    """Every structure whose mask holds ``voxel`` (masks may overlap): none of them may be
    offered as a wrong option when asking which structure contains that point."""
    at = tuple(slice(v, v + 1) for v in voxel)
    return {
        s.name for s in structures
        if all(s.bbox_vox[d] <= voxel[d] < s.bbox_vox[d + 3] for d in range(3))
        and bool(mask_in(s, at).any())
    }
