"""Independent reference implementations the tests compare voxqa against.

Written from the documented rules only (fastMRI+ SOURCE.md, voxqa.boxes.instances docstring),
deliberately not importing voxqa, so a bug in voxqa cannot hide in its own reference.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from types import SimpleNamespace

COLUMNS = ("file", "slice", "study_level", "x", "y", "width", "height", "label")

# Labels that are not abnormalities (voxqa.sources.fastmri_plus docs); everything else is.
NON_PATHOLOGY = {"artifact", "possible artifact", "motion artifact", "normal for age", "normal variant"}


def is_pathology(label: str) -> bool:
    return label.lower() not in NON_PATHOLOGY


def norm_label(raw: str) -> str:
    return " ".join(raw.split())


def _area(b) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def _inter(a, b) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


def _linked(a, b) -> bool:
    """Documented rule: IoU >= 0.1 or intersection / smaller area >= 0.5."""
    inter = _inter(a, b)
    union = _area(a) + _area(b) - inter
    small = min(_area(a), _area(b))
    return (union > 0 and inter / union >= 0.1) or (small > 0 and inter / small >= 0.5)


def link(boxes) -> list[frozenset]:
    """Connected components of (frame, box) where edges join overlapping boxes on adjacent frames."""
    boxes = sorted(set(boxes))
    by_frame: dict[int, list[int]] = defaultdict(list)
    for i, (f, _) in enumerate(boxes):
        by_frame[f].append(i)
    seen: set[int] = set()
    comps = []
    for start in range(len(boxes)):
        if start in seen:
            continue
        seen.add(start)
        stack, comp = [start], set()
        while stack:
            i = stack.pop()
            f, b = boxes[i]
            comp.add(boxes[i])
            for j in by_frame.get(f - 1, []) + by_frame.get(f + 1, []):
                if j not in seen and _linked(b, boxes[j][1]):
                    seen.add(j)
                    stack.append(j)
        comps.append(frozenset(comp))
    return comps


def parse_csv(path, size_of) -> SimpleNamespace:
    """One fastMRI+ CSV classified row by row, per SOURCE.md: exact duplicates, zero-area
    boxes, boxes clipped to ``size_of(file) -> (width, height)``, kept boxes per file
    ({(label, frame, xyxy)}), study-level labels per file; CSV line numbers kept."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        records = list(csv.DictReader(fh))
    seen: set[tuple] = set()
    ref = SimpleNamespace(
        n_read=len(records), dup_lines=[], zero_lines=[], clipped={},
        boxes=defaultdict(set), study_level=defaultdict(set), raw_labels=defaultdict(set),
        files_with_rows=set(), clipped_at=set(),
    )
    for line, rec in enumerate(records, start=2):  # line 1 is the header
        ref.files_with_rows.add(rec["file"])
        key = tuple(rec[c] for c in COLUMNS)
        if key in seen:
            ref.dup_lines.append(line)
            continue
        seen.add(key)
        label = norm_label(rec["label"])
        ref.raw_labels[label].add(rec["label"])
        if rec["study_level"].strip().lower() == "yes":
            ref.study_level[rec["file"]].add(label)
            continue
        x, y, w, h = (int(rec[k]) for k in ("x", "y", "width", "height"))
        if w <= 0 or h <= 0:
            ref.zero_lines.append(line)
            continue
        width, height = size_of(rec["file"])
        raw = (x, y, x + w, y + h)
        box = (max(x, 0), max(y, 0), min(x + w, width), min(y + h, height))
        if box != raw:
            ref.clipped[line] = (raw, box)
            ref.clipped_at.add((rec["file"], int(rec["slice"]), box))
        ref.boxes[rec["file"]].add((label, int(rec["slice"]), box))
    return ref
