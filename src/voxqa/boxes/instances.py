"""Link frame-indexed 2D boxes of one label into 3D lesion instances.

Radiologists draw one box per slice; a lesion spanning five slices is five boxes. Counting
questions must count lesions, so boxes are linked into instances:

    two boxes of the same label belong to the same instance when they lie on adjacent
    frames (|frame_a - frame_b| == 1) and overlap: IoU >= LINK_IOU or containment
    (intersection / smaller area) >= LINK_CONTAINMENT.

Linking is transitive (union-find), so a lesion that shifts slowly across frames stays one
instance. Boxes on the same frame are never linked directly (two boxes on one slice are two
regions), only through a shared neighbour. Instances are numbered 0.. in order of their first
(frame, x_min, y_min) so ids are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxqa.boxes.geometry import containment, iou

LINK_IOU = 0.1
LINK_CONTAINMENT = 0.5
LINK_RULE = {
    "frames": "adjacent (|delta| == 1)",
    "min_iou": LINK_IOU,
    "min_containment": LINK_CONTAINMENT,
    "combine": "iou >= min_iou OR containment >= min_containment; transitive",
}


def overlaps(a: Sequence[int], b: Sequence[int]) -> bool:
    return iou(a, b) >= LINK_IOU or containment(a, b) >= LINK_CONTAINMENT


def link_instances(boxes: Sequence[tuple[int, Sequence[int]]]) -> list[int]:
    """Instance id for each (frame, box) in ``boxes``, in input order."""
    parent = list(range(len(boxes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_frame: dict[int, list[int]] = {}
    for i, (frame, _) in enumerate(boxes):
        by_frame.setdefault(frame, []).append(i)
    for frame, members in by_frame.items():
        for i in members:
            for j in by_frame.get(frame + 1, []):
                if overlaps(boxes[i][1], boxes[j][1]):
                    parent[find(i)] = find(j)

    roots = [find(i) for i in range(len(boxes))]
    first: dict[int, tuple[int, ...]] = {}
    for i, r in enumerate(roots):
        key = (boxes[i][0], *boxes[i][1], i)
        first[r] = min(first.get(r, key), key)
    order = {r: n for n, r in enumerate(sorted(first, key=lambda r: first[r]))}
    return [order[r] for r in roots]
