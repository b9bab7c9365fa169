"""`voxqa inspect`: what a dataset folder holds and whether its answers are balanced.

``answer_balance`` is the check behind the promise that a blind guesser cannot beat chance:
per (split, template) it reports the share of "yes", the share of each option position, and
the best accuracy a constant answer would reach (``blind_best``) next to ``chance``. Labels,
templates, answers and build-report examples come from the dataset: every cell shows them
through ``voxqa.views.terminal.markup_safe`` (literally, no markup, no control sequences).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, cast

from rich.console import RenderableType
from rich.table import Table

from voxqa.answers import ANSWER_TYPES
from voxqa.dataset.folder import REPORT, read_items, read_json
from voxqa.schema import Item
from voxqa.views.terminal import markup_safe


def _answer_key(it: Item) -> str | None:
    return ANSWER_TYPES[it.answer.type].balance_key(it.answer.value)


def answer_balance(items: list[Item]) -> list[dict[str, Any]]:
    """One row per (split, template) with discrete answers (texts count as one answer each)."""
    groups: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for it in items:
        if _answer_key(it) is not None:
            groups[(it.split, it.template)].append(it)
    rows = []
    for (split, template), group in sorted(groups.items()):
        values = Counter(_answer_key(it) for it in group)
        top, top_n = values.most_common(1)[0]
        chances = [it.chance for it in group if it.chance is not None]
        row: dict[str, Any] = {
            "split": split,
            "template": template,
            "n": len(group),
            "blind_best": top_n / len(group),
            "blind_best_answer": top,
            "chance": sum(chances) / len(chances) if chances else None,
            "distribution": dict(sorted(values.items())),
        }
        if ANSWER_TYPES[group[0].answer.type].selects == "one":  # option positions balanced?
            positions = Counter(cast(int, it.answer.value) for it in group)  # an option index
            row["positions"] = {str(p): positions.get(p, 0) for p in range(max(positions) + 1)}
        rows.append(row)
    return rows


def _short(answer: str, width: int = 40) -> str:
    return answer if len(answer) <= width else answer[: width - 3] + "..."


def beats_chance(row: dict[str, Any]) -> bool:
    """True when a constant answer beats chance by more than 3 binomial standard errors."""
    c = row["chance"]
    if c is None:
        return False
    return row["blind_best"] - c > 3 * (c * (1 - c) / row["n"]) ** 0.5


def counts_table(items: list[Item], key: str, title: str) -> Table:
    table = Table(title=title)
    splits = sorted({it.split for it in items})
    table.add_column(key)
    for s in splits:
        table.add_column(s, justify="right")
    table.add_column("all", justify="right")
    c: Counter[tuple[str, str]] = Counter((str(getattr(it, key)), it.split) for it in items)
    for value in sorted({k for k, _ in c}):
        per = [c[(value, s)] for s in splits]
        table.add_row(markup_safe(value), *map(str, per), str(sum(per)))
    return table


def audit_table(audit: dict[str, Any]) -> Table:
    """The blind audit as a table: per template n, chance, constant answer, linear learner, CI,
    status (a flagged row names each learner that flags it, its accuracy and tail, and the
    reference)."""
    from voxqa.dataset.audit import audit_rows, fmt

    m = audit.get("method", {}).get("minimum", {})
    table = Table(title=f"Blind audit (text-only learner, train -> val+test): {markup_safe(audit.get('status'))}; "
                        f"needs >= {markup_safe(m.get('train'))} train and >= {markup_safe(m.get('eval'))} val+test items")
    table.add_column("template", overflow="fold", min_width=24)
    for col in ("train", "n", "chance", "const", "learner", "95% CI"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("status", overflow="fold")
    for r in audit_rows(audit):
        ci = f"{fmt(r['ci'][0])}-{fmt(r['ci'][1])}" if r["ci"] else "-"
        status = "not audited" if r["status"].startswith("not audited") else markup_safe(r["status"])
        if r["status"] == "flagged":
            status = "[red]flagged[/]" if r["group"] == "headline" else "[yellow]flagged (prior-answerable)[/]"
            status += f" by {markup_safe(', '.join(r['flagged_by']))} vs {fmt(r['reference'])}" if r["flagged_by"] else ""
        name = r["template"] + (" (prior-answerable)" if r["group"] != "headline" else "")
        table.add_row(markup_safe(name), str(r["n_train"]), str(r["n"]), fmt(r["chance"]), fmt(r["constant"]),
                      fmt(r["learner"]), ci, status)
    return table


def overview(folder: Path) -> list[RenderableType]:
    """What `voxqa inspect` shows of a dataset folder, in order (the caller prints them)."""
    items = read_items(folder)
    parts: list[RenderableType] = [f"[bold]{markup_safe(folder)}[/]: {len(items)} items"]
    keys = [("task", "Items by task"), ("template", "Items by template"), ("level", "Items by level")]
    if any(it.category for it in items):
        keys.append(("category", "Spatial items by CT-SpatialVQA category"))
    for key, title in keys:
        parts.append(counts_table([it for it in items if getattr(it, key)], key, title))
    labels = Table(title="Items by label (top 30)")
    labels.add_column("label")
    labels.add_column("items", justify="right")
    for label, n in Counter(it.label or "(none)" for it in items).most_common(30):
        labels.add_row(markup_safe(label), str(n))
    parts.append(labels)

    balance = Table(title="Answer balance (blind_best = accuracy of the best constant answer)")
    for col in ("split", "template", "n", "chance", "blind_best", "answers / positions"):
        balance.add_column(col, overflow="fold")
    for row in answer_balance(items):
        chance = f"{row['chance']:.3f}" if row["chance"] is not None else "-"
        if "positions" in row:
            shown = ", ".join(f"{k}:{v}" for k, v in list(row["positions"].items())[:8])
        else:  # the most common answers first (a caption shortened): what a blind guess would say
            common = sorted(row["distribution"].items(), key=lambda kv: (-kv[1], kv[0]))[:8]
            shown = ", ".join(f"{_short(k)}:{v}" for k, v in common)
        flag = " [red]!" if beats_chance(row) else ""
        balance.add_row(row["split"], markup_safe(row["template"]), str(row["n"]), chance,
                        f"{row['blind_best']:.3f}{flag}", markup_safe(shown))
    parts.append(balance)

    from voxqa.dataset.audit import AUDIT

    if (folder / AUDIT).is_file():
        parts.append(audit_table(read_json(folder / AUDIT)))
    else:
        parts.append(f"No {AUDIT} in {markup_safe(folder)}: run `voxqa audit {markup_safe(folder)}` for the blind audit.")

    if (folder / REPORT).is_file():
        report = read_json(folder / REPORT)
        rep = Table(title="Build report: repairs, drops and skips")
        for col in ("kind", "reason", "count", "example"):
            rep.add_column(col)
        for kind in ("repaired", "dropped", "skipped", "info"):
            for reason, entry in report.get(kind, {}).items():
                ex = entry["examples"][0] if entry["examples"] else {}
                rep.add_row(kind, markup_safe(reason), str(entry["count"]), markup_safe(str(ex)[:80]))
        parts.append(rep)
    return parts
