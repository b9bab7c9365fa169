"""Scoring a run folder: predictions + the dataset's gold answers -> results.json.

Gold boxes are stored in pixels of the stored frame; predictions are parsed into pixels of
the rendered image, so gold boxes are mapped through the same transform render used
(``voxqa.render.map_box``) before they are compared. Items of the run's selection without a
prediction count as unanswered (wrong, and in the parse-failure count).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from voxqa.boxes.conventions import get_profile
from voxqa.dataset.folder import read_items, read_studies
from voxqa.eval.controls import mirror_box, mirror_item
from voxqa.eval.jury import Jury
from voxqa.eval.metrics import aggregate, ar_score, score_item
from voxqa.eval.run import PREDICTIONS, RUN, RunConfig, read_predictions, select
from voxqa.conversation import InlineBoxes, build_sample
from voxqa.render import map_box
from voxqa.schema import Item

RESULTS = "results.json"


def gold_value(item: Item, frame_size: tuple[int, int], folder: Path, profile: str,
               mirrored: bool = False) -> Any:
    """The item's answer value with boxes in pixels of its rendered images; a text answer
    with the boxes it quotes in the profile's convention, as the model was asked to write."""
    if mirrored:
        item = mirror_item(item)
    value = item.answer.model_dump(mode="json")["value"]
    if item.answer.type == "text" and item.images:
        p = get_profile(profile)
        return json.loads(build_sample(item, folder, frame_size, p, InlineBoxes(p)).target)["answer"]
    if item.answer.type not in ("boxes", "box3d") or not item.images:
        return value
    size = (item.images[0].width, item.images[0].height)

    def to_image(box: Any) -> list[int]:
        mapped = map_box(box, frame_size, size)
        return list(mirror_box(mapped, size[0]) if mirrored else mapped)

    if item.answer.type == "boxes":
        return [{"frame": b["frame"], "box": to_image(b["box"])} for b in value]
    return {**value, "box": to_image(value["box"])}


def macro_averages(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per grouping (task, label, ...): each metric's unweighted mean over the groups that
    have it, so rare labels weigh as much as common ones."""
    out: dict[str, dict[str, float]] = {}
    for key, groups in results["by"].items():
        per_metric: dict[str, list[float]] = {}
        for group in groups.values():
            for name, m in group["metrics"].items():
                if m["mean"] is not None:
                    per_metric.setdefault(name, []).append(m["mean"])
        out[key] = {name: sum(v) / len(v) for name, v in sorted(per_metric.items())}
    return out


def _judge(jury: Jury, items: list[Item], golds: list[Any], preds: dict[str, Any],
           records: list[dict[str, Any]]) -> None:
    """Jury verdicts for the parsed free-text answers (unparsed ones score 0); the reference
    is the gold text as the model was asked to write it (boxes in its convention)."""
    todo = [(i, it) for i, it in enumerate(items) if it.answer.type == "text"]
    asked = [(i, it) for i, it in todo if records[i]["parse_ok"]]
    verdicts = asyncio.run(jury.verdicts(
        [(it.question, str(golds[i]), str(preds[it.id]["parsed"])) for i, it in asked]))
    judged = {i: v for (i, _), v in zip(asked, verdicts)}
    for i, _ in todo:
        scores = records[i]["scores"]
        scores["judge"] = judged.get(i, 0.0)
        scores["ar_score"] = ar_score(scores["judge"], scores)


@dataclass
class ScoredRun:
    """A run's selected items, each with its gold value (as the model was asked to write it),
    prediction record (or None) and per-item scores: what results.json and the report share."""

    run: Path
    identity: dict[str, Any]
    items: list[Item]
    golds: list[Any]
    preds: dict[str, dict[str, Any]]
    records: list[dict[str, Any]]

    @property
    def folder(self) -> Path:
        return Path(self.identity["dataset"])


def scored_run(run: Path) -> ScoredRun:
    """Per-item scores of a run folder (unparseable or missing answers score as wrong)."""
    run = Path(run)
    if not (run / RUN).is_file():
        raise FileNotFoundError(f"{run / RUN}: not found (is {run} a voxqa run folder?)")
    ident = orjson.loads((run / RUN).read_bytes())["identity"]
    folder = Path(ident["dataset"])
    cfg = RunConfig(dataset=folder, out=run, split=ident["split"], control=ident["control"],
                    tasks=tuple(ident["tasks"]) if ident["tasks"] else None, limit=ident["limit"])
    studies = {s.id: s for s in read_studies(folder)}
    items = select(read_items(folder), cfg)
    if not items:
        raise ValueError(f"{run}: the run selects no items")
    vocabulary = sorted({it.label for it in items if it.label})
    preds = read_predictions(run / PREDICTIONS)
    records, golds = [], []
    for it in items:
        pred = preds.get(it.id)
        ok = bool(pred and pred["status"] == "ok" and pred["parse_ok"])
        golds.append(gold_value(it, studies[it.study_id].frame_size, folder, ident["profile"],
                                mirrored=ident["control"] == "mirrored"))
        scores = score_item(
            it.answer.type, golds[-1], pred["parsed"] if ok else None,
            tolerance=getattr(it.answer, "tolerance", 0.0), scale=getattr(it.answer, "scale", ()),
            vocabulary=vocabulary,
        )
        records.append({
            "item_id": it.id, "task": it.task, "subtask": it.subtask, "level": it.level,
            "label": it.label, "category": it.category, "anatomy": studies[it.study_id].anatomy,
            "template": it.template, "answer_type": it.answer.type, "chance": it.chance,
            "parse_ok": ok, "scores": scores,
        })
    return ScoredRun(run, ident, items, golds, preds, records)


def score_run(run: Path, jury: Jury | None = None) -> dict[str, Any]:
    """Score (or re-score) a run folder and write its results.json; a jury adds ``judge`` and
    ``ar_score`` to free-text items."""
    sr = scored_run(run)
    if jury is not None:
        _judge(jury, sr.items, sr.golds, sr.preds, sr.records)
    results = aggregate(sr.records)
    results["macro"] = macro_averages(results)
    results["run"] = sr.identity
    status = [sr.preds.get(it.id, {}).get("status") for it in sr.items]
    results["answered"] = status.count("ok")
    results["failed"] = status.count("failed")
    results["missing"] = status.count(None)
    (sr.run / RESULTS).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return results
