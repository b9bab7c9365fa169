"""`voxqa compare` and the report's leaderboard: one table model, rendered as HTML, Markdown
or CSV; and the GT-region uplift of grading runs (``region_uplift``).

One row per run (named from run.json: model, mode, control; never its folder), a chance row
first; a run of the ``prior`` baseline is the blind row (the blind audit's text-only learner),
a run of ``oracle`` the oracle row. Columns: run, n (items the run selected), answered, failed
(requests that never came back), unparseable (answers that came back unreadable, by answer
type), accuracy with its 95% CI and the number of items it covers, each task's headline metric
(accuracy where answers are closed, mean IoU for localization, BLEU for captions; G-IoU for a
task whose box items all ground keywords, as report grounding does) with its 95% CI (and, on
a line "by patient", the patient-clustered interval: items of one patient are not
independent), keyword F1 and F1@0.5 when a run has keyword-grounding items, and pair accuracy
(mirrored twin pairs with both answers right, results.json ``pair_accuracy.overall``) when a
run has pairs. "!" marks a run significantly below chance
(one-sided exact test, Holm-corrected over the groups of the run's results file). Headline
numbers leave out prior-answerable items (results.json does). Runs in ``oracle_region`` mode
(the region asked about given) come last, under a labelled section row: they answer an
easier question on fewer items and are never ranked with the headline runs.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import orjson

from voxqa.errors import InputError
from voxqa.eval.metrics.aggregate import MIN_PATIENTS
from voxqa.eval.score import RESULTS, score_run, scored_run, write_results

HEADLINE = {"localization": "miou", "captioning": "bleu"}  # else accuracy
#: A group whose box items all ground keywords (report grounding) is headlined by G-IoU:
#: mean IoU ignores which keyword a box is given.
GROUNDING = "g_iou"
#: The leaderboard's keyword-grounding column (when a run has grounding items): keyword F1
#: overall and at IoU 0.5, micro over the run's grounding items (RadGrounder's F1 and F1@0.5).
KEYWORD_COLUMN = "keyword grounding (F1, F1@0.5)"
#: The prompt mode that gives the region asked about: its runs are shown apart, below the headline rows.
ORACLE_MODE = "oracle_region"
REGION_GIVEN = ("given the region (oracle_region): not comparable with the rows above, off the "
                "headline; items whose answer is the region are left out")
FALLBACK = ("accuracy", "set_f1", "frame_f1", "miou", "iou3d", "bleu")
LEGEND = ("! = significantly below chance (one-sided exact binomial test of the correct count"
          " against the items' chance, Holm-corrected, p < 0.05)")


def headline(task: str, group: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    metrics = group["metrics"]
    name = HEADLINE.get(task, "accuracy")
    grounding, boxes = metrics.get(GROUNDING) or {}, metrics.get("miou") or {}
    if grounding.get("mean") is not None and grounding.get("n") == boxes.get("n"):
        return GROUNDING, grounding  # every box item of the group grounds keywords
    if metrics.get(name, {}).get("mean") is None:
        name = next((m for m in FALLBACK if metrics.get(m, {}).get("mean") is not None), name)
    return name, metrics.get(name)


def run_name(identity: dict[str, Any]) -> str:
    """A run as people name it: model, mode, control (from run.json), not its folder; the
    prior baseline says it is the blind row."""
    spec = identity["model"]["spec"]
    parts = [spec + (" (blind)" if spec == "prior" else ""), identity.get("mode") or ""]
    if identity.get("control") and identity["control"] != "none":
        parts.append(f"control={identity['control']}")
    return " · ".join(p for p in parts if p)


def run_names(identities: list[dict[str, Any]], runs: list[Path]) -> list[str]:
    """Names of runs; two runs with the same name get their folder's name added."""
    names = [run_name(i) for i in identities]
    return [f"{n} ({Path(r).name})" if names.count(n) > 1 else n for n, r in zip(names, runs, strict=False)]


def load_results(runs: list[Path]) -> list[dict[str, Any]]:
    """Each run's results.json, (re)computed when missing."""
    out = []
    for run in runs:
        path = Path(run) / RESULTS
        out.append(orjson.loads(path.read_bytes()) if path.is_file() else score_run(run))
    return out


def _c(text: str, below: bool | None = None, **values: Any) -> dict[str, Any]:
    return {"text": text, "below": bool(below), **values}


def _metric_cell(m: dict[str, Any] | None, below: bool | None, name: str | None = None) -> dict[str, Any]:
    """Value, CI and n on three lines (one line in Markdown/CSV); "!" when below chance."""
    if not m or m.get("mean") is None:
        return _c("")
    ci = m.get("ci")
    text = f"{m['mean']:.3f}" + _ci_text(ci, "\n")
    if m.get("n") is not None:
        text += f"\nn={m['n']}"
    if m.get("ci_patient") and None not in m["ci_patient"][:2]:
        text += f"\nby patient {_ci_text(m['ci_patient'], '')} ({m.get('n_patients')} patients)"
    elif m.get("n_patients") is not None:
        text += f"\nby patient: none ({m['n_patients']} patients, under {MIN_PATIENTS})"
    if name:
        text = f"{name} {text}"
    return _c(text + (" !" if below else ""), below, value=m["mean"], ci=ci, n=m.get("n"),
              ci_patient=m.get("ci_patient"), n_patients=m.get("n_patients"))


def leaderboard(runs: list[Path], results: list[dict[str, Any]] | None = None,
                scored: list[Any] | None = None) -> tuple[list[str], list[list[dict[str, Any]]]]:
    """The leaderboard as plain values: (header, rows), a chance row first, then one row per
    run in the order given. Each cell is ``{"text", "below"}`` (text may hold line breaks;
    metric cells also carry ``value``, ``ci`` and ``n``). ``results``/``scored`` are the runs'
    results.json and ``scored_run`` when the caller already has them."""
    results = load_results(runs) if results is None else results
    scored = [scored_run(run) for run in runs] if scored is None else scored
    names = run_names([sr.identity for sr in scored], runs)
    tasks = sorted({t for r in results for t in r["by"].get("task", {})})
    metric_of = {}
    for t in tasks:
        group = next(r["by"]["task"][t] for r in results if t in r["by"]["task"])
        metric_of[t] = headline(t, group)[0]
    with_pairs = any(((r.get("pair_accuracy") or {}).get("overall") or {}).get("n_pairs") for r in results)
    with_keywords = any("keyword_f1" in r["overall"]["metrics"] for r in results)
    header = (["run", "n", "answered", "failed", "unparseable", "accuracy"]
              + [f"{t} ({metric_of[t]})" for t in tasks] + ([KEYWORD_COLUMN] if with_keywords else [])
              + (["pair accuracy"] if with_pairs else []))

    chance = [_c("chance"), _c(""), _c(""), _c(""), _c(""), _c(_fmt(results[0]["overall"].get("chance")))]
    for t in tasks:
        group = next((r["by"]["task"][t] for r in results if t in r["by"]["task"]), None)
        chance.append(_c(_fmt(group.get("chance")) if group else ""))
    rows = [chance + ([_c("")] if with_keywords else []) + ([_c("")] if with_pairs else [])]
    given = [ORACLE_MODE == (sr.identity.get("mode") or "") for sr in scored]
    order = [i for i, g in enumerate(given) if not g] + [i for i, g in enumerate(given) if g]
    for n, i in enumerate(order):
        name, r, sr = names[i], results[i], scored[i]
        if given[i] and (n == 0 or not given[order[n - 1]]):  # the section row, once
            rows.append([_c(REGION_GIVEN, section=True)] + [_c("") for _ in header[1:]])
        unparsed: dict[str, int] = {}
        for rec in sr.records:
            if not rec["parse_ok"] and not rec["failed"]:
                unparsed[rec["answer_type"]] = unparsed.get(rec["answer_type"], 0) + 1
        pf = r["overall"]["parse_failures"]
        n_all = len(sr.records)
        n_unparsed = sum(unparsed.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(unparsed.items()))
        row = [_c(name + (" (INCOMPLETE)" if r.get("incomplete") else ""), model=sr.identity["model"]["spec"]),
               _c(str(n_all)), _c(str(r.get("answered", ""))), _c(str(r.get("failed", ""))),
               _c(f"{n_unparsed} ({n_unparsed / max(n_all, 1):.1%})" + (f"\n{detail}" if detail else "")
                  if unparsed else f"{pf['count']}"),
               _metric_cell(r["overall"]["metrics"].get("accuracy"), r["overall"].get("below_chance"))]
        for t in tasks:
            group = r["by"]["task"].get(t)
            if group is None:
                row.append(_c(""))
                continue
            mname, metric = headline(t, group)
            row.append(_metric_cell(metric, group.get("below_chance"), None if mname == metric_of[t] else mname))
        if with_keywords:
            row.append(_keyword_cell(r["overall"]["metrics"]))
        if with_pairs:
            pairs = (r.get("pair_accuracy") or {}).get("overall") or {}
            value, ci = pairs.get("value"), pairs.get("ci")
            text = "" if value is None else f"{value:.3f}" + _ci_text(ci, "\n")
            if pairs.get("n_pairs"):
                text += f"\n{pairs['both_right']}/{pairs['n_pairs']} pairs"
            row.append(_c(text, value=value, ci=ci, n=pairs.get("n_pairs")))
        rows.append(row)
    return header, rows


def _keyword_cell(metrics: dict[str, Any]) -> dict[str, Any]:
    """Keyword F1 and F1@0.5 with their intervals, and the grounding items they cover; "" for
    a run without grounding items."""
    f1, at = metrics.get("keyword_f1") or {}, metrics.get("keyword_f1@0.5") or {}
    if f1.get("mean") is None:
        return _c("")
    text = f"F1 {f1['mean']:.3f}" + _ci_text(f1.get("ci"), " ")
    if at.get("mean") is not None:
        text += f"\nF1@0.5 {at['mean']:.3f}" + _ci_text(at.get("ci"), " ")
    text += f"\nn={f1.get('n')} items"
    return _c(text, value=at.get("mean"), ci=at.get("ci"), n=f1.get("n"))


def _ci_text(ci: list[float | None] | None, sep: str) -> str:
    """``sep`` + "[low, high]", or "" without a (complete) interval."""
    return f"{sep}[{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci[:2] else ""


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def cell(metric: dict[str, Any] | None, below: bool | None) -> str:
    """One line: value [CI], "!" when below chance."""
    if not metric or metric.get("mean") is None:
        return ""
    ci = metric.get("ci")
    text = f"{metric['mean']:.3f}" + _ci_text(ci, " ")
    return text + (" !" if below else "")


#: Everything a CSV reader or Markdown table takes for a line break (str.splitlines' set).
_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def one_line(c: Any) -> str:
    """A cell's text on one line (Markdown, CSV): its line breaks become spaces (a carriage
    return in a crafted name would otherwise start a row of the attacker's in a CSV)."""
    return " ".join(_LINE_BREAK.split(str(c["text"] if isinstance(c, dict) else c)))


#: What a spreadsheet reads as the start of a formula (OWASP, "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def spreadsheet_safe(text: str) -> str:
    """A CSV cell no spreadsheet runs as a formula: text starting like one, after blanks too
    (a model spec ``=HYPERLINK(...)`` from a run.json), gets a leading single quote; plain
    numbers stay."""
    if (text.startswith(FORMULA_START) or text.lstrip().startswith(FORMULA_START)) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def render_table(header: list[str], rows: list[list[Any]], fmt: str, legend: bool = True) -> str:
    """Markdown or CSV text of a table (cells: strings or the leaderboard's cell dicts); the
    Markdown ends with a legend line for "!" unless ``legend`` is False. CSV cells are
    ``spreadsheet_safe``: run names and labels come from run and dataset files."""
    lines = [[one_line(c) for c in row] for row in rows]
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(
            [[spreadsheet_safe(c) for c in row] for row in [header, *lines]])
        return buf.getvalue()
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in lines]
    return "\n".join(out) + (f"\n\n{LEGEND}\n" if legend else "\n")


#: Grade metrics whose oracle_region - guided difference is the GT-region uplift.
UPLIFT_METRICS = ("accuracy", "qwk", "mae")
UPLIFT_TASK = "grading/"
#: ReasonKnee-Bench's three settings as voxqa's modes: zero-shot, guided, GT region.
UPLIFT_MODES = {"zero_shot": "minimal", "guided": "guided", "gt_region": "oracle_region"}
UPLIFT_TITLE = ("GT-region uplift per grading feature (ReasonKnee-Bench: zero-shot = minimal, guided, "
                "GT region = oracle_region; uplift = GT region minus guided):")


def region_uplift(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GT-region uplift (3DReasonKnee's finding that localisation is the bottleneck): for each
    model run in both ``guided`` and ``oracle_region`` mode (same model, control, profile,
    split, tasks), per grading feature (results.json ``by["task/subtask"]``) the oracle_region
    value minus the guided one of accuracy, QWK and MAE, plus their macro mean over the
    features; the same model's ``minimal`` (zero-shot) value beside them when that run is
    given. The two prompts differ only by the region line. One dict per model:
    ``{"model", "features": {feature: {metric: {"zero_shot"?, "guided", "gt_region",
    "uplift"}}}, "macro": {metric: uplift}}``; [] when no pair exists."""
    runs: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
    for r in results:
        ident = r["run"]
        key = (ident["model"]["spec"], str(ident.get("control")), str(ident.get("profile")),
               str(ident.get("split")), str(ident.get("tasks")))
        runs.setdefault(key, {})[ident.get("mode") or ""] = r
    out = []
    for key, modes in sorted(runs.items()):
        if "guided" not in modes or "oracle_region" not in modes:
            continue
        by = {name: modes[mode]["by"].get("task/subtask", {}) for name, mode in UPLIFT_MODES.items() if mode in modes}
        features: dict[str, dict[str, Any]] = {}
        for group in sorted(set(by["guided"]) & set(by["gt_region"])):
            if not group.startswith(UPLIFT_TASK):
                continue
            row = {}
            for metric in UPLIFT_METRICS:
                values = {name: (groups.get(group) or {}).get("metrics", {}).get(metric, {}).get("mean")
                          for name, groups in by.items()}
                if values["guided"] is not None and values["gt_region"] is not None:
                    row[metric] = {k: v for k, v in values.items() if v is not None} | {
                        "uplift": values["gt_region"] - values["guided"]}
            features[group[len(UPLIFT_TASK):]] = row
        macro = {}
        for metric in UPLIFT_METRICS:
            ups = [f[metric]["uplift"] for f in features.values() if metric in f]
            if ups:
                macro[metric] = sum(ups) / len(ups)
        if features:
            out.append({"model": key[0], "control": key[1], "profile": key[2], "features": features,
                        "macro": macro})
    return out


def _uplift_cell(v: dict[str, float] | None) -> str:
    if not v:
        return ""
    zero = f"{v['zero_shot']:.3f} / " if "zero_shot" in v else ""
    return f"{zero}{v['guided']:.3f} -> {v['gt_region']:.3f} ({v['uplift']:+.3f})"


def uplift_table(uplift: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The uplift as a table: one row per (model, feature), then the macro row per model;
    cells "[zero-shot / ]guided -> GT region (+uplift)". MAE falls when the region helps."""
    header = ["model", "feature"] + [f"{m} ([zero-shot /] guided -> GT region (uplift))" for m in UPLIFT_METRICS]
    rows = []
    for pair in uplift:
        for feature, metrics in pair["features"].items():
            rows.append([pair["model"], feature] + [_uplift_cell(metrics.get(m)) for m in UPLIFT_METRICS])
        rows.append([pair["model"], "macro over features"]
                    + [f"({pair['macro'][m]:+.3f})" if m in pair["macro"] else "" for m in UPLIFT_METRICS])
    return header, rows


def add_region_uplift(run: Path, other: Path) -> dict[str, Any]:
    """Write ``region_uplift`` (oracle_region minus guided, per grading feature) of ``run``
    and ``other`` (the same model in the other mode) into RUN/results.json; returns it."""
    pairs = region_uplift(load_results([other, run]))
    if not pairs:
        raise InputError(f"{run} and {other} are not one model's guided and oracle_region runs "
                         "(same model, control, profile, split and tasks)")
    results = orjson.loads((run / RESULTS).read_bytes())
    results["region_uplift"] = pairs[0]
    write_results(run, results)
    return pairs[0]
