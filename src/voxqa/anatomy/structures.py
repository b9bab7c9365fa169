"""Per-structure geometry of a segmentation, in world coordinates.

Input is a RAS+ canonical label volume (``voxqa.io.canonicalize``) and its affine. All
positions are RAS+ mm: +x = patient's right, +y = anterior, +z = superior. Frame boxes are
on the axial radiological frame defined in ``voxqa.anatomy.frames``.

Cost: a label map with ~100 structures must not be scanned ~100 times, so ``measure`` makes
one ``cc3d.statistics`` pass (voxel count, box and centroid of every label) and one sweep
over the axial slices (every label's box on every frame). ``naive_measure`` is the
one-mask-per-label reference that tests and the benchmark compare against.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace

import cc3d
import numpy as np
from scipy import ndimage

from voxqa.anatomy.frames import voxel_box_to_frame_box
from voxqa.anatomy.labelnames import fallback_name

VoxBox = tuple[int, int, int, int, int, int]  # i0, j0, k0, i1, j1, k1 (max exclusive)
Vec3 = tuple[float, float, float]
FrameBox = tuple[int, int, int, int]  # x0, y0, x1, y1 on the axial frame (max exclusive)

#: Ids up to this are used as array indices directly; larger ones (instance-style maps) are
#: renumbered first, since cc3d and find_objects allocate per id up to the largest one.
MAX_DIRECT_ID = 65535
#: Axial slices copied to contiguous memory at a time: in a C-order RAS+ array k varies
#: fastest, so reading a slice in place costs a cache line per voxel.
SLAB = 16


@dataclass(frozen=True)
class Component:
    """One connected component (a lesion or a fragment) of a structure."""

    voxels: int
    bbox_vox: VoxBox
    centroid_ras: Vec3


@dataclass(frozen=True)
class Structure:
    """Geometry of one labelled structure."""

    label_id: int
    name: str
    voxels: int
    volume_ml: float
    bbox_vox: VoxBox
    bbox_ras_min: Vec3  # world extent of the voxel centres inside the structure
    bbox_ras_max: Vec3
    centroid_ras: Vec3
    frame_boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    components: tuple[Component, ...] | None = None  # None: not computed for this label
    #: Touches the edge of the volume: cut off by the field of view, so its size, volume and
    #: extent are not the structure's (only its presence and side are asked).
    truncated: bool = False

    @property
    def frames(self) -> list[int]:
        return sorted(self.frame_boxes)


def measure(
    labels: np.ndarray,
    affine: np.ndarray,
    names: dict[int, str],
    components_for: Collection[int] = (),
) -> list[Structure]:
    """Every non-zero label of a RAS+ label map, sorted by label id.

    ``names`` may miss ids ("label_<id>" is used) or name absent ones (ignored). Labels in
    ``components_for`` also get their 26-connected components, largest first.
    """
    labels = _label_array(labels)
    ids, index = _renumbered(labels)
    stats = _statistics(index)
    present = [int(i) for i in np.flatnonzero(stats["voxel_counts"][1:]) + 1]
    frames = _frame_boxes(index, present)
    wanted = set(components_for)
    out = []
    for i in present:
        label_id = int(ids[i]) if ids is not None else i
        box = _box(stats["bounding_boxes"][i])
        comps = _components(index, i, box, affine) if label_id in wanted else None
        out.append(_structure(label_id, names.get(label_id) or fallback_name(label_id),
                              int(stats["voxel_counts"][i]), box, stats["centroids"][i],
                              frames[i], affine, comps, labels.shape))
    return out


def measure_masks(
    masks: dict[str, np.ndarray], affine: np.ndarray, components_for: Collection[str] = ()
) -> list[Structure]:
    """Binary masks that may overlap (one file per structure), each measured on its own.

    label_id is the mask's 1-based position in sorted name order; empty masks are skipped.
    """
    out = []
    for label_id, name in enumerate(sorted(masks), 1):
        mask = np.asarray(masks[name]).astype(bool, copy=False)
        found = measure(mask, affine, {1: name}, (1,) if name in components_for else ())
        out.extend(replace(s, label_id=label_id) for s in found)
    return out


def naive_measure(labels: np.ndarray, affine: np.ndarray, names: dict[int, str]) -> list[Structure]:
    """Reference for ``measure``: one full-volume mask and ``np.nonzero`` per label (slow)."""
    labels = _label_array(labels)
    n_k = labels.shape[2]
    out = []
    for label_id in (int(v) for v in np.unique(labels) if v != 0):
        i, j, k = np.nonzero(labels == label_id)
        box = (int(i.min()), int(j.min()), int(k.min()), int(i.max()) + 1, int(j.max()) + 1, int(k.max()) + 1)
        lo_i, lo_j = np.full(n_k, labels.shape[0]), np.full(n_k, labels.shape[1])
        hi_i, hi_j = np.zeros(n_k, dtype=np.int64), np.zeros(n_k, dtype=np.int64)
        np.minimum.at(lo_i, k, i)
        np.minimum.at(lo_j, k, j)
        np.maximum.at(hi_i, k, i + 1)
        np.maximum.at(hi_j, k, j + 1)
        frames = {int(z): voxel_box_to_frame_box(int(lo_i[z]), int(lo_j[z]), int(hi_i[z]), int(hi_j[z]),
                                                 labels.shape) for z in np.unique(k)}
        centroid = np.array([i.mean(), j.mean(), k.mean()])
        out.append(_structure(label_id, names.get(label_id) or fallback_name(label_id), len(i), box,
                              centroid, frames, affine, None, labels.shape))
    return out


def _label_array(labels: np.ndarray) -> np.ndarray:
    """A non-negative integer 3D array (bool masks are viewed as uint8, without a copy)."""
    if labels.dtype == np.bool_:
        return labels.view(np.uint8)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected a 3D integer label map, got {labels.dtype} of shape {labels.shape}")
    if np.issubdtype(labels.dtype, np.signedinteger) and int(labels.min()) < 0:
        raise ValueError(f"negative label id {int(labels.min())} in the label map")
    return labels


def _renumbered(labels: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(ids, index map) with ``ids[index] == label``; ids None when labels index directly."""
    if int(labels.max()) <= MAX_DIRECT_ID:
        return None, labels
    ids = np.union1d([0], labels)
    return ids, np.searchsorted(ids, labels).astype(np.min_scalar_type(len(ids) - 1))


def _statistics(index: np.ndarray) -> dict:
    """``cc3d.statistics``, which needs every id below the voxel count: tiny volumes
    (e.g. a 1-voxel crop) get background rows appended at high i, which moves nothing."""
    short = int(index.max()) + 1 - index.size
    if short > 0:
        rows = math.ceil(short / (index.shape[1] * index.shape[2]))
        index = np.pad(index, ((0, rows), (0, 0), (0, 0)))
    return cc3d.statistics(index)


def _axial_slices(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(k, labels[:, :, k]) for every k, each slice contiguous in memory."""
    if labels.flags.f_contiguous:
        for k in range(labels.shape[2]):
            yield k, labels[:, :, k]
        return
    for k0 in range(0, labels.shape[2], SLAB):
        yield from enumerate(np.ascontiguousarray(labels[:, :, k0:k0 + SLAB].transpose(2, 0, 1)), k0)


def _frame_boxes(index: np.ndarray, present: list[int]) -> dict[int, dict[int, FrameBox]]:
    """Per label index, its box on every axial frame it appears on: one sweep for all labels."""
    boxes: dict[int, dict[int, FrameBox]] = {i: {} for i in present}
    max_label = max(present, default=0)
    for k, plane in _axial_slices(index):
        found = ndimage.find_objects(plane, max_label)
        for i in present:
            if found[i - 1] is not None:
                si, sj = found[i - 1]
                boxes[i][k] = voxel_box_to_frame_box(si.start, sj.start, si.stop, sj.stop, index.shape)
    return boxes


def _components(index: np.ndarray, i: int, box: VoxBox, affine: np.ndarray) -> tuple[Component, ...]:
    """26-connected components of label index ``i``, searched inside its bounding box only."""
    crop = tuple(slice(box[d], box[d + 3]) for d in range(3))
    stats = _statistics(cc3d.connected_components(index[crop] == i, connectivity=26))
    comps = []
    for c in np.flatnonzero(stats["voxel_counts"][1:]) + 1:
        local = _box(stats["bounding_boxes"][c])
        comps.append(Component(
            voxels=int(stats["voxel_counts"][c]),
            bbox_vox=tuple(v + box[d % 3] for d, v in enumerate(local)),  # type: ignore[arg-type]
            centroid_ras=_ras(affine, stats["centroids"][c] + np.asarray(box[:3])),
        ))
    return tuple(sorted(comps, key=lambda c: (-c.voxels, c.bbox_vox, c.centroid_ras)))


def _structure(label_id: int, name: str, voxels: int, box: VoxBox, centroid_vox: np.ndarray,
               frames: dict[int, FrameBox], affine: np.ndarray,
               components: tuple[Component, ...] | None, shape: tuple[int, ...]) -> Structure:
    """World-space Structure from voxel-space facts (shared by ``measure`` and the reference)."""
    affine = np.asarray(affine, dtype=np.float64)
    corners = np.array(list(itertools.product(*((box[d], box[d + 3] - 1) for d in range(3)))), dtype=np.float64)
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    return Structure(
        label_id=label_id,
        name=name,
        voxels=voxels,
        volume_ml=voxels * abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0,
        bbox_vox=box,
        bbox_ras_min=_vec(world.min(axis=0)),
        bbox_ras_max=_vec(world.max(axis=0)),
        centroid_ras=_ras(affine, centroid_vox),
        frame_boxes=frames,
        components=components,
        truncated=any(box[d] == 0 or box[d + 3] == shape[d] for d in range(3)),
    )


def _box(slices: tuple[slice, slice, slice]) -> VoxBox:
    si, sj, sk = slices
    return (int(si.start), int(sj.start), int(sk.start), int(si.stop), int(sj.stop), int(sk.stop))


def _ras(affine: np.ndarray, ijk: np.ndarray) -> Vec3:
    affine = np.asarray(affine, dtype=np.float64)
    return _vec(affine[:3, :3] @ np.asarray(ijk, dtype=np.float64) + affine[:3, 3])


def _vec(v: np.ndarray) -> Vec3:
    return (float(v[0]), float(v[1]), float(v[2]))
