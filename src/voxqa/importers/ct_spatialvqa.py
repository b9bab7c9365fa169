"""CT-SpatialVQA (released JSONL + categories [+ CT-RATE NIfTI]) -> a voxqa dataset, and the
released model runs (predictions with each judge's verdicts) -> a voxqa run.

Released files (github.com/Mashrafi27/CT-SpatialVQA @ e25374c):

* ``dataset/ct_spatialvqa/spatial_qa_filtered_full_nifti.jsonl``: one record per line,
  ``case_id, image_path, question, answer`` (free text; no boxes, no slices);
* ``benchmarking/eval_scripts/spatial_categories/spatial_qa_filtered_full_with_categories.json``:
  ``{case_id: {"qa_pairs": [{question, answer, category: [...]}]}}``, multi-label;
* ``benchmarking/reports/llm_eval/<model>_{gpt,qwen}_eval.json`` and
  ``<model>_gemini2.5_eval_full.json``: lists of ``{case_id (null), question, answer,
  prediction, is_correct[, reasoning]}``, one per judge. ``is_correct`` is null where the
  judge gave no verdict (the evaluators write null for a failed request, an empty or blocked
  reply, or an unreadable one: ``evaluate_with_gemini.py`` L189-233; VILA-M3's Gemini file has
  five, entries 4155-4159, reasoning "BLOCKED_OR_EMPTY_RESPONSE").

Every answer is free text (``text`` items, scored by the jury). A question's categories are
kept in ``Item.category`` as one string, sorted and joined by ``"; "`` (the schema holds one
string per item; no category name contains ";"), which ``published_scores`` splits again to
count an item in each of its categories, as the paper does.

Why the run importer aligns by content: the released jury script combines the three judges'
files by list position, and the Gemini file of M3D lacks 3 records, so from index 2789 on its
verdicts belong to other questions (source-benchmarks.md 2.6). Here each judge's verdict is
matched to an item by (question, answer, prediction). The release has no case ids in these
files and some identical (question, answer) pairs belong to several cases; within such a group
entries are taken in the released QA order (``released_order.json`` of the dataset), the only
thing that tells those items apart. A verdict left without an item, or an item a judge did not
judge, is a recorded gap (``import_report.json`` of the run), never a shifted verdict. A null
verdict is a recorded jury failure of that judge for its item (``jury_failures``): the item
gets no verdict from that judge, so the aligned accuracy leaves it out (over the items every
judge judged); the published combination counted it as not correct (``1.0 if val is True else
0.0``, ``build_correctness_matrix.py`` L230-231), and so does ``score --as-published``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from voxqa import __version__
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.folder import check_out_folder, no_gc, read_items, sha256_file
from voxqa.dataset.paths import check_study_id
from voxqa.errors import BuildError, not_utf8
from voxqa.eval.jury import CACHE
from voxqa.eval.run import PREDICTIONS, RUN, dataset_hash
from voxqa.fileio import write_bytes, write_json, write_jsonl
from voxqa.importers import field, load_json, ras_shape, volume_file, write_imported
from voxqa.schema import Item, Study, VolumeRef

NAME = "ct_spatialvqa"
FORMAT = "ct-spatialvqa"
QA_FIELDS = ("case_id", "image_path", "question", "answer")
EVAL_FIELDS = ("question", "answer", "prediction", "is_correct")
CATEGORY_SEPARATOR = "; "
RELEASED_ORDER = "released_order.json"
IMPORT_REPORT = "import_report.json"
#: The released verdicts in file order, per judge: what the published, positional jury combined.
PUBLISHED_VERDICTS = "published_verdicts.json"
#: Judge names in the released file names -> the judge's model as run (source-benchmarks.md 2.3).
JUDGES = {"gpt": "gpt-4o-mini", "qwen": "qwen-plus", "gemini": "gemini-2.0-flash (files say gemini2.5)"}
#: The published jury: correct iff floor(100 * mean(votes)) / 100 >= 0.66 (2 of 3).
JURY_THRESHOLD = 0.66
DEFAULT_FRAME_SIZE = (512, 512)  # CT-RATE axial slices, used when no volume is given


def _study_id(case_id: str) -> str:
    return case_id[: -len(".nii.gz")] if case_id.endswith(".nii.gz") else case_id.removesuffix(".nii")


def _patient(study_id: str) -> str:
    """CT-RATE ids are valid_<patient>_<scan>_<reconstruction>: split by patient."""
    parts = study_id.split("_")
    return "_".join(parts[:2]) if len(parts) >= 2 else study_id


def read_qa(path: Path, report: BuildReport) -> list[dict[str, str]]:
    """The released QA records in file order, each field checked."""
    if not path.is_file():
        raise BuildError(f"{path}: CT-SpatialVQA QA JSONL not found")
    out = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BuildError(f"{path}: {not_utf8(exc)}") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BuildError(f"{where}: not a JSON record ({exc})") from None
        except RecursionError:
            raise BuildError(f"{where}: not a JSON record voxqa reads (nested too deeply)") from None
        row = {k: field(rec, k, where, str) for k in QA_FIELDS}
        extra = sorted(set(rec) - set(QA_FIELDS))
        if extra:
            report.add("info", "extra_fields_ignored", where=where, fields=extra)
        row["where"] = where
        out.append(row)
    if not out:
        raise BuildError(f"{path}: no QA records")
    return out


def read_categories(path: Path) -> dict[tuple[str, str, str], list[str]]:
    """(case_id, question, answer) -> categories, from the released category file."""
    data = load_json(path, "CT-SpatialVQA category file")
    if not isinstance(data, dict):
        raise BuildError(f"{path}: expected a JSON object keyed by case_id, got {type(data).__name__}")
    out: dict[tuple[str, str, str], list[str]] = {}
    for case, entry in data.items():
        pairs = field(entry, "qa_pairs", f"{path}[{case!r}]", list)
        for n, qa in enumerate(pairs):
            where = f"{path}[{case!r}].qa_pairs[{n}]"
            cats = field(qa, "category", where, list)
            if not all(isinstance(c, str) for c in cats):
                raise BuildError(f"{where}: field 'category' must be a list of strings")
            if any(";" in c for c in cats):
                raise BuildError(f"{where}: field 'category' has a name with ';' ({cats})")
            out[(case, field(qa, "question", where, str), field(qa, "answer", where, str))] = cats
    return out


def _volume(row: dict[str, str], root: Path | None, report: BuildReport) -> tuple[VolumeRef | None, int | None, tuple[int, int], str]:
    if root is None:
        return None, None, DEFAULT_FRAME_SIZE, "default"
    path = volume_file(root, [row["image_path"], row["case_id"]], report)
    if path is not None:
        try:
            i, j, k = ras_shape(path)  # axial frames: (width, height) = (i, j), k frames
        except (OSError, ValueError) as exc:
            report.add("skipped", "volume_unreadable_built_box_only", file=str(path), error=str(exc))
        else:
            return VolumeRef(path=str(path), loader="nifti"), k, (i, j), "volume"
    return None, None, DEFAULT_FRAME_SIZE, "default"


def item_id(study_id: str, question: str, answer: str) -> str:
    """Content ids: a reordered release gives the same items."""
    digest = hashlib.sha1(f"{question}\x1f{answer}".encode()).hexdigest()[:10]
    return f"{study_id}:ct-spatialvqa:v:{digest}"


def import_ct_spatialvqa(qa: Path, out: Path, *, categories: Path | None = None,
                         volumes_root: Path | None = None, split: str = "test",
                         strict: bool = False) -> dict[str, Any]:
    """Import the released QA (and categories, volumes when present); returns the manifest.
    The whole release is CT-RATE's ``valid`` split, the benchmark's test set: ``split``."""
    if split not in ("train", "val", "test"):
        raise BuildError(f"--split must be train, val or test, got {split!r}")
    check_out_folder(out)
    with no_gc():
        report = BuildReport(strict=strict)
        rows = read_qa(qa, report)
        cats = read_categories(categories) if categories else {}
        studies: dict[str, Study] = {}
        items: list[Item] = []
        order: list[str] = []
        seen: set[str] = set()
        for row in rows:
            sid = check_study_id(_study_id(row["case_id"]), row["where"] + " case_id")
            if sid not in studies:
                ref, frames, size, size_src = _volume(row, volumes_root, report)
                studies[sid] = Study(
                    id=sid, patient_id=_patient(sid), source=NAME, modality="CT", anatomy="chest",
                    volume=ref, view_axis=2, frame_count=frames,
                    frame_count_source="volume" if frames else "unknown",
                    frame_size=size, frame_size_source=size_src,  # type: ignore[arg-type]
                    split=split,  # type: ignore[arg-type]
                )
            iid = item_id(sid, row["question"], row["answer"])
            if iid in seen:
                report.add("dropped", "duplicate_record", where=row["where"])
                continue
            seen.add(iid)
            key = (row["case_id"], row["question"], row["answer"])
            category = None
            if categories is not None:
                if key in cats:
                    category = CATEGORY_SEPARATOR.join(sorted(cats[key])) or None
                else:
                    report.add("warning", "question_without_categories", where=row["where"])
            order.append(iid)
            items.append(Item(
                id=iid, study_id=sid, split=split, source=NAME,  # type: ignore[arg-type]
                task="spatial", subtask="ct_spatialvqa", level="volume", frames=[],
                question=row["question"], answer={"type": "text", "value": row["answer"]},  # type: ignore[arg-type]
                answer_text=row["answer"], reasoning=row["answer"], chance=None,
                template="ct-spatialvqa/open/volume", category=category,
            ))
        report.totals |= {"records_read": len(rows), "items": len(items), "studies": len(studies),
                          "with_categories": sum(1 for it in items if it.category)}
        files = [(qa, "qa")] + ([(categories, "categories")] if categories else [])
        manifest = write_imported(
            out, name="ct-spatialvqa", source=NAME, command="voxqa import ct-spatialvqa",
            options={"qa": str(qa), "categories": str(categories) if categories else None,
                     "volumes_root": str(volumes_root) if volumes_root else None, "split": split,
                     "strict": strict},
            files=files, studies=list(studies.values()), items=items, report=report,
            extra={"categories": {"multi_label": True, "stored_as": f"Item.category joined by {CATEGORY_SEPARATOR!r}"},
                   "released_order": RELEASED_ORDER},
        )
        write_bytes(out / RELEASED_ORDER, orjson.dumps({"qa": str(qa), "item_ids": order}))
        return manifest


# --- released runs ----------------------------------------------------------------------------


def judge_of(path: Path) -> str:
    """The judge a released eval file holds, from its name (m3d_gpt_eval.json -> gpt)."""
    found = [j for j in JUDGES if f"_{j}" in path.name.lower()]
    if len(found) != 1:
        raise BuildError(f"{path}: cannot tell the judge from the file name (expected one of "
                         f"{', '.join('_' + j for j in JUDGES)} in it)")
    return found[0]


def read_eval(path: Path) -> list[dict[str, Any]]:
    data = load_json(path, "CT-SpatialVQA eval file")
    if not isinstance(data, list):
        raise BuildError(f"{path}: expected a JSON list of judged predictions, got {type(data).__name__}")
    out = []
    for n, rec in enumerate(data):
        where = f"{path}[{n}]"
        row = {k: field(rec, k, where, str) for k in EVAL_FIELDS[:3]}
        # null: the judge gave no verdict (a recorded jury failure), any other non-bool is an unknown shape
        row["is_correct"] = field(rec, "is_correct", where, (bool, type(None)))
        reasoning = rec.get("reasoning")
        row["reasoning"] = reasoning if isinstance(reasoning, str) else None
        out.append(row)
    return out


def import_ct_spatialvqa_run(dataset: Path, evals: Sequence[Path], out: Path, *,
                             model: str | None = None) -> dict[str, Any]:
    """A voxqa run from released eval files: predictions are the model's answers, the jury
    cache holds every judge's published verdict aligned by content; returns the import report."""
    if not evals:
        raise BuildError("give the released eval files (--eval, one per judge)")
    order_file = dataset / RELEASED_ORDER
    if not order_file.is_file():
        raise BuildError(f"{dataset}: not a dataset of `voxqa import ct-spatialvqa` ({RELEASED_ORDER} missing)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BuildError(f"--out {out}: exists and is not an empty folder; give a new folder for the imported run")
    items = {it.id: it for it in read_items(dataset)}
    released = orjson.loads(order_file.read_bytes())["item_ids"]
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)  # (q, a) -> item ids, released order
    for iid in released:
        it = items[iid]
        groups[(it.question, str(it.answer.value))].append(iid)  # every item is a text answer
    judges = {}
    for path in evals:
        name = judge_of(path)
        if name in judges:
            raise BuildError(f"{path}: a second file of judge {name}")
        judges[name] = (path, read_eval(path))
    gaps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    fullest = max(judges, key=lambda j: (len(judges[j][1]), j))
    predictions = _aligned_predictions(released, groups, judges[fullest], gaps)
    verdicts, judged, failures = _aligned_verdicts(groups, judges, predictions, gaps)

    out.mkdir(parents=True, exist_ok=True)
    spec = f"published:{model or _model_name(evals)}"
    identity = {
        "dataset": str(dataset.resolve()), "dataset_sha256": dataset_hash(dataset),
        "model": {"spec": spec, "imported_from": [{"path": str(p), "sha256": sha256_file(p)} for p in evals]},
        "mode": "published", "control": "none", "profile": "pixel", "split": None,
        "tasks": None, "limit": None, "seed": 0,
    }
    write_json(out / RUN, {"identity": identity, "voxqa_version": __version__,
                           "imported": {"format": "ct-spatialvqa-run"}}, newline=False)
    write_jsonl(out / PREDICTIONS, ({"item_id": iid, "status": "ok", "raw": predictions[iid],
                                     "parsed": predictions[iid], "parse_ok": True, "parse_error": None,
                                     "error": None, "seconds": None} for iid in released if iid in predictions))
    write_jsonl(out / CACHE, ({"key": _jury_key(v["judge"], items[v["item_id"]], predictions[v["item_id"]]), **v}
                              for v in verdicts))
    write_bytes(out / PUBLISHED_VERDICTS, orjson.dumps(
        {name: [e["is_correct"] for e in rows] for name, (_, rows) in sorted(judges.items())}))
    report = {
        "format": "ct-spatialvqa-run",
        "model": spec,
        "judges": {name: {"file": str(judges[name][0]), "entries": len(judges[name][1]),
                          "aligned": judged[name], "failed": sum(f["judge"] == name for f in failures),
                          "model": JUDGES[name]} for name in sorted(judges)},
        "predictions_from": fullest,
        "predictions": len(predictions),
        "gaps": {k: {"count": len(v), "examples": v[:5]} for k, v in sorted(gaps.items())},
        "jury_failures": {
            "count": len(failures), "items": len({f["item_id"] for f in failures}), "entries": failures,
            "as_published": "counted as not correct: the released combination takes 1.0 if is_correct is "
                            "True else 0.0 (build_correctness_matrix.py L230-231), as score --as-published does",
            "voxqa": "no verdict of that judge for the item: the aligned accuracy is over the items every "
                     "judge judged, so the item is left out of it",
        },
        "alignment": "by (question, answer, prediction); identical (question, answer) pairs of "
                     "several cases in the released QA order",
    }
    write_json(out / IMPORT_REPORT, report, newline=False)
    return report


def _aligned_predictions(released: Sequence[str], groups: Mapping[tuple[str, str], list[str]],
                         fullest: tuple[Path, list[dict[str, Any]]],
                         gaps: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Per (question, answer) group, the i-th released item gets the i-th answer of the fullest
    eval file; entries without an item and items without an answer are counted in ``gaps``."""
    path, rows = fullest
    predictions: dict[str, str] = {}
    queue: dict[tuple[str, str], deque[str]] = {k: deque(v) for k, v in groups.items()}
    for n, e in enumerate(rows):
        q = queue.get((e["question"], e["answer"]))
        if not q:
            gaps["prediction_without_item"].append({"file": str(path), "index": n})
            continue
        predictions[q.popleft()] = e["prediction"]
    for iid in released:
        if iid not in predictions:
            gaps["item_without_prediction"].append({"item": iid})
    return predictions


def _aligned_verdicts(groups: Mapping[tuple[str, str], list[str]],
                      judges: Mapping[str, tuple[Path, list[dict[str, Any]]]], predictions: Mapping[str, str],
                      gaps: dict[str, list[dict[str, Any]]],
                      ) -> tuple[list[dict[str, Any]], dict[str, int], list[dict[str, Any]]]:
    """Each judge's entry goes to an item of its (question, answer) group with the same
    prediction: the verdicts, per judge how many entries found an item, and the entries with a
    null verdict (jury failures: they take their item's place, so nothing after them shifts,
    but give it no verdict)."""
    verdicts: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    judged: dict[str, int] = {}
    for name, (path, rows) in sorted(judges.items()):
        free: dict[tuple[str, str, str], deque[str]] = defaultdict(deque)
        for key, ids in groups.items():
            for iid in ids:
                if iid in predictions:
                    free[(*key, predictions[iid])].append(iid)
        for n, e in enumerate(rows):
            q = free.get((e["question"], e["answer"], e["prediction"]))
            if not q:
                gaps["verdict_without_item"].append({"judge": name, "file": str(path), "index": n})
                continue
            iid = q.popleft()
            if e["is_correct"] is None:
                failures.append({"item_id": iid, "judge": name, "file": str(path), "index": n,
                                 "reasoning": e["reasoning"]})
                continue
            verdicts.append({"item_id": iid, "judge": f"published:{name}", "verdict": e["is_correct"],
                             "source": str(path), "index": n})
        judged[name] = len(rows) - sum(1 for g in gaps["verdict_without_item"] if g["judge"] == name)
        for iid in (i for q in free.values() for i in q):
            gaps["item_not_judged"].append({"judge": name, "item": iid})
    return verdicts, judged, failures


def _model_name(evals: Sequence[Path]) -> str:
    """m3d_gpt_eval.json -> m3d, vila_m3_vista3d_qwen_eval.json -> vila_m3_vista3d: the
    released file name before its judge (as ``build_correctness_matrix.py`` L95-100 strips the
    judge suffix)."""
    names = {p.name[:p.name.lower().index(f"_{judge_of(p)}")] for p in evals}
    if len(names) != 1:
        raise BuildError(f"the eval files name several models ({', '.join(sorted(names))}); give --model")
    return names.pop()


def _jury_key(judge: str, item: Item, prediction: str) -> str:
    """The key ``voxqa.eval.jury`` caches a verdict under, for a judge named ``judge`` with no
    server: (judge, question, reference, candidate). With it the file stays a valid jury cache,
    so ``voxqa score RUN --judge ...`` can add a live jury to an imported run; a real judge's
    spec never starts with ``published:``, so the two never share a key."""
    return hashlib.sha256("\x1f".join([judge, "", item.question, str(item.answer.value), prediction]).encode()).hexdigest()
