"""Pairwise facts between structures that need the voxels: contact, midline, interior points.

``Structure`` (voxqa.anatomy.structures) has each structure's own geometry; questions about two
structures or about a point also need the label map. Everything here is computed on crops
around bounding boxes, never on one full-volume mask per label; which pairs of boxes meet is
found for one structure against all others at once (arrays), so a map of thousands of labels
loops in Python only over the pairs that are close.
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


NO_PAD = (0, 0, 0)
#: Points whose boxes are tested against every structure's box at once in ``owners``.
OWNER_CHUNK = 256


def _box_array(structures: Sequence[Structure]) -> np.ndarray:
    """The structures' voxel boxes as one (n, 6) integer array (``Structure.bbox_vox`` rows)."""
    return np.array([s.bbox_vox for s in structures], dtype=np.int64).reshape(-1, 6)


def _meets(box_a, boxes_b: np.ndarray, pad_a: Sequence[int], pad_b: Sequence[int], shape
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(non-empty, lo, hi) of the intersection of box_a grown by ``pad_a`` voxels with each
    row of ``boxes_b`` grown by ``pad_b``, clipped to the volume: one row per box of b."""
    a = np.asarray(box_a, dtype=np.int64)
    lo = np.maximum(np.maximum(a[:3] - pad_a, boxes_b[:, :3] - pad_b), 0)
    hi = np.minimum(np.minimum(a[3:] + pad_a, boxes_b[:, 3:] + pad_b), shape)
    return (hi > lo).all(axis=1), lo, hi


def _region(lo: np.ndarray, hi: np.ndarray) -> tuple[slice, ...]:
    return tuple(slice(int(lo[d]), int(hi[d])) for d in range(3))


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
    A is dilated once, inside its bounding box grown by the tolerance (separable max
    filters), and each B is looked for only where the two grown boxes overlap. "Near" pairs
    are the informative negatives: close enough that the question is not trivial.
    """
    touch: set[frozenset[str]] = set()
    near: set[frozenset[str]] = set()
    tol_vox = tuple(int(np.floor(tol_mm / s)) + 1 for s in spacing)
    near_vox = tuple(int(np.ceil(near_mm / s)) + 1 for s in spacing)
    boxes = _box_array(structures)
    for a_i, a in enumerate(structures):
        close = a_i + 1 + np.flatnonzero(_meets(a.bbox_vox, boxes[a_i + 1:], near_vox, NO_PAD, shape)[0])
        reach, lo, hi = _meets(a.bbox_vox, boxes[close], tol_vox, tol_vox, shape)
        if reach.any():  # A's mask dilated inside A's box grown by the tolerance
            origin = np.maximum(boxes[a_i, :3] - tol_vox, 0)
            grown = mask_in(a, _region(origin, np.minimum(boxes[a_i, 3:] + tol_vox, shape))).view(np.uint8)
            for axis, t in enumerate(tol_vox):
                grown = ndimage.maximum_filter1d(grown, 2 * t + 1, axis=axis)
            grown = grown.view(bool)
        for n, b_i in enumerate(close):
            b = structures[int(b_i)]
            pair = frozenset((a.name, b.name))
            # only the overlap of both boxes grown by the tolerance can hold B's touching voxels
            if reach[n] and np.any(grown[_region(lo[n] - origin, hi[n] - origin)]
                                   & mask_in(b, _region(lo[n], hi[n]))):
                touch.add(pair)
            else:
                near.add(pair)
    return touch, near


def _grown_overlap(box_a, box_b, pad: tuple[int, int, int], shape) -> tuple[slice, ...] | None:
    """Intersection of both boxes grown by ``pad`` voxels (clipped to the volume)."""
    ok, lo, hi = _meets(box_a, np.asarray([box_b], dtype=np.int64), pad, pad, shape)
    return _region(lo[0], hi[0]) if ok[0] else None


MIN_CONTAINED = 0.5  # share of a lesion's voxels or border inside the organ that contains it


def containers(
    mask_in: MaskIn, shape: tuple[int, int, int], structures: Sequence[Structure],
    lesions: Sequence[str],
) -> dict[str, tuple[str, float]]:
    """lesion name -> (containing structure, share), when one structure holds at least
    MIN_CONTAINED of the lesion: of its voxels (overlapping masks) or of the one-voxel shell
    around it (a label map, where the lesion's voxels replace the organ's)."""
    out: dict[str, tuple[str, float]] = {}
    wanted = set(lesions)
    boxes = _box_array(structures)
    for lesion in (s for s in structures if s.name in wanted):
        region = _grown_overlap(lesion.bbox_vox, lesion.bbox_vox, (1, 1, 1), shape)
        assert region is not None
        inside = mask_in(lesion, region)
        shell = ndimage.binary_dilation(inside) & ~inside
        best: tuple[str, float] | None = None
        # structures whose box, grown by one voxel, meets the lesion's box
        meets, _, _ = _meets(lesion.bbox_vox, boxes, NO_PAD, (1, 1, 1), shape)
        for o_i in np.flatnonzero(meets):
            other = structures[int(o_i)]
            if other is lesion:
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


def owners(mask_in: MaskIn, structures: Sequence[Structure], points: Mapping[str, Voxel]
           ) -> dict[str, set[str]]:
    """For each named point, every structure whose mask holds it (masks may overlap): none of
    them may be offered as a wrong option when asking which structure contains that point."""
    boxes = _box_array(structures)
    names = list(points)
    out = {}
    for start in range(0, len(names), OWNER_CHUNK):  # (points, structures, axis) at a time
        chunk = names[start:start + OWNER_CHUNK]
        v = np.array([points[n] for n in chunk], dtype=np.int64).reshape(-1, 1, 3)
        in_box = np.all((boxes[:, :3] <= v) & (v < boxes[:, 3:]), axis=2)
        for name, row in zip(chunk, in_box, strict=True):
            at = tuple(slice(x, x + 1) for x in points[name])
            out[name] = {structures[i].name for i in np.flatnonzero(row).tolist()
                         if bool(mask_in(structures[i], at).any())}
    return out
