"""`voxqa compare`: a leaderboard of runs, one row per run, one column per task.

Each task is summarised by its headline metric (accuracy where answers are closed, mean IoU
for localization, BLEU for captions) with its 95% CI; a chance row comes first, from the items'
own chance values, and "!" marks a run significantly below chance on that task (one-sided
exact test, Holm-corrected over the groups of the run's results file). Headline numbers leave
out prior-answerable items (results.json does). "pair accuracy" is the share of mirrored
twin pairs with both answers right (results.json ``pair_accuracy.overall``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson

from voxqa.eval.score import RESULTS, score_run

HEADLINE = {"localization": "miou", "captioning": "bleu"}  # else accuracy
FALLBACK = ("accuracy", "set_f1", "frame_f1", "miou", "iou3d", "bleu")


def headline(task: str, group: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    metrics = group["metrics"]
    name = HEADLINE.get(task, "accuracy")
    if metrics.get(name, {}).get("mean") is None:
        name = next((m for m in FALLBACK if metrics.get(m, {}).get("mean") is not None), name)
    return name, metrics.get(name)


def leaderboard(runs: list[Path]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) with a chance row first; results.json is (re)computed when missing."""
    results = []
    for run in runs:
        path = Path(run) / RESULTS
        results.append(orjson.loads(path.read_bytes()) if path.is_file() else score_run(run))
    tasks = sorted({t for r in results for t in r["by"].get("task", {})})
    header = (["run", "model", "mode", "control", "n", "overall accuracy"] + tasks
              + ["pair accuracy", "parse failures"])
    chance_row = ["chance", "", "", "", "", _fmt(results[0]["overall"].get("chance"))]
    for t in tasks:
        group = next((r["by"]["task"][t] for r in results if t in r["by"]["task"]), None)
        chance_row.append(_fmt(group.get("chance")) if group else "")
    rows = [chance_row + ["", ""]]
    for run, r in zip(runs, results):
        ident = r["run"]
        acc = r["overall"]["metrics"].get("accuracy")
        name = str(run) + (f" (INCOMPLETE: {r.get('failed', 0)} failed)" if r.get("incomplete") else "")
        row = [name, ident["model"]["spec"], ident["mode"], ident["control"], str(r["overall"]["n"]),
               cell(acc, r["overall"].get("below_chance"))]
        for t in tasks:
            group = r["by"]["task"].get(t)
            if group is None:
                row.append("")
                continue
            name, metric = headline(t, group)
            row.append(f"{name} {cell(metric, group.get('below_chance'))}")
        pairs = (r.get("pair_accuracy") or {}).get("overall") or {}
        row.append(cell({"mean": pairs.get("value"), "ci": pairs.get("ci")}, None)
                   + (f" ({pairs['both_right']}/{pairs['n_pairs']} pairs)" if pairs.get("n_pairs") else ""))
        pf = r["overall"]["parse_failures"]
        row.append(f"{pf['rate']:.1%}")
        rows.append(row)
    return header, rows


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def cell(metric: dict[str, Any] | None, below: bool | None) -> str:
    if not metric or metric.get("mean") is None:
        return ""
    ci = metric.get("ci")
    text = f"{metric['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    return text + (" !" if below else "")


def render_table(header: list[str], rows: list[list[str]], fmt: str) -> str:
    """Markdown or CSV text of the leaderboard."""
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([header, *rows])
        return buf.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + ("\n\n! = significantly below chance (one-sided exact binomial test of the correct count"
                                    " against the items' chance, Holm-corrected, p < 0.05)\n")
