"""The shared sample reports (English and German) for the TotalSegmentator CT and MR: every
expected verdict of ``reference/reports/expected_verdicts.jsonl`` is reproduced by the rule
extractor, and a report build makes items only from supported claims.

The reference folder is VOXQA_TEST_REFERENCE, else ``reference/`` beside VOXQA_TEST_DATA
(../shared/reference next to ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxqa.build import build_reports
from voxqa.dataset.folder import read_items
from voxqa.radreports.check import check_reports
from voxqa.radreports.claims import combine
from voxqa.radreports.extract_rules import RuleExtractor
from voxqa.sources.segmentation import read_studies_csv

pytestmark = pytest.mark.realdata



def test_every_expected_verdict_reproduced(reports_dir: Path) -> None:
    claims = check_reports(read_studies_csv(reports_dir / "studies.csv"), reports_dir / "reports.jsonl",
                           RuleExtractor())
    expected = [json.loads(line) for line in (reports_dir / "expected_verdicts.jsonl").read_text().splitlines()]
    got = []
    for e in expected:
        mine = [c.verdict for c in claims if c.study_id == e["study_id"] and c.sentence == e["sentence"]]
        got.append((e["study_id"], e["sentence"], combine(mine) if mine else "no claim"))
    assert got == [(e["study_id"], e["sentence"], e["verdict"]) for e in expected]
    assert {e["study_id"] for e in expected} >= {"ts_ct_en", "ts_ct_de", "ts_mr_en"}


def test_sample_build_items_from_supported_claims(reports_dir: Path, tmp_path: Path) -> None:
    manifest = build_reports(read_studies_csv(reports_dir / "studies.csv"), reports_dir / "reports.jsonl",
                             tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    assert manifest["claims"] == {"total": 27, "supported": 15, "contradicted": 9, "unverifiable": 3}
    supported = {(c["study_id"], c["sentence"]) for c in map(json.loads, (tmp_path / "ds" / "claims.jsonl").open())
                 if c["verdict"] == "supported"}
    spatial = [it for it in read_items(tmp_path / "ds") if it.task == "spatial"]
    assert spatial and {it.language for it in spatial} == {"en", "de"}
    for it in spatial:
        assert (it.study_id.removesuffix(".mirrored"), it.reasoning.split('"')[1]) in supported
    assert json.loads((tmp_path / "ds" / "audit.json").read_text())["flagged"] == []


def test_caption_grounding_has_one_gold_per_prompt(reports_dir: Path, tmp_path: Path) -> None:
    """"Caption this image and detect keywords." named neither sentence nor keywords: on the
    shared reports 80 prompts (study, frame, question) carried 2-7 different box sets, so the
    best possible exact match was 0.307. The question now states the sentence and its keywords."""
    build_reports(read_studies_csv(reports_dir / "studies.csv"), reports_dir / "reports.jsonl",
                  tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    grounding = [it for it in read_items(tmp_path / "ds") if it.subtask == "report_grounding"]
    assert len(grounding) > 100 and {it.language for it in grounding} == {"en", "de"}
    golds: dict[tuple, set[str]] = {}
    for it in grounding:
        golds.setdefault((it.study_id, tuple(it.frames), it.question), set()).add(it.answer.model_dump_json())
    assert [g for g in golds.values() if len(g) > 1] == []
    rows = {r["item_id"]: r for r in map(json.loads, (tmp_path / "ds" / "grounding.jsonl").open())}
    for it in grounding:
        assert f'"{rows[it.id]["sentence"]}"' in it.question  # the sentence asked about, quoted


# Side claims about structures whose names carry a side, and a left/right relation, in both languages.
SIDED = {"en": " The left kidney lies on the left side. The right kidney is located on the right. "
               "The spleen lies to the left of the aorta. The left kidney lies to the left of the aorta.",
         "de": " Die linke Niere liegt links. Die rechte Niere liegt rechts. Die Vena cava inferior liegt rechts der Aorta."}
_ASKS = r"right or left side|rechten oder linken Körperseite|to the right or to the left of|rechts oder links"
_SIDE = r"\b(left|right|linke\w*|rechte\w*|links|rechts)\b"


def test_report_side_questions_are_counterfactual_pairs(reports_dir: Path, tmp_path: Path) -> None:
    """No side question names its structure's side; every left/right item has a mirrored twin
    with the same text and the answer from the twin's geometry: the blind learner gets no
    pair right, the gold (the oracle) every pair."""
    import asyncio
    import re

    from voxqa.eval.models.baselines import Prior
    from voxqa.eval.parse import parse_answer

    rows = [json.loads(line) for line in (reports_dir / "reports.jsonl").read_text().splitlines()]
    reports = tmp_path / "reports.jsonl"
    reports.write_text("".join(json.dumps({**r, "text": r["text"] + SIDED[r["language"]]}) + "\n" for r in rows))
    build_reports(read_studies_csv(reports_dir / "studies.csv"), reports, tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    items = read_items(tmp_path / "ds")
    sides = [it for it in items if it.subtask == "report_laterality"]
    assert {it.language for it in sides} == {"en", "de"}
    assert [it.question for it in sides if re.search(_SIDE, re.sub(_ASKS, "", it.question))] == []
    pairs: dict[str, list] = {}
    for it in sides:
        assert it.pair_id is not None and not it.prior_answerable
        pairs.setdefault(it.pair_id, []).append(it)
    assert len(pairs) >= 7 and all(len(p) == 2 for p in pairs.values())
    for a, b in pairs.values():
        assert a.question == b.question and a.answer != b.answer
        assert {a.study_id, b.study_id} == {a.study_id.removesuffix(".mirrored"), a.study_id.removesuffix(".mirrored") + ".mirrored"}
    prior = Prior([it for it in items if it.split == "train"])
    closed = [p for p in pairs.values() if p[0].answer.type == "choice"]
    both = 0
    for pair in closed:
        right = [parse_answer(asyncio.run(prior.answer(None, it)), it).value == it.answer.value  # type: ignore[arg-type]
                 for it in pair]
        both += all(right)
    assert both == 0
    gold = [all(parse_answer(it.answer_text, it).value == it.answer.value for it in pair) for pair in closed]
    assert all(gold)


def test_mirrored_control_flips_report_items_by_meaning(reports_dir: Path, tmp_path: Path) -> None:
    """A perfect reader of the left-right flipped image answers each side question as the
    mirrored twin's gold (options "right"/"left" or "rechts"/"links"), and a question about
    sided structures as the same study's question about their counterparts: the mirrored
    control's gold is that answer for every report item."""
    from voxqa.eval.controls import mirror_item
    from voxqa.radreports.lexicon import mirror_sides

    rows = [json.loads(line) for line in (reports_dir / "reports.jsonl").read_text().splitlines()]
    reports = tmp_path / "reports.jsonl"
    reports.write_text("".join(json.dumps({**r, "text": r["text"] + SIDED[r["language"]]}) + "\n" for r in rows))
    build_reports(read_studies_csv(reports_dir / "studies.csv"), reports, tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    items = [it for it in read_items(tmp_path / "ds") if it.task == "spatial"]
    twin = {(it.pair_id, it.variant): it for it in items if it.pair_id}
    paired = [it for it in items if it.pair_id]
    assert {it.language for it in paired} == {"en", "de"} and {it.answer.type for it in paired} == {"choice", "text"}
    for it in paired:  # the flipped image is the twin: its answer, by meaning
        other = twin[it.pair_id, "mirrored" if it.variant == "original" else "original"]
        seen = mirror_item(it)
        assert seen.options == it.options and mirror_sides(seen.question) == it.question
        assert seen.answer == other.answer and seen.answer_text == other.answer_text, it.id
    by_question = {(it.study_id, it.question): it for it in items}
    sided = [it for it in items if not it.pair_id and mirror_sides(it.question) != it.question]
    assert sided  # "the left kidney ... the left lung lower lobe" reads "the right kidney ..."
    for it in sided:
        seen = mirror_item(it)
        counterpart = by_question.get((it.study_id, seen.question))
        assert counterpart is None or counterpart.answer == seen.answer
        assert seen.answer == it.answer or it.answer.type == "text"  # a text answer's side words swap
    assert any((it.study_id, mirror_item(it).question) in by_question for it in sided)


def test_a_fact_stated_twice_is_asked_once(reports_dir: Path, tmp_path: Path) -> None:
    """A report that repeats a sentence (the same supported claim twice) builds: the fact is
    asked once, ids stay unique, and the repeat is counted in the build report (it used to
    stop the build with duplicate item ids)."""
    rows = [json.loads(line) for line in (reports_dir / "reports.jsonl").read_text().splitlines()]
    again = " The inferior vena cava lies to the right of the aorta."
    reports = tmp_path / "reports.jsonl"
    reports.write_text("".join(json.dumps({**r, "text": r["text"] + (again if r["study_id"] == "ts_mr_en" else "")})
                               + "\n" for r in rows))
    studies = read_studies_csv(reports_dir / "studies.csv")
    build_reports(studies, reports_dir / "reports.jsonl", tmp_path / "once", fractions=(1.0, 0.0, 0.0))
    build_reports(studies, reports, tmp_path / "twice", fractions=(1.0, 0.0, 0.0))
    once, twice = read_items(tmp_path / "once"), read_items(tmp_path / "twice")
    assert len({it.id for it in twice}) == len(twice)
    assert {it.id for it in twice if it.task != "captioning"} == {it.id for it in once if it.task != "captioning"}
    report = json.loads((tmp_path / "twice" / "build_report.json").read_text())
    assert "the report states a fact already asked" in json.dumps(report)


def test_every_yes_no_question_text_is_answered_yes_as_often_as_no(reports_dir: Path, tmp_path: Path) -> None:
    """Balance holds per question text within each split, so the language a question is
    written in gives nothing away ("Ist das Rückenmark ...?" was always "no": spinal cord was
    balanced over English and German together)."""
    from collections import Counter

    build_reports(read_studies_csv(reports_dir / "studies.csv"), reports_dir / "reports.jsonl",
                  tmp_path / "ds")
    yes_no = [it for it in read_items(tmp_path / "ds") if it.answer.type == "yes_no"]
    assert len(yes_no) >= 20
    by_text = Counter((it.split, it.template, it.question, it.answer.value) for it in yes_no)
    unequal = {k[:3] for k in by_text if by_text[(*k[:3], "yes")] != by_text[(*k[:3], "no")]}
    assert unequal == set()


def test_keyword_swapped_model_scored_by_giou_on_the_shared_reports(reports_dir: Path, tmp_path: Path) -> None:
    """The 384 report-grounding items of the shared reports (126 with two or more keywords): a
    model that puts every keyword on another keyword's box has perfect boxes (mean IoU, V-score
    and box F1@0.5 all 1.000); scored by keyword-box pairs it gets G-IoU 0.675 (the hand
    computation from the gold boxes) and keyword F1@0.5 0.506, while the oracle gets 1."""
    from helpers import run_keyword_models, swapped_giou

    from voxqa.render import RenderSettings, render_dataset

    ds = tmp_path / "ds"
    build_reports(read_studies_csv(reports_dir / "studies.csv"), reports_dir / "reports.jsonl", ds,
                  fractions=(1.0, 0.0, 0.0))
    render_dataset(ds, RenderSettings(size=None))
    grounding = [it for it in read_items(ds) if it.subtask == "report_grounding"]
    assert (len(grounding), sum(len(it.answer.value) >= 2 for it in grounding)) == (384, 126)
    results = run_keyword_models(ds, tmp_path)
    got = {name: {k: m["mean"] for k, m in r["by"]["task/subtask"]["localization/report_grounding"]["metrics"].items()}
           for name, r in results.items()}
    assert all(got["oracle"][k] == 1.0 for k in ("g_iou", "keyword_f1", "keyword_f1@0.5", "miou"))
    swapped = got["swapped"]
    assert swapped["miou"] == swapped["v_score"] == swapped["f1@0.5"] == 1.0
    assert swapped["g_iou"] == pytest.approx(swapped_giou(grounding)) and round(swapped["g_iou"], 3) == 0.675
    assert round(swapped["keyword_f1@0.5"], 3) == 0.506 and swapped["keyword_f1"] == 1.0


# Sentences about structures the lexicon read before only as "no claim" (README of the
# TotalSegmentator data lists the labels present): (study, sentence, verdict, why).
MORE = [
    ("ts_ct_en", "The right humerus is visible.", "unverifiable", "no humerus label in the CT's field of view"),
    ("ts_ct_en", "The 11th left rib is seen.", "supported", "rib_left_11 (label 102) is segmented"),
    ("ts_ct_en", "The L1 vertebra is visualized.", "supported", "vertebrae_L1 (label 31) is segmented"),
    ("ts_ct_en", "The L5 vertebra is seen.", "unverifiable", "L5 is below the 30 slices"),
    ("ts_ct_en", "The portal vein is identified.", "supported", "portal_vein_and_splenic_vein (64) is segmented"),
    ("ts_ct_en", "Both iliopsoas muscles are visible.", "supported", "iliopsoas_left (88) and _right (89)"),
    ("ts_ct_en", "The left kidney lies lateral to the left psoas muscle.", "supported",
     "kidney_left centroid 67 mm from the midline, iliopsoas_left 29 mm"),
    ("ts_ct_de", "Die 11. Rippe links ist abgebildet.", "supported", "rib_left_11; '11.' does not end the sentence"),
    ("ts_ct_de", "LWK 1 ist abgebildet.", "supported", "vertebrae_L1"),
    ("ts_ct_de", "Der rechte Oberarmknochen ist abgebildet.", "unverifiable", "no humerus label"),
    ("ts_mr_en", "The intervertebral discs are visible.", "supported", "intervertebral_discs (MR label 20)"),
    ("ts_mr_en", "The L1 vertebra is seen.", "unverifiable", "the MR task has one 'vertebrae' label, no levels"),
    ("ts_mr_en", "The aorta lies anterior to the vertebrae.", "supported",
     "aorta y 1..28 mm, vertebrae y -41..1 mm"),
]
NO_CLAIM = {"ts_ct_en": "No free fluid.", "ts_ct_de": "Keine freie Flüssigkeit.", "ts_mr_en": "No suspicious mass."}


def test_more_structures_and_sentences_without_claims(reports_dir: Path, tmp_path: Path) -> None:
    """Humerus, ribs, vertebrae, psoas, portal vein, discs in English and German get claims
    with the verdicts the masks give; the shared reports' own 25 sentences all still give
    claims, and each added sentence without one is counted by reason in the build report."""
    rows = [json.loads(line) for line in (reports_dir / "reports.jsonl").read_text().splitlines()]
    extra = {sid: " ".join([s for st, s, _, _ in MORE if st == sid] + [NO_CLAIM[sid]]) for sid in NO_CLAIM}
    reports = tmp_path / "reports.jsonl"
    reports.write_text("".join(json.dumps({**r, "text": r["text"] + " " + extra[r["study_id"]]}) + "\n" for r in rows))
    manifest = build_reports(read_studies_csv(reports_dir / "studies.csv"), reports, tmp_path / "ds",
                             fractions=(1.0, 0.0, 0.0))
    claims = [json.loads(line) for line in (tmp_path / "ds" / "claims.jsonl").open()]
    got = [(sid, s, combine(c["verdict"] for c in claims if c["study_id"] == sid and c["sentence"] == s))
           for sid, s, _, _ in MORE]
    assert got == [(sid, s, v) for sid, s, v, _ in MORE]
    assert manifest["sentences"] == {"total": 25 + len(MORE) + 3,
                                     "without_claim": {"lesion_or_midline_only": 1, "no_structure_word": 2}}
    info = json.loads((tmp_path / "ds" / "build_report.json").read_text())["info"]
    assert {e["sentence"] for e in info["sentence_without_claim_no_structure_word"]["examples"]} == {
        "No free fluid.", "Keine freie Flüssigkeit."}
