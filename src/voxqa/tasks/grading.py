"""MOAKS knee grading with region-first reasoning (3DReasonKnee), task family ``grading``.

3DReasonKnee found that localisation is the bottleneck of grading: models grade better when
given the region. So every trace goes region first:

1. **locate**: the region's frames and its box on its key frame (the largest among the frames
   the item shows), as the other families cite boxes (a region located by its parts says so);
2. **inspect**: what the evidence is: the frames the region's lesion mask covers (a lesion
   mask of the label map, ``<kind>_<region>``), or that no mask of the region marks the
   finding, so the grade is the MOAKS reading's (it then never claims the finding is absent
   where the grade says it is there);
3. **grade**: the grade with its MOAKS meaning (binary findings: present or absent).

Items per graded (region, feature) of a study (``voxqa.anatomy.knee.FEATURES``):

* ``grading/<feature>``: the grade, answer type ``grade``, the scale as options. Real grades
  are skewed towards 0, so a constant answer beats uniform chance: grade items carry no
  ``chance``, and the blind audit measures them against the best constant answer (its
  ``constant`` baseline); the build manifest states both per feature. A nominal feature (the
  tear location) is a ``choice`` among its legend (chance 1 in 4), never an ordered grade;
* ``grading/<kind>_presence`` (BML, cartilage loss, osteophyte): "any ... in the region?",
  yes iff the feature's grade > 0, balanced yes/no per (split, template, region);
* binary findings (``acl_tear``, ...): yes/no, balanced the same way;
* ``localization/region_box3d``: the 3D box of each region with a box (frames inclusive,
  pixels max exclusive, on the sagittal frames), once per study and region.

Every grading item carries its region's 3D box as ``Item.region`` (the whole volume for
``joint`` features), which GT-region mode gives, and ``guided_question``: the question with
the released guidance of its feature, which guided mode asks. Balancing drops the surplus
answer, counted in ``ctx.skipped``; grade and box items are never dropped. A grade whose
region has no box (not in the label map or boxes.csv, nor its parts) is not asked (counted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from voxqa.anatomy.knee import FEATURES, JOINT, LESION_KINDS, Feature, where
from voxqa.schema import Box3D, Evidence, Finding, Item, Study
from voxqa.tasks.base import (
    BuildContext,
    StudyView,
    balance,
    cite,
    fmt_box,
    frames_text,
    group_by,
    make_item,
    yes_no,
)

TASK = "grading"
LOCALIZATION = "localization"
Candidate = tuple[str | None, bool | None, Item]  # (balance key, yes?, item); free: (None, None, item)
LESION_WORDS = {"bml": "bone marrow lesion", "cartilage": "cartilage loss", "osteophyte": "osteophyte"}
FOUND = {"bml": "a bone marrow lesion", "cartilage": "cartilage loss", "osteophyte": "an osteophyte"}


def _regions(v: StudyView) -> dict[str, Finding]:
    return {f.label: f for f in v.instances if f.attributes.get("kind") == "region"}


def _whole_volume(study: Study) -> Box3D | None:
    """The whole knee as a 3D box (``joint`` features), when the frame count is known."""
    if study.frame_count is None:
        return None
    width, height = study.frame_size
    return Box3D(frame_start=0, frame_end=study.frame_count - 1, box=(0, 0, width, height))


class Grading:
    """Grades, presence and binary findings per (region, feature), and region 3D boxes."""

    name = TASK

    def generate(self, studies: Sequence[StudyView], ctx: BuildContext) -> list[Item]:
        candidates: list[Candidate] = []
        for v in studies:
            if v.study.source == "knee":
                candidates += self._study(v, ctx)
        out = [item for key, _, item in candidates if key is None]
        for (split, template, key), group in group_by(
            [c for c in candidates if c[0] is not None], lambda c: (c[2].split, c[2].template, c[0])
        ).items():
            yes = [item for _, side, item in group if side]
            no = [item for _, side, item in group if not side]
            pos, neg = balance(yes, no, ctx.seed, TASK, split, template, key)
            out += pos + neg
            if len(yes) != len(no):
                ctx.skip(template, "dropped to balance yes/no per region", len(yes) + len(no) - 2 * len(pos))
        return out

    def _study(self, v: StudyView, ctx: BuildContext) -> list[Candidate]:
        regions = _regions(v)
        found: list[Candidate] = []
        for name, region in sorted(regions.items()):
            found.append((None, None, self._box_item(v, name, region)))
        masks = any(f.attributes.get("kind") in LESION_KINDS for f in v.instances)
        for g in (f for f in v.study.findings if f.study_level and "feature" in f.attributes):
            feature = FEATURES[str(g.attributes["feature"])]
            region_name, grade = str(g.attributes["region"]), int(g.attributes["grade"])
            region = regions.get(region_name)
            if region is None and region_name != JOINT:
                ctx.skip(f"{TASK}/{feature.name}/volume", "region has no box (not in the labels or boxes.csv)")
                continue
            evidence = _evidence(region)
            if not ctx.shows(v, evidence):
                ctx.skip(f"{TASK}/{feature.name}/volume")
                continue
            box = region.box3d if region is not None else _whole_volume(v.study)
            trace = _locate(region_name, region) + " " + _inspect(v, feature, region_name, box, grade, masks, ctx)
            found += [(key, side, item.model_copy(update={
                "region": box, "guided_question": f"{item.question} {feature.guidance}"}))
                for key, side, item in self._grade_items(v, feature, region_name, grade, evidence, trace)]
        return found

    def _grade_items(self, v: StudyView, feature: Feature, name: str, grade: int, evidence: list[Evidence],
                     trace: str) -> list[Candidate]:
        place = where(name)
        legend = feature.legend(name)
        if feature.binary:
            answer, text = yes_no(grade == 1)
            item = make_item(v, task=TASK, subtask=feature.name, frame=None, label=name,
                             question=(feature.ask or "Is there {criterion}{in_where}?").format(
                                 criterion=feature.criterion, in_where=_in(feature, place)), answer=answer,
                             answer_text=text, evidence=evidence, chance=0.5,
                             reasoning=f"{trace} Decide: {_decided(feature, grade)} Answer: {text}.")
            return [(name, grade == 1, item)]
        if feature.nominal:  # a code, not an order: a choice among the legend
            assert feature.ask is not None
            return [(None, None, make_item(
                v, task=TASK, subtask=feature.name, frame=None, label=name,
                question=feature.ask.format(where=place), options=list(legend),
                answer={"type": "choice", "value": feature.scale.index(grade)}, answer_text=legend[grade],
                evidence=evidence, chance=1 / len(legend),
                reasoning=f"{trace} Decide: {feature.criterion}: {legend[grade]}. Answer: {legend[grade]}.",
            ))]
        verdict = f"Grade {grade}: {legend[grade]}"
        graded = f"the {feature.criterion} is Grade {grade} ({legend[grade]})"
        out: list[Candidate] = [(None, None, make_item(
            v, task=TASK, subtask=feature.name, frame=None, label=name,
            question=f"Grade the {feature.criterion} in {place} on the MOAKS scale.",
            options=[f"Grade {g}: {t}" for g, t in zip(feature.scale, legend, strict=False)],
            answer={"type": "grade", "value": grade, "scale": list(feature.scale)},
            answer_text=verdict, evidence=evidence, reasoning=f"{trace} Grade: {graded}.", chance=None,
        ))]
        if feature.presence:
            answer, text = yes_no(grade > 0)
            so = f"so there is {FOUND[feature.lesion or '']}" if grade else "so there is none"
            out.append((name, grade > 0, make_item(
                v, task=TASK, subtask=f"{feature.lesion}_presence", frame=None, label=name,
                question=f"Is there {feature.presence} in {place}?", answer=answer, answer_text=text,
                evidence=evidence, chance=0.5, reasoning=f"{trace} Decide: {graded}, {so}. Answer: {text}.",
            )))
        return out

    def _box_item(self, v: StudyView, name: str, region: Finding) -> Item:
        b = region.box3d
        assert b is not None
        text = f"frames {b.frame_start}-{b.frame_end}, {fmt_box(b.box)}"
        return make_item(
            v, task=LOCALIZATION, subtask="region_box3d", frame=None, label=name,
            question=(f"Give the 3D bounding box of {where(name)}: its first and last frame "
                      "(as labelled) and its box on those frames."),
            answer={"type": "box3d", "value": b.model_dump()}, answer_text=text, evidence=[],
            reasoning=f"Locate: {where(name)} is {_labelled(region)} on frames {b.frame_start}-{b.frame_end}; "
                      f"its 3D box is {text}.", chance=None,
        )


def _in(feature: Feature, place: str) -> str:
    """" in the medial meniscus" where the feature is graded in several regions; "" where
    its one region is what it names ("a complete ACL tear", "loose bodies" in the joint)."""
    return f" in {place}" if len(feature.regions) > 1 else ""


def _evidence(region: Finding | None) -> list[Evidence]:
    """The region's cited box(es): on its key frame (none for a box-only study or the joint)."""
    if region is None:
        return []
    return [Evidence(label=region.label, frame=b.frame, box=b.box) for b in region.boxes]


def _labelled(region: Finding) -> str:
    """"labelled", or "located by ..." for a region given by the union of its parts."""
    parts = [where(p) for p in str(region.attributes.get("located_by", "")).split()]
    if not parts:
        return "labelled"
    return "located by " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])


def _locate(name: str, region: Finding | None) -> str:
    """Where the region is: its frames and cited box (or its 3D box), or the whole knee."""
    if region is None or region.box3d is None:
        return "Locate: the whole knee joint, every frame."
    b = region.box3d
    evidence = _evidence(region)
    box = cite(evidence) if evidence else f"3D box {fmt_box(b.box)}"
    by = f" ({_labelled(region)})" if region.attributes.get("located_by") else ""
    return f"Locate: {where(name)}{by} spans frames {b.frame_start}-{b.frame_end}; {box}."


def _inspect(v: StudyView, feature: Feature, name: str, box: Box3D | None, grade: int, masks: bool,
             ctx: BuildContext) -> str:
    """What the evidence is: the frames the region's lesion mask covers, or no mask of it, in
    which case the grade comes from the MOAKS reading (never "none labelled" beside a grade)."""
    frames = f"frames {box.frame_start}-{box.frame_end}" if box is not None else "every frame"
    place = "the whole knee" if name == JOINT else "the region"
    reading = f"so the {'grade' if feature.scale != (0, 1) or feature.nominal else 'finding'} comes from the MOAKS reading"
    if feature.lesion is None:
        return f"Inspect: {frames} of {place}; no mask labels this finding, {reading}."
    words = LESION_WORDS[feature.lesion]
    labelled = sorted({b.frame for f in v.instances_of(f"{feature.lesion}_{name}") for b in f.boxes})
    if labelled:
        shown = set(ctx.frames.shown(v.study) or labelled)
        seen = [k for k in labelled if k in shown]
        covers = (f"covers frames {frames_text(seen)}" if seen
                  else f"covers frames {frames_text(labelled)}, none of them shown")
        lead_zero = feature.presence is not None and grade == 0
        return (f"Inspect: the {words} mask of the region {covers}"
                + (", though the MOAKS reading grades none." if lead_zero else "."))
    if not masks:
        return f"Inspect: {frames} of the region; the study has no lesion masks, {reading}."
    lead = grade if feature.presence is not None else _lead_grade(v, feature, name)
    if grade == 0 and lead == 0:
        return f"Inspect: {frames} of the region; no {words} is labelled there."
    return f"Inspect: {frames} of the region; no {words} mask marks it, {reading}."


def _lead_grade(v: StudyView, feature: Feature, name: str) -> int | None:
    """The region's grade of the feature that says whether the lesion exists at all (BML
    size, cartilage size): a dependent component (number, depth) of a region without a
    lesion is "none labelled" only when that grade is 0."""
    lead = next((f.name for f in FEATURES.values() if f.lesion == feature.lesion and f.presence), None)
    for g in v.study.findings:
        if g.study_level and g.attributes.get("feature") == lead and g.attributes.get("region") == name:
            return int(g.attributes["grade"])
    return None


def _decided(feature: Feature, grade: int) -> str:
    """The binary finding's verdict: "the MOAKS reading records a complete ACL tear." / "...
    records no complete ACL tear."."""
    what = feature.criterion if grade else "no " + re.sub(r"^(?:a|an) ", "", feature.criterion)
    return f"the MOAKS reading records {what}."
