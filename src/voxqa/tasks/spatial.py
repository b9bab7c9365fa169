"""Spatial questions from segmentation geometry, answered in world coordinates (RAS+ mm).

+x is the patient's right, +y anterior, +z superior; frames are axial, inferior -> superior,
shown radiologically (voxqa.anatomy.frames). A relation is asked only when the geometry makes it
unambiguous, with the margins below; every ambiguous candidate is counted in
``ctx.skipped``. Binary answers are balanced per (split, template) *and per structure or
pair of structures* (and frame index, for "on frame k"): across studies a relation between
two named structures goes each way equally often, so the names in the text say nothing
(relations that never go both ways are dropped, and counted).

Questions never state their answer: structures get natural names ("the left kidney"), a
structure whose name carries its side is never asked its side (paired organs are asked
which side is larger, the side taken from geometry), and a lesion asked "which structure
contains it" is pointed at by its box, not by a name that may hold its organ.
Side questions come in counterfactual pairs: the same question about the study mirrored
along patient x (``SegGeometry.mirrored``), whose answer is the other side; a reader of
anatomical priors gets exactly one of each pair right, so side questions are headline items
even about normal organs ("is the liver on the left or right?"). Other questions about normal
anatomy (the liver is superior to the right kidney; which organ holds a pixel or a lesion at
a given place; an organ's volume) are anatomical knowledge: those items carry
``prior_answerable`` and are scored apart. Cut-off structures (``truncated``) get no size,
volume or extent questions.

Subtasks and their CT-SpatialVQA categories are in CATEGORIES.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from voxqa.anatomy.frames import voxel_box_to_frame_box
from voxqa.anatomy.labelnames import display_name, is_lesion, side_of
from voxqa.anatomy.margins import MARGINS
from voxqa.anatomy.relations import SegGeometry
from voxqa.anatomy.structures import Component, Structure
from voxqa.schema import Evidence, Item
from voxqa.tasks.base import BuildContext, StudyView, balance_candidates, make_item, rng

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
FRAME_MARGIN = 2  # "not on frame k": k at least this many frames outside the extent
PRESENCE_FRAMES = 3  # frames per structure asked "is X on frame k" (yes and no each)
MAX_PAIRS_PER_STUDY = 12  # per pairwise subtask, to keep studies comparable in weight
MIRRORED_SUFFIX = ".mirrored"
# (what to balance within, e.g. the pair of structures; the side to balance: True / False;
# the item). Free items (not balanced) have (None, None, item).
Candidate = tuple[tuple[str, ...] | None, bool | None, Item]
AXES = {"vertical": (2, "superior", "inferior"), "anterior_posterior": (1, "anterior", "posterior")}


def _ordered(c_a, c_b, min_a, max_a, min_b, max_b):
    """Whether a and b (centroids ``c``, extents [min, max] along one world axis; numbers or
    arrays, compared element-wise) are unambiguously ordered: centroids at least
    MARGINS.min_centroid_separation_mm apart and extents overlapping by at most
    MARGINS.max_extent_overlap_mm."""
    a_up = c_a > c_b
    gap = np.where(a_up, c_a - c_b, c_b - c_a)
    overlap = np.where(a_up, min_a - max_b, min_b - max_a)
    return ~(gap < MARGINS.min_centroid_separation_mm) & ~(overlap < -MARGINS.max_extent_overlap_mm)


def axis_order(a: Structure, b: Structure, axis: int) -> tuple[Structure, Structure] | None:
    """(higher, lower) along world ``axis`` (0 x: right, 1 y: anterior, 2 z: superior) when
    the margins make the order unambiguous (``_ordered``); None otherwise. Shared with report
    verification (voxqa.radreports.verify), so a claim is judged as a question is asked."""
    if not _ordered(a.centroid_ras[axis], b.centroid_ras[axis], a.bbox_ras_min[axis], a.bbox_ras_max[axis],
                    b.bbox_ras_min[axis], b.bbox_ras_max[axis]):
        return None
    return (a, b) if a.centroid_ras[axis] > b.centroid_ras[axis] else (b, a)


def midline_span(s: Structure, midline_x: float) -> tuple[float, float]:
    """(nearest, farthest) distance of the structure's x-extent from the midline (0 when it
    crosses it)."""
    lo, hi = s.bbox_ras_min[0] - midline_x, s.bbox_ras_max[0] - midline_x
    near = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
    return near, max(abs(lo), abs(hi))


def _medial(d_a, d_b, near_a, far_a, near_b, far_b):
    """Whether one of a and b is unambiguously nearer the midline (numbers or arrays): ``d``
    the centroid's distance from it, ``near``/``far`` the extent's (``midline_span``); the
    margins of ``_ordered``."""
    a_in = d_a < d_b
    return (~(np.abs(d_a - d_b) < MARGINS.min_centroid_separation_mm)
            & ~(np.where(a_in, far_a - near_b, far_b - near_a) > MARGINS.max_extent_overlap_mm))


def centricity_order(a: Structure, b: Structure, midline_x: float) -> tuple[Structure, Structure] | None:
    """(medial, lateral) when one structure is unambiguously nearer the midline
    (``_medial``); None otherwise."""
    da, db = abs(a.centroid_ras[0] - midline_x), abs(b.centroid_ras[0] - midline_x)
    if not _medial(da, db, *midline_span(a, midline_x), *midline_span(b, midline_x)):
        return None
    return (a, b) if da < db else (b, a)


def _sizes_differ(v_a, v_b):
    """Whether the larger volume is at least MARGINS.min_size_ratio times the smaller (numbers or arrays)."""
    return np.maximum(v_a, v_b) >= MARGINS.min_size_ratio * np.minimum(v_a, v_b)


@dataclass(frozen=True)
class StructureTable:
    """A study's shown structures as arrays (row i: ``structures[i]``), so that a pairwise
    rule judges one structure against all later ones at once."""

    structures: list[Structure]
    centroid: np.ndarray  # (n, 3) RAS+ mm
    lo: np.ndarray  # (n, 3) bbox_ras_min
    hi: np.ndarray  # (n, 3) bbox_ras_max
    volume: np.ndarray
    truncated: np.ndarray

    @classmethod
    def shown(cls, g: SegGeometry) -> StructureTable:
        """The structures a volume-level item of the study shows (pairs are asked of them)."""
        structures = [s for s in g.structures if _visible_frames(s, g)]

        def rows(values: list, width: int = 3) -> np.ndarray:
            return np.array(values, dtype=np.float64).reshape(-1, width)

        return cls(structures, rows([s.centroid_ras for s in structures]),
                   rows([s.bbox_ras_min for s in structures]), rows([s.bbox_ras_max for s in structures]),
                   rows([s.volume_ml for s in structures], 1)[:, 0],
                   np.array([s.truncated for s in structures], dtype=bool))


#: A pairwise rule for ``draw_pairs`` over a ``StructureTable``: row i -> (which of the rows
#: after i pair with it, {reason: pairs not asked for it}).
Judge = Callable[[int], tuple[np.ndarray, dict[str, int]]]


def axis_judge(t: StructureTable, axis: int) -> Judge:
    """Pairs ordered along world ``axis`` as ``axis_order`` asks them."""
    c, lo, hi = t.centroid[:, axis], t.lo[:, axis], t.hi[:, axis]

    def judge(i: int) -> tuple[np.ndarray, dict[str, int]]:
        ok = _ordered(c[i], c[i + 1:], lo[i], hi[i], lo[i + 1:], hi[i + 1:])
        return ok, {"overlapping extents": ok.size - int(np.count_nonzero(ok))}

    return judge


def medial_judge(t: StructureTable, midline_x: float, is_midline: Callable[[str], bool]) -> Judge:
    """Pairs of off-midline structures that ``centricity_order`` orders."""
    on_midline = np.array([is_midline(s.name) for s in t.structures], dtype=bool)
    d = np.abs(t.centroid[:, 0] - midline_x)
    near, far = np.array([midline_span(s, midline_x) for s in t.structures], dtype=np.float64).reshape(-1, 2).T

    def judge(i: int) -> tuple[np.ndarray, dict[str, int]]:
        medial = _medial(d[i], d[i + 1:], near[i], far[i], near[i + 1:], far[i + 1:])
        asked = ~(on_midline[i] | on_midline[i + 1:])  # midline structures: never asked, not counted
        return asked & medial, {"overlapping distances": int(np.count_nonzero(asked & ~medial))}

    return judge


def size_judge(t: StructureTable) -> Judge:
    """Pairs of whole (not cut off) structures whose volumes differ enough (``_sizes_differ``)."""

    def judge(i: int) -> tuple[np.ndarray, dict[str, int]]:
        cut = t.truncated[i] | t.truncated[i + 1:]
        differ = _sizes_differ(t.volume[i], t.volume[i + 1:])
        return ~cut & differ, {"structure cut off by the field of view": int(np.count_nonzero(cut)),
                               "volumes too similar": int(np.count_nonzero(~cut & ~differ))}

    return judge


def draw_pairs(t: StructureTable, r, ctx: BuildContext, template: str, judge: Judge
               ) -> list[tuple[Structure, Structure]]:
    """Up to MAX_PAIRS_PER_STUDY pairs of ``t``'s structures that ``judge`` accepts, drawn
    from all of them in ``itertools.combinations`` order (the draws ``r.sample`` makes from
    that list); the pairs not asked are counted per reason. ``judge`` takes one structure
    against all later ones at once, so thousands of structures (millions of pairs) cost one
    array operation per structure and no list of pairs."""
    counts = []
    for i in range(len(t.structures)):
        ok, skipped = judge(i)
        counts.append(int(np.count_nonzero(ok)))
        for reason, n in skipped.items():
            if n:
                ctx.skip(template, reason, n)
    ends = np.cumsum(counts, dtype=np.int64)
    total = int(ends[-1]) if len(ends) else 0
    pairs = []
    for p in r.sample(range(total), min(MAX_PAIRS_PER_STUDY, total)):
        i = int(np.searchsorted(ends, p, side="right"))
        j = i + 1 + int(np.flatnonzero(judge(i)[0])[p - (int(ends[i - 1]) if i else 0)])
        pairs.append((t.structures[i], t.structures[j]))
    return pairs


class Distractors:
    """Other structures of a study by centroid distance (the hardest distractors), for many
    queries: distances to all structures at once, the exact order among the few nearest."""

    #: Relative slack between the array distances and the exact ones (a few ulp apart).
    SLACK = 1e-9

    def __init__(self, structures: Sequence[Structure]) -> None:
        self.structures = list(structures)
        self.centroids = np.array([s.centroid_ras for s in structures], dtype=np.float64).reshape(-1, 3)
        self.index = {s.name: i for i, s in enumerate(structures)}
        self.lesion = np.array([is_lesion(s.name) for s in structures], dtype=bool)

    def nearest(self, s: Structure, exclude: Collection[str], k: int, lesions: bool = True) -> list[Structure]:
        """The ``k`` structures nearest ``s`` by squared centroid distance, then name, leaving
        out those named in ``exclude`` (and lesions unless ``lesions``)."""
        allowed = np.ones(len(self.structures), dtype=bool) if lesions else ~self.lesion
        allowed[[self.index[n] for n in exclude if n in self.index]] = False
        idx = np.flatnonzero(allowed)
        if k <= 0:
            return []
        if len(idx) > k:  # keep the k nearest (and any within rounding of the k-th) ...
            approx = ((self.centroids[idx] - np.asarray(s.centroid_ras)) ** 2).sum(axis=1)
            kth = np.partition(approx, k - 1)[k - 1]
            idx = idx[approx <= kth * (1 + self.SLACK)]
        # ... and order them exactly as all of them would be ordered
        return sorted((self.structures[i] for i in idx), key=lambda o: (
            sum((p - q) ** 2 for p, q in zip(o.centroid_ras, s.centroid_ras, strict=False)), o.name))[:k]


def _key_frame(s: Structure, g: SegGeometry) -> int:
    """The shown frame where the structure's box is largest (ties: the lowest); any frame
    when none is shown (frame-level items show their own frame; volume-level questions
    about structures on no shown frame are not asked)."""
    return max(_visible_frames(s, g) or s.frame_boxes, key=lambda k: (_area(s.frame_boxes[k]), -k))


def _visible_frames(s: Structure, g: SegGeometry) -> list[int]:
    """Frames of the structure that a volume-level item shows (``SegGeometry.shown_frames``)."""
    return [k for k in s.frame_boxes if g.shown_frames is None or k in g.shown_frames]


def _area(b: Sequence[int]) -> int:
    return (b[2] - b[0]) * (b[3] - b[1])


def _ev(s: Structure, g: SegGeometry, frames: Sequence[int] | None = None) -> list[Evidence]:
    ks = [_key_frame(s, g)] if frames is None else frames
    return [Evidence(label=s.name, frame=k, box=s.frame_boxes[k]) for k in ks]


def _on_frame(s: Structure, k: int) -> list[Evidence]:
    """The structure's box on frame k (none if it has no voxel there)."""
    return [Evidence(label=s.name, frame=k, box=s.frame_boxes[k])] if k in s.frame_boxes else []


def _box_text(b: Sequence[int]) -> str:
    return f"[{b[0]}, {b[1]}, {b[2]}, {b[3]}]"


def _cite(e: Evidence) -> str:
    return f"Frame {e.frame}: {_box_text(e.box)}"


def mirrored_id(study_id: str) -> str:
    """The id of a study's mirrored twin (see ``SegGeometry.mirrored``)."""
    return f"{study_id}{MIRRORED_SUFFIX}"


def _xyz(v: Sequence[float]) -> str:
    return f"({v[0]:.1f}, {v[1]:.1f}, {v[2]:.1f}) mm"


def _where(s: Structure, g: SegGeometry) -> str:
    """'liver: centroid (64.1, -20.3, 12.0) mm, frames 3-29, Frame 15: [10, 20, 60, 70]'."""
    k = _key_frame(s, g)
    b = s.frame_boxes[k]
    return (
        f"{s.name}: centroid {_xyz(s.centroid_ras)}, frames {s.frames[0]}-{s.frames[-1]}, "
        f"Frame {k}: [{b[0]}, {b[1]}, {b[2]}, {b[3]}]"
    )


def _choice(options: list[str], answer: str) -> tuple[dict, str, list[str]]:
    return {"type": "choice", "value": options.index(answer)}, answer, options


def _n(s: Structure | str) -> str:
    """The structure as a question names it."""
    return display_name(s if isinstance(s, str) else s.name)


def _balanced(a: Structure, b: Structure, way: bool, answer: bool, item: Item) -> Candidate:
    """A two-structure relation, balanced on which ``way`` it goes per pair of names (the
    blind audit's learner sees the names). Prior-answerable relations of normal anatomy go
    one way by nature; they are balanced on the ``answer`` only, and scored apart."""
    if item.prior_answerable:
        return None, answer, item
    return (min(a.name, b.name), max(a.name, b.name)), way, item


def _normal(*ss: Structure) -> bool:
    """All normal anatomy (no lesion): relations between them are anatomical knowledge."""
    return not any(is_lesion(s.name) for s in ss)


class Spatial:
    """Spatial relations and extents (task ``spatial``; presence -> detection, per-frame
    boxes -> localization, counts -> counting)."""

    name = TASK

    def __init__(self, midline: Callable[[str], bool], pair_of: Callable[[str], str | None]):
        self.midline = midline
        self.pair_of = pair_of

    def generate(self, studies: Sequence[StudyView], ctx: BuildContext) -> list[Item]:
        views = [v for v in studies if v.geometry is not None]
        twins = {v.id: v for v in views if v.geometry.mirrored}
        originals = [v for v in views if not v.geometry.mirrored]
        candidates: list[Candidate] = []
        for v in originals:
            candidates += self._study(v, ctx)
        out = balance_candidates(candidates, ctx, "spatial", "dropped to balance per structure")
        for v in originals:
            out += self._side_pairs(v, twins.get(mirrored_id(v.id)), ctx)
        return out

    # -- per study ----------------------------------------------------------------------
    def _study(self, v: StudyView, ctx: BuildContext) -> list[Candidate]:
        g: SegGeometry = v.geometry
        r = rng(ctx.seed, "spatial", v.id)
        found: list[Candidate] = []
        if g.orientation_known:
            for subtask in AXES:
                found += self._axis_pairs(v, g, ctx, subtask, r)
            found += self._centricity(v, g, ctx, r)
        else:
            ctx.skip("spatial", "no patient orientation (no side or direction questions)")
        found += self._adjacency(v, g, ctx, r)
        found += self._size(v, g, ctx, r)
        found += self._extent(v, g, ctx)
        found += self._presence(v, g, r)
        found += self._counts(v, g, ctx)
        return found

    def _item(self, kind: str, v: StudyView, subtask: str, label: str, question: str, answer: dict,
              answer_text: str, evidence: list[Evidence], why: str, chance: float | None,
              options: list[str] | None = None, variant: str | None = None,
              task: str = TASK, frame: int | None = None, prior: bool = False) -> Item:
        uncited = [e for e in evidence if _cite(e) not in why]
        if uncited:  # every evidence box is cited in the trace
            why += " Boxes: " + "; ".join(f"{_cite(e)} {e.label}" for e in uncited) + "."
        item = make_item(
            v, task=task, subtask=subtask, frame=frame, label=label, question=question,
            answer=answer, answer_text=answer_text, evidence=evidence,
            reasoning=f"{why} Answer: {answer_text}.", chance=chance, options=options,
            category=CATEGORIES[subtask], variant=variant, kind=kind,
        )
        item.prior_answerable = prior
        return item

    def _side_pairs(self, v: StudyView, twin: StudyView | None, ctx: BuildContext) -> list[Item]:
        """Side questions with their mirrored twins: same text, the other answer."""
        g: SegGeometry = v.geometry
        if not g.orientation_known:
            return []
        if g.side_conflicts:
            ctx.skip("spatial/laterality", "side in a label name contradicts geometry")
            return []
        if twin is None:
            ctx.skip("spatial/laterality", "no mirrored twin")
            return []
        mirrored = {it.question: it for it in self._laterality(twin, twin.geometry, BuildContext(
            seed=ctx.seed, is_pathology=ctx.is_pathology))}
        out = []
        for it in self._laterality(v, g, ctx):
            other = mirrored.get(it.question)
            if other is None or other.answer == it.answer:
                ctx.skip("spatial/laterality", "mirrored twin not asked")
                continue
            out += [it.model_copy(update={"variant": "original", "pair_id": it.id}),
                    other.model_copy(update={"variant": "mirrored", "pair_id": it.id})]
        return out

    def _laterality(self, v: StudyView, g: SegGeometry, ctx: BuildContext) -> list[Item]:
        """Left or right of unpaired structures and lesions (never of a structure whose name
        gives its side), and which side of a paired organ is larger (side from geometry)."""
        m = g.midline_x
        out = []
        for s in g.structures:
            if self.midline(s.name) or side_of(s.name) or not _visible_frames(s, g):
                continue
            dx = s.centroid_ras[0] - m
            right = dx > 0
            crosses = s.bbox_ras_min[0] < m - MARGINS.max_extent_overlap_mm if right else (
                s.bbox_ras_max[0] > m + MARGINS.max_extent_overlap_mm)
            if abs(dx) < MARGINS.min_centroid_separation_mm or crosses:
                ctx.skip("spatial/laterality", "too close to the midline")
                continue
            side = "right" if right else "left"
            answer, text, options = _choice(["left", "right"], side)
            why = (
                f"Midline x = {m:.1f} mm ({g.midline_source}); +x is the patient's right. "
                f"{_where(s, g)}; its x-extent [{s.bbox_ras_min[0]:.1f}, {s.bbox_ras_max[0]:.1f}] mm "
                f"lies on the patient's {side}."
            )
            out.append(self._item(
                "laterality", v, "laterality", s.name,
                f"Is the {_n(s)} on the patient's left or right side?",
                answer, text, _ev(s, g), why, 0.5, options))  # its mirrored twin undoes the prior
        by = g.by_name()
        for s in g.structures:
            other = by.get(self.pair_of(s.name) or "")
            if other is None or side_of(s.name) != "left":
                continue
            if s.truncated or other.truncated:
                ctx.skip("spatial/laterality", "paired organ cut off by the field of view")
                continue
            big, small = (s, other) if s.volume_ml >= other.volume_ml else (other, s)
            if big.volume_ml < MARGINS.min_paired_size_ratio * small.volume_ml:
                ctx.skip("spatial/laterality", "paired sizes too similar")
                continue
            dx_big, dx_small = big.centroid_ras[0] - m, small.centroid_ras[0] - m
            if dx_big * dx_small >= 0 or min(abs(dx_big), abs(dx_small)) < MARGINS.min_centroid_separation_mm:
                ctx.skip("spatial/laterality", "paired organs not on opposite sides")
                continue
            side = "right" if dx_big > 0 else "left"
            base = display_name("_".join(t for t in s.name.split("_") if t != "left"))
            answer, text, options = _choice(["left", "right"], side)
            why = (
                f"Midline x = {m:.1f} mm ({g.midline_source}); +x is the patient's right. "
                f"{_where(big, g)}: {big.volume_ml:.1f} mL, on the patient's {side}; "
                f"{_where(small, g)}: {small.volume_ml:.1f} mL. The {side} one is "
                f"{big.volume_ml / small.volume_ml:.2f}x larger."
            )
            out.append(self._item(
                "paired_larger", v, "laterality", base,
                f"Which is larger, the left or the right {base}?",
                answer, text, _ev(s, g) + _ev(other, g), why, 0.5, options, variant="paired"))
        return out

    def _axis_pairs(self, v: StudyView, g: SegGeometry, ctx: BuildContext, subtask: str, r):
        axis, hi_word, lo_word = AXES[subtask]
        out = []
        t = StructureTable.shown(g)
        coord = "xyz"[axis]
        for n, (a, b) in enumerate(draw_pairs(t, r, ctx, f"spatial/{subtask}", axis_judge(t, axis))):
            hi, lo = axis_order(a, b, axis)  # type: ignore[misc]
            first, second = (hi, lo) if n % 2 == 0 else (lo, hi)
            word = hi_word if first is hi else lo_word
            answer, text, options = _choice([hi_word, lo_word], word)
            why = (
                f"{_where(hi, g)}; {_where(lo, g)}. {hi.name} spans {coord} = "
                f"[{hi.bbox_ras_min[axis]:.1f}, {hi.bbox_ras_max[axis]:.1f}] mm and {lo.name} "
                f"[{lo.bbox_ras_min[axis]:.1f}, {lo.bbox_ras_max[axis]:.1f}] mm; the centroids "
                f"differ by {hi.centroid_ras[axis] - lo.centroid_ras[axis]:.1f} mm, so "
                f"{first.name} is {word} to {second.name}."
            )
            out.append(_balanced(a, b, hi.name < lo.name, word == hi_word, self._item(
                subtask, v, subtask, first.name,
                f"Is the {_n(first)} {hi_word} or {lo_word} to the {_n(second)}?",
                answer, text, _ev(first, g) + _ev(second, g), why, 0.5, options,
                variant=second.name, prior=_normal(first, second))))
        return out

    def _centricity(self, v: StudyView, g: SegGeometry, ctx: BuildContext, r):
        m = g.midline_x
        t = StructureTable.shown(g)
        out = []
        for n, (a, b) in enumerate(draw_pairs(t, r, ctx, "spatial/medial_lateral",
                                               medial_judge(t, m, self.midline))):
            near, far = centricity_order(a, b, m)  # type: ignore[misc]
            first, second = (near, far) if n % 2 == 0 else (far, near)
            answer, text, options = _choice([_n(first), _n(second)], _n(near))
            why = (
                f"Midline x = {m:.1f} mm ({g.midline_source}). {_where(near, g)}: "
                f"{abs(near.centroid_ras[0] - m):.1f} mm from the midline, reaching at most "
                f"{midline_span(near, m)[1]:.1f} mm; {_where(far, g)}: {abs(far.centroid_ras[0] - m):.1f} mm, "
                f"no closer than {midline_span(far, m)[0]:.1f} mm."
            )
            out.append(_balanced(a, b, near.name < far.name, n % 2 == 0, self._item(
                "medial_lateral", v, "medial_lateral", first.name,
                f"Which is closer to the patient's midline: the {_n(first)} or the "
                f"{_n(second)}?", answer, text, _ev(near, g) + _ev(far, g), why, 0.5, options,
                variant=second.name, prior=_normal(near, far))))
        return out

    def _adjacency(self, v: StudyView, g: SegGeometry, ctx: BuildContext, r):
        by = g.by_name()
        distractors = Distractors(g.structures)
        out = []
        touching = sorted(sorted(p) for p in g.touching)
        near = sorted(sorted(p) for p in g.near_not_touching)
        for names, yes in [(p, True) for p in r.sample(touching, min(MAX_PAIRS_PER_STUDY, len(touching)))] + [
            (p, False) for p in r.sample(near, min(MAX_PAIRS_PER_STUDY, len(near)))
        ]:
            a, b = by[names[0]], by[names[1]]
            if not (_visible_frames(a, g) and _visible_frames(b, g)):
                continue
            why = (
                f"{_where(a, g)}; {_where(b, g)}. "
                + ("Voxels of the two structures lie within 3 mm of each other."
                   if yes else "Their bounding boxes come within 20 mm of each other, but no "
                   "voxels of the two are within 3 mm.")
            )
            text = "yes" if yes else "no"
            out.append(_balanced(a, b, yes, yes, self._item(
                "adjacency", v, "adjacency", a.name,
                f"Do the {_n(a)} and the {_n(b)} touch (within 3 mm)?",
                {"type": "yes_no", "value": text}, text, _ev(a, g) + _ev(b, g), why, 0.5,
                variant=b.name, prior=_normal(a, b))))
        for n, (lesion_name, (organ, share)) in enumerate(sorted(g.containers.items())):
            lesion, host = by[lesion_name], by[organ]
            others = [o.name for o in distractors.nearest(host, {lesion_name, organ}, ctx.n_options - 1,
                                                          lesions=False)]
            if len(others) < ctx.n_options - 1:
                continue
            pos = n % ctx.n_options
            options = [_n(o) for o in others]
            options.insert(pos, _n(organ))
            (pointer,) = _ev(lesion, g)
            why = (f"{_where(lesion, g)} lies within {_where(host, g)}: {share:.0%} of the lesion's "
                   f"voxels or of its one-voxel border belong to the {organ}.")
            out.append((None, None, self._item(
                "container", v, "adjacency", lesion_name,
                f"Which structure contains the lesion in the box {_box_text(pointer.box)} on "
                f"frame {pointer.frame}?",
                {"type": "choice", "value": pos}, _n(organ), [pointer] + _on_frame(host, pointer.frame), why,
                1 / len(options), options, variant="container", frame=pointer.frame,
                prior=True)))
        for n, name in enumerate(sorted(g.interior_points)):
            s = by[name]
            i, j, k = g.interior_points[name]
            taken = g.point_owners.get(name, {name}) | {name}
            if name in g.containers:
                taken.add(g.containers[name][0])
            others = distractors.nearest(s, taken, ctx.n_options - 1)
            if len(others) < ctx.n_options - 1:
                continue
            options = [_n(o) for o in others]
            pos = n % ctx.n_options
            options.insert(pos, _n(s))
            x, y = g.shape[0] - 1 - i, g.shape[1] - 1 - j  # voxqa.anatomy.frames
            box = (x, y, x + 1, y + 1)  # one pixel: a box, so resizing and profiles carry it
            point = Evidence(label=name, frame=k, box=box)
            why = (f"The pixel {_box_text(box)} on frame {k} shows voxel ({i}, {j}, {k}), "
                   f"deep inside {_where(s, g)}.")
            out.append((None, None, self._item(
                "point", v, "adjacency", name,
                f"Which structure contains the point at pixel box {_box_text(box)} on frame {k}?",
                {"type": "choice", "value": pos}, _n(s), [point] + _on_frame(s, k), why, 1 / len(options),
                options, variant="point", frame=k, prior=_normal(s))))
        return out

    def _size(self, v: StudyView, g: SegGeometry, ctx: BuildContext, r):
        t = StructureTable.shown(g)
        out = []
        for n, (a, b) in enumerate(draw_pairs(t, r, ctx, "spatial/size", size_judge(t))):
            big, small = (a, b) if a.volume_ml > b.volume_ml else (b, a)
            first, second = (big, small) if n % 2 == 0 else (small, big)
            answer, text, options = _choice([_n(first), _n(second)], _n(big))
            why = (
                f"{_where(big, g)}: {big.volume_ml:.1f} mL; {_where(small, g)}: "
                f"{small.volume_ml:.1f} mL ({big.volume_ml / small.volume_ml:.2f}x)."
            )
            out.append(_balanced(a, b, big.name < small.name, n % 2 == 0, self._item(
                "size_compare", v, "size", first.name,
                f"Which is larger: the {_n(first)} or the {_n(second)}?",
                answer, text, _ev(big, g) + _ev(small, g), why, 0.5, options, variant=second.name,
                prior=_normal(big, small))))
        for s in g.structures:
            if not _visible_frames(s, g) or s.truncated:
                continue
            ml = round(s.volume_ml, 1)
            why = f"{_where(s, g)}; {s.voxels} voxels of {s.volume_ml / s.voxels * 1000:.2f} mm^3."
            out.append((None, None, self._item(
                "volume_ml", v, "size", s.name, f"What is the volume of the {_n(s)} in mL?",
                {"type": "number", "value": ml, "tolerance": round(MARGINS.volume_relative_tolerance * ml, 3)},
                f"{ml} mL", _ev(s, g), why, None, variant="ml", prior=_normal(s))))
        return out

    def _extent(self, v: StudyView, g: SegGeometry, ctx: BuildContext):
        """Frames, 3D box and per-frame boxes, over the frames a volume-level item shows
        (all frames of a short volume; the evenly spaced ones of a long one, and then the
        question says "shown frames": an extent on frames the model never sees is unanswerable)."""
        out = []
        subset = g.shown_frames is not None and len(g.shown_frames) < g.shape[2]
        shown = " shown" if subset else ""
        for s in g.structures:
            frames = sorted(_visible_frames(s, g))
            if not frames:
                continue
            if s.truncated:
                ctx.skip("spatial/extent", "structure cut off by the field of view")
                continue
            ev = _ev(s, g, frames)
            span_text = "frames " + ", ".join(map(str, frames))
            if frames == list(range(frames[0], frames[-1] + 1)):
                span_text = f"frames {frames[0]}-{frames[-1]}"
            out.append((None, None, self._item(
                "frames", v, "extent", s.name, f"On which of the{shown} frames is the {_n(s)} visible?",
                {"type": "frames", "value": frames}, span_text, ev,
                f"{s.name} has voxels on {len(frames)} of the{shown} frames: {_where(s, g)}.", None)))
            boxes = [s.frame_boxes[k] for k in frames]
            x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
            x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
            box3d = {"frame_start": frames[0], "frame_end": frames[-1], "box": [x0, y0, x1, y1]}
            out.append((None, None, self._item(
                "box3d", v, "extent", s.name,
                f"What is the 3D bounding box of the {_n(s)} on the{shown} frames (first and last "
                "frame, and the pixel box enclosing it on every frame)?",
                {"type": "box3d", "value": box3d},
                f"frames {frames[0]}-{frames[-1]}, [{x0}, {y0}, {x1}, {y1}]", ev,
                f"{s.name} spans{shown} frames {frames[0]}-{frames[-1]}; the union of its frame "
                f"boxes there is [{x0}, {y0}, {x1}, {y1}]; world extent {_xyz(s.bbox_ras_min)} to "
                f"{_xyz(s.bbox_ras_max)}.", None, variant="box3d")))
            cites = "; ".join(f"Frame {e.frame}: [{', '.join(map(str, e.box))}]" for e in ev)
            out.append((None, None, self._item(
                "boxes", v, "extent", s.name, f"Give the bounding box of the {_n(s)} on every{shown} "
                "frame where it is visible.",
                {"type": "boxes", "value": [{"frame": e.frame, "box": list(e.box)} for e in ev]},
                cites, ev, f"{s.name}: {cites}.", None, variant="boxes", task="localization")))
        return out

    def _presence(self, v: StudyView, g: SegGeometry, r):
        """Is X in this volume / on frame k. Balanced per structure (and per frame index), so
        neither the name nor the frame number says the answer: across studies each structure
        is present as often as absent, on each frame as often as not."""
        out = []
        n_frames = g.shape[2]
        for s in g.structures:
            if not _visible_frames(s, g):
                continue
            out.append(((s.name,), True, self._item(
                "presence", v, "presence", s.name, f"Is the {_n(s)} visible in this volume?",
                {"type": "yes_no", "value": "yes"}, "yes", _ev(s, g), f"{_where(s, g)}.", 0.5,
                task="detection")))
            for k in r.sample(s.frames, min(PRESENCE_FRAMES, len(s.frames))):
                out.append(((s.name, str(k)), True, self._item(
                    "presence", v, "presence", s.name, f"Is the {_n(s)} visible on frame {k}?",
                    {"type": "yes_no", "value": "yes"}, "yes", _on_frame(s, k),
                    f"{s.name} on frame {k}: {_box_text(s.frame_boxes[k])}.", 0.5,
                    task="detection", frame=k)))
            away = [f for f in range(n_frames)
                    if f < s.frames[0] - FRAME_MARGIN or f > s.frames[-1] + FRAME_MARGIN]
            for k in r.sample(away, min(PRESENCE_FRAMES, len(away))):
                out.append(((s.name, str(k)), False, self._item(
                    "presence", v, "presence", s.name, f"Is the {_n(s)} visible on frame {k}?",
                    {"type": "yes_no", "value": "no"}, "no", [],
                    f"{s.name} lies on frames {s.frames[0]}-{s.frames[-1]} only, at least "
                    f"{FRAME_MARGIN} frames away from frame {k}.", 0.5, task="detection",
                    frame=k)))
        for name in g.absent:
            out.append(((name,), False, self._item(
                "presence", v, "presence", name, f"Is the {_n(name)} visible in this volume?",
                {"type": "yes_no", "value": "no"}, "no", [],
                f"The label map names {name} but has no voxel of it.", 0.5, task="detection")))
        return out

    def _counts(self, v: StudyView, g: SegGeometry, ctx: BuildContext):
        out = []
        for s in g.structures:
            if s.components is None or not is_lesion(s.name):
                continue
            n = len(s.components)
            ev = [_component_evidence(s, c, g) for c in s.components]
            if None in ev:
                ctx.skip("counting/lesion_count", "a counted lesion is on no shown frame")
                continue
            parts = "; ".join(f"{c.voxels} voxels at {_xyz(c.centroid_ras)} ({_cite(e)})"
                              for c, e in zip(s.components, ev, strict=False))
            out.append((None, None, self._item(
                "lesion_count", v, "count", s.name,
                f"How many separate {_plural(_n(s))} are there?",
                {"type": "number", "value": n}, str(n), ev,
                f"{s.name} has {n} connected component(s): {parts}.", None, task="counting")))
        for group, word in (("vertebrae_", "vertebrae"), ("rib_", "ribs")):
            members = [s for s in g.structures if s.name.startswith(group) and s.frame_boxes]
            if any(not _visible_frames(s, g) for s in members):
                ctx.skip(f"counting/{word}", "a counted structure is on no shown frame")
            elif len(members) >= 2:
                names = ", ".join(s.name for s in members)
                out.append((None, None, self._item(
                    word, v, "count", word, f"How many distinct {word} are visible in this volume?",
                    {"type": "number", "value": len(members)}, str(len(members)),
                    [e for s in members for e in _ev(s, g)],
                    f"Segmented {word}: {names}.", None, task="counting")))
        return out


def _plural(name: str) -> str:
    return name if name.endswith("s") else name + "s"


def _component_evidence(s: Structure, c: Component, g: SegGeometry) -> Evidence | None:
    """A box enclosing one component on its shown frame nearest its middle: the component's
    voxel box projected onto the frame, cut to the structure's box there (None: no frame of
    the component is shown)."""
    i0, j0, k0, i1, j1, k1 = c.bbox_vox
    # a connected component has voxels on every frame of its box
    shown = [k for k in range(k0, k1) if g.shown_frames is None or k in g.shown_frames]
    if not shown:
        return None
    k = min(shown, key=lambda f: (abs(2 * f - (k0 + k1 - 1)), f))
    x0, y0, x1, y1 = voxel_box_to_frame_box(i0, j0, i1, j1, g.shape)
    f0, g0, f1, g1 = s.frame_boxes[k]
    box = (max(x0, f0), max(y0, g0), min(x1, f1), min(y1, g1))
    return Evidence(label=s.name, frame=k, box=box)
