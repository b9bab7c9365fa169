"""Commands on a dataset folder: render, export, profiles, audit, inspect, and phantom data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from voxqa.cli.common import ADDRESS_HELP, EXECUTOR_HELP, INTERRUPTED, console, executor, frames_option
from voxqa.progress import rich_progress
from voxqa.errors import needs_extra
from voxqa.views.terminal import markup_safe


def _render_recipe(folder: Path, name: str, workers: int, strict: bool, pool, volumes_root: list[Path]) -> None:  # noqa: ANN001
    """`render --recipe`: per-study model-ready arrays and their transforms (voxqa.model_inputs)."""
    from voxqa.model_inputs import render_recipe

    try:
        summary = render_recipe(folder, name, workers, strict, pool, rich_progress(), volumes_root)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] finished studies are kept; run again to resume")
        raise typer.Exit(code=INTERRUPTED) from None
    c, skipped = summary["counts"], summary["not_rendered"]
    console.print(f"[green]recipe {markup_safe(name)}[/] {markup_safe(folder)}: {c['studies']} studies "
                  f"({c['written']} written) -> {markup_safe(folder / 'recipes' / name)}", soft_wrap=True)
    left_out = {k: len(v) for k, v in skipped.items() if v}
    if left_out:
        first = next(iter({**skipped['refused'], **skipped['failed']}.items()), None)
        console.print(f"[yellow]warning:[/] not rendered: {', '.join(f'{n} {k}' for k, n in left_out.items())}"
                      + (f" (e.g. {markup_safe(first[1])})" if first else ""), soft_wrap=True)


def render(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A voxqa dataset folder (built with volumes).")],
    size: Annotated[Optional[int], typer.Option("--size", min=16, metavar="PIXELS", help="Longer image side in pixels (default: native).")] = None,
    window: Annotated[Optional[str], typer.Option("--window", metavar="NAME|L,W", help="CT window: abdomen, lung, bone, brain, mediastinum or 'level,width' (default: abdomen for CT, percentiles otherwise).")] = None,
    frames: Annotated[Optional[str], typer.Option("--frames", metavar="K|all", help="Context frames per study for volume-level items: a number K, or 'all' (default: the frame set the dataset was built for, recorded in its manifest; 16 when none is).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, metavar="N", help="Processes rendering studies in parallel.")] = 1,
    mp4: Annotated[Optional[float], typer.Option("--mp4", min=0.1, metavar="FPS", help="Also write one MP4 per study at this frame rate (needs the 'video' extra).")] = None,
    executor_name: Annotated[str, typer.Option("--executor", metavar="local|ray", help=EXECUTOR_HELP)] = "local",
    address: Annotated[Optional[str], typer.Option("--address", metavar="auto|ray://HOST:PORT", help=ADDRESS_HELP)] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", metavar="NAME", help="Instead of PNG frames, write 3D-model inputs: m3d, m3d-refseg, med3dvlm, radfm, merlin, ctchat, medgemma-ct or lingshu (docs/recipes.md).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="With --recipe: stop at the first refused or unreadable study.")] = False,
    volumes_root: Annotated[Optional[list[Path]], typer.Option("--volumes-root", metavar="DIR", help="Also allow volumes in this folder (repeatable); by default a study's volume must lie in the dataset folder or a folder its manifest records as the build's input.")] = None,
) -> None:
    """Write 8-bit PNG frames and add `images` / evidence `image_box` to items.jsonl."""
    from voxqa.dataset.audit import AUDIT
    from voxqa.dataset.folder import read_json
    from voxqa.render import RenderInterrupted, RenderSettings, parse_window, recorded_frames, render_dataset

    pool = executor(executor_name, workers, address)
    if recipe is not None:
        _render_recipe(folder, recipe, workers, strict, pool, volumes_root or [])
        return
    context = frames_option(frames, "a positive whole number") if frames is not None else recorded_frames(folder)
    if window is not None:
        parse_window(window)
    if mp4 is not None:
        with needs_extra("video", "--mp4 needs imageio-ffmpeg: pip install 'voxqa[video]'"):
            import imageio_ffmpeg  # noqa: F401 - fail early with a clear message
    settings = RenderSettings(size=size, window=window, context=context, video_fps=mp4)
    try:
        summary = render_dataset(folder, settings, workers, pool, rich_progress(), volumes_root or [])
    except RenderInterrupted as exc:
        console.print(f"[yellow]interrupted:[/] {markup_safe(exc)}", soft_wrap=True)
        raise typer.Exit(code=INTERRUPTED) from None
    c, skipped = summary["counts"], summary["not_rendered"]
    console.print(
        f"[green]rendered[/] {markup_safe(folder)}: {c['frames']} frames of {c['studies_rendered']} studies "
        f"({c['frames_written']} written, the rest kept), {c['items_with_images']} items with images; "
        f"not rendered: {len(skipped['no_volume'])} box-only studies, {len(skipped['unreadable'])} unreadable"
    )
    result = read_json(folder / AUDIT)  # render audited the frames it drew
    console.print(f"blind audit (rendered frames): {result['status']}"
                  + (f" ({markup_safe(', '.join(result['flagged']), one_line=True)})" if result["flagged"] else ""),
                  soft_wrap=True)


def export(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A rendered voxqa dataset folder.")],
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="Training file format: hf, llamafactory, swift or trl; or sgmri-vqa (SGMRI-VQA records: 1-based frames, <bbx> boxes; profile sgmri).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output folder.")],
    convention: Annotated[Optional[str], typer.Option("--profile", "--convention", metavar="PROFILE", help="Box profile spec of the model to train, e.g. qwen3-vl or qwen2.5-vl:max_pixels=1003520 (see `voxqa profiles`); default pixel (sgmri for --format sgmri-vqa).")] = None,
    target_style: Annotated[Optional[str], typer.Option("--target-style", metavar="json|native", help="Answer boxes in the targets as JSON numbers (default) or in the profile's own tokens/tags (hf, llamafactory, trl).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", metavar="train|val|test", help="Export one split only (default: all).")] = None,
    base_model: Annotated[Optional[str], typer.Option("--base-model", metavar="MODEL", help="llamafactory/swift: the model the written config trains (hub id or folder; default: the profile family's released model).")] = None,
    processor: Annotated[Optional[Path], typer.Option("--processor", metavar="DIR", help="llamafactory/swift: a local model folder whose processor measures the longest example (default: a stated upper bound).")] = None,
) -> None:
    """Training files for fine-tuning tools; the target is JSON {reasoning, answer, bboxes}."""
    with needs_extra("export"):
        from voxqa.export import export_dataset
        from voxqa.export.tuners import TunerSetup

    if target_style is not None:
        from voxqa.boxes.profiles import with_target_style
        from voxqa.export import FORMATS

        convention = with_target_style(convention or str(getattr(FORMATS.get(fmt), "profile", "pixel")), target_style)
    summary = export_dataset(folder, fmt, out, convention=convention, split=split,
                             setup=TunerSetup(base_model=base_model, processor=processor))
    console.print(
        f"[green]exported[/] {summary['exported']} items of {markup_safe(folder)} as {markup_safe(fmt)} "
        f"({markup_safe(summary['profile'])} boxes, {summary['space']}) to {markup_safe(out)}: "
        f"{markup_safe(', '.join(summary['files']))}; {summary['skipped_no_images']} items without images skipped",
        soft_wrap=True,
    )


def profiles(
    check_processor: Annotated[Optional[Path], typer.Option("--check-processor", metavar="PATH", help="A model folder or preprocessor_config.json to compare with --profile; exit 1 on a mismatch.")] = None,
    profile: Annotated[str, typer.Option("--profile", metavar="PROFILE", help="The profile spec to check the processor against.")] = "qwen2.5-vl",
) -> None:
    """Model box profiles: how each family writes a box (one documented example each)."""
    from rich.table import Table

    from voxqa.boxes.profiles import PROFILES, get_profile
    from voxqa.boxes.profiles import check_processor as compare

    if check_processor is not None:
        p = get_profile(profile)
        mismatches = compare(p, check_processor)
        if mismatches:
            console.print(f"[red]error:[/] {markup_safe(check_processor)} does not match profile "
                          f"{markup_safe(p.spec)}: {markup_safe('; '.join(mismatches))}", soft_wrap=True)
            raise typer.Exit(1)
        console.print(f"[green]ok[/] {markup_safe(check_processor)} matches profile {markup_safe(p.spec)} "
                      f"({markup_safe(p.description)})", soft_wrap=True)
        return

    table = Table(title="Box profiles (nothing is ever inferred from the numbers)")
    for col in ("profile", "coordinates", "example answer"):
        table.add_column(col, overflow="fold")
    for p in PROFILES.values():
        table.add_row(*(markup_safe(v) for v in (p.name, p.description, p.example)))
    Console().print(table)


def audit(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A voxqa dataset folder.")],
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 unless the status is 'pass'.")] = False,
) -> None:
    """Blind audit: can a text-only learner answer each template above chance?

    Text-only learners per template (train -> val+test); writes audit.json and the
    manifest's audit entry; flags templates a text-only guesser answers above chance."""
    from voxqa.dataset.audit import AUDIT, audit_dataset
    from voxqa.views.inspection import audit_table

    result = audit_dataset(folder)
    Console().print(audit_table(result))
    console.print(f"[green]audit[/] {markup_safe(folder / AUDIT)}: status {result['status']}"
                  + (f", flagged: {markup_safe(', '.join(result['flagged']), one_line=True)}" if result["flagged"] else "")
                  + (f", insufficient: {markup_safe(', '.join(result['insufficient']), one_line=True)}"
                     if result["insufficient"] else ""), soft_wrap=True)
    if strict and result["status"] != "pass":
        raise typer.Exit(code=1)


def inspect(folder: Annotated[Path, typer.Argument(metavar="DIR", help="A voxqa dataset folder.")]) -> None:
    """Counts by task/template/level/label/split, answer balance, and build repairs."""
    from voxqa.views.inspection import overview

    out = Console()
    for part in overview(folder):
        out.print(part)


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
        console.print(f"[green]phantom[/] {n} knees: {markup_safe(paths['studies'])}, {markup_safe(paths['grades'])}")
        return
    from voxqa.phantom import write_phantom

    paths = write_phantom(out, n=n, seed=seed)
    console.print(f"[green]phantom[/] {n} volumes in {markup_safe(paths['volumes'])}, "
                  f"boxes in {markup_safe(paths['annotations'])}")
