"""Report claims: extraction (English, German), verification against the segmentation
phantom, items from supported claims only, per-frame grounding boxes, the RadGrounder
target round trip, and the CLI. Reports are written here for the phantom's known anatomy
(voxqa.phantom.ORGANS): liver right, spleen left, aorta anterior to the spinal cord, a
lesion in the liver, no gallbladder voxels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from voxqa.anatomy.frames import voxel_box_to_frame_box
from voxqa.boxes.profiles import PROFILES
from voxqa.build import build_reports
from voxqa.cli import app
from voxqa.boxes.geometry import iou
from voxqa.dataset.folder import read_items
from voxqa.eval.metrics.grounding import Grounded, grounding_scores, match_keywords
from voxqa.eval.parse import parse_answer
from voxqa.phantom import write_segmentation_phantom
from voxqa.render import RenderSettings, render_dataset
from voxqa.radreports.check import check_reports
from voxqa.radreports.claims import combine
from voxqa.radreports.extract_rules import RuleExtractor, sentences
from voxqa.radreports.radgrounder import CLASS_IDS as RADGROUNDER_IDS
from voxqa.schema import Item
from voxqa.sources.segmentation import SegSpec

EN = ("The liver lies in the right upper abdomen. The spleen is located on the right. "
      "The aorta lies anterior to the spinal cord. Status post cholecystectomy. Status post splenectomy. "
      "The stomach lies superior to the left kidney. There is a lesion in the liver. "
      "The liver is larger than the spleen.")
EN_VERDICTS = ["supported", "contradicted", "supported", "unverifiable", "contradicted", "supported",
               "supported", "supported"]
DE = ("Die Milz liegt links. Die rechte Niere liegt kaudal der Leber. Z.n. Nephrektomie links. "
      "Die Aorta liegt ventral des Rückenmarks.")
DE_VERDICTS = ["supported", "unverifiable", "contradicted", "supported"]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The phantom, a copy without its left kidney, studies.csv and reports.jsonl."""
    root = tmp_path_factory.mktemp("reports")
    src = write_segmentation_phantom(root / "src")
    names = json.loads(src["label_names"].read_text())
    img = nib.load(src["labels"])
    labels = np.asarray(img.dataobj)
    left = int(next(k for k, v in names.items() if v == "kidney_left"))
    nib.save(nib.Nifti1Image(np.where(labels == left, 0, labels).astype(labels.dtype), img.affine),
             root / "no_left_kidney.nii.gz")
    specs = [SegSpec(study_id=s, patient_id=p, image=src["image"], labels=lab, label_names=src["label_names"],
                     modality="CT")
             for s, p, lab in (("en", "p1", src["labels"]), ("de", "p1", src["labels"]),
                               ("nx", "p2", root / "no_left_kidney.nii.gz"), ("ok", "p3", src["labels"]))]
    reports = root / "reports.jsonl"
    rows = [{"study_id": "en", "language": "en", "text": EN}, {"study_id": "de", "language": "de", "text": DE},
            {"study_id": "nx", "language": "en",
             "findings": "Status post left nephrectomy. Left renal cyst.", "impression": "No spleen."},
            {"study_id": "ok", "language": "en",
             "findings": "The aorta lies anterior to the spinal cord. Both kidneys are present."}]
    reports.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"root": root, "src": src, "specs": specs, "reports": reports, "labels": labels,
            "names": {int(k): v for k, v in names.items()}}


@pytest.fixture(scope="module")
def built(phantom: dict) -> Path:
    out = phantom["root"] / "ds"
    build_reports(phantom["specs"], phantom["reports"], out, fractions=(1.0, 0.0, 0.0))
    return out


def _sentence_verdicts(claims, text: str) -> list[str]:
    spans = sentences(text)
    return [combine(c.verdict for c in claims if c.sentence == text[a:b]) for a, b in spans]


def test_sentences_keep_abbreviations_and_spans() -> None:
    text = "Z.n. Nephrektomie links.  Die Milz liegt rechts! e.g. this stays? End"
    assert [text[a:b] for a, b in sentences(text)] == [
        "Z.n. Nephrektomie links.", "Die Milz liegt rechts!", "e.g. this stays?", "End"]


def test_rule_extraction_english_and_german() -> None:
    ex = RuleExtractor()
    got = [(c.structures, c.relation, c.side, c.polarity) for c in ex.extract(
        "s", "The lower lobes of both lungs lie above the kidneys. No left renal cyst. "
             "The spleen is smaller than the liver.", "en")]
    assert got == [
        (["lung_lower_lobe_left", "kidney_left"], "superior", None, "positive"),
        (["lung_lower_lobe_right", "kidney_right"], "superior", None, "positive"),
        (["lesion", "kidney_left"], "within", None, "negative"),
        (["liver", "spleen"], "larger", None, "positive")]
    got = [(c.structures, c.relation, c.side, c.polarity) for c in ex.extract(
        "s", "Z.n. Nephrektomie rechts. Keine Raumforderung der Leber. Die Gallenblase liegt "
             "unterhalb der Leber, aber die Milz liegt links.", "de")]
    assert got == [
        (["kidney_right"], "present", None, "negative"),  # "no mass of the liver" is no absence claim
        (["gallbladder", "liver"], "inferior", None, "positive"),
        (["spleen"], "side", "left", "positive")]


def test_claims_verified_on_the_phantom(phantom: dict, built: Path) -> None:
    claims = check_reports(phantom["specs"], phantom["reports"], RuleExtractor())
    assert _sentence_verdicts([c for c in claims if c.study_id == "en"], EN) == EN_VERDICTS
    assert _sentence_verdicts([c for c in claims if c.study_id == "de"], DE) == DE_VERDICTS
    nx = {c.sentence: c for c in claims if c.study_id == "nx"}
    assert nx["Status post left nephrectomy."].verdict == "supported"  # the right kidney is there
    assert nx["Left renal cyst."].verdict == "contradicted"  # no left kidney to hold it
    assert nx["No spleen."].verdict == "contradicted"
    by_text = {(c.study_id, c.sentence): c for c in claims}
    aorta = by_text["en", "The aorta lies anterior to the spinal cord."]
    assert aorta.geometry["structures"]["aorta"]["centroid_mm"][1] > aorta.geometry["structures"]["spinal_cord"]["max_mm"][1]
    written = [json.loads(line) for line in (built / "claims.jsonl").read_text().splitlines()]
    assert [(c["study_id"], c["sentence"], c["verdict"], c["reason"]) for c in written] == [
        (c.study_id, c.sentence, c.verdict, c.reason) for c in claims]
    report = json.loads((built / "build_report.json").read_text())
    assert "claim_contradicted" in json.dumps(report)


def test_items_only_from_supported_claims(built: Path) -> None:
    claims = [json.loads(line) for line in (built / "claims.jsonl").read_text().splitlines()]
    supported = {c["sentence"] for c in claims if c["verdict"] == "supported"}
    items = read_items(built)
    spatial = [it for it in items if it.task == "spatial" or it.subtask == "report_presence"]
    assert spatial
    for it in spatial:
        sentence = it.reasoning.split('"')[1]
        assert sentence in supported, it.id
        assert it.category and it.language in ("en", "de")
    lesion = [it for it in spatial if "lesion" in (it.label or "") or it.variant]  # lesion or mirrored side twins
    assert any("lesion" in (it.label or "") for it in lesion)
    assert all(not it.prior_answerable for it in lesion)
    assert all(it.prior_answerable for it in spatial if it.template.endswith("/choice") and "spinal cord" in it.question)
    de = [it for it in spatial if it.language == "de"]
    assert any(it.question == "Liegt die Aorta ventral oder dorsal zum Rückenmark?" and it.answer_text == "ventral"
               for it in de)
    sides = [it for it in items if it.template.endswith("/side")]
    by_pair: dict[str, list[Item]] = {}
    for it in sides:
        by_pair.setdefault(it.pair_id or "", []).append(it)
    for pair in by_pair.values():  # mirrored twins: same question, the other answer
        assert sorted(it.variant for it in pair) == ["mirrored", "original"]
        assert len({it.question for it in pair}) == 1 and len({it.answer.value for it in pair}) == 2
    audit = json.loads((built / "audit.json").read_text())
    assert audit["flagged"] == []
    # a report that contradicts its segmentation is no report-generation target
    targets = {it.study_id: it.answer.value for it in items if it.subtask == "report_generation"}
    assert targets == {"ok": "The aorta lies anterior to the spinal cord. Both kidneys are present."}
    # presence: "yes" from "Both kidneys are present", "no" from a nephrectomy the geometry confirms
    presence = {(it.study_id, it.answer.value) for it in items if it.subtask == "report_presence"
                and it.label == "kidney_left"}
    assert presence == {("ok", "yes"), ("nx", "no")}
    contradicted = {c["sentence"] for c in claims if c["verdict"] == "contradicted"}
    grounded = [json.loads(line)["sentence"] for line in (built / "grounding.jsonl").read_text().splitlines()]
    assert grounded and not contradicted & set(grounded)


def test_grounding_boxes_equal_mask_boxes_and_round_trip(phantom: dict, built: Path) -> None:
    labels, names = phantom["labels"], phantom["names"]
    ids = {v: k for k, v in names.items()}
    items = {it.id: it for it in read_items(built)}
    rows = [json.loads(line) for line in (built / "grounding.jsonl").read_text().splitlines()]
    assert rows
    radgrounder = PROFILES["radgrounder"]
    for row in rows:
        item = items[row["item_id"]]
        k = row["frame"]
        for e in item.evidence:
            i, j = np.nonzero(labels[:, :, k] == ids[e.label])
            assert e.box == voxel_box_to_frame_box(int(i.min()), int(j.min()), int(i.max()) + 1, int(j.max()) + 1,
                                                   labels.shape)
        width, height = labels.shape[0], labels.shape[1]
        found = radgrounder.find(row["target_radgrounder"])
        tags = row["tags_radgrounder"]
        assert [f.label for f in found] == [t["keyword"] for t in tags]  # the sentence's own words, tagged in place
        assert re.sub(r"<p bbox=(?:<loc\d{4}>){4} id=<seg\d{3}>>(.*?)</p>", r"\1", row["target_radgrounder"]) == row["sentence"]
        by_label = {e.label: e for e in item.evidence}
        assert {t["label"] for t in tags} | {x["label"] for x in row["left_out_radgrounder"]} == set(by_label)
        for f, t in zip(found, tags, strict=True):
            back = radgrounder.decode(f.values, width, height)
            err = radgrounder.space.max_error(width, height)
            assert all(abs(a - b) <= err for a, b in zip(back, by_label[t["label"]].box, strict=False))
            assert f"id=<seg{RADGROUNDER_IDS[t['label']]:03d}>" in row["target_radgrounder"]  # not the study's label id
    # rendered at native size, the target parses back as the item's boxes (voxqa.eval.parse)
    render_dataset(built, RenderSettings(size=None), workers=1)
    items = {it.id: it for it in read_items(built)}
    for row in rows[::7]:
        item = items[row["item_id"]]
        parsed = parse_answer(row["target_radgrounder"], item, profile="radgrounder")
        assert parsed.ok, parsed.error
        by_label = {e.label: e for e in item.evidence}
        assert [p["frame"] for p in parsed.value] == [by_label[t["label"]].frame for t in row["tags_radgrounder"]]
        err = PROFILES["radgrounder"].space.max_error(*row["frame_size"])
        for p, t in zip(parsed.value, row["tags_radgrounder"], strict=True):
            assert all(abs(a - b) <= err for a, b in zip(p["box"], by_label[t["label"]].image_box, strict=False))
    detect = [it for it in items.values() if it.subtask == "report_detect"]
    for it in detect:
        assert (it.answer.value == "yes") == bool(it.evidence)


def test_language_field_omitted_when_unset() -> None:
    item = Item(id="a", study_id="s", split="train", source="x", task="spatial", subtask="t", level="volume",
                frames=[], question="q", answer={"type": "yes_no", "value": "yes"}, answer_text="yes",
                reasoning="r", template="t")
    assert b"language" not in item.__pydantic_serializer__.to_json(item)
    item.language = "de"
    assert b'"language":"de"' in item.__pydantic_serializer__.to_json(item)


def test_cli_build_and_check_reports(phantom: dict, tmp_path: Path) -> None:
    csv = tmp_path / "studies.csv"
    csv.write_text("study_id,image,labels,label_names,patient_id,modality\n" + "".join(
        f"{s.study_id},{s.image},{s.labels},{s.label_names},{s.patient_id},CT\n" for s in phantom["specs"]))
    runner = CliRunner()
    res = runner.invoke(app, ["check-reports", "--studies", str(csv), "--reports", str(phantom["reports"])])
    assert res.exit_code == 1, res.output
    assert '"The spleen is located on the right."' in " ".join(res.output.split())
    res = runner.invoke(app, ["build", "reports", "--studies", str(csv), "--reports", str(phantom["reports"]),
                              "--out", str(tmp_path / "ds"), "--split-fractions", "1,0,0"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ds" / "claims.jsonl").is_file()


# --- G-IoU ---------------------------------------------------------------------------------------

LIVER, SPLEEN, KIDNEY = (0, 0, 10, 10), (20, 0, 30, 10), (0, 20, 10, 30)


def radgrounder_giou(gold: list[tuple[str, tuple]], pred: list[tuple[str, tuple]]) -> list[tuple[str, float]]:
    """RadGrounder's evaluator re-enacted (detect_grounding_evaluator.py L72-97): greedy on the
    similarity matrix, no threshold, keywords popped but boxes not. (gold keyword, IoU) per match."""
    gk, pk = [g[0] for g in gold], [p[0] for p in pred]
    gb, pb = [g[1] for g in gold], [p[1] for p in pred]
    sim = np.array([[1.0 if a == b else 0.0 for b in pk] for a in gk])
    out = []
    while gk and pk:
        r, c = np.unravel_index(int(np.argmax(sim)), sim.shape)
        out.append((gk[r], iou(gb[r], pb[c])))
        sim = np.delete(np.delete(sim, r, 0), c, 1)
        gk.pop(r)
        pk.pop(c)
    return out


def test_giou_keeps_keyword_box_pairs_where_radgrounder_breaks() -> None:
    gold = [("liver", LIVER), ("spleen", SPLEEN), ("kidney", KIDNEY)]
    pred = [("spleen", SPLEEN), ("liver", LIVER)]  # perfect boxes, one keyword missed
    assert radgrounder_giou(gold, pred)[1] == ("spleen", 0.0)  # scored against the liver's box
    s = grounding_scores([([Grounded(k, b) for k, b in gold], [Grounded(k, b) for k, b in pred])])
    assert s["iou"] == 1.0 and s["matched"] == 2
    assert s["g_iou"] == pytest.approx(2 / 3)  # two of max(3, 2) keywords, each IoU 1
    assert (s["precision"], s["recall"]) == (1.0, pytest.approx(2 / 3))
    assert s["f1"] == pytest.approx(0.8) and s["recall_at"] == pytest.approx(2 / 3)


def test_giou_threshold_synonyms_and_empty_predictions() -> None:
    g = [Grounded("Leber", LIVER)]
    # German gold, English prediction: the same structure; a half-overlapping box
    s = grounding_scores([(g, [Grounded("liver", (5, 0, 15, 10))])])
    assert s["iou"] == pytest.approx(1 / 3) and s["precision_at"] == 0.0 and s["g_iou"] == pytest.approx(1 / 3)
    # no similarity threshold in RadGrounder: "kidney" would be matched to "liver"; here it is not
    s = grounding_scores([(g, [Grounded("kidney", LIVER)])])
    assert s["matched"] == 0 and s["iou"] is None and s["g_iou"] == 0.0
    # a sample with no predicted keywords counts in recall (RadGrounder skips it)
    s = grounding_scores([(g, [Grounded("liver", LIVER)]), ([Grounded("spleen", SPLEEN)], [])])
    assert (s["recall"], s["precision"], s["g_iou"]) == (0.5, 1.0, 0.5)
    assert match_keywords([Grounded("linke Niere", LIVER)], [Grounded("right kidney", LIVER),
                                                             Grounded("left kidney", LIVER)]) == [(0, 1, 1.0)]


def test_grounding_items_scored_by_keyword_box_pairs(built: Path, tmp_path: Path) -> None:
    """A reply that puts every keyword on another keyword's box has perfect boxes: mean IoU and
    box F1@0.5 are 1. Scored by keyword-box pairs (results.json, leaderboard, report) it gets
    G-IoU below 1, the hand-computed value; the oracle gets 1 on every keyword metric."""
    from helpers import run_keyword_models, swapped_giou

    from voxqa.eval.compare import leaderboard, render_table
    from voxqa.views.html_report import build_report

    render_dataset(built, RenderSettings(size=None), workers=1)
    grounding = [it for it in read_items(built) if it.subtask == "report_grounding"]
    several = [it for it in grounding if len(it.answer.value) > 1]
    assert several and all(len({b.keyword for b in it.answer.value}) == len(it.answer.value) for it in grounding)
    results = run_keyword_models(built, tmp_path)
    metrics = {name: {k: m["mean"] for k, m in r["by"]["task/subtask"]["localization/report_grounding"]["metrics"].items()}
               for name, r in results.items()}
    oracle, swapped = metrics["oracle"], metrics["swapped"]
    assert all(oracle[k] == 1.0 for k in ("g_iou", "keyword_iou", "keyword_f1", "keyword_f1@0.5", "miou"))
    assert swapped["miou"] == swapped["v_score"] == swapped["f1@0.5"] == 1.0  # boxes alone cannot tell
    assert swapped["g_iou"] == pytest.approx(swapped_giou(grounding)) and swapped["g_iou"] < 1.0
    assert swapped["keyword_f1"] == 1.0 and swapped["keyword_f1@0.5"] < 1.0  # right words, wrong boxes
    header, rows = leaderboard([tmp_path / "oracle", tmp_path / "swapped"])
    board = render_table(header, rows, "md")
    assert "localization (g_iou)" in header and "keyword grounding (F1, F1@0.5)" in header
    assert f"{swapped['g_iou']:.3f}" in board and f"F1@0.5 {swapped['keyword_f1@0.5']:.3f}" in board
    page = build_report([tmp_path / "oracle", tmp_path / "swapped"], tmp_path / "report.html", max_items=5).read_text()
    assert "keyword grounding (F1, F1@0.5)" in page and f"g_iou {swapped['g_iou']:.3f}" in page  # subtask table


def test_grounding_reply_keywords_in_every_form(built: Path) -> None:
    """The keyword a reply gives a box: a JSON "label" / "keyword", the profile's own tag
    (RadGrounder), or the words before the box on its line (another language's word for the
    same structure matches); unnamed boxes are no predicted keywords."""
    from voxqa.answers.boxes import BOXES
    from voxqa.answers.base import ScoreContext

    render_dataset(built, RenderSettings(size=None), workers=1)
    item = next(it for it in read_items(built) if it.subtask == "report_grounding" and len(it.answer.value) == 2
                and it.language == "en")
    (a, b), k = item.answer.value, item.answer.value[0].frame
    gold = [bx.model_dump() for bx in item.answer.value]

    def box(x) -> str:
        return json.dumps(list(x.box))

    replies = {
        "json": json.dumps([{"frame": k, "keyword": a.keyword, "bbox": list(a.box)},
                            {"frame": k, "label": b.keyword, "bbox": list(b.box)}]),
        "lines": f"{a.keyword}: Frame {k}: {box(a)}\n{b.keyword}: Frame {k}: {box(b)}",
        "one line": f"Frame {k}: {a.keyword} {box(a)}, {b.keyword} {box(b)}",
    }
    for form, reply in replies.items():
        parsed = parse_answer(reply, item)
        assert parsed.ok, (form, parsed.error)
        assert [(p["keyword"], p["box"]) for p in parsed.value] == [(a.keyword, list(a.box)), (b.keyword, list(b.box))], form
        assert BOXES.score(gold, parsed.value, ScoreContext())["g_iou"] == 1.0, form
    width, height = item.images[0].width, item.images[0].height
    tags = " ".join(PROFILES["radgrounder"].write(x.box, width, height, x.keyword) for x in (a, b))
    assert [p["keyword"] for p in parse_answer(tags, item, profile="radgrounder").value] == [a.keyword, b.keyword]
    german = {"liver": "Leber", "spleen": "Milz", "aorta": "Aorta", "spinal cord": "Rückenmark"}
    if a.keyword in german:  # "Leber" names the liver as well as "liver" does
        parsed = parse_answer(f"{german[a.keyword]}: Frame {k}: {box(a)}", item)
        assert BOXES.score(gold, parsed.value, ScoreContext())["keyword_tp"] == 1.0
    unnamed = parse_answer(f"Frame {k}: {box(a)}\nFrame {k}: {box(b)}", item).value
    scores = BOXES.score(gold, unnamed, ScoreContext())
    assert "keyword" not in unnamed[0] and scores["miou"] == 1.0 and scores["g_iou"] == 0.0
    assert (scores["keyword_tp"], scores["keyword_fp"], scores["keyword_fn"]) == (0.0, 0.0, 2.0)


def test_mirrored_grounding_keywords_name_the_mirrored_side(built: Path) -> None:
    """Under the mirrored control "left kidney" is where the right one shows: the gold keyword
    flips with the question's side words, so it is always a keyword the question names."""
    from voxqa.eval.controls import mirror_item

    grounding = [it for it in read_items(built) if it.subtask == "report_grounding"]
    sided = [it for it in grounding if any(" left " in f" {b.keyword} " for b in it.answer.value)]
    assert sided
    for it in grounding:
        for shown in (it, mirror_item(it)):
            words = shown.question.split("Keywords: " if it.language == "en" else "Schlüsselwörter: ", 1)[1]
            assert all(b.keyword in words for b in shown.answer.value), (shown.question, shown.answer)
    assert {b.keyword for it in sided for b in mirror_item(it).answer.value} >= {"right kidney"}


# --- the jury: verdicts by item id -----------------------------------------------------------------

def test_jury_keys_verdicts_by_item_id_with_reordering_and_dropping_judge(tmp_path: Path) -> None:
    """Judge 1 answers its batch reversed and drops one item; judge 2 answers in order. The
    dropped item is a recorded failure (no score); every other item gets its own verdicts."""
    import asyncio
    import re as _re

    from openai_stub import StubServer

    from voxqa.eval.jury import Jury
    from voxqa.eval.models.openai_chat import OpenAIChat

    def judge(reorder_and_drop: bool):
        def answer(content: list) -> str:
            text = content[0]["text"]
            rows = [{"id": i, "correct": ref == cand} for i, ref, cand in _re.findall(
                r"Item id: (\S+)\nQuestion: .*\nReference answer: (.*)\nCandidate answer: (.*)\n", text)]
            if reorder_and_drop:
                rows = [r for r in rows if r["id"] != "b"][::-1]
            return "Here you go:\n" + json.dumps(rows)
        return answer

    cases = {"a": ("q", "left", "left"), "b": ("q", "left", "right"), "c": ("q", "x", "y"), "d": ("q", "y", "y")}
    with StubServer(judge(True)) as one, StubServer(judge(False)) as two:
        jury = Jury([OpenAIChat("j1", one.url, max_retries=0), OpenAIChat("j2", two.url, max_retries=0)],
                    tmp_path, batch=4)
        got = asyncio.run(jury.verdicts(cases))
        assert len(one.requests) == len(two.requests) == 1  # one batch each
    assert {i: v.score for i, v in got.items()} == {"a": 1.0, "b": None, "c": 0.0, "d": 1.0}
    assert got["b"].failures == ["openai:j1: no verdict for this item in its reply"]
    reloaded = Jury(jury.judges, tmp_path)  # the cache holds verdicts, never failures
    assert all(Jury._key(jury.judges[1], *c) in reloaded.cache for c in cases.values())
    assert [Jury._key(jury.judges[0], *c) in reloaded.cache for c in cases.values()] == [True, False, True, True]


def test_openai_extractor_schema_cache_and_verdicts(phantom: dict, tmp_path: Path) -> None:
    """An OpenAI-compatible server on loopback reads a free-text sentence the rules miss; the
    request carries the JSON schema; a second extraction is served from the cache."""
    from openai_stub import StubServer

    from voxqa.radreports.extract_openai import OpenAIExtractor

    text = "Hepatic parenchyma occupies the patient's dextral upper abdomen. Nothing else."

    def answer(content: list) -> str:
        sentence = content[0]["text"].split("Sentence: ")[1]
        claims = [{"structures": ["Liver"], "relation": "side", "side": "right", "polarity": "positive"}]
        return json.dumps({"claims": claims if sentence.startswith("Hepatic") else []})

    rules = RuleExtractor().extract("en", text, "en")  # "dextral" is not in the lexicon: presence only
    assert [(c.structures, c.relation) for c in rules] == [(["liver"], "present")]
    cache = tmp_path / "cache.jsonl"
    with StubServer(answer) as srv:
        claims = OpenAIExtractor("m", srv.url, cache=cache).extract("en", text, "en")
        assert len(srv.requests) == 2
        assert srv.requests[0]["response_format"]["json_schema"]["schema"]["required"] == ["claims"]
        again = OpenAIExtractor("m", srv.url, cache=cache).extract("en", text, "en")
        assert len(srv.requests) == 2 and again == claims
    assert [(c.structures, c.relation, c.side, c.extractor) for c in claims] == [
        (["liver"], "side", "right", "openai:m")]
    spec = phantom["specs"][0]
    reports = tmp_path / "r.jsonl"
    reports.write_text(json.dumps({"study_id": spec.study_id, "language": "en", "text": text}) + "\n")
    with StubServer(answer) as srv:
        verified = check_reports([spec], reports, OpenAIExtractor("m", srv.url))
    assert [c.verdict for c in verified] == ["supported"]


def test_docs_list_the_whole_lexicon() -> None:
    from voxqa.radreports import lexicon

    doc = (Path(__file__).parents[1] / "docs" / "reports.md").read_text()
    tables = [lexicon.PROCEDURES, lexicon.RELATIONS, lexicon.SIDE_BEFORE, lexicon.SIDE_AFTER, lexicon.SIDE_FREE]
    patterns = [p for t in tables for lang in t.values() for p in lang]
    patterns += [*lexicon.NEGATION.values(), *lexicon.TERMINATORS.values(), *lexicon.PARTIAL.values(),
                 *lexicon.NEGATION_FILLER.values(), *lexicon.PRESENCE.values(), *lexicon.EN_SIDED]
    patterns += [p for words in lexicon.EN_WORDS.values() for p in words if p]
    patterns += [p for _, _, *words in lexicon.DE_WORDS.values() for p in words if p]
    patterns += [f"`{stem}` = `{base}`" for stem, base in lexicon.DE_COMPOUNDS.items()]
    missing = [p for p in patterns if "`" + p.replace("|", "\\|") + "`" not in doc and p not in doc]
    assert not missing, missing
