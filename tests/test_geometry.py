"""Box geometry against independent reference computations (pixel-set counting)."""

import itertools
import random

import numpy as np
import pytest

from voxqa.boxes.geometry import area, clip, containment, intersection, iou, iou3d, union_box


def _mask2d(b, size=40):
    m = np.zeros((size, size), bool)
    m[b[1]:b[3], b[0]:b[2]] = True  # max exclusive: rows y0..y1-1, cols x0..x1-1
    return m


def _mask3d(b, size=20):
    m = np.zeros((size, size, size), bool)
    m[b[0]:b[3], b[1]:b[4], b[2]:b[5]] = True
    return m


def _random_box(r, size, dims=2):
    lo = [r.randrange(0, size - 1) for _ in range(dims)]
    hi = [r.randrange(v + 1, size + 1) for v in lo]
    return [*lo, *hi]


def test_iou_matches_pixel_counting():
    r = random.Random(1)
    for _ in range(300):
        a, b = _random_box(r, 40), _random_box(r, 40)
        ma, mb = _mask2d(a), _mask2d(b)
        inter = (ma & mb).sum()
        assert area(a) == ma.sum()
        assert intersection(a, b) == inter
        assert iou(a, b) == pytest.approx(inter / (ma.sum() + mb.sum() - inter))
        assert containment(a, b) == pytest.approx(inter / min(ma.sum(), mb.sum()))


def test_iou3d_matches_voxel_counting():
    r = random.Random(2)
    for _ in range(100):
        a, b = _random_box(r, 20, 3), _random_box(r, 20, 3)
        ma, mb = _mask3d(a), _mask3d(b)
        inter = (ma & mb).sum()
        assert iou3d(a, b) == pytest.approx(inter / (ma.sum() + mb.sum() - inter))


def test_touching_boxes_do_not_intersect():
    # max exclusive: [0, 0, 10, 10] and [10, 0, 20, 10] share an edge, not a pixel
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [0, 0, 5, 10]) == 0.5


def test_clip_and_union():
    assert clip((93, -1, 268, 152), 320, 320) == (93, 0, 268, 152)
    assert clip((300, 310, 330, 340), 320, 320) == (300, 310, 320, 320)
    x0, y0, x1, y1 = clip((400, 0, 420, 5), 320, 320)
    assert x1 - x0 == 0  # fully outside: zero width, caller drops it
    boxes = [(1, 2, 3, 4), (0, 5, 2, 9), (2, 1, 8, 3)]
    assert union_box(boxes) == (0, 1, 8, 9)
    for b in boxes:
        assert containment(b, union_box(boxes)) == 1.0


@pytest.mark.parametrize("a,b", list(itertools.combinations([(0, 0, 4, 4), (2, 2, 6, 6), (5, 5, 9, 9)], 2)))
def test_iou_symmetric(a, b):
    assert iou(a, b) == iou(b, a)
