"""Knee MOAKS grading inputs (3DReasonKnee-style): studies.csv + grades.csv [+ boxes.csv] -> Studies.

* ``studies.csv``: ``study_id, image, labels, patient_id, knee_side`` and optionally
  ``label_names`` (a JSON id -> name table per row; default ``subregions.json`` beside the CSV)
  and ``assume_orientation`` (axis codes for an image that states none). ``labels`` is a
  subregion label map on the image grid; it may be empty when ``--boxes`` gives the regions,
  and ``image`` may be empty too then (a box-only study: built, not rendered).
* ``grades.csv`` (long form): ``study_id, region, feature, grade``; ``FEATURES`` lists every
  MOAKS feature, its scale and the regions it is graded in.
* ``boxes.csv``: ``study_id, region, start_frame, end_frame, x_min, x_max, y_min, y_max`` on
  the sagittal frames of ``voxqa.anatomy.frames`` (3DReasonKnee's column order; frames
  inclusive, pixels max exclusive, as ``Box3D``).

Region and lesion names go through one vocabulary (``region_name``): the canonical names of
``REGIONS`` in any word order and separator ("femur medial central", "Femur-Central-Medial"),
plus the abbreviations of ``ABBREVIATIONS``. A region the input does not name but whose parts
it does (``COMPOSITES``: a meniscus by its horns and body, an osteophyte site by its
subregions) is located by the union of its parts' boxes, per frame from a label map. A label
map may also hold lesion masks, named ``<kind>_<region>`` with kind ``bml``, ``cartilage`` or
``osteophyte`` and a region that kind is graded in: the reasoning traces then cite the frames
the lesion is on. Medial and lateral are the knee's, so they must agree
with ``knee_side``: frames run from the patient's right to left, so in a right knee medial
structures lie on higher frames than lateral ones, in a left knee on lower ones; a study
whose labels say otherwise is refused (wrong side, or a mirrored label map).

A row that cannot be used (unknown feature or region, grade off its scale, repeated, a
study not in studies.csv) is an error naming the row under ``--strict``, else a counted skip
in build_report.json.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxqa.anatomy.frames import (
    SAGITTAL_FRAME_CONVENTION,
    SAGITTAL_VIEW_AXIS,
    sagittal_frame_size,
    sagittal_view,
)
from voxqa.anatomy.knee import (
    COMPOSITES,
    FEATURES,
    LESION_KINDS,
    REGIONS,
    SIDES,
    label_name,
    name_key,
    region_name,
)
from voxqa.anatomy.structures import measure
from voxqa.boxes.geometry import union_box
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.folder import sha256_file
from voxqa.dataset.frame_policy import DEFAULT_FRAMES, FramePolicy, max_frames
from voxqa.dataset.manifest import WORLD_CONVENTION
from voxqa.errors import BuildError
from voxqa.io import open_volume
from voxqa.progress import SILENT, Progress
from voxqa.schema import Box, Box3D, Finding, GradeAnswer, Item, Study, VolumeRef
from voxqa.sources.csvinput import csv_path, csv_reader, study_rows
from voxqa.sources.segmentation import load_segmentation
from voxqa.tasks import FAMILIES
from voxqa.tasks.base import BuildContext, StudyView, TaskFamily


NAME = "knee"
#: Frame size of box-only studies (no image): OAI DESS is 384 x 384 in plane.
DEFAULT_FRAME_SIZE = (384, 384)


# --- input files ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class KneeSpec:
    """One studies.csv row."""

    study_id: str
    image: Path | None
    labels: Path | None
    label_names: Path | None
    patient_id: str
    knee_side: str
    assume_orientation: str | None = None
    where: str = ""


@dataclass(frozen=True)
class Grade:
    region: str
    feature: str
    grade: int


STUDIES_COLUMNS = ("study_id", "image", "labels", "patient_id", "knee_side")
GRADES_COLUMNS = ("study_id", "region", "feature", "grade")
BOXES_COLUMNS = ("study_id", "region", "start_frame", "end_frame", "x_min", "x_max", "y_min", "y_max")
DEFAULT_LABEL_NAMES = "subregions.json"


def read_studies_csv(path: Path, box_only_allowed: bool) -> list[KneeSpec]:
    """studies.csv rows; relative paths are relative to the CSV's folder. A row without
    ``labels`` (or ``image``) is allowed only when boxes.csv gives the regions."""
    path = Path(path)
    default_names = path.parent / DEFAULT_LABEL_NAMES
    specs: list[KneeSpec] = []
    for where, study_id, rec in study_rows(path, STUDIES_COLUMNS, "knee studies CSV"):
        image, labels = csv_path(path, rec["image"]), csv_path(path, rec["labels"])
        if labels is None and not box_only_allowed:
            raise BuildError(f"{where}: labels are required without --boxes")
        if labels is not None and image is None:
            raise BuildError(f"{where}: a label map needs its image")
        side = SIDES.get((rec["knee_side"] or "").strip().lower())
        if side is None:
            raise BuildError(f"{where}: knee_side {rec['knee_side']!r} is not right/left (R/L)")
        names = csv_path(path, rec.get("label_names"))
        if names is None and labels is not None and default_names.is_file():
            names = default_names
        specs.append(KneeSpec(
            study_id=study_id, image=image, labels=labels, label_names=names,
            patient_id=(rec["patient_id"] or "").strip() or study_id, knee_side=side,
            assume_orientation=(rec.get("assume_orientation") or "").strip() or None, where=where))
    return specs


def _int(value: str | None) -> int | None:
    try:
        return int((value or "").strip())
    except ValueError:
        return None


def read_grades_csv(path: Path, studies: set[str], report: BuildReport) -> dict[str, list[Grade]]:
    """Per study, its usable grade rows (others: an error under --strict, else counted)."""
    path = Path(path)
    out: dict[str, dict[tuple[str, str], Grade]] = defaultdict(dict)
    with csv_reader(path, GRADES_COLUMNS, "knee grades CSV") as reader:
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            study, feature = (rec["study_id"] or "").strip(), name_key(rec["feature"] or "")
            region, grade = region_name(rec["region"] or ""), _int(rec["grade"])
            f = FEATURES.get(feature)
            reason = (
                "grade_row_study_not_in_studies_csv" if study not in studies
                else "grade_row_unknown_feature" if f is None
                else "grade_row_region_not_graded_for_feature" if region not in f.regions
                else "grade_row_grade_off_scale" if grade not in f.scale
                else None
            )
            if reason is None and (region, feature) in out[study]:
                reason = "grade_row_repeated"
            if reason is not None:
                report.add("skipped", reason, where=where, study=study, region=rec["region"],
                           feature=rec["feature"], grade=rec["grade"])
                continue
            assert region is not None and grade is not None
            out[study][(region, feature)] = Grade(region, feature, grade)
    return {s: sorted(g.values(), key=lambda g: (g.feature, g.region)) for s, g in out.items()}


def read_boxes_csv(path: Path, studies: set[str], report: BuildReport) -> dict[str, dict[str, Box3D]]:
    """Per study, region -> 3D box on the sagittal frames."""
    path = Path(path)
    out: dict[str, dict[str, Box3D]] = defaultdict(dict)
    limit = max_frames()  # checked before any list per frame is made
    with csv_reader(path, BOXES_COLUMNS, "knee boxes CSV") as reader:
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            study, region = (rec["study_id"] or "").strip(), region_name(rec["region"] or "")
            f0, f1, x0, x1, y0, y1 = (_int(rec[c]) for c in BOXES_COLUMNS[2:])
            reason = (
                "box_row_study_not_in_studies_csv" if study not in studies
                else "box_row_unknown_region" if region not in REGIONS
                else "box_row_not_integers" if None in (f0, f1, x0, x1, y0, y1)
                else "box_row_empty_box" if not (0 <= f0 <= f1 and 0 <= x0 < x1 and 0 <= y0 < y1)  # type: ignore[operator]
                else "box_row_frame_out_of_range" if f1 >= limit  # type: ignore[operator]
                else "box_row_repeated" if region in out[study]
                else None
            )
            if reason is not None:
                report.add("skipped", reason, where=where, study=study, region=rec["region"])
                continue
            out[study][region] = Box3D(frame_start=f0, frame_end=f1, box=(x0, y0, x1, y1))  # type: ignore[arg-type]
    return out


# --- studies ----------------------------------------------------------------------------------


def _sagittal_affine(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """voxel -> RAS+ mm of ``sagittal_view``'s (j, k, frame) index: frame f is i = n_i - 1 - f."""
    to_ras_index = np.array([[0, 0, -1, shape[0] - 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    return np.asarray(affine, float) @ to_ras_index


def _key_frame(frame_boxes: dict[int, tuple[int, int, int, int]], shown: set[int]) -> int:
    """The shown frame where the region's box is largest (ties: the lowest frame)."""
    frames = [k for k in frame_boxes if k in shown] or list(frame_boxes)

    def area(k: int) -> int:
        b = frame_boxes[k]
        return (b[2] - b[0]) * (b[3] - b[1])

    return max(frames, key=lambda k: (area(k), -k))


def _label_findings(spec: KneeSpec, labels: np.ndarray, affine: np.ndarray, raw: dict[int, str],
                    shown: set[int], report: BuildReport) -> list[Finding]:
    """Regions (3D box, and the box on the key frame) and lesion masks (a box per frame)."""
    names: dict[int, str] = {}
    for label_id, name in sorted(raw.items()):
        canonical = label_name(name)
        if canonical is None:
            report.add("skipped", "label_not_in_knee_vocabulary", where=spec.where, study=spec.study_id,
                       label=name)
        elif canonical in names.values():
            first = next(i for i, n in names.items() if n == canonical)
            raise BuildError(f"{spec.where}: label ids {first} ({raw[first]!r}) and {label_id} ({name!r}) "
                             f"both name {canonical}; give each region one id")
        else:
            names[label_id] = canonical
    view = sagittal_view(labels)
    found = []
    frames_of: dict[str, dict[int, tuple[int, int, int, int]]] = {}
    for s in measure(view, _sagittal_affine(affine, labels.shape), names):
        if s.label_id not in names:
            continue
        lesion = s.name.split("_")[0] if s.name.split("_")[0] in LESION_KINDS else None
        if lesion is None:
            frames_of[s.name] = dict(s.frame_boxes)
        found.append(_measured(s.name, raw[s.label_id], dict(s.frame_boxes), shown, lesion,
                               {"voxels": s.voxels, "knee_side": spec.knee_side}))
    for region, parts in sorted(COMPOSITES.items()):
        given = [p for p in parts if p in frames_of]
        if region in frames_of or not given:
            continue
        union: dict[int, tuple[int, int, int, int]] = {}
        for part in given:
            for k, b in frames_of[part].items():
                union[k] = union_box([union[k], b]) if k in union else b
        found.append(_measured(region, region, union, shown, None,
                               {"knee_side": spec.knee_side, "located_by": " ".join(given)}))
    return found


def _measured(label: str, raw: str, frame_boxes: dict[int, tuple[int, int, int, int]], shown: set[int],
              lesion: str | None, attributes: dict[str, Any]) -> Finding:
    """A region (its 3D box, and its box on its key frame) or a lesion mask (a box per frame)."""
    boxes = [Box(frame=k, box=b) for k, b in sorted(frame_boxes.items())]
    box3d = Box3D(frame_start=boxes[0].frame, frame_end=boxes[-1].frame, box=union_box([b.box for b in boxes]))
    if lesion is None:
        key = _key_frame(frame_boxes, shown)
        boxes = [Box(frame=key, box=frame_boxes[key])]
    return Finding(label=label, raw_label=raw, boxes=boxes, box3d=box3d,
                   attributes={"kind": lesion or "region", **attributes})


def _box_findings(spec: KneeSpec, boxes: dict[str, Box3D], shown: set[int] | None,
                  known: set[str] | frozenset[str] = frozenset()) -> list[Finding]:
    """Regions given as 3D boxes: without a label map the region's box on one frame is not
    known, so the 3D box's extent is cited on the middle shown frame of its range (none for
    a box-only study, which is never rendered)."""
    located = {}
    for region, parts in COMPOSITES.items():
        given = [boxes[p] for p in parts if p in boxes]
        if region not in boxes and region not in known and given:
            located[region] = Box3D(frame_start=min(b.frame_start for b in given),
                                    frame_end=max(b.frame_end for b in given),
                                    box=union_box([b.box for b in given]))
    out = []
    for region, b in sorted((boxes | located).items()):
        frames = [k for k in range(b.frame_start, b.frame_end + 1) if shown is not None and k in shown]
        cited = [Box(frame=frames[len(frames) // 2], box=b.box)] if frames else []
        attributes: dict[str, Any] = {"kind": "region", "knee_side": spec.knee_side}
        if region in located:
            attributes["located_by"] = " ".join(p for p in COMPOSITES[region] if p in boxes)
        out.append(Finding(label=region, raw_label=region, boxes=cited, box3d=b, attributes=attributes))
    return out


def _check_sides(spec: KneeSpec, findings: list[Finding]) -> None:
    """Medial/lateral pairs must lie as ``knee_side`` says (frames run patient right -> left)."""
    centre = {f.label: (f.box3d.frame_start + f.box3d.frame_end) / 2 for f in findings
              if f.box3d is not None and f.attributes.get("kind") == "region"}
    for name, c in centre.items():
        other = name.replace("medial", "lateral")
        if "medial" in name and other in centre and c != centre[other]:
            medial_higher = c > centre[other]
            if medial_higher != (spec.knee_side == "right"):
                raise BuildError(
                    f"{spec.where}: {name} lies {'left' if medial_higher else 'right'} of {other}, "
                    f"which is lateral in a {spec.knee_side} knee: wrong knee_side, or mirrored labels")


def grade_finding(g: Grade) -> Finding:
    """A grade as a study-level finding (label ``<region>:<feature>``)."""
    return Finding(label=f"{g.region}:{g.feature}", raw_label=f"{g.region}:{g.feature}", study_level=True,
                   attributes={"region": g.region, "feature": g.feature, "grade": g.grade})


def load_study(spec: KneeSpec, grades: list[Grade], boxes: dict[str, Box3D] | None,
               report: BuildReport, frames: FramePolicy) -> Study:
    """One knee study on its sagittal frames; the volume is read, measured and let go.
    ``frames`` is the build's frame policy (key frames are picked among the frames items
    show)."""
    findings: list[Finding] = []
    volume = None
    if spec.image is not None:
        if spec.labels is not None:
            seg = load_segmentation(spec.image, spec.labels, spec.label_names, spec.assume_orientation)
            image, raw = seg.image, seg.raw_names
        else:
            image, raw = open_volume(spec.image, assume=spec.assume_orientation), {}
        if not image.world_known:
            raise BuildError(f"{spec.where}: {spec.image} states no patient orientation, which the "
                             "sagittal knee frames need; give assume_orientation (e.g. RAS or LPS)")
        shape = image.shape
        shown = set(frames.frames(int(shape[0])))
        if spec.labels is not None:
            findings = _label_findings(spec, seg.labels, image.affine, raw, shown, report)
        volume = VolumeRef(path=str(spec.image), loader=image.format,
                           assumed_orientation=spec.assume_orientation)
        geometry = {"shape": tuple(int(n) for n in shape), "spacing": tuple(float(s) for s in image.spacing),
                    "affine": [[float(v) for v in row] for row in image.affine], "frame_count": int(shape[0]),
                    "frame_count_source": "volume", "frame_size": sagittal_frame_size(shape),
                    "frame_size_source": "volume"}
    if boxes is not None:
        given = {f.label for f in findings}
        findings += _box_findings(spec, {r: b for r, b in boxes.items() if r not in given},
                                  shown if volume is not None else None, given)
    if volume is None:
        ends = [f.box3d.frame_end for f in findings if f.box3d is not None]
        geometry = {"frame_count": max(ends) + 1 if ends else None,
                    "frame_count_source": "annotations_lower_bound" if ends else "unknown",
                    "frame_size": DEFAULT_FRAME_SIZE, "frame_size_source": "default"}
    _check_frames(spec, findings, geometry)
    _check_sides(spec, findings)
    return Study(id=spec.study_id, patient_id=spec.patient_id, source=NAME, modality="MR", anatomy="knee",
                 volume=volume, view_axis=SAGITTAL_VIEW_AXIS, **geometry,
                 findings=sorted(findings, key=lambda f: f.label) + [grade_finding(g) for g in grades])


def _check_frames(spec: KneeSpec, findings: list[Finding], geometry: dict) -> None:
    """Every box on the study's frames (boxes.csv rows of another grid are refused)."""
    width, height = geometry["frame_size"]
    n = geometry["frame_count"] if geometry["frame_count_source"] == "volume" else None
    for f in findings:
        b = f.box3d
        if b is not None and (b.box[2] > width or b.box[3] > height or (n is not None and b.frame_end >= n)):
            raise BuildError(f"{spec.where}: the box of {f.label} (frames {b.frame_start}-{b.frame_end}, "
                             f"{list(b.box)}) is outside the {n or '?'} frames of {width}x{height}")


def load_studies(studies_csv: Path, grades_csv: Path, boxes_csv: Path | None, report: BuildReport,
                 frames: FramePolicy) -> list[Study]:
    """Every usable study; an unreadable one is a counted skip (an error under --strict)."""
    specs = read_studies_csv(studies_csv, box_only_allowed=boxes_csv is not None)
    ids = {s.study_id for s in specs}
    grades = read_grades_csv(grades_csv, ids, report)
    boxes = read_boxes_csv(boxes_csv, ids, report) if boxes_csv is not None else {}
    studies = []
    for spec in specs:
        if spec.image is None and spec.study_id not in boxes:
            report.add("skipped", "study_without_image_or_boxes", where=spec.where, study=spec.study_id)
            continue
        try:
            studies.append(load_study(spec, grades.get(spec.study_id, []),
                                      boxes.get(spec.study_id) if boxes_csv is not None else None,
                                      report, frames))
        except (BuildError, ValueError) as exc:  # VolumeError is a ValueError
            report.add("skipped", "study_unreadable", where=spec.where, study=spec.study_id, error=str(exc))
    report.totals["studies"] = len(studies)
    report.totals["grades"] = sum(len(g) for g in grades.values())
    return studies


@dataclass
class KneeGrading:
    """``voxqa build knee-grading``: studies.csv + grades.csv [+ boxes.csv], graded on
    sagittal frames."""

    studies_csv: Path
    grades_csv: Path
    boxes_csv: Path | None = None
    frames: FramePolicy = DEFAULT_FRAMES
    name = NAME
    command = "knee-grading"
    split_unit = "patient_id"

    def is_pathology(self, label: str) -> bool:
        return True

    def load(self, report: BuildReport, progress: Progress = SILENT) -> list[StudyView]:

        studies = load_studies(self.studies_csv, self.grades_csv, self.boxes_csv, report, self.frames)
        if not studies:
            raise BuildError(f"{self.studies_csv}: no study could be built (see the errors in build_report.json)")
        return [StudyView(s, self.is_pathology) for s in studies]

    def families(self) -> list[TaskFamily]:

        return [FAMILIES["grading"]]

    def manifest(self, ctx: BuildContext, studies: Sequence[Study], items: Sequence[Item]) -> dict[str, Any]:
        return {
            "options": {"frames": self.frames.cap or "all"},
            "source_files": [
                {"path": str(p), "role": role, "sha256": sha256_file(p)}
                for p, role in ((self.studies_csv, "studies"), (self.grades_csv, "grades"),
                                (self.boxes_csv, "boxes"))
                if p is not None
            ],
            "box_convention": {"frame_orientation": SAGITTAL_FRAME_CONVENTION,
                               "box3d": "frames [frame_start, frame_end] inclusive, pixel box max exclusive"},
            "world_convention": WORLD_CONVENTION,
            "grade_baselines": grade_baselines(items),
        }

    def write_extra(self, out: Path, studies: Sequence[Study], items: Sequence[Item]) -> None:
        pass


def grade_baselines(items: Sequence[Item]) -> dict[str, dict[str, Any]]:
    """Per grade feature: uniform chance beside the constant-answer baseline (the most common
    grade and the share of items it gets right). MOAKS grades are skewed towards 0, so the
    constant answer is the honest floor a model must beat."""
    groups: dict[str, list[GradeAnswer]] = defaultdict(list)
    for it in items:
        if isinstance(it.answer, GradeAnswer):
            groups[it.subtask].append(it.answer)
    out: dict[str, dict[str, Any]] = {}
    for subtask, answers in sorted(groups.items(), key=lambda kv: kv[0]):
        grades = Counter(a.value for a in answers)
        top, n = max(sorted(grades.items()), key=lambda kv: kv[1])
        out[subtask] = {"items": len(answers), "chance": round(1 / len(answers[0].scale), 4),
                        "constant_answer": top, "constant_accuracy": round(n / len(answers), 4),
                        "grades": {str(g): c for g, c in sorted(grades.items())}}
    return out
