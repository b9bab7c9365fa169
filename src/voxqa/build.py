"""Build orchestration shared by every source: studies -> splits -> items -> dataset folder."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from voxqa import __version__
from voxqa.dataset.folder import no_gc, sha256_file, write_dataset
from voxqa.dataset.paths import check_study_id
from voxqa.errors import BuildError
from voxqa.executors import Executor, LocalExecutor
from voxqa.anatomy.frames import FRAME_CONVENTION, SAGITTAL_FRAME_CONVENTION, frame_size
from voxqa.boxes.geometry import union_box
from voxqa.boxes.instances import LINK_RULE
from voxqa.io import VolumeError
from voxqa.anatomy.labelnames import is_lesion, midline
from voxqa.anatomy.relations import (
    TOUCH_TOLERANCE_MM,
    SegGeometry,
    contacts,
    containers,
    estimate_midline,
    interior_point,
    label_masks,
    mask_folder,
    owners,
    side_conflicts,
)
from voxqa.dataset.audit import attach_audit, write_audit
from voxqa.dataset.build_report import BuildReport
from voxqa.schema import Box, Box3D, Finding, Item, Study, VolumeRef
from voxqa.sources import fastmri_plus, knee
from voxqa.sources.segmentation import SegmentationInput, SegSpec, load_segmentation
from voxqa.dataset.splits import assign_splits
from voxqa.anatomy.structures import Structure
from voxqa.tasks import FAMILIES, BuildContext, StudyView
from voxqa.tasks.base import DEFAULT_VOLUME_FRAMES, VOLUME_FRAMES_RULE, volume_frames
from voxqa.tasks.spatial import (
    MAX_OVERLAP_MM,
    MIN_CENTROID_MM,
    MIN_PAIRED_RATIO,
    MIN_SIZE_RATIO,
    MIN_STRUCTURE_VOXELS,
    VOLUME_TOLERANCE,
    mirrored_id,
)

FASTMRI_FAMILIES = ("detection", "localization", "counting", "classification", "captioning")
SEGMENTATION_FAMILIES = ("spatial",)
BOX_CONVENTION = {
    "format": "pixel_xyxy",
    "max_exclusive": True,
    "origin": "top-left pixel corner of the stored frame",
    "frames": "0-based indices along the study's view_axis",
}


def generate_items(views: Sequence[StudyView], ctx: BuildContext, families: Sequence[str]) -> list[Item]:
    """Run the named task families; ids must come out unique."""
    items: list[Item] = []
    names = list(families)
    with Progress(transient=True, disable=not Console(stderr=True).is_terminal) as progress:
        task = progress.add_task("generating items", total=len(names))
        for name in names:
            items += FAMILIES[name].generate(views, ctx)
            progress.advance(task)
    items.sort(key=lambda it: (it.study_id, it.task, it.subtask, it.level, it.id))
    dupes = [i for i, n in Counter(it.id for it in items).items() if n > 1]
    if dupes:
        raise BuildError(f"internal error: duplicate item ids, e.g. {dupes[:3]}")
    return items


def split_manifest(fractions: Sequence[float], unit: str) -> dict[str, Any]:
    return {
        "unit": unit,
        "fractions": dict(zip(("train", "val", "test"), fractions, strict=False)),
        "rule": "sha256('split', seed, patient_id) -> [0,1) against cumulative fractions",
    }


def vocabularies(studies: Sequence[Study], is_pathology) -> tuple[dict, dict]:
    """Per anatomy: labels that are abnormalities, and labels that have boxes."""
    pathology: dict[str, set[str]] = {}
    boxed: dict[str, set[str]] = {}
    for s in studies:
        for f in s.findings:
            if is_pathology(f.label):
                pathology.setdefault(s.anatomy, set()).add(f.label)
            if not f.study_level:
                boxed.setdefault(s.anatomy, set()).add(f.label)
    return (
        {a: sorted(v) for a, v in sorted(pathology.items())},
        {a: sorted(v) for a, v in sorted(boxed.items())},
    )


def counts(studies: Sequence[Study], items: Sequence[Item]) -> dict[str, Any]:
    def tally(key) -> dict[str, int]:
        return dict(sorted(Counter(key(x) for x in items).items()))

    return {
        "studies": len(studies),
        "studies_by_split": dict(sorted(Counter(str(s.split) for s in studies).items())),
        "studies_by_anatomy": dict(sorted(Counter(s.anatomy for s in studies).items())),
        "items": len(items),
        "items_by_split": tally(lambda it: it.split),
        "items_by_task": tally(lambda it: it.task),
        "items_by_template": tally(lambda it: it.template),
    }


def build_fastmri_plus(
    pairs: list[tuple[Path, Path]],
    out: Path,
    *,
    volumes: Path | None = None,
    anatomy: str | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    strict: bool = False,
    name: str = "fastmri-plus",
) -> dict[str, Any]:
    """Build a dataset folder from fastMRI+ CSVs; returns the manifest."""
    with no_gc():
        return _build_fastmri_plus(pairs, out, volumes, anatomy, seed, fractions, strict, name)


def _build_fastmri_plus(
    pairs: list[tuple[Path, Path]],
    out: Path,
    volumes: Path | None,
    anatomy: str | None,
    seed: int,
    fractions: tuple[float, float, float],
    strict: bool,
    name: str,
) -> dict[str, Any]:
    report = BuildReport(strict=strict)
    studies = fastmri_plus.load_studies(pairs, report, volumes=volumes, anatomy=anatomy)
    assign_splits(studies, seed, fractions)
    pathology_vocab, boxed_vocab = vocabularies(studies, fastmri_plus.is_pathology)
    ctx = BuildContext(
        seed=seed,
        is_pathology=fastmri_plus.is_pathology,
        pathology_vocab=pathology_vocab,
        boxed_vocab=boxed_vocab,
    )
    views = [StudyView(s, ctx.is_pathology) for s in studies]
    items = generate_items(views, ctx, FASTMRI_FAMILIES)
    for reason, n in sorted(ctx.skipped.items()):
        report.add("info", "question_not_asked: " + reason, n)
    sizes = Counter((s.anatomy, s.frame_size, s.frame_size_source) for s in studies)
    manifest = {
        "name": name,
        "voxqa_version": __version__,
        "command": "voxqa build fastmri-plus",
        "options": {
            "annotations": [str(a) for a, _ in pairs],
            "file_lists": [str(f) for _, f in pairs],
            "volumes": str(volumes) if volumes else None,
            "anatomy": anatomy,
            "seed": seed,
            "split_fractions": list(fractions),
            "strict": strict,
        },
        "seed": seed,
        "source": fastmri_plus.NAME,
        "source_files": [
            {"path": str(p), "role": role, "sha256": sha256_file(p)}
            for a, f in pairs
            for p, role in ((a, "annotations"), (f, "file_list"))
        ],
        "box_convention": BOX_CONVENTION
        | {"frame_orientation": "reconstruction_rss flipped up/down (img[:, ::-1, :]), as fastMRI+"},
        "frame_sizes": [
            {"anatomy": a, "width": w, "height": h, "source": src, "studies": n}
            for (a, (w, h), src), n in sorted(sizes.items())
        ],
        "default_frame_size": {a: list(s) for a, s in fastmri_plus.DEFAULT_FRAME_SIZE.items()},
        "instance_linking": LINK_RULE,
        "volume_frames": {"cap": ctx.volume_frame_cap, "rule": VOLUME_FRAMES_RULE},
        "splits": split_manifest(fractions, "patient_id (fastMRI+: the volume)"),
        "vocabulary": {"pathology": pathology_vocab, "boxed": boxed_vocab},
        "non_pathology_labels": sorted(fastmri_plus.NON_PATHOLOGY),
        "counts": counts(studies, items),
        "item_id_format": "study_id:subtask:(v|f<frame>):label-slug",
    }
    audit = attach_audit(manifest, items, studies)  # the blind audit
    write_dataset(out, manifest, studies, items, report.to_dict())
    write_audit(out, audit)
    return manifest


def _structure_finding(s: Structure, raw_name: str) -> Finding:
    """A segmented structure as a Finding: its axial frame boxes and 3D box, plus geometry."""
    boxes = [Box(frame=k, box=b) for k, b in sorted(s.frame_boxes.items())]
    union = union_box([b.box for b in boxes])
    return Finding(
        label=s.name,
        raw_label=raw_name,
        boxes=boxes,
        box3d=Box3D(frame_start=boxes[0].frame, frame_end=boxes[-1].frame, box=union),
        attributes={
            "label_id": s.label_id,
            "voxels": s.voxels,
            "volume_ml": round(s.volume_ml, 3),
            "centroid_x_mm": round(s.centroid_ras[0], 2),
            "centroid_y_mm": round(s.centroid_ras[1], 2),
            "centroid_z_mm": round(s.centroid_ras[2], 2),
            "components": -1 if s.components is None else len(s.components),
            "truncated": s.truncated,
        },
    )


def relate(seg: SegmentationInput, mirrored: bool = False) -> tuple[list[Structure], SegGeometry]:
    """All structures measured, and the geometry questions are asked from (tiny ones out)."""
    shape = seg.image.shape
    measured = seg.measure(components_for=[n for n in seg.names.values() if is_lesion(n)])
    mask_in = label_masks(seg.labels) if seg.labels is not None else mask_folder(seg.masks or {})
    absent = sorted(set(seg.names.values()) - {s.name for s in measured})
    tiny = [s.name for s in measured if s.voxels < MIN_STRUCTURE_VOXELS]
    structures = [s for s in measured if s.voxels >= MIN_STRUCTURE_VOXELS]
    midline_x, midline_src = estimate_midline(structures, midline, shape, seg.affine)
    touching, near = contacts(mask_in, shape, structures, seg.spacing)
    interior = {s.name: interior_point(mask_in, s) for s in structures}
    geometry = SegGeometry(
        structures=structures, shape=shape, midline_x=midline_x,
        midline_source=midline_src, touching=touching, near_not_touching=near,
        interior_points=interior,
        point_owners={name: owners(mask_in, structures, v) for name, v in interior.items()},
        containers=containers(mask_in, shape, structures, [s.name for s in structures if is_lesion(s.name)]),
        absent=absent,
        tiny=tiny,
        orientation_known=seg.orientation_known,
        # a mirrored twin contradicts every sided name by construction
        side_conflicts=[] if mirrored or not seg.orientation_known else side_conflicts(
            structures, midline_x, MIN_CENTROID_MM),
        mirrored=mirrored,
    )
    return measured, geometry


def load_segmentation_study(spec: SegSpec) -> list[tuple[Study, SegGeometry]]:
    """Read, measure and relate one study's structures (world coordinates, RAS+); with a
    patient orientation, also its mirrored twin (for the counterfactual side questions)."""
    seg = load_segmentation(spec.image, spec.labels, spec.label_names, spec.assume_orientation)
    out = [_segmentation_study(spec, seg, spec.study_id, mirrored=False)]
    if seg.orientation_known:
        out.append(_segmentation_study(spec, seg.mirrored(), mirrored_id(spec.study_id), mirrored=True))
    return out


def _segmentation_study(spec: SegSpec, seg: SegmentationInput, study_id: str,
                        mirrored: bool) -> tuple[Study, SegGeometry]:
    shape = seg.image.shape
    measured, geometry = relate(seg, mirrored)
    study = Study(
        id=study_id,
        patient_id=spec.patient_id or spec.study_id,
        source="segmentation",
        modality=spec.modality or seg.modality_hint or "unknown",
        anatomy=spec.anatomy or "unknown",
        volume=VolumeRef(path=str(spec.image), loader=seg.image.format, mirrored=mirrored,
                         assumed_orientation=spec.assume_orientation if seg.orientation_known else None),
        shape=tuple(int(n) for n in shape),
        spacing=tuple(float(x) for x in seg.spacing),
        affine=[[float(v) for v in row] for row in seg.affine],
        view_axis=2,
        frame_count=int(shape[2]),
        frame_count_source="volume",
        frame_size=frame_size(shape),
        frame_size_source="volume",
        findings=[_structure_finding(s, seg.raw_names.get(s.label_id, s.name)) for s in measured],
    )
    return study, geometry


def build_segmentation(
    specs: Sequence[SegSpec],
    out: Path,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    strict: bool = False,
    name: str = "segmentation",
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Build a spatial-QA dataset folder from image + segmentation pairs. Studies are read
    and measured on ``executor`` (default: this process); only their compact geometry comes
    back, and everything after (splits, balancing, writing) runs here on all studies."""
    for spec in specs:  # ids name folders under frames/: refused before anything is read
        check_study_id(spec.study_id, f"study of {spec.image}")
    with no_gc():
        report = BuildReport(strict=strict)
        studies: list[Study] = []
        geometry: dict[str, SegGeometry] = {}
        with Progress(transient=True, disable=not Console(stderr=True).is_terminal) as progress:
            task = progress.add_task("measuring structures", total=len(specs))
            errors: list[str] = []
            pool = executor or LocalExecutor()
            outcomes = {}
            try:
                for i, outcome in pool.run(load_segmentation_study, specs):
                    outcomes[i] = outcome
                    progress.advance(task)
            except BaseException:
                pool.stop()
                raise
            for i, spec in enumerate(specs):  # in the order given, whatever order they finished in
                try:
                    for study, g in outcomes[i].result():
                        studies.append(study)
                        geometry[study.id] = g
                        if not study.findings and not g.mirrored:
                            report.add("warning", "labels_empty_no_questions", study=spec.study_id,
                                       labels=str(spec.labels))
                except (BuildError, VolumeError) as exc:
                    report.add("skipped", "study_unreadable", study=spec.study_id, error=str(exc))
                    errors.append(str(exc))
        if not studies:
            raise BuildError("no study given" if not errors else errors[0] if len(errors) == 1
                             else f"none of the {len(errors)} studies could be read; the first: {errors[0]}")
        assign_splits(studies, seed, fractions)
        ctx = BuildContext(seed=seed, is_pathology=lambda label: True)
        for s in studies:  # volume-level questions cite and ask only what render will show
            geometry[s.id].shown_frames = set(volume_frames(s.frame_count, ctx.volume_frame_cap))
        views = [StudyView(s, ctx.is_pathology, geometry[s.id]) for s in studies]
        items = generate_items(views, ctx, SEGMENTATION_FAMILIES)
        for study in studies:
            g = geometry[study.id]
            if g.mirrored:
                continue
            for name in g.tiny:
                report.add("info", "structure_too_small_not_asked", study=study.id, structure=name)
            if not g.orientation_known:
                report.add("warning", "no_patient_orientation_no_side_questions", study=study.id,
                           hint="pass --assume-orientation (e.g. RAS or LPS) if you know it")
            for name in g.side_conflicts:
                report.add("warning", "side_in_name_contradicts_geometry_no_side_questions",
                           study=study.id, structure=name)
        for reason, n in sorted(ctx.skipped.items()):
            report.add("info", "question_not_asked: " + reason, n)
        report.totals["studies"] = len(studies)
        report.totals["structures"] = sum(len(s.findings) for s in studies)
        manifest = {
            "name": name,
            "voxqa_version": __version__,
            "command": "voxqa build segmentation",
            "options": {"seed": seed, "split_fractions": list(fractions), "strict": strict},
            "seed": seed,
            "source": "segmentation",
            "source_files": [
                {"study_id": sp.study_id, "path": str(p), "role": role}
                for sp in specs
                for p, role in ((sp.image, "image"), (sp.labels, "labels"), (sp.label_names, "label_names"))
                if p is not None
            ],
            "box_convention": BOX_CONVENTION | {"frame_orientation": FRAME_CONVENTION},
            "world_convention": "RAS+ mm: +x patient's right, +y anterior, +z superior",
            "spatial_margins": {
                "min_centroid_separation_mm": MIN_CENTROID_MM,
                "max_extent_overlap_mm": MAX_OVERLAP_MM,
                "touch_tolerance_mm": TOUCH_TOLERANCE_MM,
                "min_size_ratio": MIN_SIZE_RATIO,
                "min_paired_size_ratio": MIN_PAIRED_RATIO,
                "volume_relative_tolerance": VOLUME_TOLERANCE,
                "min_structure_voxels": MIN_STRUCTURE_VOXELS,
            },
            "volume_frames": {"cap": ctx.volume_frame_cap, "rule": VOLUME_FRAMES_RULE},
            "counterfactual_pairs": "side questions are also asked of each study mirrored along "
            "patient x (study id + '.mirrored', same patient and split, same question text, the "
            "other answer); both items share a pair_id",
            "splits": split_manifest(fractions, "patient_id"),
            "counts": counts(studies, items),
        }
        audit = attach_audit(manifest, items, studies)  # the blind audit
        write_dataset(out, manifest, studies, items, report.to_dict())
        write_audit(out, audit)
        return manifest


KNEE_FAMILIES = ("grading",)


def grade_baselines(items: Sequence[Item]) -> dict[str, dict[str, Any]]:
    """Per grade feature: uniform chance beside the constant-answer baseline (the most common
    grade and the share of items it gets right). MOAKS grades are skewed towards 0, so the
    constant answer is the honest floor a model must beat."""
    out: dict[str, dict[str, Any]] = {}
    for subtask, group in sorted(_by_subtask(it for it in items if it.answer.type == "grade").items()):
        grades = Counter(it.answer.value for it in group)
        top, n = max(sorted(grades.items()), key=lambda kv: kv[1])
        out[subtask] = {"items": len(group), "chance": round(1 / len(group[0].answer.scale), 4),
                        "constant_answer": top, "constant_accuracy": round(n / len(group), 4),
                        "grades": {str(g): c for g, c in sorted(grades.items())}}
    return out


def _by_subtask(items: Iterable[Item]) -> dict[str, list[Item]]:
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(it.subtask, []).append(it)
    return groups


def build_knee_grading(
    studies_csv: Path,
    grades_csv: Path,
    out: Path,
    *,
    boxes_csv: Path | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    strict: bool = False,
    name: str = "knee-grading",
    frame_cap: int | None = DEFAULT_VOLUME_FRAMES,
) -> dict[str, Any]:
    """Build a MOAKS knee grading dataset (sources/knee.py, tasks/grading.py) on sagittal frames.

    ``frame_cap`` is the frame set volume-level items show (``volume_frames``; None: all
    frames), to be rendered with the same ``voxqa render --frames``. Volumes are read one at a
    time and let go once measured: only region boxes and grades stay in memory."""
    with no_gc():
        report = BuildReport(strict=strict)
        ctx = BuildContext(seed=seed, is_pathology=lambda label: True, volume_frame_cap=frame_cap)
        studies = knee.load_studies(studies_csv, grades_csv, boxes_csv, report,
                                    lambda n: set(volume_frames(n, ctx.volume_frame_cap)))
        if not studies:
            raise BuildError(f"{studies_csv}: no study could be built (see the errors in build_report.json)")
        assign_splits(studies, seed, fractions)
        items = generate_items([StudyView(s, ctx.is_pathology) for s in studies], ctx, KNEE_FAMILIES)
        for reason, n in sorted(ctx.skipped.items()):
            report.add("info", "question_not_asked: " + reason, n)
        manifest = {
            "name": name,
            "voxqa_version": __version__,
            "command": "voxqa build knee-grading",
            "options": {"seed": seed, "split_fractions": list(fractions), "strict": strict,
                        "frames": frame_cap or "all"},
            "seed": seed,
            "source": knee.NAME,
            "source_files": [
                {"path": str(p), "role": role, "sha256": sha256_file(p)}
                for p, role in ((studies_csv, "studies"), (grades_csv, "grades"), (boxes_csv, "boxes"))
                if p is not None
            ],
            "box_convention": BOX_CONVENTION | {"frame_orientation": SAGITTAL_FRAME_CONVENTION,
                                                "box3d": "frames [frame_start, frame_end] inclusive, "
                                                         "pixel box max exclusive"},
            "world_convention": "RAS+ mm: +x patient's right, +y anterior, +z superior",
            "volume_frames": {"cap": ctx.volume_frame_cap, "rule": VOLUME_FRAMES_RULE},
            "grade_baselines": grade_baselines(items),
            "splits": split_manifest(fractions, "patient_id"),
            "counts": counts(studies, items),
        }
        audit = attach_audit(manifest, items, studies)
        write_dataset(out, manifest, studies, items, report.to_dict())
        write_audit(out, audit)
        return manifest


def build_reports(
    specs: Sequence[SegSpec],
    reports_path: Path,
    out: Path,
    *,
    extractor: Any = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    strict: bool = False,
    min_pixels: int | None = None,
    name: str = "reports",
) -> dict[str, Any]:
    """Report-grounded items: claims read from each study's report (``extractor``, default
    the offline rules), verified against its segmentation, written to ``out/claims.jsonl``;
    items from supported claims and per-frame grounding (``voxqa.radreports``), plus
    ``out/grounding.jsonl`` with each caption-grounding target in RadGrounder's syntax."""
    from voxqa.dataset.folder import dumps, write_jsonl
    from voxqa.radreports.extract_rules import RuleExtractor
    from voxqa.radreports.inputs import read_reports
    from voxqa.radreports.items import MIN_FRAME_PIXELS, ReportQuestions, ReportStudy, frame_pixels, radgrounder_caption
    from voxqa.radreports.verify import verify

    extractor = extractor or RuleExtractor()
    min_pixels = MIN_FRAME_PIXELS if min_pixels is None else min_pixels
    reports = read_reports(reports_path)
    for spec in specs:
        check_study_id(spec.study_id, f"study of {spec.image}")
    with no_gc():
        report = BuildReport(strict=strict)
        studies: list[Study] = []
        geometry: dict[str, SegGeometry] = {}
        facts: dict[str, ReportStudy] = {}
        claims = []
        for spec in specs:
            rep = reports.get(spec.study_id)
            if rep is None:
                report.add("skipped", "study_without_report", study=spec.study_id)
                continue
            try:
                seg = load_segmentation(spec.image, spec.labels, spec.label_names, spec.assume_orientation)
                pairs = [_segmentation_study(spec, seg, spec.study_id, mirrored=False)]
                if seg.orientation_known:
                    pairs.append(_segmentation_study(spec, seg.mirrored(), mirrored_id(spec.study_id), mirrored=True))
            except (BuildError, VolumeError) as exc:
                report.add("skipped", "study_unreadable", study=spec.study_id, error=str(exc))
                continue
            for study, g in pairs:
                studies.append(study)
                geometry[study.id] = g
            study, g = pairs[0]
            voxels = {f.label: int(f.attributes["voxels"]) for f in study.findings}
            verified = [verify(c, g, voxels) for c in extractor.extract(spec.study_id, rep.text, rep.language)]
            claims += verified
            for c in verified:
                report.add("info", f"claim_{c.verdict}",
                           study=c.study_id, sentence=c.sentence, why=c.reason)
            facts[spec.study_id] = ReportStudy(
                claims=verified, language=rep.language, findings=rep.findings,
                frame_pixels=frame_pixels(seg.labels, seg.masks, seg.names),
                label_ids={n: i for i, n in seg.names.items()} if seg.labels is not None
                else {n: i for i, n in enumerate(sorted(seg.masks or {}), 1)})
        if not facts:
            raise BuildError("no study has both a readable segmentation and a report")
        for sid in sorted(set(reports) - {sp.study_id for sp in specs}):
            report.add("skipped", "report_without_study", study=sid)
        assign_splits(studies, seed, fractions)
        ctx = BuildContext(seed=seed, is_pathology=lambda label: True)
        for s in studies:
            geometry[s.id].shown_frames = set(volume_frames(s.frame_count, ctx.volume_frame_cap))
        views = [StudyView(s, ctx.is_pathology, geometry[s.id]) for s in studies]
        family = ReportQuestions(min_pixels)
        items = sorted(family.generate(views, facts, ctx), key=lambda it: (it.study_id, it.task, it.subtask, it.level, it.id))
        dupes = [i for i, n in Counter(it.id for it in items).items() if n > 1]
        if dupes:
            raise BuildError(f"internal error: duplicate item ids, e.g. {dupes[:3]}")
        for reason, n in sorted(ctx.skipped.items()):
            report.add("info", "question_not_asked: " + reason, n)
        verdicts = Counter(c.verdict for c in claims)
        report.totals["studies"] = len(facts)
        report.totals["claims"] = len(claims)
        manifest = {
            "name": name,
            "voxqa_version": __version__,
            "command": "voxqa build reports",
            "options": {"seed": seed, "split_fractions": list(fractions), "strict": strict,
                        "extractor": extractor.name, "min_frame_pixels": min_pixels},
            "seed": seed,
            "source": "reports",
            "source_files": [{"study_id": sp.study_id, "path": str(p), "role": role}
                             for sp in specs for p, role in ((sp.image, "image"), (sp.labels, "labels"))]
            + [{"path": str(reports_path), "role": "reports"}],
            "box_convention": BOX_CONVENTION | {"frame_orientation": FRAME_CONVENTION},
            "world_convention": "RAS+ mm: +x patient's right, +y anterior, +z superior",
            "spatial_margins": {"min_centroid_separation_mm": MIN_CENTROID_MM,
                                "max_extent_overlap_mm": MAX_OVERLAP_MM,
                                "touch_tolerance_mm": TOUCH_TOLERANCE_MM, "min_size_ratio": MIN_SIZE_RATIO},
            "claims": {"total": len(claims), **{v: verdicts.get(v, 0) for v in ("supported", "contradicted", "unverifiable")}},
            "splits": split_manifest(fractions, "patient_id"),
            "counts": counts(studies, items),
        }
        audit = attach_audit(manifest, items, studies)
        write_dataset(out, manifest, studies, items, report.to_dict())
        write_audit(out, audit)
        write_jsonl(out / "claims.jsonl", claims)
        by_study = {s.id: s for s in studies}
        rows = []
        for it in items:
            if it.id in family.sentences:
                width, height = by_study[it.study_id].frame_size
                rows.append({"item_id": it.id, "study_id": it.study_id, "frame": it.frames[0],
                             "language": it.language, "sentence": family.sentences[it.id],
                             "keywords": [{"label": e.label, "label_id": facts[it.study_id].label_ids[e.label],
                                           "box": list(e.box)} for e in it.evidence],
                             "target_radgrounder": radgrounder_caption(
                                 family.sentences[it.id], it.evidence, width, height, facts[it.study_id].label_ids,
                                 facts[it.study_id].language),
                             "target_voxqa": it.answer_text})
        (out / "grounding.jsonl").write_bytes(b"".join(dumps(r).replace(b"\n", b"") + b"\n" for r in rows))
        return manifest
