"""MOAKS knee grading with region-first reasoning (3DReasonKnee), task family ``grading``.

3DReasonKnee found that localisation is the bottleneck of grading: models grade better when
given the region. So every trace goes region first:

1. **locate**: the region's frames and its box on its key frame (the largest among the frames
   the item shows), as the other families cite boxes;
2. **inspect**: the frames where the finding is labelled in the region (a lesion mask of the
   label map, ``<kind>_<region>``), else the region's frames;
3. **grade**: the MOAKS criterion the grade meets.

Items per graded (region, feature) of a study (``voxqa.anatomy.knee.FEATURES``):

* ``grading/<feature>``: the grade, answer type ``grade``, the scale as options. Real grades
  are skewed towards 0, so a constant answer beats uniform chance: grade items carry no
  ``chance``, and the blind audit measures them against the best constant answer (its
  ``constant`` baseline); the build manifest states both per feature.
* ``grading/<kind>_presence`` (BML, cartilage loss, osteophyte): "any ... in the region?",
  yes iff the feature's grade > 0, balanced yes/no per (split, template, region);
* binary findings (``acl_tear``, ...): yes/no, balanced the same way;
* ``localization/region_box3d``: the 3D box of each region with a box (frames inclusive,
  pixels max exclusive, on the sagittal frames), once per study and region.

Balancing drops the surplus answer, counted in ``ctx.skipped``; grade and box items are never
dropped. A grade whose region has no box (not in the label map or boxes.csv) is not asked
(counted), as its trace could not locate it; ``joint`` features locate the whole knee.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxqa.schema import Evidence, Finding, Item
from voxqa.anatomy.knee import BONE_REGIONS, FEATURES, JOINT, Feature, display
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
LESION_WORDS = {"bml": "a bone marrow lesion", "cartilage": "cartilage loss", "osteophyte": "an osteophyte"}


def _where(region: str) -> str:
    """The region as a question names it: "the femur medial central subregion"."""
    if region == JOINT:
        return "the whole knee joint"
    return f"the {display(region)}" + (" subregion" if region in BONE_REGIONS else "")


def _regions(v: StudyView) -> dict[str, Finding]:
    return {f.label: f for f in v.instances if f.attributes.get("kind") == "region"}


def _lesion_frames(v: StudyView, kind: str | None, region: str, shown: set[int] | None) -> list[int]:
    """Frames (among those shown) with the region's lesion mask of this kind."""
    if kind is None:
        return []
    frames = {b.frame for f in v.instances_of(f"{kind}_{region}") for b in f.boxes}
    return sorted(frames if shown is None else frames & shown)


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
            found += self._grade_items(v, feature, region_name, region, grade, evidence, ctx)
        return found

    def _grade_items(self, v: StudyView, feature: Feature, name: str, region: Finding | None, grade: int,
                     evidence: list[Evidence], ctx: BuildContext) -> list[Candidate]:
        where = _where(name)
        locate = _locate(name, region, evidence)
        lesion = _lesion_frames(v, feature.lesion, name, ctx.frames.shown(v.study))
        span = "" if region is None or region.box3d is None else \
            f"frames {region.box3d.frame_start}-{region.box3d.frame_end}"
        finding = LESION_WORDS.get(feature.lesion or "", "")
        inspect = (f"Inspect: {finding} is labelled on frames {frames_text(lesion)} of the region."
                   if lesion else f"Inspect: {span or 'every frame'} of {where}"
                   + (f", with no {finding} labelled." if finding else "."))
        verdict = f"Grade {grade}: {feature.grades[grade]}"
        if feature.binary:
            answer, text = yes_no(grade == 1)
            item = make_item(v, task=TASK, subtask=feature.name, frame=None, label=name,
                             question=f"Is there {feature.criterion}{_in(feature, where)}?", answer=answer,
                             answer_text=text, evidence=evidence,
                             reasoning=f"{locate} {inspect} Decide: {feature.grades[grade].lower()}. Answer: {text}.",
                             chance=0.5)
            return [(name, grade == 1, item)]
        options = [f"Grade {g}: {t}" for g, t in zip(feature.scale, feature.grades, strict=False)]
        out: list[Candidate] = [(None, None, make_item(
            v, task=TASK, subtask=feature.name, frame=None, label=name,
            question=f"Grade the {feature.criterion} in {where} on the MOAKS scale.",
            options=options, answer={"type": "grade", "value": grade, "scale": list(feature.scale)},
            answer_text=verdict, evidence=evidence,
            reasoning=f"{locate} {inspect} Grade: the {feature.criterion} meets {verdict}.", chance=None,
        ))]
        if feature.presence:
            answer, text = yes_no(grade > 0)
            out.append((name, grade > 0, make_item(
                v, task=TASK, subtask=f"{feature.lesion}_presence", frame=None, label=name,
                question=f"Is there {feature.presence} in {where}?", answer=answer, answer_text=text,
                evidence=evidence, chance=0.5,
                reasoning=f"{locate} {inspect} Decide: {feature.criterion} is {verdict}. Answer: {text}.",
            )))
        return out

    def _box_item(self, v: StudyView, name: str, region: Finding) -> Item:
        b = region.box3d
        assert b is not None
        text = f"frames {b.frame_start}-{b.frame_end}, {fmt_box(b.box)}"
        return make_item(
            v, task=LOCALIZATION, subtask="region_box3d", frame=None, label=name,
            question=(f"Give the 3D bounding box of {_where(name)}: its first and last frame "
                      "(as labelled) and its box on those frames."),
            answer={"type": "box3d", "value": b.model_dump()}, answer_text=text, evidence=[],
            reasoning=f"Locate: the {display(name)} is labelled on frames {b.frame_start}-{b.frame_end}; "
                      f"its 3D box is {text}.", chance=None,
        )


def _in(feature: Feature, where: str) -> str:
    """" in the medial meniscus" where the feature is graded in several regions; "" where
    its one region is what it names ("a complete ACL tear", "loose bodies" in the joint)."""
    return f" in {where}" if len(feature.regions) > 1 else ""


def _evidence(region: Finding | None) -> list[Evidence]:
    """The region's cited box(es): on its key frame (none for a box-only study or the joint)."""
    if region is None:
        return []
    return [Evidence(label=region.label, frame=b.frame, box=b.box) for b in region.boxes]


def _locate(name: str, region: Finding | None, evidence: list[Evidence]) -> str:
    if region is None or region.box3d is None:
        return "Locate: the whole knee joint, every frame."
    b = region.box3d
    where = cite(evidence) if evidence else f"3D box {fmt_box(b.box)}"
    return f"Locate: the {display(name)} spans frames {b.frame_start}-{b.frame_end}; {where}."
