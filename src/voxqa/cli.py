"""The `voxqa` command line (typer + rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from rich.console import Console
from rich.markup import escape

from voxqa import __version__

class _PlainTypes:
    """Help without Python type names: flags show no value type, an argument only its metavar."""

    def get_params(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
            elif isinstance(param, TyperArgument) and param.metavar is not None:
                param.display_type_rich = lambda ctx: None  # the metavar says it already
        return params


class _Command(_PlainTypes, TyperCommand):
    pass


class _Group(_PlainTypes, TyperGroup):
    pass


app = typer.Typer(help="voxqa: spatially grounded QA over medical volumes.", no_args_is_help=True, cls=_Group)
build_app = typer.Typer(help="Build a QA dataset folder from a source.", no_args_is_help=True, cls=_Group)
app.add_typer(build_app, name="build")
console = Console(stderr=True)


def _fail(message: str) -> None:
    from voxqa.eval.redact import redact

    console.print(f"[bold red]error:[/] {escape(redact(message))}", soft_wrap=True)
    raise typer.Exit(code=2)


def _built(out: Path, manifest: dict) -> None:
    c = manifest["counts"]
    console.print(
        f"[green]built[/] {out}: {c['studies']} studies, {c['items']} items "
        f"({', '.join(f'{k} {v}' for k, v in c['items_by_task'].items())})"
    )
    audit = manifest["audit"]  # the blind audit run at the end of every build
    color = {"pass": "green", "flagged": "red"}.get(audit["status"], "yellow")
    detail = audit.get("flagged") or audit.get("insufficient") or []
    console.print(f"[{color}]blind audit: {audit['status']}[/]" + (f" ({', '.join(detail)})" if detail else ""),
                  soft_wrap=True)
    import orjson

    from voxqa.dataset.build_report import partial_summary
    from voxqa.dataset.folder import REPORT

    report_path = out / REPORT
    left_out = partial_summary(orjson.loads(report_path.read_bytes()))
    if left_out or not c["items"]:  # partial success: say so in one line
        console.print(f"[yellow]warning:[/] partial build: {escape(left_out or '0 items')}"
                      + ("; 0 items" if left_out and not c["items"] else "")
                      + f"; details in {escape(str(report_path))}", soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:  # eager: runs before typer asks for a command
        print(__version__)
        raise typer.Exit()


_EXECUTOR_HELP = "Where per-study work runs: local (process pool of --workers) or ray (docs: README, 'Past one machine')."
_ADDRESS_HELP = "With --executor ray: a running cluster (auto, or ray://HOST:PORT); default: start a local one."
_SEED_HELP = "Seed of the train/val/test split (and of every random choice in the build)."
_FRACTIONS_HELP = "Train, val and test fractions of the patients, summing to 1."


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


@build_app.command("fastmri-plus")
def build_fastmri_plus(
    annotations: Annotated[list[Path], typer.Option("--annotations", metavar="CSV", help="fastMRI+ box CSV (repeatable).")],
    file_list: Annotated[list[Path], typer.Option("--file-list", metavar="CSV", help="Reviewed-volume list, one per --annotations.")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    volumes: Annotated[Optional[Path], typer.Option("--volumes", metavar="DIR", help="Folder of <file>.h5 fastMRI volumes.")] = None,
    anatomy: Annotated[Optional[str], typer.Option("--anatomy", metavar="knee|brain", help="Anatomy of all volumes (default: from file names).")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help=_SEED_HELP)] = 0,
    split_fractions: Annotated[str, typer.Option("--split-fractions", metavar="TRAIN,VAL,TEST", help=_FRACTIONS_HELP)] = "0.8,0.1,0.1",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first dropped row or unreadable volume.")] = False,
) -> None:
    """fastMRI+ radiologist boxes -> grounded detection/localization/counting/classification/captioning items."""
    from voxqa.build import build_fastmri_plus as build
    from voxqa.errors import BuildError
    from voxqa.dataset.splits import parse_fractions
    from voxqa.dataset.folder import check_out_folder

    if len(annotations) != len(file_list):
        _fail(f"give one --file-list per --annotations (got {len(annotations)} and {len(file_list)})")
    if anatomy not in (None, "knee", "brain"):
        _fail(f"--anatomy must be knee or brain, got {anatomy!r}")
    if volumes is not None and not volumes.is_dir():
        _fail(f"--volumes {volumes}: not a folder")
    try:
        fractions = parse_fractions(split_fractions)
        check_out_folder(out)  # before the slow part
        manifest = build(
            list(zip(annotations, file_list, strict=False)), out, volumes=volumes, anatomy=anatomy,
            seed=seed, fractions=fractions, strict=strict,
        )
    except (BuildError, ValueError) as exc:
        _fail(str(exc))
        return
    _built(out, manifest)


@build_app.command("segmentation")
def build_segmentation(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    image: Annotated[Optional[Path], typer.Option("--image", metavar="FILE|DIR", help="NIfTI, NRRD or DICOM series folder.")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", metavar="FILE|DIR", help="Label map file or folder of binary masks.")] = None,
    label_names: Annotated[Optional[Path], typer.Option("--label-names", metavar="JSON", help="JSON file {id: name}.")] = None,
    study_id: Annotated[Optional[str], typer.Option("--study-id", metavar="ID", help="Study id of the single study (default: the image file name without extensions).")] = None,
    studies: Annotated[Optional[Path], typer.Option("--studies", metavar="CSV", help="CSV: study_id,image,labels[,label_names,patient_id,modality,anatomy].")] = None,
    modality: Annotated[Optional[str], typer.Option("--modality", metavar="NAME", help="CT, MR, ... (single study).")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help=_SEED_HELP)] = 0,
    split_fractions: Annotated[str, typer.Option("--split-fractions", metavar="TRAIN,VAL,TEST", help=_FRACTIONS_HELP)] = "0.8,0.1,0.1",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first unreadable study.")] = False,
    assume_orientation: Annotated[Optional[str], typer.Option(
        "--assume-orientation", metavar="CODES",
        help="Axis codes such as RAS or LPS for files that state no patient orientation "
        "(NIfTI qform/sform codes 0, NRRD without space directions). Without it such studies "
        "get no side or direction questions.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, metavar="N", help="Processes reading studies in parallel (CPUs of a Ray cluster started here).")] = 1,
    executor: Annotated[str, typer.Option("--executor", metavar="local|ray", help=_EXECUTOR_HELP)] = "local",
    address: Annotated[Optional[str], typer.Option("--address", metavar="auto|ray://HOST:PORT", help=_ADDRESS_HELP)] = None,
) -> None:
    """Image + segmentation -> spatial questions (laterality, vertical, depth, centricity,
    adjacency, extent, size, counting, presence) answered from world geometry."""
    from voxqa.build import build_segmentation as build
    from voxqa.errors import BuildError
    from voxqa.io import VolumeError
    from dataclasses import replace

    from voxqa.dataset.splits import parse_fractions
    from voxqa.io.volume import parse_orientation
    from voxqa.sources.segmentation import SegSpec, read_studies_csv

    if (studies is None) == (image is None or labels is None):
        _fail("give either --studies CSV, or --image and --labels for one study")
    from voxqa.dataset.folder import check_out_folder

    try:
        fractions = parse_fractions(split_fractions)
        check_out_folder(out)  # before the slow part
        if assume_orientation is not None:
            assume_orientation = parse_orientation(assume_orientation)
        if studies is not None:
            specs = [replace(sp, assume_orientation=assume_orientation)
                     for sp in read_studies_csv(studies)]
        else:
            assert image is not None and labels is not None
            name = study_id or image.name.split(".")[0]
            specs = [SegSpec(study_id=name, image=image, labels=labels, label_names=label_names,
                             modality=modality, assume_orientation=assume_orientation)]
        manifest = build(specs, out, seed=seed, fractions=fractions, strict=strict,
                         executor=_executor(executor, workers, address))
    except (BuildError, VolumeError, ValueError, ImportError) as exc:
        _fail(str(exc))
        return
    _built(out, manifest)


def _report_inputs(studies: Path, extractor: str, base_url: Optional[str], api_key_env: str, cache: Optional[Path]):  # noqa: ANN202
    """(specs, extractor) of `build reports` and `check-reports`."""
    from voxqa.radreports.extract_rules import RuleExtractor
    from voxqa.sources.segmentation import read_studies_csv

    specs = read_studies_csv(studies)
    if extractor == "rules":
        return specs, RuleExtractor()
    if not extractor.startswith("openai:") or not base_url:
        raise ValueError("--extractor is 'rules' or 'openai:MODEL' with --base-url URL")
    from voxqa.radreports.extract_openai import OpenAIExtractor

    return specs, OpenAIExtractor(extractor.split(":", 1)[1], base_url, api_key_env=api_key_env, cache=cache)


_EXTRACTOR_HELP = "rules (offline English/German lexicon) or openai:MODEL (with --base-url)."


@build_app.command("reports")
def build_reports(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    studies: Annotated[Path, typer.Option("--studies", metavar="CSV", help="CSV as for `build segmentation`: study_id,image,labels[,...].")],
    reports: Annotated[Path, typer.Option("--reports", metavar="JSONL|CSV", help="One report per study: study_id, language (en|de), text (or findings/impression).")],
    extractor: Annotated[str, typer.Option("--extractor", metavar="rules|openai:MODEL", help=_EXTRACTOR_HELP)] = "rules",
    base_url: Annotated[Optional[str], typer.Option("--base-url", metavar="URL", help="OpenAI-compatible server of --extractor openai:MODEL.")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", metavar="VAR", help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    min_pixels: Annotated[int, typer.Option("--min-pixels", min=1, metavar="N", help="Pixels a keyword's mask needs on a frame to be grounded there.")] = 20,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help=_SEED_HELP)] = 0,
    split_fractions: Annotated[str, typer.Option("--split-fractions", metavar="TRAIN,VAL,TEST", help=_FRACTIONS_HELP)] = "0.8,0.1,0.1",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first unreadable study.")] = False,
) -> None:
    """Report + segmentation -> claims verified against the geometry (DIR/claims.jsonl),
    CT-SpatialVQA-style questions from supported claims, per-frame grounding (RefRad2D)."""
    from voxqa.build import build_reports as build
    from voxqa.dataset.folder import check_out_folder
    from voxqa.dataset.splits import parse_fractions
    from voxqa.errors import BuildError
    from voxqa.io import VolumeError

    try:
        fractions = parse_fractions(split_fractions)
        check_out_folder(out)
        specs, ex = _report_inputs(studies, extractor, base_url, api_key_env, out.parent / f".{out.name}.claims-cache")
        manifest = build(specs, reports, out, extractor=ex, seed=seed, fractions=fractions, strict=strict,
                         min_pixels=min_pixels)
    except (BuildError, VolumeError, ValueError, ImportError) as exc:  # openai: needs the eval extra (httpx)
        _fail(str(exc))
        return
    c = manifest["claims"]
    console.print(f"claims: {c['total']} ({c['supported']} supported, {c['contradicted']} contradicted, "
                  f"{c['unverifiable']} unverifiable): {out / 'claims.jsonl'}")
    _built(out, manifest)


@app.command("check-reports")
def check_reports(
    studies: Annotated[Path, typer.Option("--studies", metavar="CSV", help="CSV as for `build segmentation`.")],
    reports: Annotated[Path, typer.Option("--reports", metavar="JSONL|CSV", help="One report per study (as for `build reports`).")],
    extractor: Annotated[str, typer.Option("--extractor", metavar="rules|openai:MODEL", help=_EXTRACTOR_HELP)] = "rules",
    base_url: Annotated[Optional[str], typer.Option("--base-url", metavar="URL", help="OpenAI-compatible server of --extractor openai:MODEL.")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", metavar="VAR", help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
) -> None:
    """Report-image consistency: every claim a report makes that its segmentation contradicts,
    with the sentence and why (exit code 1 if there is any)."""
    from voxqa.errors import BuildError
    from voxqa.io import VolumeError
    from voxqa.radreports.check import check_reports as check

    try:
        specs, ex = _report_inputs(studies, extractor, base_url, api_key_env, None)
        claims = check(specs, reports, ex)
    except (BuildError, VolumeError, ValueError, ImportError) as exc:  # openai: needs the eval extra (httpx)
        _fail(str(exc))
        return
    bad = [c for c in claims if c.verdict == "contradicted"]
    for c in bad:
        console.print(f"[red]contradicted[/] {c.study_id}: \"{c.sentence}\" ({c.reason})", highlight=False)
    counts = {v: sum(c.verdict == v for c in claims) for v in ("supported", "contradicted", "unverifiable")}
    console.print(f"{len(claims)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    if bad:
        raise typer.Exit(code=1)


@build_app.command("knee-grading")
def build_knee_grading(
    studies: Annotated[Path, typer.Option("--studies", metavar="CSV", help="CSV: study_id,image,labels,patient_id,knee_side[,label_names,assume_orientation] (docs/knee.md).")],
    grades: Annotated[Path, typer.Option("--grades", metavar="CSV", help="CSV: study_id,region,feature,grade (MOAKS, long form).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    boxes: Annotated[Optional[Path], typer.Option("--boxes", metavar="CSV", help="CSV: study_id,region,start_frame,end_frame,x_min,x_max,y_min,y_max on the sagittal frames (instead of label maps).")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help=_SEED_HELP)] = 0,
    split_fractions: Annotated[str, typer.Option("--split-fractions", metavar="TRAIN,VAL,TEST", help=_FRACTIONS_HELP)] = "0.8,0.1,0.1",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first unusable row or study.")] = False,
    frames: Annotated[str, typer.Option("--frames", metavar="K|all", help="Frames volume-level items show (render with the same --frames): K evenly spaced, or all.")] = "16",
) -> None:
    """Knee MRI + MOAKS grades -> grading items with region-first reasoning and region 3D
    boxes, on sagittal frames (3DReasonKnee)."""
    from voxqa.build import build_knee_grading as build
    from voxqa.dataset.folder import check_out_folder
    from voxqa.dataset.splits import parse_fractions
    from voxqa.errors import BuildError

    if frames != "all" and not (frames.isdigit() and int(frames) > 0):
        _fail(f"--frames must be a positive number or 'all', got {frames!r}")
    try:
        fractions = parse_fractions(split_fractions)
        check_out_folder(out)
        manifest = build(studies, grades, out, boxes_csv=boxes, seed=seed, fractions=fractions, strict=strict,
                         frame_cap=None if frames == "all" else int(frames))
    except (BuildError, ValueError) as exc:
        _fail(str(exc))
        return
    _built(out, manifest)


def _executor(name: str, workers: int, address: str | None):  # noqa: ANN202 - voxqa.executors.Executor
    """The executor of --executor/--workers/--address (Ray is imported only when asked for)."""
    from voxqa.executors import make_executor

    return make_executor(name, workers, address)


def _render_recipe(folder: Path, name: str, workers: int, strict: bool, pool) -> None:  # noqa: ANN001
    """`render --recipe`: per-study model-ready arrays and their transforms (voxqa.model_inputs)."""
    from voxqa.model_inputs import render_recipe

    try:
        summary = render_recipe(folder, name, workers, strict, pool)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] finished studies are kept; run again to resume")
        raise typer.Exit(code=130) from None
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    c, skipped = summary["counts"], summary["not_rendered"]
    console.print(f"[green]recipe {escape(name)}[/] {folder}: {c['studies']} studies ({c['written']} written) "
                  f"-> {folder / 'recipes' / name}", soft_wrap=True)
    left_out = {k: len(v) for k, v in skipped.items() if v}
    if left_out:
        first = next(iter({**skipped['refused'], **skipped['failed']}.items()), None)
        console.print(f"[yellow]warning:[/] not rendered: {', '.join(f'{n} {k}' for k, n in left_out.items())}"
                      + (f" (e.g. {escape(first[1])})" if first else ""), soft_wrap=True)


@app.command()
def render(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A voxqa dataset folder (built with volumes).")],
    size: Annotated[Optional[int], typer.Option("--size", min=16, metavar="PIXELS", help="Longer image side in pixels (default: native).")] = None,
    window: Annotated[Optional[str], typer.Option("--window", metavar="NAME|L,W", help="CT window: abdomen, lung, bone, brain, mediastinum or 'level,width' (default: abdomen for CT, percentiles otherwise).")] = None,
    frames: Annotated[str, typer.Option("--frames", metavar="K|all", help="Context frames per study for volume-level items: a number K, or 'all'.")] = "16",
    workers: Annotated[int, typer.Option("--workers", min=1, metavar="N", help="Processes rendering studies in parallel.")] = 1,
    mp4: Annotated[Optional[float], typer.Option("--mp4", min=0.1, metavar="FPS", help="Also write one MP4 per study at this frame rate (needs the 'video' extra).")] = None,
    executor: Annotated[str, typer.Option("--executor", metavar="local|ray", help=_EXECUTOR_HELP)] = "local",
    address: Annotated[Optional[str], typer.Option("--address", metavar="auto|ray://HOST:PORT", help=_ADDRESS_HELP)] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", metavar="NAME", help="Instead of PNG frames, write 3D-model inputs: m3d, med3dvlm, radfm, merlin, ctchat, medgemma-ct or lingshu (docs/recipes.md).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="With --recipe: stop at the first refused or unreadable study.")] = False,
) -> None:
    """Write 8-bit PNG frames and add `images` / evidence `image_box` to items.jsonl."""
    from voxqa.render import RenderInterrupted, RenderSettings, parse_window, render_dataset

    try:
        pool = _executor(executor, workers, address)
    except (ValueError, ImportError) as exc:
        _fail(str(exc))
        return
    if recipe is not None:
        _render_recipe(folder, recipe, workers, strict, pool)
        return

    if frames != "all" and not (frames.isdigit() and int(frames) > 0):
        _fail(f"--frames must be a positive whole number or 'all', got {frames!r}")
    try:
        if window is not None:
            parse_window(window)
        context = None if frames == "all" else int(frames)
        if mp4 is not None:
            import imageio_ffmpeg  # noqa: F401 - fail early with a clear message

        settings = RenderSettings(size=size, window=window, context=context, video_fps=mp4)
        summary = render_dataset(folder, settings, workers, pool)
    except ImportError:
        _fail("--mp4 needs imageio-ffmpeg: pip install 'voxqa[video]'")
        return
    except RenderInterrupted as exc:
        console.print(f"[yellow]interrupted:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=130) from None
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    c, skipped = summary["counts"], summary["not_rendered"]
    console.print(
        f"[green]rendered[/] {folder}: {c['frames']} frames of {c['studies_rendered']} studies "
        f"({c['frames_written']} written, the rest kept), {c['items_with_images']} items with images; "
        f"not rendered: {len(skipped['no_volume'])} box-only studies, {len(skipped['unreadable'])} unreadable"
    )
    from voxqa.dataset.audit import audit_dataset  # the frames shown changed: audit again

    result = audit_dataset(folder)
    console.print(f"blind audit (rendered frames): {result['status']}"
                  + (f" ({', '.join(result['flagged'])})" if result["flagged"] else ""), soft_wrap=True)


@app.command()
def export(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A rendered voxqa dataset folder.")],
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="Training file format: hf, llamafactory, swift or trl; or sgmri-vqa (SGMRI-VQA records, 1-based frames).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output folder.")],
    convention: Annotated[str, typer.Option("--profile", "--convention", metavar="PROFILE", help="Box profile spec of the model to train, e.g. qwen3-vl or qwen2.5-vl:max_pixels=1003520 (see `voxqa profiles`).")] = "pixel",
    split: Annotated[Optional[str], typer.Option("--split", metavar="train|val|test", help="Export one split only (default: all).")] = None,
) -> None:
    """Training files for fine-tuning tools; the target is JSON {reasoning, answer, bboxes}."""
    try:
        from voxqa.export import export_dataset

        summary = export_dataset(folder, fmt, out, convention=convention, split=split)
    except ImportError as exc:
        _fail(f"{exc}: pip install 'voxqa[export]'")
        return
    except (FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
        return
    console.print(
        f"[green]exported[/] {summary['exported']} items of {folder} as {fmt} "
        f"({escape(summary['profile'])} boxes, {summary['space']}) to {out}: "
        f"{', '.join(summary['files'])}; {summary['skipped_no_images']} items without images skipped",
        soft_wrap=True,
    )


@app.command("eval")
def eval_(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A rendered voxqa dataset folder.")],
    model: Annotated[str, typer.Option("--model", metavar="SPEC", help="random | prior | oracle | openai:MODEL | hf:PATH | py:MODULE:FACTORY | NAME[:ARG] (an installed plug-in; see docs/plugins.md)")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Run folder (resumable).")],
    base_url: Annotated[Optional[list[str]], typer.Option("--base-url", metavar="URL", help="OpenAI-compatible server, e.g. http://localhost:8000/v1; repeat it for replicas of the model (load-balanced).")] = None,
    split: Annotated[str, typer.Option("--split", metavar="train|val|test|all", help="Which items to ask.")] = "test",
    mode: Annotated[str, typer.Option("--mode", metavar="MODE", help="Prompt mode: minimal, structured or oracle_region.")] = "minimal",
    control: Annotated[str, typer.Option("--control", metavar="CONTROL", help="Image control: none, blank (blank frames), shuffled (frames of another study) or mirrored (the mirrored study).")] = "none",
    profile: Annotated[str, typer.Option("--profile", metavar="PROFILE", help="Box profile spec of the model, e.g. gemini or qwen2.5-vl:max_pixels=1003520 (see `voxqa profiles`).")] = "pixel",
    model_arg: Annotated[Optional[list[str]], typer.Option("--model-arg", metavar="KEY=VALUE", help="Keyword argument for a plug-in model's factory (repeatable; values are strings).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, metavar="N", help="Requests in flight at once.")] = 4,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, metavar="N", help="Ask at most N items (default: all selected).")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", metavar="TASKS", help="Comma-separated tasks, e.g. detection,localization")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", metavar="NAME", help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="Seconds per request.")] = 120.0,
    max_retries: Annotated[int, typer.Option("--max-retries", min=0, metavar="N", help="Retries of a failed request (with backoff).")] = 5,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the random baseline and of controls.")] = 0,
    executor: Annotated[str, typer.Option("--executor", metavar="local|ray", help="Where the model runs: here, or one replica per Ray actor (hf:/plug-in models on several GPUs).")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", metavar="auto|ray://HOST:PORT", help=_ADDRESS_HELP)] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, metavar="N", help="With --executor ray: model replicas (Ray actors).")] = 1,
) -> None:
    """Run a model (or a baseline) on a dataset; predictions are appended and resumable."""
    import asyncio

    from voxqa.boxes.profiles import get_profile
    from voxqa.eval.models import PermanentError, make_model, parse_model_args
    from voxqa.eval.run import RunConfig, RunMismatch, run_eval

    if out.exists() and not out.is_dir():
        _fail(f"--out {out}: is a file, not a run folder")
    if split not in ("train", "val", "test", "all"):
        _fail(f"--split {split!r} is not a split; use one of train, val, test or all")
    try:
        profile = get_profile(profile).spec  # recorded in run.json as one canonical spec
        model_kwargs = dict(profile=profile, base_url=base_url or None, seed=seed, api_key_env=api_key_env,
                            timeout=timeout, max_retries=max_retries, model_args=parse_model_args(model_arg or []))
        if executor == "ray":
            from voxqa.eval.models.distributed import RayModels

            _executor(executor, workers, address)  # joins or starts the cluster
            adapter = RayModels(model, folder, workers, **model_kwargs)
        else:
            _executor(executor, workers, address)  # refuses unknown names and a stray --address
            adapter = make_model(model, folder, **model_kwargs)
        cfg = RunConfig(dataset=folder, out=out, split=None if split == "all" else split, mode=mode,
                        control=control, profile=profile, limit=limit, concurrency=concurrency,
                        tasks=tuple(t.strip() for t in tasks.split(",")) if tasks else None, seed=seed)
        counts = asyncio.run(run_eval(cfg, adapter))
    except (RunMismatch, FileNotFoundError, ValueError, KeyError, PermanentError, ImportError) as exc:
        _fail(str(exc))
        return
    console.print(f"[green]eval[/] {model} -> {out}: {counts}", soft_wrap=True)
    from voxqa.eval.run import CORRUPT

    if (out / CORRUPT).is_file():  # partial success: say so in one line
        console.print(f"[yellow]warning:[/] lines of {out / 'predictions.jsonl'} that were not records "
                      f"are set aside in {out / CORRUPT}; their items were asked again", soft_wrap=True)
    try:
        _print_score(out)
    except ValueError as exc:  # failed requests: incomplete, not scored as the model's accuracy
        _fail(str(exc))


def _print_score(run: Path, jury=None, allow_incomplete: bool = False,  # noqa: ANN001 - a voxqa.eval.jury.Jury
                 as_published: Optional[str] = None) -> None:
    from voxqa.eval.score import RESULTS, score_run

    results = score_run(run, jury, allow_incomplete=allow_incomplete, as_published=as_published)
    overall = results["overall"]
    shown = {k: round(v["mean"], 4) for k, v in overall["metrics"].items()
             if v["mean"] is not None and k in ("accuracy", "set_f1", "frame_f1", "miou", "iou3d", "bleu")}
    console.print(f"[green]scored[/] {run / RESULTS}: n={overall['n']}, {shown}, chance="
                  f"{overall['chance']}, parse failures {overall['parse_failures']}"
                  + (f" [bold red]INCOMPLETE: {results['failed']} requests failed[/]" if results.get("incomplete") else ""),
                  soft_wrap=True)
    if as_published is not None:  # stdout: the benchmark's numbers, each block labelled
        import json

        print(json.dumps(results["as_published"], indent=2, ensure_ascii=False))


@app.command()
def score(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A run folder of `voxqa eval`.")],
    judge: Annotated[Optional[list[str]], typer.Option("--judge", metavar="openai:MODEL", help="openai:MODEL judging free-text answers (1-3, majority vote).")] = None,
    judge_base_url: Annotated[Optional[str], typer.Option("--judge-base-url", metavar="URL", help="OpenAI-compatible server of the judges.")] = None,
    judge_api_key_env: Annotated[str, typer.Option("--judge-api-key-env", metavar="NAME", help="Environment variable holding the judges' API key.")] = "OPENAI_API_KEY",
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help="Score a run with failed requests anyway (labelled incomplete).")] = False,
    as_published: Annotated[Optional[str], typer.Option("--as-published", metavar="sgmri-vqa|ct-spatialvqa", help="Add the benchmark's own headline metrics, computed as published, beside voxqa's (docs/importers.md).")] = None,
    uplift_from: Annotated[Optional[Path], typer.Option("--uplift-from", metavar="RUN", help="The same model's run in the other of the structured / oracle_region modes: adds the GT-region uplift per grading feature to results.json.")] = None,
) -> None:
    """Re-score a run without re-running it (writes RUN/results.json); optionally with an LLM jury."""
    jury = None
    try:
        if judge:
            from voxqa.eval.jury import Jury
            from voxqa.eval.models.openai_chat import OpenAIChat

            if not judge_base_url or any(not j.startswith("openai:") for j in judge):
                raise ValueError("--judge takes openai:MODEL and needs --judge-base-url")
            jury = Jury([OpenAIChat(j.split(":", 1)[1], judge_base_url, api_key_env=judge_api_key_env,
                                    max_tokens=8) for j in judge], run)
        if as_published is not None:
            from voxqa.importers.published_scores import NAMES

            if as_published not in NAMES:
                raise ValueError(f"--as-published {as_published!r}: known benchmarks are {', '.join(NAMES)}")
        _print_score(run, jury, allow_incomplete, as_published)
        if uplift_from is not None:
            _add_uplift(run, uplift_from)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


def _add_uplift(run: Path, other: Path) -> None:
    """``region_uplift`` (oracle_region minus structured, per grading feature) in RUN/results.json."""
    import orjson

    from voxqa.eval.compare import load_results, region_uplift
    from voxqa.eval.score import RESULTS

    pairs = region_uplift(load_results([other, run]))
    if not pairs:
        raise ValueError(f"{run} and {other} are not one model's structured and oracle_region runs "
                         "(same model, control, profile, split and tasks)")
    results = orjson.loads((run / RESULTS).read_bytes())
    results["region_uplift"] = pairs[0]
    (run / RESULTS).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    macro = ", ".join(f"{k} {v:+.3f}" for k, v in sorted(pairs[0]["macro"].items()))
    console.print(f"GT-region uplift (oracle_region - structured, macro over features): {macro}", soft_wrap=True)


def _one_dataset(runs: list[Path]) -> None:
    """Runs compared side by side must be of one dataset (run.json's dataset_sha256)."""
    import orjson

    seen: dict[str, list[str]] = {}
    for run in runs:
        try:
            ident = orjson.loads((run / "run.json").read_bytes())["identity"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a missing or broken run.json is reported by the command itself
        seen.setdefault(ident.get("dataset_sha256", "?"), []).append(str(run))
    if len(seen) > 1:
        groups = "; ".join(f"{', '.join(r)} (dataset {h[:12]})" for h, r in seen.items())
        _fail(f"these runs are of {len(seen)} different datasets: {groups}; compare runs of one dataset")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="Run folders of `voxqa eval`.")],
    out: Annotated[Optional[Path], typer.Option("--out", metavar="FILE", help="leaderboard.md or leaderboard.csv (default: print).")] = None,
) -> None:
    """Leaderboard: one row per run, headline metric per task with CIs, chance row first; for
    grading runs in structured and oracle_region mode, the GT-region uplift per feature."""
    from voxqa.eval.compare import UPLIFT_TITLE, leaderboard, load_results, region_uplift, render_table, uplift_table

    if out is not None and not out.parent.is_dir():
        _fail(f"--out {out}: folder {out.parent} does not exist")
    if out is not None and out.is_dir():
        _fail(f"--out {out}: is a folder; give a .md or .csv file")
    _one_dataset(runs)
    try:
        header, rows = leaderboard(runs)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
        return
    fmt = "csv" if out is not None and out.suffix == ".csv" else "md"
    text = render_table(header, rows, fmt)
    uplift = uplift_table(region_uplift(load_results(runs)))  # grading runs in two modes only
    if uplift[1] and fmt == "md":
        text += f"\n{UPLIFT_TITLE}\n\n" + render_table(*uplift, fmt, legend=False)
    if out is None:
        print(text)
    else:
        out.write_text(text)
        console.print(f"[green]leaderboard[/] {out} ({len(rows) - 1} runs)")
        if uplift[1] and fmt == "csv":
            extra = out.with_name(out.stem + ".uplift.csv")
            extra.write_text(render_table(*uplift, fmt))
            console.print(f"[green]GT-region uplift[/] {extra}")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="Run folders of `voxqa eval`.")],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="The HTML file to write.")] = Path("report.html"),
    max_items: Annotated[int, typer.Option("--max-items", min=1, metavar="N", help="Items in the browser.")] = 200,
) -> None:
    """One self-contained HTML report: leaderboard, chart, item browser with boxes."""
    from voxqa.views.html_report import build_report

    if not out.parent.is_dir():
        _fail(f"--out {out}: folder {out.parent} does not exist")
    _one_dataset(runs)
    try:
        path = build_report(runs, out, max_items=max_items)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
        return
    console.print(f"[green]report[/] {path}")


@app.command()
def train(
    source: Annotated[Path, typer.Argument(metavar="DATASET_OR_EXPORT", help="A rendered dataset folder or a trl export.")],
    model: Annotated[Path, typer.Option("--model", metavar="PATH", help="Base model folder (save_pretrained output).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output folder: model/, checkpoints/, train_log.jsonl.")],
    profile: Annotated[Optional[str], typer.Option("--profile", metavar="PROFILE", help="Box profile of the targets (default: the export's, else pixel).")] = None,
    recipe: Annotated[str, typer.Option("--recipe", metavar="NAME", help="Preset: default, sgmri-qwen3vl-8b, reasonknee-qwen25vl-3b, radgrounder-paligemma2-3b.")] = "default",
    lora: Annotated[Optional[int], typer.Option("--lora", min=1, metavar="R", help="LoRA rank (alpha 2R) on the language model.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Full fine-tune (no LoRA), overriding the recipe.")] = False,
    epochs: Annotated[Optional[float], typer.Option("--epochs", metavar="N", help="Epochs (default: the recipe's).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", metavar="LR", help="Learning rate (default: the recipe's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, metavar="N", help="Examples per device and step.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", min=1, metavar="N", help="Gradient accumulation steps.")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, metavar="N", help="Leave out items with more frames (never cut).")] = None,
    train_vision: Annotated[Optional[bool], typer.Option("--train-vision/--freeze-vision", help="Train or freeze the vision tower (default: the recipe's).")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", min=1, metavar="N", help="Longest sequence allowed (default: the model's context).")] = None,
    mode: Annotated[str, typer.Option("--mode", metavar="MODE", help="Prompt mode of the user turn, as in `voxqa eval --mode`.")] = "structured",
    save_steps: Annotated[Optional[int], typer.Option("--save-steps", min=1, metavar="N", help="Checkpoint every N steps (default: each epoch).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
) -> None:
    """Fine-tune a vision-language model on the JSON targets (TRL SFTTrainer; extra `train`)."""
    try:
        from voxqa.train import TrainConfig, train as run_train
    except ImportError as exc:
        _fail(f"{exc}: pip install 'voxqa[train]'")
        return
    cfg = TrainConfig(source=source, model=model, out=out, profile=profile, recipe=recipe, lora=lora, full=full,
                      epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum, max_frames=max_frames,
                      train_vision=train_vision, max_length=max_length, resume=resume, mode=mode,
                      save_steps=save_steps)
    try:
        summary = run_train(cfg)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
        return
    console.print(f"[green]trained[/] {summary['examples']} examples, {summary['steps']} steps, loss "
                  f"{summary['first_loss']:.3f} -> {summary['last_loss']:.3f}: --model hf:{summary['model']}",
                  soft_wrap=True)


@app.command()
def profiles(
    check_processor: Annotated[Optional[Path], typer.Option("--check-processor", metavar="PATH", help="A model folder or preprocessor_config.json to compare with --profile; exit 1 on a mismatch.")] = None,
    profile: Annotated[str, typer.Option("--profile", metavar="PROFILE", help="The profile spec to check the processor against.")] = "qwen2.5-vl",
) -> None:
    """Model box profiles: how each family writes a box (one documented example each)."""
    from rich.table import Table

    from voxqa.boxes.profiles import PROFILES, check_processor as compare, get_profile

    if check_processor is not None:
        try:
            p = get_profile(profile)
            mismatches = compare(p, check_processor)
        except ValueError as exc:
            _fail(str(exc))
            return
        if mismatches:
            console.print(f"[red]error:[/] {check_processor} does not match profile {escape(p.spec)}: "
                          f"{'; '.join(mismatches)}", soft_wrap=True)
            raise typer.Exit(1)
        console.print(f"[green]ok[/] {check_processor} matches profile {escape(p.spec)} ({escape(p.description)})",
                      soft_wrap=True)
        return

    table = Table(title="Box profiles (nothing is ever inferred from the numbers)")
    for col in ("profile", "coordinates", "example answer"):
        table.add_column(col, overflow="fold")
    for p in PROFILES.values():
        table.add_row(*(escape(v) for v in (p.name, p.description, p.example)))
    Console().print(table)


@app.command()
def audit(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A voxqa dataset folder.")],
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 unless the status is 'pass'.")] = False,
) -> None:
    """Blind audit: can a text-only learner answer each template above chance?

    Text-only learners per template (train -> val+test); writes audit.json and the
    manifest's audit entry; flags templates a text-only guesser answers above chance."""
    from voxqa.dataset.audit import AUDIT, audit_dataset
    from voxqa.views.inspection import audit_table

    try:
        result = audit_dataset(folder)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    Console().print(audit_table(result))
    console.print(f"[green]audit[/] {folder / AUDIT}: status {result['status']}"
                  + (f", flagged: {', '.join(result['flagged'])}" if result["flagged"] else "")
                  + (f", insufficient: {', '.join(result['insufficient'])}" if result["insufficient"] else ""),
                  soft_wrap=True)
    if strict and result["status"] != "pass":
        raise typer.Exit(code=1)


@app.command()
def inspect(folder: Annotated[Path, typer.Argument(metavar="DIR", help="A voxqa dataset folder.")]) -> None:
    """Counts by task/template/level/label/split, answer balance, and build repairs."""
    from voxqa.views.inspection import show

    try:
        show(folder, Console())
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def phantom(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output folder.")],
    n: Annotated[int, typer.Option("--n", min=1, metavar="N", help="Number of volumes.")] = 12,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the synthetic volumes and boxes.")] = 0,
    knee: Annotated[bool, typer.Option("--knee", help="Sagittal knee MR with a MOAKS subregion label map, planted lesions and grades.csv (for `build knee-grading`).")] = False,
) -> None:
    """Write synthetic fastMRI-style volumes with a fastMRI+-style CSV and file list (or, with
    --knee, knee volumes with label maps, studies.csv and grades.csv)."""
    if knee:
        from voxqa.phantom import write_knee_phantom

        paths = write_knee_phantom(out, n=n, seed=seed)
        console.print(f"[green]phantom[/] {n} knees: {paths['studies']}, {paths['grades']}")
        return
    from voxqa.phantom import write_phantom

    paths = write_phantom(out, n=n, seed=seed)
    console.print(f"[green]phantom[/] {n} volumes in {paths['volumes']}, boxes in {paths['annotations']}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Demo output folder.")] = Path("voxqa-demo"),
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the phantoms, builds and baselines.")] = 0,
    base_url: Annotated[Optional[str], typer.Option("--base-url", metavar="URL", help="Also evaluate a model on this OpenAI-compatible server.")] = None,
    model_name: Annotated[str, typer.Option("--model-name", metavar="NAME", help="The served model's name (with --base-url).")] = "default",
    profile: Annotated[str, typer.Option("--profile", metavar="PROFILE", help="Its box convention (with --base-url; see `voxqa profiles`).")] = "pixel",
) -> None:
    """The whole pipeline on built-in synthetic data, with a leaderboard on stdout.

    Phantoms -> builds (fastMRI+-style boxes, and several segmented abdomens) -> render ->
    evaluate oracle/prior/random on the test splits (and a served model with --base-url) ->
    a leaderboard on stdout and HTML reports."""
    import asyncio

    import orjson

    from voxqa.build import build_fastmri_plus as build
    from voxqa.build import build_segmentation
    from voxqa.dataset.folder import read_items
    from voxqa.dataset.splits import split_of
    from voxqa.eval.compare import cell, load_results, render_table
    from voxqa.eval.models import make_model
    from voxqa.eval.run import RunConfig, run_eval
    from voxqa.eval.score import score_run
    from voxqa.phantom import write_phantom, write_segmentation_phantom
    from voxqa.render import RenderSettings, render_dataset
    from voxqa.sources.segmentation import SegSpec
    from voxqa.views.html_report import build_report

    for made in (out / "dataset", out / "spatial_dataset"):  # a demo of another seed: refused
        if (made / "manifest.json").is_file() and orjson.loads((made / "manifest.json").read_bytes()).get("seed") != seed:
            _fail(f"{out} holds a demo made with another --seed; give a new --out or remove {out}")
    fractions = (0.6, 0.2, 0.2)
    console.print("[bold]demo:[/] building the fastMRI+-style phantom dataset", soft_wrap=True)
    paths = write_phantom(out / "phantom", n=24, seed=seed)
    dataset = out / "dataset"
    build([(paths["annotations"], paths["file_list"])], dataset, volumes=paths["volumes"],
          seed=seed, fractions=fractions)
    # segmented abdomens: phantom variants (other "patients") picked by the split their id
    # falls in under this seed, so that train and test both hold studies
    want, picked = {"train": 3, "test": 2}, {"train": [], "test": []}
    for v in range(1, 200):
        sid = f"abdomen_{v:02d}"
        sp = split_of(sid, seed, fractions)
        if sp in picked and len(picked[sp]) < want[sp]:
            picked[sp].append((v, sid))
        if all(len(picked[k]) == n for k, n in want.items()):
            break
    console.print(f"[bold]demo:[/] building the segmentation phantom dataset "
                  f"({sum(map(len, picked.values()))} abdomens)", soft_wrap=True)
    specs = []
    for v, sid in sorted(picked["train"] + picked["test"]):
        seg = write_segmentation_phantom(out / "segmentation_phantom" / sid, variant=v)
        specs.append(SegSpec(study_id=sid, image=seg["image"], labels=seg["labels"],
                             label_names=seg["label_names"], modality="CT", anatomy="abdomen"))
    spatial = out / "spatial_dataset"
    build_segmentation(specs, spatial, seed=seed, fractions=fractions)
    console.print(f"[green]demo datasets:[/] {dataset} (fastMRI+-style boxes) and {spatial} "
                  "(segmentation spatial QA); each has items.jsonl, manifest.json, build_report.json; "
                  "see them with `voxqa inspect`", soft_wrap=True)

    models = ["oracle", "prior", "random"] + ([f"openai:{model_name}"] if base_url else [])
    header = ["dataset", "model", "n", "accuracy [95% CI]"]  # n: test items accuracy covers
    table, reports = [], []
    for data, name, runs_dir, page in ((dataset, "fastMRI+ boxes", out / "runs", out / "report.html"),
                                       (spatial, "spatial", out / "spatial_runs", out / "spatial_report.html")):
        console.print(f"[bold]demo:[/] rendering and evaluating {data}", soft_wrap=True)
        render_dataset(data, RenderSettings(size=192), workers=2)  # the frames the build assumed
        n_test = sum(1 for it in read_items(data) if it.split == "test" and it.images)
        if not n_test:
            _fail(f"the demo's {data} has no rendered test items; try another --seed")
        runs = []
        for spec in models:
            run = runs_dir / spec.replace(":", "_").replace("/", "_")
            adapter = make_model(spec, data, seed=seed, base_url=base_url, profile=profile)
            asyncio.run(run_eval(RunConfig(dataset=data, out=run, split="test", profile=profile), adapter))
            score_run(run)
            runs.append(run)
        reports.append(build_report(runs, page, max_items=120))
        results = load_results(runs)  # the chance row first, then one row per model
        table.append([name, "chance", "", f"{results[0]['overall']['chance']:.3f}"
                      if results[0]["overall"].get("chance") is not None else ""])
        for r in results:
            accuracy = r["overall"]["metrics"].get("accuracy") or {}
            table.append([name, r["run"]["model"]["spec"], str(accuracy.get("n", "")),
                          cell(accuracy or None, r["overall"].get("below_chance"))])
    console.print(f"[green]demo reports:[/] {reports[0]} (fastMRI+-style boxes) and {reports[1]} "
                  "(segmentation spatial QA); open them in a browser", soft_wrap=True)
    text = render_table(header, table, "md").rstrip("\n")
    if not any(c.endswith(" !") for row in table for c in row):  # the footnote explains "!" only
        text = text.split("\n\n")[0]
    print(text)  # stdout: the leaderboard alone, no trailing blank line

import_app = typer.Typer(help="Import a published benchmark in its released format as a voxqa dataset (or a released run as a voxqa run); see docs/importers.md.", no_args_is_help=True, cls=_Group)
app.add_typer(import_app, name="import")


def _imported(out: Path, manifest: dict) -> None:
    from voxqa.dataset.folder import REPORT

    _built(out, manifest)
    console.print(f"build report: {escape(str(out / REPORT))}", soft_wrap=True)


@import_app.command("sgmri-vqa")
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
    from voxqa.errors import BuildError
    from voxqa.importers.sgmri_vqa import import_sgmri_vqa as run_import

    if volumes is not None and not volumes.is_dir():
        _fail(f"--volumes {volumes}: not a folder")
    try:
        manifest = run_import(qa, annotations, out, file_lists=file_list or [], volumes=volumes,
                              split=split, strict=strict)
    except (BuildError, ValueError) as exc:
        _fail(str(exc))
        return
    _imported(out, manifest)


@import_app.command("ct-spatialvqa")
def import_ct_spatialvqa(
    qa: Annotated[Path, typer.Option("--qa", metavar="JSONL", help="Released QA records (case_id, image_path, question, answer).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    categories: Annotated[Optional[Path], typer.Option("--categories", metavar="JSON", help="Released category file (multi-label per question).")] = None,
    volumes_root: Annotated[Optional[Path], typer.Option("--volumes-root", metavar="DIR", help="Folder the records' image_path (or case_id) is relative to.")] = None,
    split: Annotated[str, typer.Option("--split", metavar="train|val|test", help="Split of the items (the release is the benchmark's test set).")] = "test",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first dropped record or unreadable volume.")] = False,
) -> None:
    """CT-SpatialVQA JSONL -> free-text voxqa items (scored by a jury), categories kept."""
    from voxqa.errors import BuildError
    from voxqa.importers.ct_spatialvqa import import_ct_spatialvqa as run_import

    try:
        manifest = run_import(qa, out, categories=categories, volumes_root=volumes_root, split=split, strict=strict)
    except (BuildError, ValueError) as exc:
        _fail(str(exc))
        return
    _imported(out, manifest)


@import_app.command("ct-spatialvqa-run")
def import_ct_spatialvqa_run(
    dataset: Annotated[Path, typer.Option("--dataset", metavar="DIR", help="The dataset of `voxqa import ct-spatialvqa`.")],
    evals: Annotated[list[Path], typer.Option("--eval", metavar="FILE", help="Released <model>_<judge>_eval*.json, one per judge (repeatable).")],
    out: Annotated[Path, typer.Option("--out", metavar="RUN", help="Run folder to create.")],
    model: Annotated[Optional[str], typer.Option("--model", metavar="NAME", help="Model name (default: from the file names).")] = None,
) -> None:
    """Released predictions + judge verdicts -> a voxqa run (verdicts aligned by content, never by position)."""
    from voxqa.errors import BuildError
    from voxqa.importers.ct_spatialvqa import IMPORT_REPORT
    from voxqa.importers.ct_spatialvqa import import_ct_spatialvqa_run as run_import

    try:
        report = run_import(dataset, evals, out, model=model)
    except (BuildError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    gaps = ", ".join(f"{k} {v['count']}" for k, v in report["gaps"].items() if v["count"]) or "none"
    judged = ", ".join(f"{k} {v['aligned']}/{v['entries']}" for k, v in report["judges"].items())
    console.print(f"[green]imported[/] {report['model']}: {report['predictions']} predictions, judges {judged} "
                  f"aligned; gaps: {gaps}; details in {escape(str(out / IMPORT_REPORT))}. Score it with "
                  f"`voxqa score {escape(str(out))} --as-published ct-spatialvqa`", soft_wrap=True)


@import_app.command("reasonknee")
def import_reasonknee(
    questions: Annotated[Path, typer.Option("--questions", metavar="JSON", help="Released question file (69 templates keyed 1..69).")],
    answers: Annotated[Path, typer.Option("--answers", metavar="JSON", help="Records {image, question_id, answer: MOAKS JSON}.")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output dataset folder.")],
    splits: Annotated[Optional[list[Path]], typer.Option("--splits", metavar="CSV", help="Split CSV(s) (train/val/test in the name; repeatable).")] = None,
    volumes_root: Annotated[Optional[Path], typer.Option("--volumes-root", metavar="DIR", help="Folder the image paths are relative to.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first dropped record or unreadable volume.")] = False,
) -> None:
    """3DReasonKnee MOAKS JSON answers -> one grading item per graded component (MOAKS target kept)."""
    from voxqa.errors import BuildError
    from voxqa.importers.reasonknee import import_reasonknee as run_import

    try:
        manifest = run_import(questions, answers, out, splits=splits or [], volumes_root=volumes_root, strict=strict)
    except (BuildError, ValueError) as exc:
        _fail(str(exc))
        return
    _imported(out, manifest)


for _info in app.registered_commands + build_app.registered_commands + import_app.registered_commands:  # help without type names
    if _info.cls in (None, TyperCommand):
        _info.cls = _Command
