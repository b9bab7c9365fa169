"""Box geometry on canonical pixel xyxy boxes (max exclusive), in 2D and 3D.

IoU is intersection / (A + B - intersection). With max-exclusive boxes the area of
[x0, y0, x1, y1] is (x1 - x0) * (y1 - y0): no "+1" pixel corrections anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

BoxT = Sequence[int] | Sequence[float]


def area(b: BoxT) -> float:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def intersection(a: BoxT, b: BoxT) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


def iou(a: BoxT, b: BoxT) -> float:
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def containment(a: BoxT, b: BoxT) -> float:
    """Intersection over the smaller box: 1.0 when one box lies inside the other."""
    smaller = min(area(a), area(b))
    return intersection(a, b) / smaller if smaller > 0 else 0.0


def volume3d(b: BoxT) -> float:
    """Volume of a 3D box [x0, y0, z0, x1, y1, z1] (max exclusive)."""
    return max(0, b[3] - b[0]) * max(0, b[4] - b[1]) * max(0, b[5] - b[2])


def iou3d(a: BoxT, b: BoxT) -> float:
    """3D IoU of [x0, y0, z0, x1, y1, z1] boxes (max exclusive)."""
    dims = [min(a[i + 3], b[i + 3]) - max(a[i], b[i]) for i in range(3)]
    inter = dims[0] * dims[1] * dims[2] if all(d > 0 for d in dims) else 0
    union = volume3d(a) + volume3d(b) - inter
    return inter / union if union > 0 else 0.0


def clip(b: Sequence[int], width: int, height: int) -> tuple[int, int, int, int]:
    """Clip a box to a width x height frame; the result may have zero area."""
    x0, y0, x1, y1 = b
    return (
        min(max(x0, 0), width),
        min(max(y0, 0), height),
        min(max(x1, 0), width),
        min(max(y1, 0), height),
    )


def union_box(boxes: Sequence[Sequence[int]]) -> tuple[int, int, int, int]:
    """The smallest box enclosing all given boxes."""
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
