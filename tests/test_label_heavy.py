"""Label-heavy maps: everything computed per label or per pair of labels with arrays equals the
straightforward computation (one full-volume mask per label, one Python test per pair, every
pair listed then sampled), on a small random map of a few hundred labels.

The defect: a 4,000-label map took over 300 s and 1 GB (800 labels: 27 s), as every pairwise
question listed and tested every pair of structures in Python.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage
from test_structures import AFFINE, assert_same

from voxqa.anatomy.labelnames import is_lesion, midline
from voxqa.anatomy.margins import MARGINS
from voxqa.anatomy.relations import NEAR_MM, label_masks, owners
from voxqa.anatomy.structures import Structure, measure, naive_measure
from voxqa.io import LazyVolume
from voxqa.sources.segmentation import SegmentationInput, relate
from voxqa.tasks.base import BuildContext
from voxqa.tasks.spatial import (
    MAX_PAIRS_PER_STUDY,
    Distractors,
    StructureTable,
    axis_judge,
    axis_order,
    centricity_order,
    draw_pairs,
    medial_judge,
    size_judge,
)

SHAPE = (44, 40, 30)
N_LABELS = 400


def _name(i: int) -> str:
    """Every 10th label a lesion, some sided, some on the midline (vertebrae): every rule applies."""
    return {0: f"lesion_{i}", 1: f"node_{i}_left", 2: f"node_{i}_right", 3: f"vertebrae_x{i}"}.get(
        i % 10, f"structure_{i}")


@pytest.fixture(scope="module")
def heavy():
    """(labels, names, SegGeometry): ``N_LABELS`` random boxes and balls, many touching, some
    cut off by the volume's edge."""
    rng = np.random.default_rng(25)
    labels = np.zeros(SHAPE, np.uint16)
    grid = np.indices(SHAPE)
    for label in range(1, N_LABELS + 1):
        centre = rng.integers(0, SHAPE)
        radii = rng.integers(1, 5, 3)
        if label % 3:
            lo, hi = np.maximum(centre - radii, 0), centre + radii + 1
            labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = label
        else:
            labels[(((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1] = label
    names = {i: _name(i) for i in range(1, N_LABELS + 1)}
    image = LazyVolume(shape=SHAPE, affine=AFFINE, path="heavy.nii.gz", format="nifti", frame_axis=2,
                       world_known=True, canonical=True, assume=None)
    seg = SegmentationInput(image=image, labels=labels, masks=None, affine=AFFINE, names=names,
                            raw_names=names, spacing=image.spacing, modality_hint=None, labels_path="heavy.nii.gz")
    _, geometry = relate(seg)
    return labels, names, geometry


def test_per_label_boxes_counts_centroids_and_frames_equal_one_mask_per_label(heavy) -> None:
    labels, names, g = heavy
    found = measure(labels, AFFINE, names)
    assert len(found) > 300
    assert_same(found, naive_measure(labels, AFFINE, names))


def _full_masks(labels: np.ndarray, structures: list[Structure]) -> dict[str, np.ndarray]:
    return {s.name: labels == s.label_id for s in structures}


def test_contacts_owners_and_containers_equal_full_volume_masks(heavy) -> None:
    labels, _, g = heavy
    ss = g.structures
    masks = _full_masks(labels, ss)
    spacing = np.linalg.norm(AFFINE[:3, :3], axis=0)
    tol = [int(np.floor(MARGINS.touch_tolerance_mm / s)) + 1 for s in spacing]
    pad = [int(np.ceil(NEAR_MM / s)) + 1 for s in spacing]
    dilated = {n: ndimage.maximum_filter(m, size=[2 * t + 1 for t in tol], mode="constant")
               for n, m in masks.items()}
    touch, near = set(), set()
    for a, b in itertools.combinations(ss, 2):
        if not all(max(a.bbox_vox[d] - pad[d], b.bbox_vox[d], 0) < min(a.bbox_vox[d + 3] + pad[d],
                                                                       b.bbox_vox[d + 3], SHAPE[d])
                   for d in range(3)):
            continue  # boxes more than NEAR_MM apart: neither
        (touch if np.any(dilated[a.name] & masks[b.name]) else near).add(frozenset((a.name, b.name)))
    assert len(touch) > 200 and len(near) > 1000
    assert g.touching == touch and g.near_not_touching == near

    by_id = {s.label_id: s.name for s in ss}
    assert g.point_owners == {name: {by_id[int(labels[v])]} for name, v in g.interior_points.items()}
    assert owners(label_masks(labels), ss, g.interior_points) == g.point_owners

    expected = {}
    for lesion in (s for s in ss if is_lesion(s.name)):
        region = tuple(slice(max(lesion.bbox_vox[d] - 1, 0), lesion.bbox_vox[d + 3] + 1) for d in range(3))
        inside = masks[lesion.name][region]
        shell = ndimage.binary_dilation(inside) & ~inside
        best = None
        for other in ss:  # every structure, whatever its box
            if other is lesion:
                continue
            m = masks[other.name][region]
            share = max(float(m[inside].mean()), float(m[shell].mean()) if shell.any() else 0.0)
            if share >= 0.5 and (best is None or share > best[1]):
                best = (other.name, share)
        if best is not None:
            expected[lesion.name] = best
    assert expected and g.containers == expected


def _straightforward(t: StructureTable, rule) -> tuple[list, Counter]:
    """Every pair tested one at a time and listed in combinations order; reasons counted."""
    pairs, skipped = [], Counter()
    for a, b in itertools.combinations(t.structures, 2):
        reason = rule(a, b)
        if reason is None:
            pairs.append((a, b))
        elif reason:
            skipped[reason] += 1
    return pairs, skipped


def _axis_rule(axis: int):
    return lambda a, b: None if axis_order(a, b, axis) is not None else "overlapping extents"


def _medial_rule(m: float):
    def rule(a: Structure, b: Structure) -> str | None:
        if midline(a.name) or midline(b.name):
            return ""  # not asked, not counted
        return None if centricity_order(a, b, m) is not None else "overlapping distances"
    return rule


def _size_rule(a: Structure, b: Structure) -> str | None:
    if a.truncated or b.truncated:
        return "structure cut off by the field of view"
    big, small = max(a.volume_ml, b.volume_ml), min(a.volume_ml, b.volume_ml)
    return None if big >= MARGINS.min_size_ratio * small else "volumes too similar"


def test_pairwise_rules_accept_count_and_draw_exactly_the_pairs_of_the_straightforward_loop(heavy) -> None:
    _, _, g = heavy
    t = StructureTable.shown(g)
    assert len(t.structures) > 300 and any(s.truncated for s in t.structures)
    cases = [(axis_judge(t, 2), _axis_rule(2)), (axis_judge(t, 1), _axis_rule(1)),
             (medial_judge(t, g.midline_x, midline), _medial_rule(g.midline_x)), (size_judge(t), _size_rule)]
    for judge, rule in cases:
        pairs, skipped = _straightforward(t, rule)
        assert len(pairs) > MAX_PAIRS_PER_STUDY
        for seed in range(3):
            ctx = BuildContext(seed=0, is_pathology=lambda _: True)
            drawn = draw_pairs(t, random.Random(seed), ctx, "spatial/x", judge)
            expected = random.Random(seed).sample(pairs, MAX_PAIRS_PER_STUDY)
            assert [(a.name, b.name) for a, b in drawn] == [(a.name, b.name) for a, b in expected]
            assert ctx.skipped == Counter({f"spatial/x: {k}": n for k, n in skipped.items()})


def test_nearest_distractors_in_the_exact_order_of_sorting_them_all(heavy) -> None:
    _, _, g = heavy
    ss = list(g.structures)
    # ties: copies of structures at the same centroid under other names sort by name
    ss += [Structure(**{**s.__dict__, "name": f"twin_{s.name}", "label_id": 10_000 + s.label_id}) for s in ss[:50]]
    d = Distractors(ss)
    r = random.Random(0)
    for s in ss[::7]:
        exclude = {s.name} | {o.name for o in r.sample(ss, 5)}
        for lesions in (True, False):
            ranked = sorted(
                (o for o in ss if o.name not in exclude and (lesions or not is_lesion(o.name))),
                key=lambda o: (sum((p - q) ** 2 for p, q in zip(o.centroid_ras, s.centroid_ras, strict=True)), o.name))
            for k in (1, 3, 8):
                assert [o.name for o in d.nearest(s, exclude, k, lesions=lesions)] == [o.name for o in ranked[:k]]
