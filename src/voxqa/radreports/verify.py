"""Verify claims against a study's segmentation geometry (world coordinates, RAS+ mm).

The decisions are the ones ``voxqa build segmentation`` asks questions with, imported, not
re-derived: ``tasks.spatial.axis_order`` (centroids >= ``MARGINS.min_centroid_separation_mm`` apart,
extents overlapping by <= ``max_extent_overlap_mm``) for above/below, anterior/posterior and left/right of
another structure; ``centricity_order`` for medial/lateral; the contact sets of
``anatomy.relations.contacts`` (within ``touch_tolerance_mm``) for adjacency; lesion
containers for "within"; the size rule (``min_size_ratio``, never for cut-off structures) for
"larger". A structure's side of the body is its centroid's, at least ``min_centroid_separation_mm`` from
the midline (as ``relations.side_conflicts`` judges a sided name).

Verdicts: ``supported``, ``contradicted``, or ``unverifiable`` (structure not segmented,
relation ambiguous under the margins, structure cut off, no patient orientation). A
structure missing from the segmentation is unverifiable (it may lie outside the field of
view), except a sided one whose counterpart is segmented: "left renal cyst" with no left
kidney but a right one contradicts, and "status post left nephrectomy" is then supported.
A claim about a group ("lung_left": the lobes) or a plural holds if it holds for every part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from voxqa.anatomy.labelnames import SPINE_SEGMENTS, is_lesion, midline, pair_of, side_of
from voxqa.anatomy.margins import MARGINS
from voxqa.anatomy.relations import NEAR_MM, SegGeometry
from voxqa.anatomy.structures import Structure
from voxqa.radreports.claims import Claim, Verdict, combine
from voxqa.radreports.lexicon import LESION
from voxqa.tasks.spatial import axis_order, centricity_order

#: relation -> (world axis, True when structures[0] is the higher one along it)
AXES = {"superior": (2, True), "inferior": (2, False), "anterior": (1, True), "posterior": (1, False),
        "right_of": (0, True), "left_of": (0, False)}
_AXIS_WORDS = {0: ("right of", "left of"), 1: ("anterior to", "posterior to"), 2: ("superior to", "inferior to")}
_FLIP: dict[Verdict, Verdict] = {"supported": "contradicted", "contradicted": "supported",
                                 "unverifiable": "unverifiable"}
Result = tuple[Verdict, str, list[str]]  # verdict, reason, structures it rests on


def parts(term: str, names: Sequence[str]) -> list[str]:
    """The segmented structures a claimed name stands for: itself, else its parts
    ("lung_left" -> lung_upper_lobe_left, lung_lower_lobe_left; "kidney" -> both kidneys;
    "rib_7" -> both 7th ribs; "lumbar_spine" -> vertebrae L1-L5; "lesion" -> every lesion label)."""
    if term in names:
        return [term]
    if term == LESION:
        return sorted(n for n in names if is_lesion(n))
    if term in SPINE_SEGMENTS:
        return sorted(n for n in names if re.fullmatch(rf"vertebrae_{SPINE_SEGMENTS[term]}\d+", n))
    side, base = side_of(term), _unsided(term)
    return sorted(n for n in names if (_unsided(n) == base or _unsided(n).startswith(base + "_"))
                  and not is_lesion(n) and (side is None or side_of(n) == side))


def _unsided(name: str) -> str:
    """A name without its side tokens ("rib_left_7" -> "rib_7", "lung_upper_lobe_left" -> "lung_upper_lobe")."""
    return "_".join(t for t in name.split("_") if t not in ("left", "right"))


def verify(claim: Claim, geometry: SegGeometry, voxels: Mapping[str, int]) -> Claim:
    """The claim with its verdict, reason and the geometry it rests on. ``voxels``: every
    segmented structure's voxel count, tiny ones included (``Study.findings``)."""
    verdict, reason, used = _verify(claim, geometry, voxels)
    by = geometry.by_name()
    if claim.polarity == "negative" and claim.relation != "present":
        verdict, reason = _FLIP[verdict], f"negated claim; {reason}"
    facts = {"midline_x_mm": round(geometry.midline_x, 1),
             "structures": {n: _facts(by[n]) if n in by else {"voxels": voxels[n]} for n in used if n in voxels}}
    return claim.model_copy(update={"verdict": verdict, "reason": reason, "geometry": facts})


def _facts(s: Structure) -> dict:
    return {"voxels": s.voxels, "centroid_mm": [round(v, 1) for v in s.centroid_ras],
            "min_mm": [round(v, 1) for v in s.bbox_ras_min], "max_mm": [round(v, 1) for v in s.bbox_ras_max],
            "truncated": s.truncated}


def _verify(claim: Claim, g: SegGeometry, everything: Mapping[str, int]) -> Result:
    names = sorted(everything)
    resolved = [parts(t, names) for t in claim.structures]
    if claim.relation == "present":
        return _presence(claim.structures[0], resolved[0], everything, claim.polarity == "positive")
    for term, found in zip(claim.structures, resolved, strict=False):
        if not found:
            return _presence(term, found, everything, True)
    usable = {s.name: s for s in g.structures}
    if claim.relation == "within":
        return _within(resolved[0], resolved[1], g)
    sets = [[usable[n] for n in found if n in usable] for found in resolved]
    if not all(sets):
        small = [n for found in resolved for n in found if n not in usable]
        return "unverifiable", f"too few voxels to place: {', '.join(small)}", small
    if claim.relation != "adjacent" and not g.orientation_known:
        return "unverifiable", "the files state no patient orientation", []
    if claim.relation == "side":
        return _all([_side(s, claim.side or "", g) for s in sets[0]])
    return _all([_binary(claim.relation, a, b, g) for a in sets[0] for b in sets[1]])


def _all(results: list[Result]) -> Result:
    verdict = combine(r[0] for r in results)
    shown = [r for r in results if r[0] == verdict] or results
    return verdict, "; ".join(r[1] for r in shown), sorted({n for r in results for n in r[2]})


def _presence(term: str, found: list[str], everything: Mapping[str, int], claimed: bool) -> Result:
    """Present (``claimed`` True) or absent, e.g. removed by an operation."""
    if found:
        voxels = sum(everything[n] for n in found)
        what = f"{' + '.join(found)}: {voxels:,} voxels segmented"
        return ("supported" if claimed else "contradicted"), what, found
    other = pair_of(term)
    if other and other in everything:
        what = f"no {term} in the segmentation while {other} is ({everything[other]:,} voxels)"
        return ("contradicted" if claimed else "supported"), what, [other]
    return "unverifiable", f"{term} is not segmented (absent from the label map or outside the field of view)", []


def _side(s: Structure, side: str, g: SegGeometry) -> Result:
    dx = s.centroid_ras[0] - g.midline_x  # +x is the patient's right
    where = f"{s.name} centroid x = {s.centroid_ras[0]:.1f} mm, midline x = {g.midline_x:.1f} mm"
    if abs(dx) < MARGINS.min_centroid_separation_mm:
        return "unverifiable", f"{where}: within {MARGINS.min_centroid_separation_mm:g} mm of the midline", [s.name]
    actual = "right" if dx > 0 else "left"
    return ("supported" if actual == side else "contradicted"), f"{where}: on the patient's {actual}", [s.name]


def _span(s: Structure, axis: int) -> str:
    return f"{s.name} {'xyz'[axis]} {s.bbox_ras_min[axis]:.1f}..{s.bbox_ras_max[axis]:.1f} mm (centroid {s.centroid_ras[axis]:.1f})"


def _binary(relation: str, a: Structure, b: Structure, g: SegGeometry) -> Result:
    used = [a.name, b.name]
    if relation in AXES:
        axis, a_higher = AXES[relation]
        order = axis_order(a, b, axis)
        spans = f"{_span(a, axis)}, {_span(b, axis)}"
        if order is None:
            return "unverifiable", f"{spans}: ambiguous under the margins", used
        holds = (order[0] is a) == a_higher
        word = _AXIS_WORDS[axis][0 if order[0] is a else 1]
        return ("supported" if holds else "contradicted"), f"{a.name} is {word} {b.name}: {spans}", used
    if relation in ("medial", "lateral"):
        if midline(a.name) or midline(b.name):
            return "unverifiable", "medial/lateral is not asked of a midline structure", used
        order = centricity_order(a, b, g.midline_x)
        dist = (f"{a.name} {abs(a.centroid_ras[0] - g.midline_x):.1f} mm, {b.name} "
                f"{abs(b.centroid_ras[0] - g.midline_x):.1f} mm from the midline")
        if order is None:
            return "unverifiable", f"{dist}: their distances from the midline overlap (ambiguous)", used
        holds = (order[0] is a) == (relation == "medial")
        return ("supported" if holds else "contradicted"), f"{order[0].name} is medial: {dist}", used
    if relation == "adjacent":
        pair = frozenset(used)
        if pair in g.touching:
            return "supported", f"voxels of {a.name} and {b.name} lie within {MARGINS.touch_tolerance_mm:g} mm", used
        gap = "boxes within" if pair in g.near_not_touching else "boxes more than"
        return "contradicted", (f"{a.name} and {b.name} do not touch ({gap} {NEAR_MM:g} mm, no voxels "
                                f"within {MARGINS.touch_tolerance_mm:g} mm)"), used
    if relation == "larger":
        if a.truncated or b.truncated:
            cut = ", ".join(s.name for s in (a, b) if s.truncated)
            return "unverifiable", f"cut off by the field of view (truncated): {cut}", used
        sizes = f"{a.name} {a.volume_ml:.1f} mL, {b.name} {b.volume_ml:.1f} mL"
        big, small = max(a.volume_ml, b.volume_ml), min(a.volume_ml, b.volume_ml)
        if big < MARGINS.min_size_ratio * small:
            return "unverifiable", f"{sizes}: within a factor {MARGINS.min_size_ratio:g}", used
        return ("supported" if a.volume_ml > b.volume_ml else "contradicted"), sizes, used
    raise ValueError(f"unknown relation {relation!r}")


def _within(lesions: list[str], hosts: list[str], g: SegGeometry) -> Result:
    """Some segmented lesion lies in the host (``SegGeometry.containers``)."""
    inside = [(n, g.containers[n]) for n in lesions if n in g.containers]
    for name, (host, share) in inside:
        if host in hosts:
            return "supported", f"{share:.0%} of {name} lies within {host}", [name, host]
    where = "; ".join(f"{n} in {h}" for n, (h, _) in inside) or "no container measured"
    return "unverifiable", f"no segmented lesion within {' / '.join(hosts)} ({where})", lesions + hosts
