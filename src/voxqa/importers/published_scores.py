"""`voxqa score RUN --as-published NAME`: a benchmark's own headline numbers, computed as the
benchmark computes them, next to voxqa's corrected ones.

Researchers must quote the published metric to compare with a paper, and should know how far
it is from a sound one; both are reported, each labelled. Every difference is listed in
docs/importers.md (the as-published vs voxqa table), with the released file and line of each
rule re-enacted here.

* ``ct-spatialvqa``: jury accuracy, correct iff ``floor(100 * mean(votes)) / 100 >= 0.66``
  (``build_correctness_matrix.py`` + ``compute_llm_jury_accuracy.py``: 2 of 3 judges).
  *As published*: the judges' released verdict lists combined by list position, truncated to
  the shortest (their L219-231), a null verdict (no verdict: a failed or blocked judge
  request) counted as not correct (L230-231). *Aligned* (voxqa): each item's verdicts as
  matched by ``import ct-spatialvqa-run`` (question, answer, prediction), over the items every
  judge judged (an item with a null verdict is a recorded jury failure and left out); also per
  category, an item counting in each of its categories.
* ``sgmri-vqa`` (github.com/lamawmouk/SGMRI-VQA @ a37aa3d, ``src/sgmriqa/``): A-Score,
  V-Score, "mAP" and AR-Score per SGMRI task, x100, and "Avg", the unweighted mean of the task
  columns (README table), each rule re-enacted from the released code: the reply's ``<think>``
  blocks dropped (``metrics/utils.py`` ``extract_answer_text``), a volume item's answer cut at
  "Therefore, the final answer is:" (``run_evaluation.py`` ``_extract_video_answer``), the
  A-Score parsers (``parse_yes_no``, ``parse_choice_letters``, ``_extract_number``), the
  V-Score's one Hungarian matching (``v_score.py``) and its "mAP" (the mean F1 at IoU 0.1,
  0.25, 0.5 of that matching's pairs, absent for an item without a predicted box), the
  duplicate "Locate the bounding box..." questions skipped, and the AR-Score's GPTScore
  (``voxqa.eval.gptscore``, with ``--judge``). Frames are SGMRI's 1-based numbers, so the
  V-Score needs a run prompted with them (a profile whose ``frame_base`` is 1: ``sgmri``).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from scipy.optimize import linear_sum_assignment

from voxqa.answers.options import marked
from voxqa.answers.reply import drop_think_blocks
from voxqa.boxes.profiles import get_profile
from voxqa.errors import InputError
from voxqa.eval.gptscore import GptScore, GptScorer
from voxqa.eval.jury import CACHE, Jury
from voxqa.eval.jury_protocols import ct_spatialvqa_correct

if TYPE_CHECKING:
    from voxqa.eval.score import ScoredRun

#: Benchmarks whose published metrics ``score --as-published`` computes.
NAMES = ("sgmri-vqa", "ct-spatialvqa")
#: SGMRI README columns -> (SGMRI task, metric).
SGMRI_COLUMNS = {
    "Detection": ("detection", "a_score"),
    "Classification": ("classification", "a_score"),
    "Diagnosis": ("diagnosis", "a_score"),
    "Counting": ("counting", "a_score"),
    "Localization (V)": ("localization", "v_score"),
    "Localization (AR)": ("localization", "ar_score"),
    "Captioning": ("captioning", "ar_score"),
}
#: voxqa task -> SGMRI task, for items not imported from SGMRI-VQA.
VOXQA_TO_SGMRI = {"detection": "detection", "classification": "classification",
                  "counting": "counting", "localization": "localization", "captioning": "captioning"}


def published_jury_correct(votes: Sequence[bool | None]) -> bool:
    """The released rule (``voxqa.eval.jury_protocols.ct_spatialvqa_correct``, shared with the
    ``ct-spatialvqa`` jury protocol): the average vote rounded down to hundredths, at least
    0.66; a null vote (the judge gave no verdict) counts as not correct."""
    return ct_spatialvqa_correct(votes)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def ct_spatialvqa(run: Path, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Jury accuracy as published (positional) and aligned, from an imported released run."""
    from voxqa.importers.ct_spatialvqa import CATEGORY_SEPARATOR, IMPORT_REPORT, PUBLISHED_VERDICTS

    released = run / PUBLISHED_VERDICTS
    if not released.is_file():
        raise InputError(f"{run}: no {PUBLISHED_VERDICTS}; --as-published ct-spatialvqa scores a run "
                         "imported with `voxqa import ct-spatialvqa-run`")
    lists: dict[str, list[bool | None]] = orjson.loads(released.read_bytes())
    n_pos = min(len(v) for v in lists.values())
    positional = [published_jury_correct([lists[j][i] for j in sorted(lists)]) for i in range(n_pos)]
    null_votes = sum(lists[j][i] is None for j in lists for i in range(n_pos))
    report_file = run / IMPORT_REPORT
    failures = (orjson.loads(report_file.read_bytes()).get("jury_failures") or {}) if report_file.is_file() else {}

    votes: dict[str, dict[str, bool]] = defaultdict(dict)
    for line in (run / CACHE).read_bytes().splitlines():
        if line.strip():
            rec = orjson.loads(line)
            if str(rec.get("judge", "")).startswith("published:") and "item_id" in rec:
                votes[rec["item_id"]][rec["judge"]] = rec["verdict"]
    category = {r["item_id"]: r["category"] for r in records}
    complete = {iid: v for iid, v in votes.items() if len(v) == len(lists) and iid in category}
    right = {iid: published_jury_correct(list(v.values())) for iid, v in complete.items()}
    by_category: dict[str, list[bool]] = defaultdict(list)
    for iid, ok in right.items():
        for c in (category[iid] or "").split(CATEGORY_SEPARATOR):
            if c:
                by_category[c].append(ok)
    return {
        "as_published": {
            "label": "as published: judges combined by list position, truncated to the shortest list",
            "jury_accuracy": _mean([float(x) for x in positional]), "n": n_pos,
            "null_verdicts_counted_wrong": null_votes,
        },
        "voxqa": {
            "label": "aligned: each item's own verdicts (matched by question, answer, prediction), "
                     "items all judges judged",
            "jury_accuracy": _mean([float(x) for x in right.values()]), "n": len(right),
            "items_missing_a_verdict": sum(1 for r in records if r["item_id"] not in complete),
            "items_with_jury_failures": failures.get("items", 0),
            "by_category": {c: {"jury_accuracy": _mean([float(x) for x in v]), "n": len(v)}
                            for c, v in sorted(by_category.items())},
        },
        "rule": "correct iff floor(100 * mean(votes)) / 100 >= 0.66 (at least 2 of 3 judges)",
        "judges": sorted(lists),
    }


# --- SGMRI-VQA ---------------------------------------------------------------------------------

_VIDEO_FINAL = re.compile(r"[Tt]herefore,?\s+the\s+final\s+answer\s+is:\s*(.+)")
_FINAL = re.compile(r"[Tt]herefore,?\s+the\s+final\s+answer\s+is:\s*\*{0,2}(\d+)\*{0,2}")
_INTS = re.compile(r"\b(\d+)\b")
_NEGATED = re.compile(r"[Ii]t\s+is\s+not\s+\([A-Da-d]\)[^.]*\.?")
_LETTERS = re.compile(r"\(([A-Da-d])\)")
_LETTER_FALLBACK = re.compile(r"\b([A-Da-d])\b")  # matches the article "a": the released bug
_ANSWER_IS = re.compile(r"(?:my answer is|the answer is)[:\s]*\**\s*(yes|no)\b")
#: voxqa answer type -> SGMRI question type (items not imported from SGMRI-VQA)
QA_TYPES = {"yes_no": "closed_ended", "number": "closed_ended", "choice": "single_choice",
            "multi_choice": "multiple_choice", "text": "open_ended", "boxes": "open_ended"}
#: ``run_evaluation.py`` L184-192: localization questions phrased so are skipped as duplicates
DUPLICATE_LOCALIZATION = "Locate the bounding box"
THRESHOLDS_SGMRI = (0.1, 0.25, 0.5)  # v_score.py L154


def released_answer_text(text: str) -> str:
    """``extract_answer_text`` (``metrics/utils.py`` L319-322): ``<think>`` blocks dropped, stripped."""
    return drop_think_blocks(text, ignore_case=False).strip()  # the released re.sub is case-sensitive


def released_video_answer(prediction: str, qa_type: str) -> str:
    """``_extract_video_answer`` (``run_evaluation.py`` L92-127): the text after "Therefore, the
    final answer is:" on its line, less a final period and markdown bold; a choice's leading
    letter, a closed question's yes/no word; the whole prediction without that phrase."""
    match = _VIDEO_FINAL.search(prediction)
    if not match:
        return prediction
    answer = re.sub(r"\*{1,2}", "", match.group(1).strip().rstrip(".")).strip()
    if qa_type in ("single_choice", "multiple_choice"):
        letter_match = re.match(r"^([A-D])\b", answer)
        if letter_match:
            return letter_match.group(1)
    if qa_type == "closed_ended":
        first_word = answer.split()[0].strip(".,!;:") if answer.split() else answer
        if first_word.lower() in ("yes", "no"):
            return first_word
    return answer


def released_yes_no(text: str) -> bool | None:
    """``parse_yes_no`` (``metrics/utils.py`` L283-307): the first word, then "my/the answer
    is yes|no", then the substrings "yes" and "no" (so "abnormality" and "node" read as no; both
    or neither: None)."""
    text_lower = text.strip().lower()
    first_word = text_lower.split()[0].strip(".,!;:") if text_lower.split() else ""
    if first_word in ("yes", "y"):
        return True
    if first_word in ("no", "n"):
        return False
    m = _ANSWER_IS.search(text_lower)
    if m:
        return m.group(1) == "yes"
    has_yes, has_no = "yes" in text_lower, "no" in text_lower
    if has_yes != has_no:
        return has_yes
    return None


def released_number(text: str) -> int | None:
    """``_extract_number`` (``metrics/a_score.py`` L78-110): the whole text as an int, else the
    number after "Therefore, the final answer is:", else the LAST integer in the text (often a
    frame number), else 0 for "no ... abnormal/finding", "none" or "zero", else None (so "I
    cannot tell" gives no number). A number too long for ``int`` (the released code would
    raise) gives None."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        m = _FINAL.search(text)
        if m:
            return int(m.group(1))
        numbers = _INTS.findall(text)
        if numbers:
            return int(numbers[-1])
    except ValueError:
        return None
    if re.search(r"\bno\b.*\b(?:abnormal|finding|abnormalit)", text, re.IGNORECASE) or \
       re.search(r"\bnone\b", text, re.IGNORECASE) or re.search(r"\bzero\b", text, re.IGNORECASE):
        return 0
    return None


def released_letters(text: str) -> set[str]:
    """``parse_choice_letters`` (``metrics/utils.py`` L263-280): "It is not (X) ..." sentences
    dropped, then ``(A)``-``(D)``, else any standalone letter A-D (the article "a" too)."""
    cleaned = _NEGATED.sub("", text)
    found = _LETTERS.findall(cleaned) or _LETTER_FALLBACK.findall(cleaned)
    return {x.upper() for x in found}


def released_a_score(prediction: str, gold_text: str, qa_type: str) -> float:
    """``compute_a_score`` (``metrics/a_score.py`` L14-171) for closed, single- and
    multiple-choice questions: ``prediction`` and ``gold_text`` as the released code gets them
    (the answer text, the record's ``answer``)."""
    if qa_type == "closed_ended":  # _score_closed_ended L45-75
        pred_yn, gt_yn = released_yes_no(prediction), released_yes_no(gold_text)
        if pred_yn is not None and gt_yn is not None:
            return float(pred_yn == gt_yn)
        gt_num = released_number(gold_text)
        if gt_num is not None:
            pred_num = released_number(prediction)
            return float(pred_num is not None and pred_num == gt_num)
        return 0.0
    pred, gold = released_letters(prediction), released_letters(gold_text)
    if qa_type == "single_choice":  # L113-130: the first letter of each, alphabetically
        return float(bool(pred) and bool(gold) and sorted(pred)[0] == sorted(gold)[0])
    if qa_type in ("multiple_choice", "multi_choice"):  # L133-171: F1 of the letter sets
        tp = len(pred & gold)
        if not gold or not pred or not tp:
            return 0.0
        precision, recall = tp / len(pred), tp / len(gold)
        return 2 * precision * recall / (precision + recall)
    raise ValueError(f"no A-Score for question type {qa_type!r}")


def released_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """``compute_iou`` (``metrics/utils.py`` L240-260) of two ``[x, y, w, h]`` boxes."""
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    inter = max(0, min(ax2, bx2) - max(ax1, bx1)) * max(0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return 0.0 if union <= 0 else inter / union


#: a box as the released V-Score gets it: (1-based frame, or None on a slice record; [x, y, w, h])
Released = tuple[int | None, list[float]]


def released_v_score(gold: Sequence[Released], pred: Sequence[Released]) -> dict[str, Any]:
    """``compute_v_score`` (``metrics/v_score.py`` L87-181): ``v_score`` the mean IoU over gold
    boxes of ONE Hungarian matching (``linear_sum_assignment`` of the negated IoU matrix, boxes
    on different frames at IoU 0 when the gold boxes have frames); ``map`` the mean over IoU 0.1,
    0.25, 0.5 of F1 with true positives that matching's pairs at or above the threshold,
    precision over predicted and recall over gold boxes (``released_matching``). No gold box: ``v_score`` None; no
    predicted box: ``v_score`` 0 and no ``map`` (L94-103)."""
    if not gold:
        return {"v_score": None}
    if not pred:
        return {"v_score": 0.0}
    is_volume = any(f is not None for f, _ in gold)
    m = np.zeros((len(gold), len(pred)))
    for i, (gf, gb) in enumerate(gold):
        for j, (pf, pb) in enumerate(pred):
            if is_volume and gf is not None and pf is not None and gf != pf:
                continue
            m[i, j] = released_iou(gb, pb)
    return released_matching(m)


def released_matching(m: np.ndarray) -> dict[str, Any]:
    """V-Score, P/R/F1 at each threshold and "mAP" of a (gold x predicted) IoU matrix with
    both sides non-empty (``v_score.py`` L105-166)."""
    rows, cols = linear_sum_assignment(-m)
    matched = [float(m[i, j]) for i, j in zip(rows, cols, strict=True)]
    matched += [0.0] * (m.shape[0] - len(matched))
    out: dict[str, Any] = {"v_score": float(np.mean(matched))}
    f1s = []
    n_gold, n_pred = m.shape
    for t in THRESHOLDS_SGMRI:
        tp = sum(1 for i, j in zip(rows, cols, strict=True) if m[i, j] >= t)
        precision, recall = tp / n_pred, tp / n_gold
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
        out |= {f"P@{t}": precision, f"R@{t}": recall, f"F1@{t}": f1s[-1]}
    out["map"] = float(np.mean(f1s))
    return out


def _xywh(box: Sequence[int]) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def released_boxes(value: Any, volume: bool, frame_base: int) -> list[Released] | None:
    """voxqa boxes ({frame, box} in image pixels) as the released V-Score gets them: ``[x, y, w,
    h]``, frames as labelled (``frame_base``) on volume items and None on slice items (their
    ground truth has no frames); None for points, which SGMRI has no form of."""
    if any("box" not in b for b in value):
        return None
    return [(b["frame"] + frame_base if volume else None, _xywh(b["box"])) for b in value]


def _sgmri_task(template: str, task: str, subtask: str) -> str | None:
    if template.startswith("sgmri/"):
        return template.split("/")[1]
    return "diagnosis" if subtask == "diagnosis" else VOXQA_TO_SGMRI.get(task)


def _qa_type(template: str, answer_type: str) -> str | None:
    if template.startswith("sgmri/"):
        return template.split("/")[2]
    return QA_TYPES.get(answer_type)


def gold_answer_text(answer_type: str, gold: Any, published: str | None) -> str:
    """The ``gt_answer`` the released A-Score reads: an imported item's released answer, else
    the answer as an SGMRI record writes it (``export --format sgmri-vqa``)."""
    if published is not None:
        return published
    if answer_type == "yes_no":
        return str(gold).capitalize()
    if answer_type == "choice":
        return marked(gold)
    if answer_type == "multi_choice":
        return ", ".join(marked(i) for i in gold)
    return str(gold)


@dataclass(frozen=True)
class SgmriItem:
    """What the released scoring reads of one scored item."""

    record: Mapping[str, Any]  # results' per-item record (voxqa's scores)
    question: str
    reply: str | None  # the raw reply (None: no reply)
    gold: Any  # the gold value as the model was asked to write it (image pixels, profile text)
    parsed: Any  # voxqa's reading of the reply (None: unparsed)
    published_answer: str | None = None  # an imported SGMRI item's released answer text


def _ar(item: SgmriItem, gpt: GptScore | None) -> float | None:
    """``compute_ar_score`` (``metrics/ar_score.py`` L37-89): 0 for an empty candidate; with a
    GPTScore 0.4 of it and 0.6 shared by the text metrics, else the text metrics alone, equally
    (token F1 stands in for BERTScore); None when the judge's request failed."""
    candidate = released_answer_text(item.reply or "")
    if not candidate:
        return 0.0
    s = item.record["scores"]
    sims = [s.get(k) or 0.0 for k in ("token_f1", "bleu", "rouge_l")]
    if gpt is None or gpt.score is None:
        return None if gpt is not None and gpt.failure else sum(sims) / len(sims)
    return 0.4 * gpt.score + 0.6 * sum(sims) / len(sims)


def _add(task: dict[str, list[float]], groups: dict[str, dict[str, dict[str, list[float]]]],
         keys: Mapping[str, str], metric: str, value: float) -> None:
    """One item's ``metric`` into its task's column and each of its breakdown groups."""
    task[metric].append(value)
    for key, group in keys.items():
        groups[key][group][metric].append(value)


def sgmri_vqa(items: Sequence[SgmriItem], frame_base: int, gpt: Mapping[str, GptScore] | None = None,
              judge: str | None = None, mode: str = "minimal") -> dict[str, Any]:
    """The README table's columns as published, beside voxqa's strict A-Score. ``frame_base``
    is the run's profile's: the V-Score reads SGMRI's 1-based frames, so with 0 its columns are
    not computed. ``gpt``: the GPTScore of the captioning items (``score --judge``). ``mode``:
    the run's prompt mode; the released parsers read every reply as plain text, as SGMRI's
    minimal prompts got it, so a structured run's JSON is noted."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    # run_evaluation.py _compute_breakdowns (L406-438): each metric by dataset, level, qa_type, task
    groups: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    skipped = Counter[str]()
    failures: dict[str, str] = {}
    v_reason = None if frame_base == 1 else (
        f"the run was prompted with frames numbered from {frame_base}, SGMRI-VQA numbers them from 1: "
        "score a run made with --profile sgmri (or PROFILE:frame_base=1)")
    not_text = 0
    for it in items:
        r = it.record
        if it.reply is not None and not isinstance(it.reply, str):  # a stored number or list: no answer
            not_text, it = not_text + 1, replace(it, reply=None)
        if r["failed"]:
            continue
        task = _sgmri_task(r["template"], r["task"], r["subtask"])
        qa_type = _qa_type(r["template"], r["answer_type"])
        if task is None or qa_type is None:
            continue
        if task == "localization" and it.question.startswith(DUPLICATE_LOCALIZATION):
            skipped["duplicate_localization_question"] += 1
            continue
        video = r["level"] == "volume"
        keys = {"dataset": r.get("anatomy") or "unknown", "level": r["level"], "qa_type": qa_type, "task": task}
        add = functools.partial(_add, per[task], groups, keys)
        if r["answer_type"] in ("yes_no", "number", "choice", "multi_choice"):
            prediction = released_answer_text(it.reply or "")
            answer = released_video_answer(prediction, qa_type) if video else prediction
            add("a_score", released_a_score(answer, gold_answer_text(
                r["answer_type"], it.gold, it.published_answer), qa_type))
            per[task]["voxqa_a_score"].append(r["scores"].get("a_score") or 0.0)
        elif r["answer_type"] == "boxes" and v_reason is None:
            gold = released_boxes(it.gold, video, frame_base)
            pred = released_boxes(it.parsed or [], video, frame_base) if r["parse_ok"] else []
            if gold is None or pred is None:
                skipped["point_answers"] += 1
                continue
            vs = released_v_score(gold, pred)
            if vs["v_score"] is not None:
                add("v_score", vs["v_score"])
            if "map" in vs:  # an item without a predicted box has no "mAP" (run_evaluation.py L326-338)
                add("map", vs["map"])
        elif r["answer_type"] == "text" and task == "captioning":
            g = gpt.get(r["item_id"]) if gpt is not None else None
            ar = _ar(it, g)
            if ar is None:
                failures[r["item_id"]] = g.failure if g is not None and g.failure else "no AR-Score"
                continue
            add("ar_score", ar)
    columns = {}
    for name, (task, metric) in SGMRI_COLUMNS.items():
        v = _mean(per[task][metric]) if task in per else None
        columns[name] = None if v is None else 100 * v
    shown = [v for v in columns.values() if v is not None]
    block: dict[str, Any] = {
        "label": "as published: the released SGMRI-VQA scoring re-enacted (A-Score parsers, one Hungarian "
                 "matching for V-Score and 'mAP', AR-Score 0.4 GPTScore + 0.6 text metrics with token F1 "
                 "standing in for BERTScore, the text metrics alone without --judge); x100",
        "columns": columns,
        "avg": _mean(shown),
        "avg_of": [k for k, v in columns.items() if v is not None],
        "map": {t: 100 * m for t, v in per.items() if (m := _mean(v["map"])) is not None},
        "map_label": "SGMRI's 'mAP': mean F1 over IoU 0.1/0.25/0.5 of the V-Score's Hungarian pairs, over "
                     "items with a predicted box (not an average precision)",
        "breakdowns": {key: {g: {m: {"mean": 100 * sum(v) / len(v), "count": len(v)} for m, v in sorted(ms.items())}
                             for g, ms in sorted(by.items())} for key, by in sorted(groups.items())},
        "frame_base": frame_base,
        "gptscore_judge": judge,
    }
    if mode != "minimal":
        block["note"] = (f"the run's prompt mode is {mode}; SGMRI-VQA's paper results used minimal prompts "
                         "(metrics/utils.py L310-316) and the released parsers read a JSON reply as plain text")
    if v_reason is not None:
        block["not_computed"] = {"Localization (V)": v_reason, "map": v_reason}
    if skipped:
        block["skipped"] = dict(sorted(skipped.items()))
    if failures:
        block["ar_failures"] = dict(sorted(failures.items()))
    return {
        "as_published": block,
        "voxqa": {
            "label": "voxqa: strict answer parsing (a_score); see results.json for the rest",
            "a_score": {t: 100 * m for t, v in per.items() if (m := _mean(v["voxqa_a_score"])) is not None},
        },
        "n": {t: {k: len(v) for k, v in m.items()} for t, m in sorted(per.items())},
    } | ({"replies_not_text": not_text} if not_text else {})


def sgmri_items(sr: ScoredRun) -> list[SgmriItem]:
    """The scored run's items as the released scoring reads them."""
    out = []
    for it, gold, r in zip(sr.items, sr.golds, sr.records, strict=True):
        pred = sr.preds.get(it.id) or {}
        published = it.answer_text if it.template.startswith("sgmri/") else None
        out.append(SgmriItem(r, it.question, pred.get("raw"), gold, pred.get("parsed"), published))
    return out


def sgmri_gptscores(items: Sequence[SgmriItem], jury: Jury) -> dict[str, GptScore]:
    """GPTScores of the captioning items whose candidate is not empty (the jury's first judge)."""
    cases = {}
    for it in items:
        r = it.record
        if (not r["failed"] and r["answer_type"] == "text"
                and _sgmri_task(r["template"], r["task"], r["subtask"]) == "captioning"):
            candidate = released_answer_text(it.reply or "")
            if candidate:
                cases[r["item_id"]] = (str(it.gold).strip(), candidate)
    return asyncio.run(GptScorer(jury).scores(cases)) if cases else {}


def as_published(name: str, sr: ScoredRun, jury: Jury | None = None) -> dict[str, Any]:
    """The ``as_published`` block of results.json for benchmark ``name``; ``jury``: its first
    judge rates SGMRI-VQA's captions with the released GPTScore protocol."""
    if name == "ct-spatialvqa":
        return ct_spatialvqa(sr.run, sr.records)
    if name == "sgmri-vqa":
        items = sgmri_items(sr)
        gpt = sgmri_gptscores(items, jury) if jury is not None else None
        return sgmri_vqa(items, get_profile(sr.identity["profile"]).frame_base, gpt,
                         jury.judges[0].spec if jury is not None else None, sr.identity["mode"])
    raise InputError(f"unknown benchmark {name!r} for --as-published; known: {', '.join(NAMES)}")
