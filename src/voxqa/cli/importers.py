"""`voxqa import ...`: published benchmarks in their released format as voxqa datasets or runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from voxqa.cli.common import built, console
from voxqa.errors import InputError
from voxqa.views.terminal import markup_safe


def _imported(out: Path, manifest: dict) -> None:
    from voxqa.dataset.folder import REPORT

    built(out, manifest)
    console.print(f"build report: {markup_safe(out / REPORT)}", soft_wrap=True)


def import_sgmri_vqa(
    qa: Annotated[list[Path], typer.Option("--qa", metavar="JSON", help="Released QA file (slice or volume records; repeatable).")],
    annotations: Annotated[list[Path], typer.Option("--annotations", metavar="CSV", help="fastMRI+ box CSV every box is reconciled with (repeatable).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    file_list: Annotated[Optional[list[Path]], typer.Option("--file-list", metavar="CSV", help="fastMRI+ reviewed-volume list (repeatable).")] = None,
    volumes: Annotated[Optional[Path], typer.Option("--volumes", metavar="DIR", help="Folder of <volume_id>.h5 fastMRI volumes.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", metavar="train|val|test", help="Split of every record (default: from each file name).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first dropped box or unreadable volume.")] = False,
) -> None:
    """SGMRI-VQA QA JSON -> voxqa items, frames 0-based, the knee off-by-one corrected against fastMRI+."""
    from voxqa.importers.sgmri_vqa import import_sgmri_vqa as run_import

    if volumes is not None and not volumes.is_dir():
        raise InputError(f"--volumes {volumes}: not a folder")
    manifest = run_import(qa, annotations, out, file_lists=file_list or [], volumes=volumes,
                          split=split, strict=strict)
    _imported(out, manifest)


def import_ct_spatialvqa(
    qa: Annotated[Path, typer.Option("--qa", metavar="JSONL", help="Released QA records (case_id, image_path, question, answer).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    categories: Annotated[Optional[Path], typer.Option("--categories", metavar="JSON", help="Released category file (multi-label per question).")] = None,
    volumes_root: Annotated[Optional[Path], typer.Option("--volumes-root", metavar="DIR", help="Folder the records' image_path (or case_id) is relative to.")] = None,
    split: Annotated[str, typer.Option("--split", metavar="train|val|test", help="Split of the items (the release is the benchmark's test set).")] = "test",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first dropped record or unreadable volume.")] = False,
) -> None:
    """CT-SpatialVQA JSONL -> free-text voxqa items (scored by a jury), categories kept."""
    from voxqa.importers.ct_spatialvqa import import_ct_spatialvqa as run_import

    manifest = run_import(qa, out, categories=categories, volumes_root=volumes_root, split=split, strict=strict)
    _imported(out, manifest)


def import_ct_spatialvqa_run(
    dataset: Annotated[Path, typer.Option("--dataset", metavar="DIR", help="The dataset of `voxqa import ct-spatialvqa`.")],
    evals: Annotated[list[Path], typer.Option("--eval", metavar="FILE", help="Released <model>_<judge>_eval*.json, one per judge (repeatable).")],
    out: Annotated[Path, typer.Option("--out", metavar="RUN", help="Run folder to create.")],
    model: Annotated[Optional[str], typer.Option("--model", metavar="NAME", help="Model name (default: from the file names).")] = None,
) -> None:
    """Released predictions + judge verdicts -> a voxqa run (verdicts aligned by content, never by position)."""
    from voxqa.importers.ct_spatialvqa import IMPORT_REPORT
    from voxqa.importers.ct_spatialvqa import import_ct_spatialvqa_run as run_import

    report = run_import(dataset, evals, out, model=model)
    gaps = ", ".join(f"{k} {v['count']}" for k, v in report["gaps"].items() if v["count"]) or "none"
    judged = ", ".join(f"{k} {v['aligned']}/{v['entries']}" for k, v in report["judges"].items())
    failed = report["jury_failures"]["count"]
    failures = (f"; jury failures {failed} (null verdicts: no verdict of that judge, left out of the aligned "
                "accuracy; counted as not correct as published)" if failed else "")
    console.print(f"[green]imported[/] {markup_safe(report['model'], one_line=True)}: {report['predictions']} "
                  f"predictions, judges {markup_safe(judged, one_line=True)} aligned; gaps: {markup_safe(gaps)}"
                  f"{failures}; details in {markup_safe(out / IMPORT_REPORT)}. Score it with "
                  f"`voxqa score {markup_safe(out)} --as-published ct-spatialvqa`", soft_wrap=True)


def import_reasonknee(
    questions: Annotated[Path, typer.Option("--questions", metavar="JSON", help="Released zero-shot question file (questions_nobbox_zeroshot.json: 69 templates keyed 1..69).")],
    answers: Annotated[Path, typer.Option("--answers", metavar="JSON", help="Records {image, question_id, answer: MOAKS JSON [+ bbox, reasoning]}.")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    guided: Annotated[Optional[Path], typer.Option("--guided", metavar="JSON", help="Released guided question file (questions_nobbox_guided.json): asked in `voxqa eval --mode guided`.")] = None,
    splits: Annotated[Optional[list[Path]], typer.Option("--splits", metavar="CSV", help="Split CSV(s) (train/val/test in the name; repeatable).")] = None,
    volumes_root: Annotated[Optional[Path], typer.Option("--volumes-root", metavar="DIR", help="Folder the image paths are relative to.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first dropped record or unreadable volume.")] = False,
) -> None:
    """3DReasonKnee MOAKS JSON answers -> one grading item per graded component (zero-shot and guided prompts, 3D boxes)."""
    from voxqa.importers.reasonknee import import_reasonknee as run_import

    manifest = run_import(questions, answers, out, guided=guided, splits=splits or [], volumes_root=volumes_root,
                          strict=strict)
    _imported(out, manifest)
