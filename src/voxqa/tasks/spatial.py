"""Spatial questions from segmentation geometry, answered in world coordinates (RAS+ mm).

+x is the patient's right, +y anterior, +z superior; frames are axial, inferior -> superior,
shown radiologically (voxqa.anatomy.frames). A relation is asked only when the geometry makes it
unambiguous, with the margins below; every ambiguous candidate is counted in
``ctx.skipped``. Binary answers are balanced per (split, template) by asking each relation
in both directions (round-robin) or, for one-structure questions, by subsampling.

Subtasks and their CT-SpatialVQA categories are in CATEGORIES.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from voxqa.anatomy.relations import SegGeometry
from voxqa.schema import Evidence, Item
from voxqa.anatomy.structures import Structure
from voxqa.tasks.base import Context, StudyView, balance, group_by, make_item, rng

TASK = "spatial"
CATEGORIES = {
    "laterality": "Laterality & Bilateral Symmetry",
    "vertical": "Longitudinal (Vertical) Position",
    "anterior_posterior": "Anterior-Posterior (Depth)",
    "medial_lateral": "Medial-Lateral Orientation (Centricity)",
    "adjacency": "Adjacency & Containment",
    "extent": "Spatial Extent & Boundaries",
    "size": "Spatial Extent & Boundaries",
    "count": "Spatial Extent & Boundaries",
    "presence": "Spatial Extent & Boundaries",
}
MIN_STRUCTURE_VOXELS = 8  # smaller structures (often segmentation specks) are not asked about
MIN_CENTROID_MM = 10.0  # centroids at least this far apart along the asked axis
MAX_OVERLAP_MM = 5.0  # extents along the asked axis may overlap by at most this much
MIN_SIZE_RATIO = 1.2  # "which is larger": the larger at least 20% larger
MIN_PAIRED_RATIO = 1.1  # "which side is larger" for paired organs: at least 10% larger
VOLUME_TOLERANCE = 0.10  # relative tolerance accepted for a volume in mL
FRAME_MARGIN = 2  # "not on frame k": k at least this many frames outside the extent
MAX_PAIRS_PER_STUDY = 12  # per pairwise subtask, to keep studies comparable in weight
LESION_WORDS = ("lesion", "tumor", "tumour", "nodule", "metasta", "cyst", "mass")
# (answer to balance: True / False, or None when not a binary answer; the item)
Candidate = tuple[bool | None, Item]
AXES = {"vertical": (2, "superior", "inferior"), "anterior_posterior": (1, "anterior", "posterior")}


def _key_frame(s: Structure) -> int:
    return max(s.frame_boxes, key=lambda k: (_area(s.frame_boxes[k]), -k))


def _area(b: Sequence[int]) -> int:
    return (b[2] - b[0]) * (b[3] - b[1])


def _ev(s: Structure, frames: Sequence[int] | None = None) -> list[Evidence]:
    ks = [_key_frame(s)] if frames is None else frames
    return [Evidence(label=s.name, frame=k, box=s.frame_boxes[k]) for k in ks]


def _cite(e: Evidence) -> str:
    return f"Frame {e.frame}: [{e.box[0]}, {e.box[1]}, {e.box[2]}, {e.box[3]}]"


def _xyz(v: Sequence[float]) -> str:
    return f"({v[0]:.1f}, {v[1]:.1f}, {v[2]:.1f}) mm"


def _where(s: Structure) -> str:
    """'liver: centroid (64.1, -20.3, 12.0) mm, frames 3-29, Frame 15: [10, 20, 60, 70]'."""
    k = _key_frame(s)
    b = s.frame_boxes[k]
    return (
        f"{s.name}: centroid {_xyz(s.centroid_ras)}, frames {s.frames[0]}-{s.frames[-1]}, "
        f"Frame {k}: [{b[0]}, {b[1]}, {b[2]}, {b[3]}]"
    )


def _choice(options: list[str], answer: str) -> tuple[dict, str, list[str]]:
    return {"type": "choice", "value": options.index(answer)}, answer, options


def is_lesion(name: str) -> bool:
    return any(w in name.lower() for w in LESION_WORDS)


class Spatial:
    """Spatial relations and extents (task ``spatial``; presence -> detection, per-frame
    boxes -> localization, counts -> counting)."""

    name = TASK

    def __init__(self, midline: Callable[[str], bool], pair_of: Callable[[str], str | None]):
        self.midline = midline
        self.pair_of = pair_of

    def generate(self, studies: Sequence[StudyView], ctx: Context) -> list[Item]:
        views = [v for v in studies if v.geometry is not None]
        candidates: list[Candidate] = []
        for v in views:
            candidates += self._study(v, ctx)
        out: list[Item] = []
        for (split, template), group in group_by(
            candidates, lambda c: (c[1].split, c[1].template)
        ).items():
            yes = [item for answer, item in group if answer is True]
            no = [item for answer, item in group if answer is False]
            free = [item for answer, item in group if answer is None]
            if yes or no:
                pos, neg = balance(yes, no, ctx.seed, "spatial", split, template)
                out += pos + neg
            out += free
        return out

    # -- per study ----------------------------------------------------------------------
    def _study(self, v: StudyView, ctx: Context) -> list[Candidate]:
        g: SegGeometry = v.geometry
        r = rng(ctx.seed, "spatial", v.id)
        found: list[Candidate] = []
        found += self._laterality(v, g, ctx)
        for subtask in AXES:
            found += self._axis_pairs(v, g, ctx, subtask, r)
        found += self._centricity(v, g, ctx, r)
        found += self._adjacency(v, g, ctx, r)
        found += self._size(v, g, ctx, r)
        found += self._extent(v, g)
        found += self._presence(v, g, r)
        found += self._counts(v, g)
        return found

    def _item(self, kind: str, v: StudyView, subtask: str, label: str, question: str, answer: dict,
              answer_text: str, evidence: list[Evidence], why: str, chance: float | None,
              options: list[str] | None = None, variant: str | None = None,
              task: str = TASK, frame: int | None = None) -> Item:
        uncited = [e for e in evidence if _cite(e) not in why]
        if uncited:  # every evidence box is cited in the trace
            why += " Boxes: " + "; ".join(f"{_cite(e)} {e.label}" for e in uncited) + "."
        return make_item(
            v, task=task, subtask=subtask, frame=frame, label=label, question=question,
            answer=answer, answer_text=answer_text, evidence=evidence,
            reasoning=f"{why} Answer: {answer_text}.", chance=chance, options=options,
            category=CATEGORIES[subtask], variant=variant, kind=kind,
        )

    def _laterality(self, v: StudyView, g: SegGeometry, ctx: Context):
        m = g.midline_x
        out = []
        for s in g.structures:
            if self.midline(s.name) or not s.frame_boxes:
                continue
            dx = s.centroid_ras[0] - m
            right = dx > 0
            crosses = s.bbox_ras_min[0] < m - MAX_OVERLAP_MM if right else (
                s.bbox_ras_max[0] > m + MAX_OVERLAP_MM)
            if abs(dx) < MIN_CENTROID_MM or crosses:
                ctx.skipped["spatial/laterality: too close to the midline"] += 1
                continue
            side = "right" if right else "left"
            answer, text, options = _choice(["left", "right"], side)
            why = (
                f"Midline x = {m:.1f} mm ({g.midline_source}); +x is the patient's right. "
                f"{_where(s)}; its x-extent [{s.bbox_ras_min[0]:.1f}, {s.bbox_ras_max[0]:.1f}] mm "
                f"lies on the patient's {side}."
            )
            out.append((right, self._item(
                "laterality", v, "laterality", s.name, f"Is the {s.name} on the patient's left or right side?",
                answer, text, _ev(s), why, 0.5, options)))
        for s in g.structures:
            partner = self.pair_of(s.name)
            other = g.by_name().get(partner or "")
            if other is None or "left" not in s.name.split("_"):
                continue
            big, small = (s, other) if s.volume_ml >= other.volume_ml else (other, s)
            if big.volume_ml < MIN_PAIRED_RATIO * small.volume_ml:
                ctx.skipped["spatial/laterality: paired sizes too similar"] += 1
                continue
            side = "left" if big is s else "right"
            base = "_".join(t for t in s.name.split("_") if t != "left")
            answer, text, options = _choice(["left", "right"], side)
            why = (
                f"{s.name}: {s.volume_ml:.1f} mL ({_where(s)}); {other.name}: "
                f"{other.volume_ml:.1f} mL ({_where(other)}). The {side} one is "
                f"{big.volume_ml / small.volume_ml:.2f}x larger."
            )
            out.append((side == "right", self._item(
                "paired_larger", v, "laterality", base, f"Which is larger, the left or the right {base}?",
                answer, text, _ev(s) + _ev(other), why, 0.5, options, variant="paired")))
        return out

    def _pairs(self, g: SegGeometry, r, keep: Callable[[Structure, Structure], bool]):
        ss = [s for s in g.structures if s.frame_boxes]
        pairs = [(a, b) for a, b in itertools.combinations(ss, 2) if keep(a, b)]
        return r.sample(pairs, min(MAX_PAIRS_PER_STUDY, len(pairs)))

    def _axis_pairs(self, v: StudyView, g: SegGeometry, ctx: Context, subtask: str, r):
        axis, hi_word, lo_word = AXES[subtask]
        out = []

        def ordered(a: Structure, b: Structure) -> tuple[Structure, Structure] | None:
            hi, lo = (a, b) if a.centroid_ras[axis] > b.centroid_ras[axis] else (b, a)
            if hi.centroid_ras[axis] - lo.centroid_ras[axis] < MIN_CENTROID_MM:
                return None
            if hi.bbox_ras_min[axis] - lo.bbox_ras_max[axis] < -MAX_OVERLAP_MM:
                return None
            return hi, lo

        def clear(a: Structure, b: Structure) -> bool:
            ok = ordered(a, b) is not None
            if not ok:
                ctx.skipped[f"spatial/{subtask}: overlapping extents"] += 1
            return ok

        coord = "xyz"[axis]
        for n, (a, b) in enumerate(self._pairs(g, r, clear)):
            hi, lo = ordered(a, b)  # type: ignore[misc]
            first, second = (hi, lo) if n % 2 == 0 else (lo, hi)
            word = hi_word if first is hi else lo_word
            answer, text, options = _choice([hi_word, lo_word], word)
            why = (
                f"{_where(hi)}; {_where(lo)}. {hi.name} spans {coord} = "
                f"[{hi.bbox_ras_min[axis]:.1f}, {hi.bbox_ras_max[axis]:.1f}] mm and {lo.name} "
                f"[{lo.bbox_ras_min[axis]:.1f}, {lo.bbox_ras_max[axis]:.1f}] mm; the centroids "
                f"differ by {hi.centroid_ras[axis] - lo.centroid_ras[axis]:.1f} mm, so "
                f"{first.name} is {word} to {second.name}."
            )
            out.append((word == hi_word, self._item(
                subtask, v, subtask, first.name,
                f"Is the {first.name} {hi_word} or {lo_word} to the {second.name}?",
                answer, text, _ev(first) + _ev(second), why, 0.5, options,
                variant=second.name)))
        return out

    def _centricity(self, v: StudyView, g: SegGeometry, ctx: Context, r):
        m = g.midline_x

        def span(s: Structure) -> tuple[float, float]:
            lo, hi = s.bbox_ras_min[0] - m, s.bbox_ras_max[0] - m
            near = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
            return near, max(abs(lo), abs(hi))

        def order(a: Structure, b: Structure) -> tuple[Structure, Structure] | None:
            da, db = abs(a.centroid_ras[0] - m), abs(b.centroid_ras[0] - m)
            near, far = (a, b) if da < db else (b, a)
            if abs(da - db) < MIN_CENTROID_MM or span(near)[1] - span(far)[0] > MAX_OVERLAP_MM:
                return None
            return near, far

        def clear(a: Structure, b: Structure) -> bool:
            if self.midline(a.name) or self.midline(b.name):
                return False
            ok = order(a, b) is not None
            if not ok:
                ctx.skipped["spatial/medial_lateral: overlapping distances"] += 1
            return ok

        out = []
        for n, (a, b) in enumerate(self._pairs(g, r, clear)):
            near, far = order(a, b)  # type: ignore[misc]
            first, second = (near, far) if n % 2 == 0 else (far, near)
            answer, text, options = _choice([first.name, second.name], near.name)
            why = (
                f"Midline x = {m:.1f} mm ({g.midline_source}). {_where(near)}: "
                f"{abs(near.centroid_ras[0] - m):.1f} mm from the midline, reaching at most "
                f"{span(near)[1]:.1f} mm; {_where(far)}: {abs(far.centroid_ras[0] - m):.1f} mm, "
                f"no closer than {span(far)[0]:.1f} mm."
            )
            out.append((n % 2 == 0, self._item(
                "medial_lateral", v, "medial_lateral", first.name,
                f"Which is closer to the patient's midline: the {first.name} or the "
                f"{second.name}?", answer, text, _ev(near) + _ev(far), why, 0.5, options,
                variant=second.name)))
        return out

    def _adjacency(self, v: StudyView, g: SegGeometry, ctx: Context, r):
        by = g.by_name()
        out = []
        touching = sorted(sorted(p) for p in g.touching)
        near = sorted(sorted(p) for p in g.near_not_touching)
        for names, yes in [(p, True) for p in r.sample(touching, min(MAX_PAIRS_PER_STUDY, len(touching)))] + [
            (p, False) for p in r.sample(near, min(MAX_PAIRS_PER_STUDY, len(near)))
        ]:
            a, b = by[names[0]], by[names[1]]
            if not (a.frame_boxes and b.frame_boxes):
                continue
            why = (
                f"{_where(a)}; {_where(b)}. "
                + ("Voxels of the two structures lie within 3 mm of each other."
                   if yes else "Their bounding boxes come within 20 mm of each other, but no "
                   "voxels of the two are within 3 mm.")
            )
            text = "yes" if yes else "no"
            out.append((yes, self._item(
                "adjacency", v, "adjacency", a.name,
                f"Do the {a.name} and the {b.name} touch (within 3 mm)?",
                {"type": "yes_no", "value": text}, text, _ev(a) + _ev(b), why, 0.5,
                variant=b.name)))
        for n, (lesion_name, (organ, share)) in enumerate(sorted(g.containers.items())):
            lesion, host = by[lesion_name], by[organ]
            others = [o.name for o in self._nearest(g, host, exclude={lesion_name, organ})]
            if len(others) < ctx.n_options - 1:
                continue
            pos = n % ctx.n_options
            options = others[: ctx.n_options - 1]
            options.insert(pos, organ)
            why = (f"{_where(lesion)} lies within {_where(host)}: {share:.0%} of the lesion's "
                   f"voxels or of its one-voxel border belong to the {organ}.")
            out.append((None, self._item(
                "container", v, "adjacency", lesion_name, f"Which structure contains the {lesion_name}?",
                {"type": "choice", "value": pos}, organ, _ev(lesion) + _ev(host), why,
                1 / len(options), options, variant="container")))
        names = sorted(g.interior_points)
        for n, name in enumerate(names):
            s = by[name]
            others = self._nearest(g, s, exclude={name})[: ctx.n_options - 1]
            if len(others) < ctx.n_options - 1:
                continue
            options = [o.name for o in others]
            pos = n % ctx.n_options
            options.insert(pos, name)
            point = g.interior_points[name]
            why = f"The point {_xyz(point)} is a voxel deep inside {_where(s)}."
            out.append((None, self._item(
                "point", v, "adjacency", name,
                f"Which structure contains the point {_xyz(point)} (RAS+: x to the patient's "
                "right, y anterior, z superior)?",
                {"type": "choice", "value": pos}, name, _ev(s), why, 1 / len(options),
                options, variant="point")))
        return out

    @staticmethod
    def _nearest(g: SegGeometry, s: Structure, exclude: set[str]) -> list[Structure]:
        """Other structures by centroid distance: the hardest distractors."""
        return sorted(
            (o for o in g.structures if o.name not in exclude),
            key=lambda o: (sum((p - q) ** 2 for p, q in zip(o.centroid_ras, s.centroid_ras)), o.name),
        )

    def _size(self, v: StudyView, g: SegGeometry, ctx: Context, r):
        def clear(a: Structure, b: Structure) -> bool:
            big, small = max(a.volume_ml, b.volume_ml), min(a.volume_ml, b.volume_ml)
            ok = big >= MIN_SIZE_RATIO * small
            if not ok:
                ctx.skipped["spatial/size: volumes too similar"] += 1
            return ok

        out = []
        for n, (a, b) in enumerate(self._pairs(g, r, clear)):
            big, small = (a, b) if a.volume_ml > b.volume_ml else (b, a)
            first, second = (big, small) if n % 2 == 0 else (small, big)
            answer, text, options = _choice([first.name, second.name], big.name)
            why = (
                f"{_where(big)}: {big.volume_ml:.1f} mL; {_where(small)}: "
                f"{small.volume_ml:.1f} mL ({big.volume_ml / small.volume_ml:.2f}x)."
            )
            out.append((n % 2 == 0, self._item(
                "size_compare", v, "size", first.name, f"Which is larger: the {first.name} or the {second.name}?",
                answer, text, _ev(big) + _ev(small), why, 0.5, options, variant=second.name)))
        for s in g.structures:
            if not s.frame_boxes:
                continue
            ml = round(s.volume_ml, 1)
            why = f"{_where(s)}; {s.voxels} voxels of {s.volume_ml / s.voxels * 1000:.2f} mm^3."
            out.append((None, self._item(
                "volume_ml", v, "size", s.name, f"What is the volume of the {s.name} in mL?",
                {"type": "number", "value": ml, "tolerance": round(VOLUME_TOLERANCE * ml, 3)},
                f"{ml} mL", _ev(s), why, None, variant="ml")))
        return out

    def _extent(self, v: StudyView, g: SegGeometry):
        out = []
        for s in g.structures:
            if not s.frame_boxes:
                continue
            frames = s.frames
            ev = _ev(s, frames)
            span_text = f"frames {frames[0]}-{frames[-1]}" if frames == list(
                range(frames[0], frames[-1] + 1)) else "frames " + ", ".join(map(str, frames))
            out.append((None, self._item(
                "frames", v, "extent", s.name, f"On which frames is the {s.name} visible?",
                {"type": "frames", "value": frames}, span_text, ev,
                f"{s.name} has voxels on {len(frames)} frame(s): {_where(s)}.", None)))
            x0 = min(b[0] for b in s.frame_boxes.values())
            y0 = min(b[1] for b in s.frame_boxes.values())
            x1 = max(b[2] for b in s.frame_boxes.values())
            y1 = max(b[3] for b in s.frame_boxes.values())
            box3d = {"frame_start": frames[0], "frame_end": frames[-1], "box": [x0, y0, x1, y1]}
            out.append((None, self._item(
                "box3d", v, "extent", s.name,
                f"What is the 3D bounding box of the {s.name} (first and last frame, and the "
                "pixel box enclosing it on every frame)?",
                {"type": "box3d", "value": box3d},
                f"frames {frames[0]}-{frames[-1]}, [{x0}, {y0}, {x1}, {y1}]", ev,
                f"{s.name} spans frames {frames[0]}-{frames[-1]}; the union of its frame boxes "
                f"is [{x0}, {y0}, {x1}, {y1}]; world extent {_xyz(s.bbox_ras_min)} to "
                f"{_xyz(s.bbox_ras_max)}.", None, variant="box3d")))
            cites = "; ".join(f"Frame {e.frame}: [{', '.join(map(str, e.box))}]" for e in ev)
            out.append((None, self._item(
                "boxes", v, "extent", s.name, f"Give the bounding box of the {s.name} on every frame "
                "where it is visible.",
                {"type": "boxes", "value": [{"frame": e.frame, "box": list(e.box)} for e in ev]},
                cites, ev, f"{s.name}: {cites}.", None, variant="boxes", task="localization")))
        return out

    def _presence(self, v: StudyView, g: SegGeometry, r):
        out = []
        n_frames = g.shape[2]
        for s in g.structures:
            if not s.frame_boxes:
                continue
            out.append((True, self._item(
                "presence", v, "presence", s.name, f"Is the {s.name} visible in this volume?",
                {"type": "yes_no", "value": "yes"}, "yes", _ev(s), f"{_where(s)}.", 0.5,
                task="detection")))
            k = _key_frame(s)
            out.append((True, self._item(
                "presence", v, "presence", s.name, f"Is the {s.name} visible on frame {k}?",
                {"type": "yes_no", "value": "yes"}, "yes", _ev(s), f"{_where(s)}.", 0.5,
                task="detection", frame=k)))
            away = [f for f in range(n_frames)
                    if f < s.frames[0] - FRAME_MARGIN or f > s.frames[-1] + FRAME_MARGIN]
            if away:
                k = r.choice(away)
                out.append((False, self._item(
                    "presence", v, "presence", s.name, f"Is the {s.name} visible on frame {k}?",
                    {"type": "yes_no", "value": "no"}, "no", [],
                    f"{s.name} lies on frames {s.frames[0]}-{s.frames[-1]} only, at least "
                    f"{FRAME_MARGIN} frames away from frame {k}.", 0.5, task="detection",
                    frame=k)))
        for name in g.absent:
            out.append((False, self._item(
                "presence", v, "presence", name, f"Is the {name} visible in this volume?",
                {"type": "yes_no", "value": "no"}, "no", [],
                f"The label map names {name} but has no voxel of it.", 0.5, task="detection")))
        return out

    def _counts(self, v: StudyView, g: SegGeometry):
        out = []
        for s in g.structures:
            if s.components is None or not is_lesion(s.name):
                continue
            n = len(s.components)
            parts = "; ".join(f"{c.voxels} voxels at {_xyz(c.centroid_ras)}" for c in s.components)
            out.append((None, self._item(
                "lesion_count", v, "count", s.name, f"How many separate {s.name} lesions are there?",
                {"type": "number", "value": n}, str(n), _ev(s),
                f"{s.name} has {n} connected component(s): {parts}.", None, task="counting")))
        for group, word in (("vertebrae_", "vertebrae"), ("rib_", "ribs")):
            members = [s for s in g.structures if s.name.startswith(group) and s.frame_boxes]
            if len(members) >= 2:
                names = ", ".join(s.name for s in members)
                out.append((None, self._item(
                    word, v, "count", word, f"How many distinct {word} are visible in this volume?",
                    {"type": "number", "value": len(members)}, str(len(members)),
                    [e for s in members for e in _ev(s)],
                    f"Segmented {word}: {names}.", None, task="counting")))
        return out
