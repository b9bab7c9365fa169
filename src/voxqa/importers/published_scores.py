"""`voxqa score RUN --as-published NAME`: a benchmark's own headline numbers, computed as the
benchmark computes them, next to voxqa's corrected ones.

Researchers must quote the published metric to compare with a paper, and should know how far
it is from a sound one; both are reported, each labelled. Every difference is listed in
docs/importers.md (the as-published vs voxqa table).

* ``ct-spatialvqa``: jury accuracy, correct iff ``floor(100 * mean(votes)) / 100 >= 0.66``
  (``build_correctness_matrix.py`` + ``compute_llm_jury_accuracy.py``: 2 of 3 judges).
  *As published*: the judges' released verdict lists combined by list position, truncated to
  the shortest (their L219-231). *Aligned* (voxqa): each item's verdicts as matched by
  ``import ct-spatialvqa-run`` (question, answer, prediction), over the items every judge
  judged; also per category, an item counting in each of its categories.
* ``sgmri-vqa``: A-Score, V-Score, "mAP" and AR-Score per SGMRI task, x100, and "Avg", the
  unweighted mean of the task columns (README table). *As published*, A-Score re-parses the
  reply with the released rules (``metrics/utils.py``: yes before the substring "no", the
  letter fallback ``\\b[A-Da-d]\\b``, the last number in the text); voxqa's ``a_score`` is the
  strict parse. V-Score is the mean IoU over ground-truth boxes after Hungarian matching within
  frames in both. "mAP" is the mean over IoU 0.1/0.25/0.5 of each item's box F1 (not an
  average precision; voxqa reports ``ap@0.5``). AR-Score is 0.4 judge + 0.2 each of
  BERTScore-F1, BLEU, ROUGE-L; voxqa never downloads BERTScore's model, so token F1 stands in
  (labelled), and without a jury the three text metrics are averaged equally, as the released
  code does when its API key is missing.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from voxqa.answers.options import letter
from voxqa.errors import InputError
from voxqa.eval.jury import CACHE
from voxqa.eval.metrics.boxes import THRESHOLDS

#: Benchmarks whose published metrics ``score --as-published`` computes.
NAMES = ("sgmri-vqa", "ct-spatialvqa")
JURY_THRESHOLD = 0.66
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


def published_jury_correct(votes: Sequence[bool]) -> bool:
    """The released rule: the average vote rounded down to hundredths, at least 0.66."""
    return math.floor(100 * sum(votes) / len(votes)) / 100 >= JURY_THRESHOLD


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def ct_spatialvqa(run: Path, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Jury accuracy as published (positional) and aligned, from an imported released run."""
    from voxqa.importers.ct_spatialvqa import CATEGORY_SEPARATOR, PUBLISHED_VERDICTS

    released = run / PUBLISHED_VERDICTS
    if not released.is_file():
        raise InputError(f"{run}: no {PUBLISHED_VERDICTS}; --as-published ct-spatialvqa scores a run "
                         "imported with `voxqa import ct-spatialvqa-run`")
    lists: dict[str, list[bool]] = orjson.loads(released.read_bytes())
    n_pos = min(len(v) for v in lists.values())
    positional = [published_jury_correct([lists[j][i] for j in sorted(lists)]) for i in range(n_pos)]

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
        },
        "voxqa": {
            "label": "aligned: each item's own verdicts (matched by question, answer, prediction), "
                     "items all judges judged",
            "jury_accuracy": _mean([float(x) for x in right.values()]), "n": len(right),
            "items_missing_a_verdict": sum(1 for r in records if r["item_id"] not in complete),
            "by_category": {c: {"jury_accuracy": _mean([float(x) for x in v]), "n": len(v)}
                            for c, v in sorted(by_category.items())},
        },
        "rule": "correct iff floor(100 * mean(votes)) / 100 >= 0.66 (at least 2 of 3 judges)",
        "judges": sorted(lists),
    }


# --- SGMRI-VQA --------------------------------------------------------------------------------

_LETTERS = re.compile(r"\(([A-Da-d])\)")
_LETTER_FALLBACK = re.compile(r"\b([A-Da-d])\b")  # matches the article "a": the released bug
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FINAL = re.compile(r"Therefore, the final answer is:\s*(-?\d+)")


def _reply_answer(raw: str) -> str:
    """The reply's ``answer`` when it is SGMRI's JSON contract, else the whole text (also for
    JSON nested past the reader's depth)."""
    try:
        value = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return raw
    if isinstance(value, dict) and "answer" in value:
        return str(value["answer"])
    return raw


def released_yes_no(text: str) -> bool | None:
    """``parse_yes_no`` as released: "yes" first, then the substring "no" (so "abnormality" and
    "node" read as no)."""
    t = text.lower()
    if "yes" in t:
        return True
    if "no" in t:
        return False
    return None


def released_number(text: str) -> float:
    """``_extract_number`` as released: a bare number, "Therefore, the final answer is: N", the
    last number in the text, else 0 for no/none/zero."""
    t = text.strip()
    if _NUMBER.fullmatch(t):
        return float(t)
    final = _FINAL.search(t)
    if final:
        return float(final.group(1))
    numbers = _NUMBER.findall(t)
    if numbers:
        return float(numbers[-1])
    return 0.0


def released_letters(text: str) -> list[str]:
    found = _LETTERS.findall(text) or _LETTER_FALLBACK.findall(text)
    return sorted({x.upper() for x in found})


def released_a_score(reply: str, answer_type: str, gold: Any) -> float:
    """One item's A-Score with the released parsing rules (``a_score.py``)."""
    text = _reply_answer(reply)
    if answer_type == "yes_no":
        said = released_yes_no(text)
        return float(said is not None and said == (gold == "yes"))
    if answer_type == "number":
        return float(released_number(text) == float(gold))
    letters = released_letters(text)
    if answer_type == "choice":
        return float(bool(letters) and letters[0] == letter(gold))
    if answer_type == "multi_choice":
        g = {letter(i) for i in gold}
        p = set(letters)
        hit = len(g & p)
        return 2 * hit / (len(g) + len(p)) if hit else 0.0
    raise ValueError(f"no A-Score for answer type {answer_type!r}")


def mean_f1(scores: Mapping[str, float | None]) -> float:
    """SGMRI's "mAP": the item's box F1 averaged over IoU 0.1, 0.25 and 0.5."""
    f1 = []
    for t in THRESHOLDS:
        tp, fp, fn = (scores.get(f"{k}@{t}") or 0.0 for k in ("tp", "fp", "fn"))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp else float(not (fp or fn)))
    return sum(f1) / len(f1)


def _sgmri_task(template: str, task: str, subtask: str) -> str | None:
    if template.startswith("sgmri/"):
        return template.split("/")[1]
    return "diagnosis" if subtask == "diagnosis" else VOXQA_TO_SGMRI.get(task)


def sgmri_vqa(records: Sequence[Mapping[str, Any]], replies: Mapping[str, str | None],
              golds: Mapping[str, Any]) -> dict[str, Any]:
    """The README table's columns as published, beside voxqa's strict A-Score."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    not_text = 0
    for r in records:
        if r["failed"]:
            continue
        task = _sgmri_task(r["template"], r["task"], r["subtask"])
        if task is None:
            continue
        s = r["scores"]
        if r["answer_type"] in ("yes_no", "number", "choice", "multi_choice"):
            reply = replies.get(r["item_id"])
            if reply is not None and not isinstance(reply, str):  # a stored number or list: no answer
                not_text, reply = not_text + 1, None
            per[task]["a_score"].append(released_a_score(reply, r["answer_type"], golds[r["item_id"]])
                                        if reply is not None else 0.0)
            per[task]["voxqa_a_score"].append(s.get("a_score") or 0.0)
        elif r["answer_type"] == "boxes" and "v_score" in s:
            per[task]["v_score"].append(s["v_score"] or 0.0)
            per[task]["map"].append(mean_f1(s))
        elif r["answer_type"] == "text":
            sims = [s.get(k) or 0.0 for k in ("token_f1", "bleu", "rouge_l")]
            ar = 0.4 * s["judge"] + 0.2 * sum(sims) if s.get("judge") is not None else sum(sims) / 3
            per[task]["ar_score"].append(ar)
    columns = {}
    for name, (task, metric) in SGMRI_COLUMNS.items():
        v = _mean(per[task][metric]) if task in per else None
        columns[name] = None if v is None else 100 * v
    shown = [v for v in columns.values() if v is not None]
    return {
        "as_published": {
            "label": "as published: A-Score with the released parsing rules, V-Score over ground-truth "
                     "boxes, AR-Score 0.4 judge + 0.2 each of BERTScore-F1 (token F1 stands in), BLEU, "
                     "ROUGE-L (equal thirds without a jury); x100",
            "columns": columns,
            "avg": _mean(shown),
            "avg_of": [k for k, v in columns.items() if v is not None],
            "map": {t: 100 * m for t, v in per.items() if (m := _mean(v["map"])) is not None},
            "map_label": "SGMRI's 'mAP': mean F1 over IoU 0.1/0.25/0.5 (not an average precision)",
        },
        "voxqa": {
            "label": "voxqa: strict answer parsing (a_score), same V-Score; see results.json for the rest",
            "a_score": {t: 100 * m for t, v in per.items() if (m := _mean(v["voxqa_a_score"])) is not None},
        },
        "n": {t: {k: len(v) for k, v in m.items()} for t, m in sorted(per.items())},
    } | ({"replies_not_text": not_text} if not_text else {})


def as_published(name: str, run: Path, records: Sequence[Mapping[str, Any]],
                 replies: Mapping[str, str | None], golds: Mapping[str, Any]) -> dict[str, Any]:
    """The ``as_published`` block of results.json for benchmark ``name``."""
    if name == "ct-spatialvqa":
        return ct_spatialvqa(run, records)
    if name == "sgmri-vqa":
        return sgmri_vqa(records, replies, golds)
    raise InputError(f"unknown benchmark {name!r} for --as-published; known: {', '.join(NAMES)}")
