"""What several command families share: the stderr console, option help texts, the build summary."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from voxqa.errors import InputError
from voxqa.views.terminal import markup_safe

console = Console(stderr=True)  # messages; stdout carries results only

#: Exit code of a command stopped by Ctrl-C or SIGTERM (both handled alike: work finished so
#: far is kept, the same command resumes): 128 + SIGINT, as shells report a Ctrl-C.
INTERRUPTED = 130

EXECUTOR_HELP = "Where per-study work runs: local (process pool of --workers) or ray (docs: README, 'Past one machine')."
ADDRESS_HELP = "With --executor ray: a running cluster (auto, or ray://HOST:PORT); default: start a local one."
SEED_HELP = "Seed of the train/val/test split (and of every random choice in the build)."
FRACTIONS_HELP = "Train, val and test fractions of the patients, summing to 1."


def built(out: Path, manifest: dict) -> None:
    """The summary of a build: counts, the blind audit's status, and a partial build in one line."""
    c = manifest["counts"]
    console.print(
        f"[green]built[/] {markup_safe(out)}: {c['studies']} studies, {c['items']} items "
        f"({', '.join(f'{k} {v}' for k, v in c['items_by_task'].items())})"
    )
    audit = manifest["audit"]  # the blind audit run at the end of every build
    color = {"pass": "green", "flagged": "red"}.get(audit["status"], "yellow")
    detail = audit.get("flagged") or audit.get("insufficient") or []  # template names hold labels
    console.print(f"[{color}]blind audit: {audit['status']}[/]"
                  + (f" ({markup_safe(', '.join(detail), one_line=True)})" if detail else ""), soft_wrap=True)
    import orjson

    from voxqa.dataset.build_report import partial_summary
    from voxqa.dataset.folder import REPORT

    report_path = out / REPORT
    left_out = partial_summary(orjson.loads(report_path.read_bytes()))
    if left_out or not c["items"]:  # partial success: say so in one line
        console.print(f"[yellow]warning:[/] partial build: {markup_safe(left_out or '0 items', one_line=True)}"
                      + ("; 0 items" if left_out and not c["items"] else "")
                      + f"; details in {markup_safe(report_path)}", soft_wrap=True)


def executor(name: str, workers: int, address: str | None):  # noqa: ANN201 - voxqa.executors.Executor
    """The executor of --executor/--workers/--address (Ray is imported only when asked for)."""
    from voxqa.executors import make_executor

    return make_executor(name, workers, address)


def frames_option(frames: str, must: str) -> int | None:
    """--frames K|all as a frame cap (None: all); ``must`` words the refusal of anything else."""
    if frames != "all" and not (frames.isdigit() and int(frames) > 0):
        raise InputError(f"--frames must be {must} or 'all', got {frames!r}")
    return None if frames == "all" else int(frames)
