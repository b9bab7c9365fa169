"""`voxqa report`: one self-contained HTML file for people to look at runs.

Everything is inline (CSS, JS, frames as data URLs, SVG charts), so the file opens
offline. Each distinct frame is embedded once (items sharing a frame share its entry), as a
WebP thumbnail at most ``THUMB_PX`` on its long side (quality ``THUMB_QUALITY``; boxes are drawn
as SVG in rendered-image pixels, so they stay exact whatever the thumbnail's size), and
decoded only when its item scrolls near the viewport: a report of hundreds of items stays a few
MB and paints at once. Every string that came from a model or a dataset passes through jinja2's
autoescaping: a model answer like ``<script>`` or ``onerror=`` shows as text. The chart is
built from numbers only; its labels are escaped with ``html.escape``.

The item browser shows a deterministic sample of the first run's items: every frame an item
showed (a scrollable strip; a click opens a larger view) with ground-truth boxes (green) and
each run's predicted boxes (dashed, in that run's own Okabe-Ito colour, with a legend), all in
pixels of the rendered image (stored-frame pixels of the evidence as a secondary label), the
question and options, the reference answer and reasoning, and each run's raw and parsed
answers (a choice as its option letter and text). Filters: task, label, correct/incorrect per
run, runs disagree; each item has a permalink (``#item-...``). Frames are always the real
ones: for a run under the mirrored control, its predicted boxes refer to the mirrored image.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape

from voxqa import __version__
from voxqa.answers import ANSWER_TYPES
from voxqa.dataset.paths import inside, read_png
from voxqa.eval.compare import cell, headline, leaderboard, load_results, region_uplift, run_names, uplift_table
from voxqa.eval.redact import env_secrets, redact
from voxqa.eval.score import scored_run
from voxqa.schema import Item
from voxqa.fileio import write_text

# Okabe-Ito (colour-blind safe), without its bluish green: ground truth is drawn green
COLORS = ["#E69F00", "#0072B2", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
GT_COLOR = "#0a0"
THUMB_PX = 512  # long side of an embedded frame (the strip shows 160 px, the zoom at most the window)
THUMB_QUALITY = 80  # WebP quality of embedded frames


def thumbnail(png: bytes) -> str:
    """A frame as a WebP data URL, downscaled (Lanczos) to at most ``THUMB_PX`` on its long
    side; deterministic for the same PNG."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as source:
        frame = source.convert("L" if source.mode in ("L", "I", "I;16", "F", "1") else "RGB")
    if max(frame.size) > THUMB_PX:
        scale = THUMB_PX / max(frame.size)
        frame = frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale))),
                             Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    frame.save(buf, format="WEBP", quality=THUMB_QUALITY, method=6)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()


def _parsed_text(item: Item, parsed: Any) -> str:
    """A parsed answer as people read it (a choice as its option letter and text)."""
    return "" if parsed is None else ANSWER_TYPES[item.answer.type].display(item, parsed)


def _t(x: float, y: float, text: str, size: int = 10, anchor: str = "start", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
            f'{html.escape(text)}</text>')


def _legend(names: list[str], x: float, y: float) -> list[str]:
    """One legend row per run (long names never overlap)."""
    out = []
    for ri, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{y + ri * 14}" width="10" height="10" fill="{COLORS[ri % len(COLORS)]}"/>')
        out.append(_t(x + 14, y + ri * 14 + 9, name))
    return out


def _chart(runs: list[dict[str, Any]], names: list[str]) -> str:
    """Grouped bars: each task's headline metric (accuracy; mean IoU for localization; BLEU for
    captioning) per run with its 95% interval as a whisker and the task's chance as a dashed
    line where it has one; a y axis from 0 to 1 with gridlines; labels under each group."""
    tasks = sorted({t for r in runs for t in r["by"].get("task", {})})
    if not tasks:
        return "<p>No task scored.</p>"
    bar, gap, h, top, left = 16, 24, 180, 14, 44
    groups = []
    for t in tasks:
        group = next(r["by"]["task"][t] for r in runs if t in r["by"]["task"])
        metric = headline(t, group)[0]
        width = max(len(runs) * bar, 7 * max(len(t), len(metric) + 2))
        groups.append((t, metric, width))
    width = max(left + sum(w + gap for _, _, w in groups) + 10, left + 400)
    height = top + h + 54 + 14 * len(runs)
    y_of = lambda v: top + h - v * h  # noqa: E731
    parts = [f'<svg id="chart" width="{width}" height="{height}" role="img" '
             'aria-label="headline metric by task">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 5}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(_t(left - 4, y + 3.5, f"{tick:.2f}", anchor="end"))
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#666"/>'
                 f'<line x1="{left}" y1="{top + h}" x2="{width - 5}" y2="{top + h}" stroke="#666"/>')
    x0 = left + gap / 2
    for t, metric, gw in groups:
        bx = x0 + (gw - len(runs) * bar) / 2
        for ri, (r, name) in enumerate(zip(runs, names, strict=False)):
            g = r["by"]["task"].get(t)
            m = g["metrics"].get(metric) if g else None
            if not m or m.get("mean") is None:
                continue
            x, y = bx + ri * bar, y_of(m["mean"])
            ci = m.get("ci")
            tip = f"{name}: {metric} {m['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar - 3}" height="{top + h - y:.1f}" '
                         f'fill="{COLORS[ri % len(COLORS)]}"><title>{html.escape(tip)}</title></rect>')
            if ci and None not in ci[:2]:
                cx = x + (bar - 3) / 2
                parts.append(f'<path class="ci" d="M{cx:.1f},{y_of(ci[0]):.1f}V{y_of(ci[1]):.1f}'
                             f'M{cx - 3:.1f},{y_of(ci[0]):.1f}h6M{cx - 3:.1f},{y_of(ci[1]):.1f}h6" '
                             'stroke="#222" stroke-width="1" fill="none"/>')
        chance = next((r["by"]["task"][t]["chance"] for r in runs
                       if t in r["by"]["task"] and r["by"]["task"][t]["chance"] is not None), None)
        if chance is not None:
            y = y_of(chance)
            parts.append(f'<line class="chance" x1="{x0 - 4:.1f}" y1="{y:.1f}" x2="{x0 + gw + 4:.1f}" y2="{y:.1f}" '
                         f'stroke="#000" stroke-width="1.5" stroke-dasharray="4,2"><title>chance {chance:.3f}'
                         '</title></line>')
        parts.append(_t(x0 + gw / 2, top + h + 14, t, anchor="middle"))
        parts.append(_t(x0 + gw / 2, top + h + 26, f"({metric})", size=9, anchor="middle"))
        x0 += gw + gap
    parts += _legend(names, left, top + h + 36)
    ky = top + h + 41 + 14 * len(runs)
    parts.append(f'<line x1="{left}" y1="{ky}" x2="{left + 24}" y2="{ky}" '
                 'stroke="#000" stroke-width="1.5" stroke-dasharray="4,2"/>')
    parts.append(_t(left + 30, ky + 4, "chance (where the task has one); whiskers: 95% interval"))
    parts.append("</svg>")
    return "".join(parts)


def _label_chart(runs: list[dict[str, Any]], names: list[str], top: int = 15) -> str:
    """Horizontal bars: accuracy by label (the most frequent labels) per run, with an x axis,
    each bar's value and its 95% interval."""
    return _group_chart(runs, names, "label", "label-chart", "accuracy by label", top) \
        or "<p>No label with an accuracy.</p>"


def _category_chart(runs: list[dict[str, Any]], names: list[str]) -> str:
    """Accuracy by CT-SpatialVQA category (results.json ``by["category"]``), drawn as the label
    chart; "" when no run has a category."""
    return _group_chart(runs, names, "category", "category-chart", "accuracy by category", 50)


#: (upper bound, name) bins of what a question shows: frames, and the finding's box area.
FRAME_BINS = ((1, "1 frame"), (4, "2-4 frames"), (16, "5-16 frames"), (None, "> 16 frames"))
SIZE_BINS = ((0.005, "finding < 0.5% of the frame"), (0.02, "finding 0.5-2%"),
             (0.08, "finding 2-8%"), (None, "finding >= 8%"))


def _bin(value: float, bins: tuple[tuple[float | None, str], ...]) -> str:
    return next(name for bound, name in bins if bound is None or value <= bound)


def _context_chart(scored: list[Any], names: list[str], frame_size: dict[str, tuple[int, int]]) -> str:
    """Accuracy by how many frames an item shows and by the size of its finding (largest
    evidence box / stored frame area), per run, drawn as the label chart; "" without data.
    Where a model fails says what to fix: small findings, or long frame sequences."""
    from voxqa.eval.metrics.statistics import wilson

    runs = []
    for sr in scored:
        tally: dict[str, list[int]] = {}
        for it, rec in zip(sr.items, sr.records, strict=False):
            right = rec["scores"].get("correct")
            if right is None or it.prior_answerable:
                continue
            keys = [_bin(len(it.images or []), FRAME_BINS)]
            w, h = frame_size.get(it.study_id, (0, 0))
            if it.evidence and w and h:
                area = max((e.box[2] - e.box[0]) * (e.box[3] - e.box[1]) for e in it.evidence)
                keys.append(_bin(area / (w * h), SIZE_BINS))
            for k in keys:
                tally.setdefault(k, []).append(int(bool(right)))
        runs.append({"by": {"context": {k: {"metrics": {"accuracy": {
            "mean": sum(v) / len(v), "ci": wilson(sum(v), len(v)), "n": len(v)}}}
            for k, v in tally.items()}}})
    return _group_chart(runs, names, "context", "context-chart", "accuracy by frames shown and finding size", 20)


def _group_chart(runs: list[dict[str, Any]], names: list[str], key: str, svg_id: str, aria: str,
                 top: int) -> str:
    """Horizontal bars of accuracy by the groups of ``by[key]`` (the most frequent ``top``)
    per run, with an x axis, each bar's value and its 95% interval; "" when none."""
    counts: dict[str, int] = {}
    for r in runs:
        for label, g in r["by"].get(key, {}).items():
            if g["metrics"].get("accuracy"):
                counts[label] = max(counts.get(label, 0), g["metrics"]["accuracy"]["n"])
    labels = sorted(counts, key=lambda k: (-counts[k], k))[:top]
    if not labels:
        return ""
    step, bar, left, width, head = 12, 10, 270, 300, 18
    row = step * len(runs) + 8
    body = row * len(labels)
    height = head + body + 30 + 14 * len(runs)
    parts = [f'<svg id="{svg_id}" width="{left + width + 70}" height="{height}" '
             f'role="img" aria-label="{aria}">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + tick * width
        parts.append(f'<line x1="{x:.1f}" y1="{head}" x2="{x:.1f}" y2="{head + body}" stroke="#ddd"/>')
        parts.append(_t(x, head + body + 12, f"{tick:.2f}", anchor="middle"))
    parts.append(_t(left + width / 2, head - 6, "accuracy (95% interval as whisker)", anchor="middle"))
    parts.append(f'<line x1="{left}" y1="{head}" x2="{left}" y2="{head + body}" stroke="#666"/>'
                 f'<line x1="{left}" y1="{head + body}" x2="{left + width}" y2="{head + body}" stroke="#666"/>')
    for li, label in enumerate(labels):
        y0 = head + 4 + li * row
        parts.append(_t(left - 6, y0 + step * len(runs) / 2 + 3, f"{label[:40]} (n={counts[label]})", anchor="end"))
        for ri, (r, name) in enumerate(zip(runs, names, strict=False)):
            m = r["by"][key].get(label, {}).get("metrics", {}).get("accuracy")
            if m and m["mean"] is not None:
                y = y0 + ri * step
                parts.append(f'<rect class="bar" x="{left}" y="{y}" width="{m["mean"] * width:.1f}" '
                             f'height="{bar}" fill="{COLORS[ri % len(COLORS)]}"><title>'
                             f'{html.escape(name)}: {m["mean"]:.3f}</title></rect>')
                ci = m.get("ci")
                if ci and None not in ci[:2]:
                    parts.append(f'<path d="M{left + ci[0] * width:.1f},{y + bar / 2}H{left + ci[1] * width:.1f}" '
                                 'stroke="#222" stroke-width="1"/>')
                parts.append(_t(left + width + 4, y + 8.5, f"{m['mean']:.2f}", size=9,
                                extra=f' fill="{COLORS[ri % len(COLORS)]}"' if COLORS[ri % len(COLORS)] != "#F0E442" else ""))
    parts += _legend(names, left, head + body + 22)
    parts.append("</svg>")
    return "".join(parts)


def training_logs(scored: list[Any], names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Per run of a model `voxqa train` wrote (``hf:OUT/model``), its ``OUT/train_log.jsonl``
    rows: base and fine-tuned models side by side, with how the fine-tuning went."""
    logs = {}
    for name, sr in zip(names, scored, strict=False):
        path = sr.identity["model"].get("path")
        log = Path(path).parent / "train_log.jsonl" if path else None
        if log is not None and log.is_file():
            rows = [orjson.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
            logs[name] = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    return {k: v for k, v in logs.items() if v}


def _training_chart(logs: dict[str, list[dict[str, Any]]]) -> str:
    """Training loss per optimizer step, one line per fine-tuned model, with throughput."""
    if not logs:
        return ""
    w, h, left, top = 420, 140, 44, 16
    steps = max(r["step"] for rows in logs.values() for r in rows) or 1
    peak = max(r["loss"] for rows in logs.values() for r in rows) or 1.0
    parts = [f'<svg id="train-chart" width="{left + w + 20}" height="{top + h + 40 + 16 * len(logs)}" '
             'role="img" aria-label="training loss per step">']
    for tick in (0.0, peak / 2, peak):
        y = top + h - h * tick / peak
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(_t(left - 4, y + 3.5, f"{tick:.2f}", size=9, anchor="end"))
    for i, (name, rows) in enumerate(logs.items()):
        color = COLORS[i % len(COLORS)]
        points = " ".join(f"{left + w * r['step'] / steps:.1f},{top + h - h * r['loss'] / peak:.1f}" for r in rows)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"><title>{html.escape(name)}</title></polyline>')
        speed = sorted(r.get("samples_per_s") or 0.0 for r in rows)[len(rows) // 2]
        parts.append(_t(left, top + h + 34 + 16 * i,
                        f"{name}: loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f} in {rows[-1]['step']} steps, "
                        f"median {speed:.2f} samples/s", extra=f' fill="{color}"'))
    parts.append(f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#666"/>')
    parts.append(_t(left + w / 2, top + h + 15, f"optimizer step (1-{steps})", size=9, anchor="middle"))
    parts.append("</svg>")
    return "".join(parts)


def _iou_histogram(ious: dict[str, list[float]], bins: int = 10) -> str:
    """Per run, how item-level mean IoUs (V-score) of box answers are distributed: a panel
    per run with an IoU axis, a count axis and each bin's count."""
    if not any(ious.values()):
        return "<p>No box answers.</p>"
    h, cell, left, top = 100, 24, 36, 22
    panel = bins * cell + left + 30
    parts = [f'<svg id="iou-chart" width="{len(ious) * panel + 10}" height="{top + h + 50}" '
             'role="img" aria-label="IoU distributions">']
    for ri, (name, values) in enumerate(ious.items()):
        x0 = ri * panel + left
        hist = [0] * bins
        for v in values:
            hist[min(int(v * bins), bins - 1)] += 1
        peak = max(hist) or 1
        for tick in sorted({0, peak // 2, peak}):
            y = top + h - h * tick / peak
            parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + bins * cell}" y2="{y:.1f}" stroke="#eee"/>')
            parts.append(_t(x0 - 4, y + 3.5, str(tick), size=9, anchor="end"))
        for b, n in enumerate(hist):
            height = h * n / peak
            x = x0 + b * cell
            parts.append(f'<rect class="bar" x="{x}" y="{top + h - height:.1f}" width="{cell - 2}" '
                         f'height="{height:.1f}" fill="{COLORS[ri % len(COLORS)]}"><title>IoU '
                         f'{b / bins:.1f}-{(b + 1) / bins:.1f}: {n}</title></rect>')
            if n:
                parts.append(_t(x + (cell - 2) / 2, top + h - height - 2, str(n), size=8, anchor="middle"))
        parts.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + h}" stroke="#666"/>'
                     f'<line x1="{x0}" y1="{top + h}" x2="{x0 + bins * cell}" y2="{top + h}" stroke="#666"/>')
        for k in range(0, bins + 1, 2):
            parts.append(_t(x0 + k * cell, top + h + 15, f"{k / bins:.1f}", size=9, anchor="middle"))
        parts.append(_t(x0 + bins * cell / 2, top + h + 27, "mean IoU of the item", size=9, anchor="middle"))
        parts.append(_t(x0, top + h + 42, f"{name} (n={len(values)} items)",
                        extra=f' fill="{COLORS[ri % len(COLORS)]}"'))
        parts.append(_t(x0 - left + 2, top - 12, "items", size=9))
    parts.append("</svg>")
    return "".join(parts)


def _subtask_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """One row per task/subtask: its headline metric per run, chance first."""
    keys = sorted({k for r in results for k in r["by"].get("task/subtask", {})})
    rows = []
    for key in keys:
        groups = [r["by"]["task/subtask"].get(key) for r in results]
        chance = next((g["chance"] for g in groups if g and g["chance"] is not None), None)
        row = [key, "" if chance is None else f"{chance:.3f}"]
        for g in groups:
            if g is None:
                row.append("")
                continue
            name, m = headline(key.split("/")[0], g)
            row.append(f"{name} {cell(m, g.get('below_chance'))}")
        rows.append(row)
    return rows


CONTROL_ORDER = ("none", "blank", "shuffled", "mirrored")


def _control_panel(results: list[dict[str, Any]]) -> tuple[list[str], list[list[dict[str, Any]]]]:
    """"Does the model look at the image": runs of one model (and prompt mode) under different
    ``--control`` side by side, accuracy (and pair accuracy) per control; ([], []) when no
    model was run under two controls."""
    by_model: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in results:
        ident = r["run"]
        by_model.setdefault((ident["model"]["spec"], ident.get("mode") or ""), {}).setdefault(
            ident.get("control") or "none", r)
    groups = {k: v for k, v in by_model.items() if len(v) > 1}
    if not groups:
        return [], []
    controls = [c for c in CONTROL_ORDER if any(c in v for v in groups.values())]
    controls += sorted({c for v in groups.values() for c in v} - set(controls))
    rows = []
    for (spec, mode), runs in sorted(groups.items()):
        row = [{"text": " · ".join(p for p in (spec, mode) if p), "below": False}]
        for c in controls:
            r = runs.get(c)
            if r is None:
                row.append({"text": "", "below": False})
                continue
            acc = r["overall"]["metrics"].get("accuracy")
            text = cell(acc, r["overall"].get("below_chance"))
            if text and acc and acc.get("n") is not None:
                text += f" n={acc['n']}"
            pairs = (r.get("pair_accuracy") or {}).get("overall") or {}
            if pairs.get("n_pairs"):
                text += f"\npair accuracy {pairs['value']:.3f} ({pairs['both_right']}/{pairs['n_pairs']})"
            row.append({"text": text, "below": bool(r["overall"].get("below_chance"))})
        rows.append(row)
    return ["model"] + [f"control={c}" for c in controls], rows


def _audit_rows(folder: Path) -> tuple[str | None, list[list[str]]]:
    """The dataset's blind audit (audit.json) as table rows; (None, []) when there is none."""
    from voxqa.dataset.audit import AUDIT, audit_rows, fmt

    path = Path(folder) / AUDIT
    if not path.is_file():
        return None, []
    audit = orjson.loads(path.read_bytes())
    rows = []
    for r in audit_rows(audit):
        if r["status"].startswith("not audited"):
            continue
        ci = f"{fmt(r['ci'][0])}-{fmt(r['ci'][1])}" if r["ci"] else ""
        name = r["template"] + (" (prior-answerable)" if r["group"] != "headline" else "")
        flag = "yes" if r["flagged"] else ("" if r["status"] == "pass" else r["status"])
        rows.append([name, str(r["n"]), fmt(r["chance"]), fmt(r["learner"]), ci, flag])
    return str(audit.get("status")), rows


def _pair_rows(results: list[dict[str, Any]], runs: list[str]) -> list[list[str]]:
    """Pair accuracy (original + mirrored twin both right) per run, overall and by category;
    [] when no results.json has pairs."""
    rows = []
    for run, r in zip(runs, results, strict=False):
        pa = r.get("pair_accuracy")
        if not pa or not (pa.get("overall") or {}).get("n_pairs"):
            continue  # no results.json pair accuracy, or a dataset without mirrored twins
        for group, g in [("overall", pa["overall"])] + sorted((pa.get("by_category") or {}).items()):
            ci = g.get("ci")
            value = g.get("value")
            rows.append([run, str(group), str(g.get("n_pairs", "")), str(g.get("both_right", "")),
                         "" if value is None else f"{value:.3f}",
                         f"{ci[0]:.3f}-{ci[1]:.3f}" if ci and None not in ci[:2] else ""])
    return rows


def build_report(runs: list[Path], out: Path, max_items: int = 200) -> Path:
    """Write the HTML report of ``runs`` (scored first if needed) to ``out``."""
    if not runs:
        raise ValueError("give at least one run folder")
    results = load_results(runs)
    scored = [scored_run(run) for run in runs]  # per-item gold and scores, as results.json
    by_id = [{it.id: (gold, rec) for it, gold, rec in zip(sr.items, sr.golds, sr.records, strict=False)}
             for sr in scored]
    folder = scored[0].folder
    items = scored[0].items
    step = max(1, len(items) // max_items)
    shown = items[::step][:max_items]

    names = run_names([sr.identity for sr in scored], runs)
    ious = {name: [rec["scores"]["miou"] for rec in sr.records
                   if rec["answer_type"] == "boxes" and not rec["failed"]]
            for name, sr in zip(names, scored, strict=False)}

    secrets = env_secrets(*(sr.identity["model"].get("api_key_env") for sr in scored))

    def hide(text: str) -> str:  # run folders come from others: no key shown, whatever they hold
        return redact(text, secrets)

    from voxqa.dataset.folder import read_studies

    frame_size = {st.id: st.frame_size for st in read_studies(folder)}
    entries = []
    embedded: dict[str, str] = {}  # sha256 of a frame's PNG -> its thumbnail, each frame once

    def frame_key(path: str, what: str) -> str:
        png = read_png(inside(folder, path, what), what)
        key = hashlib.sha256(png).hexdigest()[:16]
        if key not in embedded:
            embedded[key] = thumbnail(png)
        return key
    for it in shown:
        kind = ANSWER_TYPES[it.answer.type]
        gold = by_id[0][it.id][0]
        run_preds = []
        pred_boxes: dict[int, list[dict[str, Any]]] = {}
        for ri, (sr, table) in enumerate(zip(scored, by_id, strict=False)):
            rec = sr.preds.get(it.id)
            correct = ""
            if it.id in table and "correct" in table[it.id][1]["scores"]:
                correct = str(int(table[it.id][1]["scores"]["correct"] or 0))
            if rec is not None and rec["status"] == "ok" and rec["parse_ok"]:
                for frame, box in kind.boxes_of(rec["parsed"]):
                    pred_boxes.setdefault(frame, []).append(
                        {"box": box, "color": COLORS[ri % len(COLORS)], "run": names[ri]})
            ok = rec is not None and rec["status"] == "ok" and rec["parse_ok"]
            run_preds.append({
                "run": names[ri], "color": COLORS[ri % len(COLORS)], "correct": correct,
                "raw": "" if rec is None else hide(rec["raw"] or ""),
                "parsed": _parsed_text(it, rec["parsed"]) if ok else "",
                "error": "" if rec is None else hide(rec["error"] or rec.get("parse_error") or ""),
            })
        gt_boxes: dict[int, list[dict[str, Any]]] = {}
        for e in it.evidence:
            if e.image_box is not None:
                gt_boxes.setdefault(e.frame, []).append({"box": list(e.image_box), "stored": list(e.box)})
        for frame, box in kind.boxes_of(gold if scored[0].identity["control"] != "mirrored" else None):
            if box in [g["box"] for g in gt_boxes.get(frame, [])]:
                continue
            gt_boxes.setdefault(frame, []).append({"box": box, "stored": None})
        images = sorted(it.images or [], key=lambda im: im.frame)
        fw, fh = frame_size.get(it.study_id, (0, 0))
        frames = [{
            "frame": im.frame, "width": im.width, "height": im.height, "stored": f"{fw}×{fh}",
            "tw": round(im.width * 160 / max(im.width, im.height)),
            "th": round(im.height * 160 / max(im.width, im.height)),
            "key": frame_key(im.path, f"item {it.id}"),
            "gt": gt_boxes.get(im.frame, []), "pred": pred_boxes.get(im.frame, []),
        } for im in images]
        marks = [p["correct"] for p in run_preds if p["correct"] != ""]
        entries.append({
            "id": it.id, "anchor": "item-" + re.sub(r"[^A-Za-z0-9_.-]", "_", it.id),
            "template": it.template, "task": it.task, "label": it.label or "",
            "correct": [p["correct"] for p in run_preds], "disagree": int(len(set(marks)) > 1),
            "frames": frames, "question": it.question, "options": it.options,
            "answer_text": it.answer_text, "reasoning": it.reasoning, "predictions": run_preds,
            "stored_boxes": bool(it.images) and kind.holds_boxes
            and bool(re.search(r"\[\d+, \d+, \d+, \d+\]", it.answer_text or "")),
        })

    header, rows = leaderboard(runs, results, scored)
    how = "the first ones" if step == 1 else f"one item in every {step}, from the first"
    sample = (f"all {len(items)} items of the first run's selection" if len(shown) == len(items) else
              f"{len(shown)} of the first run's {len(items)} items ({how}, in dataset order; "
              f"--max-items {max_items})")
    audit_status, audit = _audit_rows(folder)
    env = Environment(loader=PackageLoader("voxqa.views", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    page = env.get_template("report.html.j2").render(
        runs=runs, names=names, sample=sample, colors=[COLORS[i % len(COLORS)] for i in range(len(runs))],
        gt_color=GT_COLOR, dataset=str(folder), version=__version__, header=header, rows=rows,
        chart=_chart(results, names), label_chart=_label_chart(results, names),
        category_chart=_category_chart(results, names), controls=_control_panel(results), iou_chart=_iou_histogram(ious),
        context_chart=_context_chart(scored, names, frame_size),
        train_chart=_training_chart(training_logs(scored, names)),
        subtasks=_subtask_rows(results), items=entries, pairs=_pair_rows(results, names),
        # hex keys and base64 data URLs only; "</" escaped all the same, so nothing ends the script early
        frame_data=orjson.dumps(embedded, option=orjson.OPT_SORT_KEYS).decode().replace("</", "<\\/"),
        uplift=uplift_table(region_uplift(results)),
        audit_status=audit_status, audit=audit,
        tasks=sorted({e["task"] for e in entries}), labels=sorted({e["label"] for e in entries if e["label"]}),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, page)
    return out
