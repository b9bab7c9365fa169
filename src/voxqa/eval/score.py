"""Scoring a run folder: predictions + the dataset's gold answers -> results.json.

Gold boxes are stored in pixels of the stored frame; predictions are parsed into pixels of
the rendered image, so gold boxes are mapped through the same transform render used
(``voxqa.render.map_box``) before they are compared. Items of the run's selection without a
prediction count as unanswered (wrong, and in the parse-failure count).

Headline numbers (``overall``, ``by``) leave out items marked ``prior_answerable`` (answerable
from anatomy alone); they are scored on their own under ``excluded_prior_answerable`` and in
the ``prior_answerable`` groupings. Mirrored twins (``pair_id``) add ``pair_accuracy``. Number
and grade templates are scored on a stated scale (``scales``: the range an unparsed answer's
fixed MAE penalty and a missing chance come from, ``answer_scales``). An
``oracle_region`` run records the items that mode refuses (``excluded_oracle_region``).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from voxqa.answers import ANSWER_TYPES
from voxqa.answers.number import stated_range, uniform_chance, unparsed_penalty
from voxqa.boxes.profiles import get_profile
from voxqa.dataset.folder import ITEMS, read_items, read_studies
from voxqa.errors import InputError, MissingFileError, VoxqaError
from voxqa.eval.controls import mirror_item
from voxqa.eval.jury import Jury
from voxqa.eval.redact import safe_identity
from voxqa.eval.metrics.aggregate import aggregate, all_groups
from voxqa.eval.metrics.items import score_item
from voxqa.eval.metrics.statistics import holm, wilson
from voxqa.eval.metrics.text import ar_score
from voxqa.eval.run import (PREDICTIONS, RUN, RunConfig, dataset_hash, oracle_region_refusals, read_predictions,
                            select)
from voxqa.fileio import write_json
from voxqa.conversation import InlineBoxes, build_sample
from voxqa.render import map_box
from voxqa.schema import GradeAnswer, Item, NumberAnswer, Study

RESULTS = "results.json"


class IncompleteRun(VoxqaError, ValueError):
    """A run with failed requests: not the model's accuracy unless asked for (labelled)."""


class DatasetChanged(VoxqaError, ValueError):
    """The dataset changed after the run was asked (rebuilt, re-rendered): its gold answers
    are no longer the ones the model was asked about, so no score of the run is meaningful."""


def check_dataset_unchanged(run: Path, ident: dict[str, Any]) -> None:
    """Refuse a run whose dataset's items.jsonl no longer has the sha256 run.json recorded
    (``dataset_sha256``); a missing items.jsonl is left to ``read_items`` to report."""
    folder = Path(ident["dataset"])
    if not (folder / ITEMS).is_file():
        return
    recorded, current = ident.get("dataset_sha256"), dataset_hash(folder)
    if recorded != current:
        raise DatasetChanged(
            f"{run}: asked on {folder} with items.jsonl sha256 {str(recorded)[:12]} ({RUN}), but "
            f"{folder / ITEMS} now has sha256 {current[:12]}: the dataset was rebuilt or re-rendered "
            "since, so its gold answers are not the run's; evaluate it again with a new --out")


def gold_value(item: Item, frame_size: tuple[int, int], folder: Path, profile: str,
               mirrored: bool = False) -> Any:
    """The item's answer value with boxes in pixels of its rendered images; a text answer
    with the boxes it quotes in the profile's convention, as the model was asked to write."""
    if mirrored:  # stored boxes flipped too: the same item the model was shown
        item = mirror_item(item, frame_size)
    value = item.answer.model_dump(mode="json")["value"]
    kind = ANSWER_TYPES[item.answer.type]
    if not item.images:
        return value
    if kind.free_text:
        p = get_profile(profile)
        return json.loads(build_sample(item, folder, frame_size, p, InlineBoxes(p)).target)["answer"]
    size = (item.images[0].width, item.images[0].height)
    return kind.on_image(value, lambda box: list(map_box(box, frame_size, size)))


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
    todo = [(i, it) for i, it in enumerate(items)
            if ANSWER_TYPES[it.answer.type].free_text and not records[i]["failed"]]
    asked = [(i, it) for i, it in todo if records[i]["parse_ok"]]
    verdicts = asyncio.run(jury.verdicts(
        {it.id: (it.question, str(golds[i]), str(preds[it.id]["parsed"])) for i, it in asked}))
    for i, it in todo:
        scores = records[i]["scores"]
        verdict = verdicts.get(it.id)  # keyed by item id; an unparsed answer was not asked: 0
        scores["judge"] = verdict.score if verdict is not None else 0.0
        scores["ar_score"] = None if scores["judge"] is None else ar_score(scores["judge"], scores)
        if verdict is not None and verdict.failures:  # a judge failed this item: no jury score
            records[i]["jury_failures"] = verdict.failures


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
    #: ``oracle_region`` runs: the items the mode left out (their answer is the region)
    refused: dict[str, Any] | None = None
    #: number and grade templates: the scale their chance and unparsed penalty come from
    scales: dict[str, dict[str, Any]] | None = None

    @property
    def folder(self) -> Path:
        return Path(self.identity["dataset"])


def scored_run(run: Path) -> ScoredRun:
    """Per-item scores of a run folder (unparseable or missing answers score as wrong; failed
    requests get no score)."""
    run = Path(run)
    if not (run / RUN).is_file():
        raise MissingFileError(f"{run / RUN}: not found (is {run} a voxqa run folder?)")
    ident = orjson.loads((run / RUN).read_bytes())["identity"]
    check_dataset_unchanged(run, ident)
    folder = Path(ident["dataset"])
    cfg = RunConfig(dataset=folder, out=run, split=ident["split"], control=ident["control"],
                    tasks=tuple(ident["tasks"]) if ident["tasks"] else None, limit=ident["limit"],
                    mode=ident["mode"])
    studies = {s.id: s for s in read_studies(folder)}
    every = read_items(folder)
    preds = read_predictions(run / PREDICTIONS)
    if ident["mode"] == "published":  # a released run (voxqa import): its answers, no images here
        items = [it for it in every if it.id in preds]
    else:
        items = select(every, cfg)
    if not items:
        raise InputError(f"{run}: the run selects no items")
    vocabularies = dataset_vocabulary(every, studies.values())  # the whole dataset's labels
    scales = answer_scales(every)
    records, golds = [], []
    points = get_profile(ident["profile"]).answer_form == "points"  # box answers read as points
    for it in items:
        pred = preds.get(it.id)
        ok = bool(pred and pred["status"] == "ok" and pred["parse_ok"])
        golds.append(gold_value(it, studies[it.study_id].frame_size, folder, ident["profile"],
                                mirrored=ident["control"] == "mirrored"))
        failed = pred is None or pred["status"] == "failed"
        # a failed request, or an item never asked (a run cut short), is no answer of the
        # model's: it gets no score (it makes the run incomplete), never a wrong one
        scale = scales.get(it.template, {}).get("range", ())
        scores = {} if failed else score_item(
            it.answer.type, golds[-1], pred["parsed"] if ok else None,
            tolerance=getattr(it.answer, "tolerance", 0.0), scale=getattr(it.answer, "scale", None) or scale,
            vocabulary=vocabularies.get(studies[it.study_id].anatomy, ()), points=points,
        )
        records.append({
            "item_id": it.id, "task": it.task, "subtask": it.subtask, "level": it.level,
            "label": it.label, "category": it.category, "anatomy": studies[it.study_id].anatomy,
            "patient": studies[it.study_id].patient_id,
            "template": it.template, "answer_type": it.answer.type, "chance": item_chance(it, scale),
            "parse_ok": ok, "scores": scores, "failed": failed,
            "prior_answerable": "true" if it.prior_answerable else "false",
        })
    refused = oracle_region_refusals(every, cfg) if ident["mode"] == "oracle_region" else None
    return ScoredRun(run, ident, items, golds, preds, records, refused,
                     {t: scales[t] for t in sorted({it.template for it in items}) if t in scales})


def answer_scales(items: Iterable[Item]) -> dict[str, dict[str, Any]]:
    """Per number or grade template, the scale its items are scored on (stated in results.json
    ``scales``): ``range`` (a number template's ``stated_range`` over its gold answers in every
    split; a grade's scale, else the same range of its golds), ``unparsed_penalty`` (the absolute
    error an unparsed answer is charged: the range's span) and ``chance`` (how an item's chance
    is defined when it has none: a uniform draw on the range)."""
    golds: dict[str, list[float]] = defaultdict(list)
    grades: dict[str, list[int]] = {}
    for it in items:
        if isinstance(it.answer, (NumberAnswer, GradeAnswer)):
            golds[it.template].append(float(it.answer.value))
        if isinstance(it.answer, GradeAnswer) and it.answer.scale:
            grades.setdefault(it.template, sorted(it.answer.scale))
    out = {}
    for template, values in sorted(golds.items()):
        if template in grades:
            scale: list[float] = list(grades[template])
        else:
            low, high = stated_range(values)
            whole = all(float(v).is_integer() for v in (low, high, *values))
            scale = [int(low), int(high)] if whole else [low, high]
        out[template] = {"range": scale, "unparsed_penalty": unparsed_penalty(scale),
                         "chance": "uniform draw on the range (integers when the range and answers are)"
                         if template not in grades else "uniform draw of a grade of the scale"}
    return out


def item_chance(item: Item, scale: Sequence[float]) -> float | None:
    """The item's chance; for a number or grade item without one, a uniform draw on its scale
    (a grade's grades; a number's stated range), so chance covers every item accuracy does."""
    if item.chance is not None:
        return item.chance
    answer = item.answer
    if isinstance(answer, GradeAnswer):
        grades = answer.scale or (list(range(int(min(scale)), int(max(scale)) + 1)) if scale else [])
        return 1 / len(grades) if grades else None
    if isinstance(answer, NumberAnswer):
        return uniform_chance(float(answer.value), answer.tolerance, scale)
    return None


def dataset_vocabulary(items: Iterable[Item], studies: Iterable[Study]) -> dict[str, list[str]]:
    """Per anatomy, every finding label of the dataset (studies' findings and items' labels):
    the labels a caption's entity F1 looks for, whatever tasks a run selects."""
    studies = list(studies)
    anatomy = {s.id: s.anatomy for s in studies}
    out: dict[str, set[str]] = defaultdict(set)
    for s in studies:
        out[s.anatomy] |= {f.label for f in s.findings if f.label}
    for it in items:
        if it.label and it.study_id in anatomy:
            out[anatomy[it.study_id]].add(it.label)
    return {a: sorted(v) for a, v in sorted(out.items())}


PA_GROUP_KEYS = ("prior_answerable", ("prior_answerable", "task"),
                 ("prior_answerable", "task", "subtask"))


def _empty_stats() -> dict[str, Any]:
    """Group stats of no items (a selection of prior-answerable items only)."""
    return {"n": 0, "metrics": {}, "chance": None, "below_chance_test": None,
            "below_chance": None, "parse_failures": {"count": 0, "rate": 0.0}}


def _pair_stats(pairs: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    both = sum(a and b for a, b in pairs)
    n = len(pairs)
    return {"n_pairs": n, "both_right": both, "value": both / n if n else None,
            "ci": wilson(both, n)}


def pair_accuracy(items: Sequence[Item], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy over mirrored twins: a pair (items sharing ``pair_id``) counts when both are in
    the selection and have an accuracy score, and is right when both are right. Pairs of
    prior-answerable items are left out, as from every headline number. A pair's category and
    task/subtask are its original's (its first item's when none is marked original).
    ``ci`` is the Wilson 95% interval (None without pairs)."""
    twins: dict[str, list[tuple[Item, dict[str, Any]]]] = defaultdict(list)
    for it, r in zip(items, records, strict=True):
        if it.pair_id is not None:
            twins[it.pair_id].append((it, r))
    overall: list[tuple[bool, bool]] = []
    by_category: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    by_subtask: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for pair_id in sorted(twins):
        members = twins[pair_id]
        if len(members) != 2 or any(it.prior_answerable for it, _ in members):
            continue
        correct = [r["scores"].get("correct") for _, r in members]
        if any(c is None for c in correct):
            continue
        outcome = (correct[0] == 1.0, correct[1] == 1.0)
        first = next((it for it, _ in members if it.variant == "original"), members[0][0])
        overall.append(outcome)
        if first.category is not None:
            by_category[first.category].append(outcome)
        by_subtask[f"{first.task}/{first.subtask}"].append(outcome)
    return {"overall": _pair_stats(overall),
            "by_category": {k: _pair_stats(v) for k, v in sorted(by_category.items())},
            "by_subtask": {k: _pair_stats(v) for k, v in sorted(by_subtask.items())}}


def results_of(sr: ScoredRun) -> dict[str, Any]:
    """results.json's content for scored items (without the run's request counts)."""
    headline = [r for r in sr.records if r["prior_answerable"] == "false"]
    excluded = [r for r in sr.records if r["prior_answerable"] == "true"]
    results = aggregate(headline) if headline else {"overall": _empty_stats(), "by": {}}
    results["by"] |= aggregate(sr.records, PA_GROUP_KEYS)["by"]
    results["excluded_prior_answerable"] = aggregate(excluded) if excluded else None
    # one Holm family: every group of this results file
    groups = all_groups(results)
    if excluded:
        groups += all_groups(results["excluded_prior_answerable"])
    holm(groups)
    results["macro"] = macro_averages(results)
    results["pair_accuracy"] = pair_accuracy(sr.items, sr.records)
    if sr.refused is not None:
        results["excluded_oracle_region"] = sr.refused
    if sr.scales:
        results["scales"] = sr.scales
    return results


def score_run(run: Path, jury: Jury | None = None, allow_incomplete: bool = False,
              as_published: str | None = None) -> dict[str, Any]:
    """Score (or re-score) a run folder and write its results.json; a jury adds ``judge`` and
    ``ar_score`` to free-text items. A run with failed requests is incomplete: refused
    (``IncompleteRun``) unless ``allow_incomplete``, and then marked ``incomplete: true``.
    ``as_published`` names a benchmark whose own metrics are added (``voxqa.importers.published_scores``;
    the jury's first judge also gives SGMRI-VQA's GPTScore)."""
    sr = scored_run(run)
    status = [sr.preds.get(it.id, {}).get("status") for it in sr.items]
    failed, missing = status.count("failed"), status.count(None)
    if (failed or missing) and not allow_incomplete:
        raise IncompleteRun(
            f"{sr.run}: {failed} of {len(sr.items)} requests failed (errors in {PREDICTIONS}) and "
            f"{missing} were never asked: the run is incomplete. Re-run `voxqa eval` with the same "
            "--out to ask them, or score it with --allow-incomplete (results labelled incomplete)")
    if jury is not None:
        _judge(jury, sr.items, sr.golds, sr.preds, sr.records)
    results = results_of(sr)
    if jury is not None:
        results["jury"] = jury.describe()
    results["run"] = safe_identity(sr.identity)  # no URL credentials, even from an older run.json
    results["answered"] = status.count("ok")
    results["failed"] = failed
    results["missing"] = missing
    results["incomplete"] = failed + missing > 0
    # replies cut off at the model's length cap: scored as unparsed, counted so a cap too low shows
    results["truncated"] = sum(1 for it in sr.items if sr.preds.get(it.id, {}).get("truncated"))
    if as_published is not None:
        from voxqa.importers.published_scores import as_published as published

        results["as_published"] = published(as_published, sr, jury)
    write_results(sr.run, results)
    return results


def write_results(run: Path, results: dict[str, Any]) -> None:
    """``run/results.json``, written atomically (a rescore or an uplift rewrite included)."""
    write_json(run / RESULTS, results, newline=False)
