"""`voxqa demo`: the whole pipeline on built-in synthetic data (voxqa.demo), a leaderboard on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from voxqa.cli.common import console
from voxqa.progress import rich_progress
from voxqa.views.terminal import markup_safe, printable


def _announce(message: str) -> None:
    console.print(f"[bold]demo:[/] {markup_safe(message)}", soft_wrap=True)


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
    from voxqa.demo import LEADERBOARD_HEADER, build_demo_datasets, evaluate_demo
    from voxqa.eval.compare import render_table

    dataset, spatial = build_demo_datasets(out, seed, _announce, rich_progress())
    console.print(f"[green]demo datasets:[/] {markup_safe(dataset)} (fastMRI+-style boxes) and {markup_safe(spatial)} "
                  "(segmentation spatial QA); each has items.jsonl, manifest.json, build_report.json; "
                  "see them with `voxqa inspect`", soft_wrap=True)
    table, reports = evaluate_demo(out, (dataset, spatial), seed, base_url, model_name, profile, _announce,
                                   rich_progress())
    console.print(f"[green]demo reports:[/] {markup_safe(reports[0])} (fastMRI+-style boxes) and {markup_safe(reports[1])} "
                  "(segmentation spatial QA); open them in a browser", soft_wrap=True)
    text = render_table(LEADERBOARD_HEADER, table, "md").rstrip("\n")
    if not any(c.endswith(" !") for row in table for c in row):  # the footnote explains "!" only
        text = text.split("\n\n")[0]
    print(printable(text))  # stdout: the leaderboard alone (a served model's name too), no trailing blank line
