"""Commands on runs: eval (ask a model), score, compare (leaderboard) and report (HTML)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from voxqa.cli.common import ADDRESS_HELP, INTERRUPTED, console, executor
from voxqa.progress import rich_progress
from voxqa.errors import InputError
from voxqa.fileio import write_text
from voxqa.views.terminal import markup_safe, printable


def eval_(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A rendered voxqa dataset folder.")],
    model: Annotated[str, typer.Option("--model", metavar="SPEC", help="random | prior | oracle | openai:MODEL | hf:PATH | py:MODULE:FACTORY | NAME[:ARG] (an installed plug-in; see docs/plugins.md)")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Run folder (resumable).")],
    base_url: Annotated[Optional[list[str]], typer.Option("--base-url", metavar="URL", help="OpenAI-compatible server, e.g. http://localhost:8000/v1; repeat it for replicas of the model (load-balanced).")] = None,
    split: Annotated[str, typer.Option("--split", metavar="train|val|test|all", help="Which items to ask.")] = "test",
    mode: Annotated[str, typer.Option("--mode", metavar="MODE", help="Prompt mode: minimal (ReasonKnee-Bench's zero-shot), structured, guided or oracle_region (its GT region); zero-shot and gt-region are accepted too.")] = "minimal",
    control: Annotated[str, typer.Option("--control", metavar="CONTROL", help="Image control: none, blank (blank frames), shuffled (frames of another patient's study) or mirrored (the mirrored study).")] = "none",
    profile: Annotated[str, typer.Option("--profile", metavar="PROFILE", help="Box profile spec of the model, e.g. gemini or qwen2.5-vl:max_pixels=1003520 (see `voxqa profiles`).")] = "pixel",
    model_arg: Annotated[Optional[list[str]], typer.Option("--model-arg", metavar="KEY=VALUE", help="Keyword argument for a plug-in model's factory, or an hf:PATH option: device, dtype, attn_implementation, batch_size, max_new_tokens (repeatable).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, metavar="N", help="Requests in flight at once.")] = 4,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, metavar="N", help="Ask at most N items (default: all selected).")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", metavar="TASKS", help="Comma-separated tasks, e.g. detection,localization")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", metavar="NAME", help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="Seconds per request.")] = 120.0,
    max_retries: Annotated[int, typer.Option("--max-retries", min=0, metavar="N", help="Retries of a failed request (with backoff).")] = 5,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the random baseline and of controls.")] = 0,
    executor_name: Annotated[str, typer.Option("--executor", metavar="local|ray", help="Where the model runs: here, or one replica per Ray actor (hf:/plug-in models on several GPUs).")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", metavar="auto|ray://HOST:PORT", help=ADDRESS_HELP)] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, metavar="N", help="With --executor ray: model replicas (Ray actors).")] = 1,
) -> None:
    """Run a model (or a baseline) on a dataset; predictions are appended and resumable."""
    import asyncio

    from voxqa.boxes.profiles import get_profile
    from voxqa.eval.models import ModelAdapter, make_model, parse_model_args
    from voxqa.eval.prompts import canonical_mode
    from voxqa.eval.run import CORRUPT, PREDICTIONS, RunConfig, run_eval

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a run folder")
    if split not in ("train", "val", "test", "all"):
        raise InputError(f"--split {split!r} is not a split; use one of train, val, test or all")
    profile = get_profile(profile).spec  # recorded in run.json as one canonical spec
    model_kwargs: dict[str, Any] = dict(
        profile=profile, base_url=base_url or None, seed=seed, api_key_env=api_key_env, timeout=timeout,
        max_retries=max_retries, model_args=parse_model_args(model_arg or []))
    executor(executor_name, workers, address)  # refuses unknown names and a stray --address; joins Ray
    if executor_name == "ray":
        from voxqa.eval.models.distributed import RayModels

        adapter: ModelAdapter = RayModels(model, folder, workers, **model_kwargs)
    else:
        adapter = make_model(model, folder, **model_kwargs)
    cfg = RunConfig(dataset=folder, out=out, split=None if split == "all" else split, mode=canonical_mode(mode),
                    control=control, profile=profile, limit=limit, concurrency=concurrency,
                    tasks=tuple(t.strip() for t in tasks.split(",")) if tasks else None, seed=seed)
    try:
        counts = asyncio.run(run_eval(cfg, adapter, rich_progress()))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the answers written are kept
        console.print(f"[yellow]interrupted:[/] answers already written are kept in "
                      f"{markup_safe(out / PREDICTIONS)}; run the same command again to resume", soft_wrap=True)
        raise typer.Exit(code=INTERRUPTED) from None
    console.print(f"[green]eval[/] {markup_safe(model)} -> {markup_safe(out)}: {counts}", soft_wrap=True)
    if (out / CORRUPT).is_file():  # partial success: say so in one line
        console.print(f"[yellow]warning:[/] lines of {markup_safe(out / 'predictions.jsonl')} that were not "
                      f"records are set aside in {markup_safe(out / CORRUPT)}; their items were asked again",
                      soft_wrap=True)
    _print_score(out)  # failed requests: IncompleteRun, not scored as the model's accuracy


def _print_score(run: Path, jury=None, allow_incomplete: bool = False,  # noqa: ANN001 - a voxqa.eval.jury.Jury
                 as_published: Optional[str] = None) -> None:
    from voxqa.eval.score import RESULTS, score_run

    results = score_run(run, jury, allow_incomplete=allow_incomplete, as_published=as_published)
    overall = results["overall"]
    shown = {k: round(v["mean"], 4) for k, v in overall["metrics"].items()
             if v["mean"] is not None and k in ("accuracy", "set_f1", "frame_f1", "miou", "iou3d", "bleu")}
    console.print(f"[green]scored[/] {markup_safe(run / RESULTS)}: n={overall['n']}, {shown}, chance="
                  f"{overall['chance']}, parse failures {overall['parse_failures']}"
                  + (f" [bold red]INCOMPLETE: {results['failed']} requests failed[/]" if results.get("incomplete") else ""),
                  soft_wrap=True)
    if as_published is not None:  # stdout: the benchmark's numbers, each block labelled
        import json

        print(json.dumps(results["as_published"], indent=2, ensure_ascii=False))


def score(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A run folder of `voxqa eval`.")],
    judge: Annotated[Optional[list[str]], typer.Option("--judge", metavar="openai:MODEL", help="openai:MODEL judging free-text answers (repeatable: 1-3 judges, or 3 for --jury-protocol ct-spatialvqa).")] = None,
    judge_base_url: Annotated[Optional[str], typer.Option("--judge-base-url", metavar="URL", help="OpenAI-compatible server of the judges.")] = None,
    judge_api_key_env: Annotated[str, typer.Option("--judge-api-key-env", metavar="NAME", help="Environment variable holding the judges' API key.")] = "OPENAI_API_KEY",
    jury_protocol: Annotated[str, typer.Option("--jury-protocol", metavar="voxqa|ct-spatialvqa", help="How the judges are asked and vote: voxqa (one item per request, majority of 1-3) or ct-spatialvqa (the paper's fixed prompt, 5 items a request, 2 of 3 judges; docs/reports.md).")] = "voxqa",
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help="Score a run with failed requests anyway (labelled incomplete).")] = False,
    as_published: Annotated[Optional[str], typer.Option("--as-published", metavar="sgmri-vqa|ct-spatialvqa", help="Add the benchmark's own headline metrics, computed as published, beside voxqa's (docs/importers.md).")] = None,
    uplift_from: Annotated[Optional[Path], typer.Option("--uplift-from", metavar="RUN", help="The same model's run in the other of the guided / oracle_region modes: adds the GT-region uplift per grading feature to results.json.")] = None,
) -> None:
    """Re-score a run without re-running it (writes RUN/results.json); optionally with an LLM jury."""
    jury = None
    if judge:
        from voxqa.eval.jury import make_jury

        jury = make_jury(judge, judge_base_url, run, api_key_env=judge_api_key_env, protocol=jury_protocol)
    if as_published is not None:
        from voxqa.importers.published_scores import NAMES

        if as_published not in NAMES:
            raise InputError(f"--as-published {as_published!r}: known benchmarks are {', '.join(NAMES)}")
    _print_score(run, jury, allow_incomplete, as_published)
    if uplift_from is not None:
        from voxqa.eval.compare import add_region_uplift

        uplift = add_region_uplift(run, uplift_from)
        macro = ", ".join(f"{k} {v:+.3f}" for k, v in sorted(uplift["macro"].items()))
        console.print(f"GT-region uplift (oracle_region - guided, macro over features): {macro}", soft_wrap=True)


def compare(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="Run folders of `voxqa eval`.")],
    out: Annotated[Optional[Path], typer.Option("--out", metavar="FILE", help="leaderboard.md or leaderboard.csv (default: print).")] = None,
) -> None:
    """Leaderboard: one row per run, headline metric per task with CIs, chance row first; for
    grading runs in guided and oracle_region mode (and minimal: zero-shot), the GT-region uplift per feature."""
    from voxqa.eval.compare import UPLIFT_TITLE, leaderboard, load_results, region_uplift, render_table, uplift_table
    from voxqa.eval.run import check_one_dataset

    if out is not None and not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    if out is not None and out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a .md or .csv file")
    check_one_dataset(runs)
    header, rows = leaderboard(runs)
    fmt = "csv" if out is not None and out.suffix == ".csv" else "md"
    text = render_table(header, rows, fmt)
    uplift = uplift_table(region_uplift(load_results(runs)))  # grading runs in two modes only
    if uplift[1] and fmt == "md":
        text += f"\n{UPLIFT_TITLE}\n\n" + render_table(*uplift, fmt, legend=False)
    if out is None:
        print(printable(text))  # run names come from run.json: no escape sequence reaches the terminal
    else:
        write_text(out, text)
        console.print(f"[green]leaderboard[/] {markup_safe(out)} ({len(rows) - 1} runs)")
        if uplift[1] and fmt == "csv":
            extra = out.with_name(out.stem + ".uplift.csv")
            write_text(extra, render_table(*uplift, fmt))
            console.print(f"[green]GT-region uplift[/] {markup_safe(extra)}")


def report(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="Run folders of `voxqa eval`.")],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="The HTML file to write.")] = Path("report.html"),
    max_items: Annotated[int, typer.Option("--max-items", min=1, metavar="N", help="Items in the browser.")] = 200,
) -> None:
    """One self-contained HTML report: leaderboard, chart, item browser with boxes."""
    from voxqa.eval.run import check_one_dataset
    from voxqa.views.html_report import build_report

    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    check_one_dataset(runs)
    path = build_report(runs, out, max_items=max_items)
    console.print(f"[green]report[/] {markup_safe(path)}")
