"""`voxqa build ...` (one command per source) and `voxqa check-reports`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from voxqa.cli.common import (ADDRESS_HELP, EXECUTOR_HELP, FRACTIONS_HELP, SEED_HELP, built, console, executor,
                              frames_option)
from voxqa.dataset.frame_policy import DEFAULT_VOLUME_FRAMES
from voxqa.progress import rich_progress
from voxqa.errors import InputError
from voxqa.views.terminal import markup_safe

_EXTRACTOR_HELP = "rules (offline English/German lexicon) or openai:MODEL (with --base-url)."


def build_fastmri_plus(
    annotations: Annotated[list[Path], typer.Option("--annotations", metavar="CSV", help="fastMRI+ box CSV (repeatable).")],
    file_list: Annotated[list[Path], typer.Option("--file-list", metavar="CSV", help="Reviewed-volume list, one per --annotations.")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    volumes: Annotated[Optional[Path], typer.Option("--volumes", metavar="DIR", help="Folder of <file>.h5 fastMRI volumes.")] = None,
    anatomy: Annotated[Optional[str], typer.Option("--anatomy", metavar="knee|brain", help="Anatomy of all volumes (default: from file names).")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help=SEED_HELP)] = 0,
    split_fractions: Annotated[str, typer.Option("--split-fractions", metavar="TRAIN,VAL,TEST", help=FRACTIONS_HELP)] = "0.8,0.1,0.1",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first dropped row or unreadable volume.")] = False,
    frames: Annotated[str, typer.Option("--frames", metavar="K|all", help="Frames volume-level items show (recorded in the manifest; render follows it): every frame, or K evenly spaced (questions whose evidence they miss are not asked).")] = "all",
) -> None:
    """fastMRI+ radiologist boxes -> grounded detection/localization/counting/classification/captioning items."""
    from voxqa.build import build_fastmri_plus as build
    from voxqa.dataset.folder import check_out_folder
    from voxqa.dataset.splits import parse_fractions

    if len(annotations) != len(file_list):
        raise InputError(f"give one --file-list per --annotations (got {len(annotations)} and {len(file_list)})")
    if anatomy not in (None, "knee", "brain"):
        raise InputError(f"--anatomy must be knee or brain, got {anatomy!r}")
    if volumes is not None and not volumes.is_dir():
        raise InputError(f"--volumes {volumes}: not a folder")
    frame_cap = frames_option(frames, "a positive number")
    fractions = parse_fractions(split_fractions)
    check_out_folder(out)  # before the slow part
    manifest = build(list(zip(annotations, file_list, strict=False)), out, volumes=volumes, anatomy=anatomy,
                     seed=seed, fractions=fractions, strict=strict, progress=rich_progress(), frame_cap=frame_cap)
    built(out, manifest)


def build_segmentation(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    image: Annotated[Optional[Path], typer.Option("--image", metavar="FILE|DIR", help="NIfTI, NRRD or DICOM series folder.")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", metavar="FILE|DIR", help="Label map file or folder of binary masks.")] = None,
    label_names: Annotated[Optional[Path], typer.Option("--label-names", metavar="JSON", help="JSON file {id: name}.")] = None,
    study_id: Annotated[Optional[str], typer.Option("--study-id", metavar="ID", help="Study id of the single study (default: the image file name without extensions).")] = None,
    studies: Annotated[Optional[Path], typer.Option("--studies", metavar="CSV", help="CSV: study_id,image,labels[,label_names,patient_id,modality,anatomy].")] = None,
    modality: Annotated[Optional[str], typer.Option("--modality", metavar="NAME", help="CT, MR, ... (single study).")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help=SEED_HELP)] = 0,
    split_fractions: Annotated[str, typer.Option("--split-fractions", metavar="TRAIN,VAL,TEST", help=FRACTIONS_HELP)] = "0.8,0.1,0.1",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first unreadable study.")] = False,
    assume_orientation: Annotated[Optional[str], typer.Option(
        "--assume-orientation", metavar="CODES",
        help="Axis codes such as RAS or LPS for files that state no patient orientation "
        "(NIfTI qform/sform codes 0, NRRD without space directions). Without it such studies "
        "get no side or direction questions.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, metavar="N", help="Processes reading studies in parallel (CPUs of a Ray cluster started here).")] = 1,
    executor_name: Annotated[str, typer.Option("--executor", metavar="local|ray", help=EXECUTOR_HELP)] = "local",
    address: Annotated[Optional[str], typer.Option("--address", metavar="auto|ray://HOST:PORT", help=ADDRESS_HELP)] = None,
) -> None:
    """Image + segmentation -> spatial questions (laterality, vertical, depth, centricity,
    adjacency, extent, size, counting, presence) answered from world geometry."""
    from dataclasses import replace

    from voxqa.build import build_segmentation as build
    from voxqa.dataset.folder import check_out_folder
    from voxqa.dataset.splits import parse_fractions
    from voxqa.io.volume import parse_orientation
    from voxqa.sources.segmentation import SegSpec, read_studies_csv

    if (studies is None) == (image is None or labels is None):
        raise InputError("give either --studies CSV, or --image and --labels for one study")
    fractions = parse_fractions(split_fractions)
    check_out_folder(out)  # before the slow part
    if assume_orientation is not None:
        assume_orientation = parse_orientation(assume_orientation)
    if studies is not None:
        specs = [replace(sp, assume_orientation=assume_orientation) for sp in read_studies_csv(studies)]
    else:
        assert image is not None and labels is not None
        name = study_id or image.name.split(".")[0]
        specs = [SegSpec(study_id=name, image=image, labels=labels, label_names=label_names,
                         modality=modality, assume_orientation=assume_orientation)]
    manifest = build(specs, out, seed=seed, fractions=fractions, strict=strict,
                     progress=rich_progress(),
                     executor=executor(executor_name, workers, address))
    built(out, manifest)


def build_reports(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    studies: Annotated[Path, typer.Option("--studies", metavar="CSV", help="CSV as for `build segmentation`: study_id,image,labels[,...].")],
    reports: Annotated[Path, typer.Option("--reports", metavar="JSONL|CSV", help="One report per study: study_id, language (en|de), text (or findings/impression).")],
    extractor: Annotated[str, typer.Option("--extractor", metavar="rules|openai:MODEL", help=_EXTRACTOR_HELP)] = "rules",
    base_url: Annotated[Optional[str], typer.Option("--base-url", metavar="URL", help="OpenAI-compatible server of --extractor openai:MODEL.")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", metavar="VAR", help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    min_pixels: Annotated[int, typer.Option("--min-pixels", min=1, metavar="N", help="Pixels a keyword's mask needs on a frame to be grounded there.")] = 20,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help=SEED_HELP)] = 0,
    split_fractions: Annotated[str, typer.Option("--split-fractions", metavar="TRAIN,VAL,TEST", help=FRACTIONS_HELP)] = "0.8,0.1,0.1",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first unreadable study.")] = False,
) -> None:
    """Report + segmentation -> claims verified against the geometry (DIR/claims.jsonl),
    CT-SpatialVQA-style questions from supported claims, per-frame grounding (RefRad2D)."""
    from voxqa.build import build_reports as build
    from voxqa.dataset.folder import check_out_folder
    from voxqa.dataset.splits import parse_fractions
    from voxqa.radreports import make_extractor
    from voxqa.sources.segmentation import read_studies_csv

    fractions = parse_fractions(split_fractions)
    check_out_folder(out)
    specs = read_studies_csv(studies)
    ex = make_extractor(extractor, base_url, api_key_env, out.parent / f".{out.name}.claims-cache")
    manifest = build(specs, reports, out, extractor=ex, seed=seed, fractions=fractions, strict=strict,
                     progress=rich_progress(),
                     min_pixels=min_pixels)
    c = manifest["claims"]
    console.print(f"claims: {c['total']} ({c['supported']} supported, {c['contradicted']} contradicted, "
                  f"{c['unverifiable']} unverifiable): {markup_safe(out / 'claims.jsonl')}")
    built(out, manifest)


def check_reports(
    studies: Annotated[Path, typer.Option("--studies", metavar="CSV", help="CSV as for `build segmentation`.")],
    reports: Annotated[Path, typer.Option("--reports", metavar="JSONL|CSV", help="One report per study (as for `build reports`).")],
    extractor: Annotated[str, typer.Option("--extractor", metavar="rules|openai:MODEL", help=_EXTRACTOR_HELP)] = "rules",
    base_url: Annotated[Optional[str], typer.Option("--base-url", metavar="URL", help="OpenAI-compatible server of --extractor openai:MODEL.")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", metavar="VAR", help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
) -> None:
    """Report-image consistency: every claim a report makes that its segmentation contradicts,
    with the sentence and why (exit code 1 if there is any)."""
    from voxqa.radreports import make_extractor
    from voxqa.radreports.check import check_reports as check
    from voxqa.sources.segmentation import read_studies_csv

    specs = read_studies_csv(studies)
    claims = check(specs, reports, make_extractor(extractor, base_url, api_key_env))
    bad = [c for c in claims if c.verdict == "contradicted"]
    for c in bad:
        console.print(f"[red]contradicted[/] {markup_safe(c.study_id, one_line=True)}: "
                      f"\"{markup_safe(c.sentence)}\" ({markup_safe(c.reason, one_line=True)})",
                      highlight=False)
    counts = {v: sum(c.verdict == v for c in claims) for v in ("supported", "contradicted", "unverifiable")}
    console.print(f"{len(claims)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    if bad:
        raise typer.Exit(code=1)


def build_knee_grading(
    studies: Annotated[Path, typer.Option("--studies", metavar="CSV", help="CSV: study_id,image,labels,patient_id,knee_side[,label_names,assume_orientation] (docs/knee.md).")],
    grades: Annotated[Path, typer.Option("--grades", metavar="CSV", help="CSV: study_id,region,feature,grade (MOAKS, long form).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    boxes: Annotated[Optional[Path], typer.Option("--boxes", metavar="CSV", help="CSV: study_id,region,start_frame,end_frame,x_min,x_max,y_min,y_max on the sagittal frames (instead of label maps).")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help=SEED_HELP)] = 0,
    split_fractions: Annotated[str, typer.Option("--split-fractions", metavar="TRAIN,VAL,TEST", help=FRACTIONS_HELP)] = "0.8,0.1,0.1",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first unusable row or study.")] = False,
    frames: Annotated[str, typer.Option("--frames", metavar="K|all", help="Frames volume-level items show (recorded in the manifest; render follows it): K evenly spaced, or all.")] = str(DEFAULT_VOLUME_FRAMES),
) -> None:
    """Knee MRI + MOAKS grades -> grading items with region-first reasoning and region 3D
    boxes, on sagittal frames (3DReasonKnee)."""
    from voxqa.build import build_knee_grading as build
    from voxqa.dataset.folder import check_out_folder
    from voxqa.dataset.splits import parse_fractions

    frame_cap = frames_option(frames, "a positive number")
    fractions = parse_fractions(split_fractions)
    check_out_folder(out)
    manifest = build(studies, grades, out, boxes_csv=boxes, seed=seed, fractions=fractions, strict=strict,
                     progress=rich_progress(),
                     frame_cap=frame_cap)
    built(out, manifest)
