"""Build orchestration shared by every source: studies -> splits -> items -> dataset folder.

``run_build`` is the one pipeline; a source (``voxqa.sources.base.Source``) supplies the
studies, the question families and its own manifest keys. The ``build_*`` functions are the
command line's entry points: each configures its source and runs the pipeline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from voxqa.dataset.audit import attach_audit, write_audit
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.folder import no_gc, write_dataset
from voxqa.dataset.frame_policy import DEFAULT_VOLUME_FRAMES, FramePolicy
from voxqa.dataset.manifest import common_manifest, extend, split_manifest
from voxqa.dataset.splits import assign_splits
from voxqa.errors import BuildError
from voxqa.executors import Executor
from voxqa.progress import SILENT, Progress, tracking
from voxqa.schema import Item, Study
from voxqa.sources.base import Source
from voxqa.sources.fastmri_plus import FastMRIPlus
from voxqa.sources.knee import KneeGrading
from voxqa.sources.radreports import RadiologyReports
from voxqa.sources.segmentation import SegmentationSource, SegSpec
from voxqa.tasks import BuildContext, StudyView, TaskFamily

Fractions = tuple[float, float, float]


def run_build(source: Source, out: Path, *, name: str, seed: int = 0,
              fractions: Fractions = (0.8, 0.1, 0.1), strict: bool = False,
              progress: Progress = SILENT) -> dict[str, Any]:
    """Build a dataset folder from ``source``; returns the manifest. Loading studies and
    generating items advance ``progress`` (the command line shows it on stderr)."""
    with no_gc():
        report = BuildReport(strict=strict)
        views = source.load(report, progress)
        studies = [v.study for v in views]
        assign_splits(studies, seed, fractions)
        pathology_vocab, boxed_vocab = vocabularies(studies, source.is_pathology)
        ctx = BuildContext(seed=seed, is_pathology=source.is_pathology, pathology_vocab=pathology_vocab,
                           boxed_vocab=boxed_vocab, frames=source.frames)
        items = generate_items(views, ctx, source.families(), progress)
        for reason, n in sorted(ctx.skipped.items()):
            report.add("info", "question_not_asked: " + reason, n)
        manifest = common_manifest(
            name=name, source=source.name, command=f"voxqa build {source.command}",
            options={"seed": seed, "split_fractions": list(fractions), "strict": strict},
            studies=studies, items=items,
        ) | {"seed": seed, "splits": split_manifest(fractions, source.split_unit),
             "volume_frames": source.frames.manifest()}
        manifest = extend(manifest, source.manifest(ctx, studies, items))
        write_built(out, manifest, studies, items, report)
        source.write_extra(out, studies, items)
        return manifest


def generate_items(views: Sequence[StudyView], ctx: BuildContext, families: Sequence[TaskFamily],
                   progress: Progress = SILENT) -> list[Item]:
    """Run the task families; ids must come out unique."""
    items: list[Item] = []
    with tracking(progress, "generating items", len(families)) as advance:
        for family in families:
            items += family.generate(views, ctx)
            advance()
    return ordered_items(items)


def ordered_items(items: list[Item]) -> list[Item]:
    """Items in the dataset's order (study, task, subtask, level, id); refuses repeated ids."""
    items = sorted(items, key=lambda it: (it.study_id, it.task, it.subtask, it.level, it.id))
    dupes = [i for i, n in Counter(it.id for it in items).items() if n > 1]
    if dupes:
        raise BuildError(f"internal error: duplicate item ids, e.g. {dupes[:3]}")
    return items


def write_built(out: Path, manifest: dict[str, Any], studies: list[Study], items: list[Item],
                report: BuildReport) -> None:
    """The end of every build and import: the blind audit (its summary goes into the
    manifest), then the dataset folder swapped into place, then ``audit.json``."""
    audit = attach_audit(manifest, items, studies)
    write_dataset(out, manifest, studies, items, report.to_dict())
    write_audit(out, audit)


def vocabularies(studies: Sequence[Study], is_pathology: Callable[[str], bool]) -> tuple[dict, dict]:
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


def build_fastmri_plus(
    pairs: list[tuple[Path, Path]],
    out: Path,
    *,
    volumes: Path | None = None,
    anatomy: str | None = None,
    seed: int = 0,
    fractions: Fractions = (0.8, 0.1, 0.1),
    strict: bool = False,
    name: str = "fastmri-plus",
    progress: Progress = SILENT,
    frame_cap: int | None = None,
) -> dict[str, Any]:
    """Build a dataset folder from fastMRI+ CSVs; returns the manifest. ``frame_cap``: the
    frames volume-level items show (``FramePolicy``; None: every frame, the default)."""
    source = FastMRIPlus(pairs=pairs, volumes=volumes, anatomy=anatomy, frames=FramePolicy(frame_cap))
    return run_build(source, out, name=name, seed=seed, fractions=fractions, strict=strict,
                     progress=progress)


def build_segmentation(
    specs: Sequence[SegSpec],
    out: Path,
    *,
    seed: int = 0,
    fractions: Fractions = (0.8, 0.1, 0.1),
    strict: bool = False,
    name: str = "segmentation",
    progress: Progress = SILENT,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Build a spatial-QA dataset folder from image + segmentation pairs. Studies are read
    and measured on ``executor`` (default: this process); only their compact geometry comes
    back, and everything after (splits, balancing, writing) runs here on all studies."""
    source = SegmentationSource(specs=specs, executor=executor)
    return run_build(source, out, name=name, seed=seed, fractions=fractions, strict=strict,
                     progress=progress)


def build_knee_grading(
    studies_csv: Path,
    grades_csv: Path,
    out: Path,
    *,
    boxes_csv: Path | None = None,
    seed: int = 0,
    fractions: Fractions = (0.8, 0.1, 0.1),
    strict: bool = False,
    name: str = "knee-grading",
    progress: Progress = SILENT,
    frame_cap: int | None = DEFAULT_VOLUME_FRAMES,
) -> dict[str, Any]:
    """Build a MOAKS knee grading dataset (sources/knee.py, tasks/grading.py) on sagittal frames.

    ``frame_cap`` is the frame set volume-level items show (``FramePolicy``; None: all
    frames), to be rendered with the same ``voxqa render --frames``. Volumes are read one at a
    time and let go once measured: only region boxes and grades stay in memory."""
    source = KneeGrading(studies_csv=studies_csv, grades_csv=grades_csv, boxes_csv=boxes_csv,
                         frames=FramePolicy(frame_cap))
    return run_build(source, out, name=name, seed=seed, fractions=fractions, strict=strict,
                     progress=progress)


def build_reports(
    specs: Sequence[SegSpec],
    reports_path: Path,
    out: Path,
    *,
    extractor: Any = None,
    seed: int = 0,
    fractions: Fractions = (0.8, 0.1, 0.1),
    strict: bool = False,
    min_pixels: int | None = None,
    name: str = "reports",
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """Report-grounded items: claims read from each study's report (``extractor``, default
    the offline rules), verified against its segmentation, written to ``out/claims.jsonl``;
    items from supported claims and per-frame grounding (``voxqa.radreports``), plus
    ``out/grounding.jsonl`` with each caption-grounding target in RadGrounder's syntax."""
    source = RadiologyReports(specs=specs, reports_path=reports_path, extractor=extractor, min_pixels=min_pixels)
    return run_build(source, out, name=name, seed=seed, fractions=fractions, strict=strict,
                     progress=progress)
