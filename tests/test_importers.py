"""Importers of published benchmarks (voxqa.importers) and their as-published scores.

Core tests write small samples in the published field names themselves (so CI without
../shared tests every importer), import them through the CLI, render them, and run the oracle
through `voxqa eval` and `voxqa score`: it must score 100% on every metric. Hidden variants
(reordered records, extra fields, renamed files) must import to the same items, and unknown
shapes are refused naming the field. Real-data tests read the released samples under
VOXQA_TEST_REFERENCE (= ../shared/reference) and the fastMRI+ CSVs under VOXQA_TEST_DATA
(= ../shared/data); they skip locally when those are absent and fail in CI.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import re
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from voxqa.boxes.profiles import get_profile
from voxqa.cli import app
from voxqa.dataset.folder import read_items, read_json, read_studies
from voxqa.errors import BuildError
from voxqa.importers.ct_spatialvqa import import_ct_spatialvqa, import_ct_spatialvqa_run
from voxqa.importers.published_scores import (
    SgmriItem,
    ct_spatialvqa as ct_published,
    released_a_score,
    released_matching,
    released_number,
    released_v_score,
    released_video_answer,
    released_yes_no,
    sgmri_vqa,
)
from voxqa.importers.sgmri_vqa import import_sgmri_vqa

runner = CliRunner()
FRAME = 48  # pixels of the test volumes' frames


def invoke(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def oracle_results(ds: Path, run: Path, split: str, *extra: str, profile: str = "pixel") -> dict:
    """Render ``ds``, run the oracle through the CLI and score it; results.json."""
    invoke("render", ds, "--frames", "all")
    invoke("eval", ds, "--model", "oracle", "--out", run, "--split", split, "--profile", profile)
    invoke("score", run, *extra)
    return read_json(run / "results.json")


class Replay:
    """A model that replies with given texts (item id -> reply), e.g. a benchmark's released answers."""

    def __init__(self, replies: dict[str, str]):
        self.replies = replies

    def identity(self) -> dict:
        return {"name": "replay"}

    def answer(self, prompt, item) -> str:
        return self.replies[item.id]


def replay(replies: str) -> Replay:
    """``py:test_importers:replay`` with ``--model-arg replies=FILE`` (a JSON object)."""
    return Replay(json.loads(Path(replies).read_text()))


def replay_results(ds: Path, run: Path, replies: dict[str, str], profile: str, *score: str) -> dict:
    """``voxqa eval`` of the replies on the val split under ``profile``, then ``voxqa score``."""
    run.mkdir(parents=True)
    (run.parent / f"{run.name}_replies.json").write_text(json.dumps(replies))
    invoke("eval", ds, "--model", "py:test_importers:replay", "--model-arg",
           f"replies={run.parent / f'{run.name}_replies.json'}", "--out", run, "--split", "val", "--profile", profile)
    invoke("score", run, *score)
    return read_json(run / "results.json")


def assert_perfect(results: dict) -> None:
    """Every metric of an oracle run is perfect and every item parsed."""
    overall = results["overall"]
    assert overall["n"] > 0 and overall["parse_failures"]["count"] == 0
    for name, m in overall["metrics"].items():
        if name == "mae":
            assert m["mean"] == 0, name
        elif m["mean"] is not None:
            assert m["mean"] == pytest.approx(1.0), name


# --------------------------------------------------------------------------- SGMRI-VQA


KNEE, BRAIN = "file1000001", "file_brain_AXT1_201_6000001"
# fastMRI+ rows (0-based slice): the knee tear on slices 2 and 3, the brain mass on slice 1
CSV_ROWS = [
    (KNEE, 2, "No", 10, 12, 8, 6, "Meniscus Tear"),
    (KNEE, 3, "No", 11, 12, 8, 6, "Meniscus Tear"),
    (KNEE, 3, "No", 30, 30, 5, 5, "Joint Effusion "),
    (BRAIN, 1, "No", 20, 20, 10, 10, "Mass"),
    (BRAIN, 0, "Yes", "", "", "", "", "Normal for age"),
]


def _gt(boxes: list[tuple[int, int, int, int, str]]) -> dict:
    labels = sorted({b[4] for b in boxes})
    return {"labels": labels, "diagnosis": labels,
            "bboxes": [{"x": x, "y": y, "width": w, "height": h, "label": lab} for x, y, w, h, lab in boxes]}


def sgmri_records() -> dict[str, list[dict]]:
    """Released-format records; knee frames carry the published off-by-one (CSV slice used as
    the 1-based number), brain frames are slice + 1."""
    def slice_rec(vol, modality, n, task, qtype, question, answer, boxes):
        return {"volume_id": vol, "slice_num": n, "modality": modality,
                "image_path": f"val_labeled_raw_by_modality/{modality}/{vol}/{vol}_slice_{n:03d}.png",
                "level": "slice", "task": task, "type": qtype, "question": question, "answer": answer,
                "reasoning": f"Seen at <bbx>[{boxes[0][0]},{boxes[0][1]},{boxes[0][2]},{boxes[0][3]}]</bbx>." if boxes else "",
                "ground_truth": _gt(boxes)}

    def volume_rec(vol, modality, task, qtype, question, answer, final):
        return {"volume_id": vol, "modality": modality, "num_slices": 6, "level": "volume", "step": 0,
                "task": task, "type": qtype, "question": question, "answer": answer,
                "reasoning": "Findings: " + "; ".join(final), "ground_truth": {"final_diagnosis": final}}

    tear = [(10, 12, 8, 6, "Meniscus Tear")]
    mass = [(20, 20, 10, 10, "Mass")]
    knee_slice = [
        slice_rec(KNEE, "knee", 2, "detection", "closed_ended", "Is there any abnormality visible in this image? Answer Yes or No.", "Yes", tear),
        slice_rec(KNEE, "knee", 2, "localization", "open_ended", "Locate the Meniscus Tear in this image and give its bounding box.",
                  "The Meniscus Tear is located at <bbx>[10,12,8,6]</bbx>.", tear),
        slice_rec(KNEE, "knee", 2, "diagnosis", "single_choice",
                  "What is the most likely diagnosis? (A) Meniscus Tear (B) Bone - Lesion (C) Joint Effusion (D) Normal", "(A)", tear),
        slice_rec(KNEE, "knee", 2, "classification", "multiple_choice",
                  "Which findings are visible? Select all that apply. (A) Meniscus Tear (B) Joint Effusion (C) Mass", "(A)", tear),
    ]
    knee_volume = [
        volume_rec(KNEE, "knee", "localization", "open_ended", "Localize all abnormal findings across the frames of this volume.",
                   "Joint Effusion: Frame 3: <bbx>[30,30,5,5]</bbx> Meniscus Tear: Frame 2: <bbx>[10,12,8,6]</bbx>; Frame 3: <bbx>[11,12,8,6]</bbx>",
                   ["Joint Effusion", "Meniscus Tear"]),
        volume_rec(KNEE, "knee", "counting", "closed_ended", "How many distinct types of abnormalities are present in this volume?",
                   "2", ["Joint Effusion", "Meniscus Tear"]),
        volume_rec(KNEE, "knee", "captioning", "open_ended", "Describe the findings of this volume.",
                   "Meniscus Tear: Frame 2: <bbx>[10,12,8,6]</bbx>.", ["Meniscus Tear"]),
    ]
    brain_slice = [
        slice_rec(BRAIN, "T1", 2, "detection", "closed_ended", "Is there any abnormality visible in this image? Answer Yes or No.", "Yes", mass),
        slice_rec(BRAIN, "T1", 2, "localization", "open_ended", "Locate the Mass in this image and give its bounding box.",
                  "The Mass is located at <bbx>[20,20,10,10]</bbx>.", mass),
    ]
    brain_volume = [
        volume_rec(BRAIN, "T1", "localization", "open_ended", "Localize all abnormal findings across the frames of this volume.",
                   "Mass: Frame 2: <bbx>[20,20,10,10]</bbx>", ["Mass"]),
    ]
    return {"knee_val_slice_qa_pairs.json": knee_slice, "knee_val_volume_qa_pairs.json": knee_volume,
            "brain_val_slice_qa_pairs.json": brain_slice, "brain_val_volume_qa_pairs.json": brain_volume}


def write_sgmri(root: Path, records: dict[str, list[dict]] | None = None) -> dict:
    """QA files, a fastMRI+ CSV and file list, and 6-frame .h5 volumes."""
    root.mkdir(parents=True, exist_ok=True)
    qa = []
    for name, recs in (records or sgmri_records()).items():
        (root / name).write_text(json.dumps(recs))
        qa.append(root / name)
    ann = root / "annotations.csv"
    with ann.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "slice", "study_level", "x", "y", "width", "height", "label"])
        w.writerows(CSV_ROWS)
    (root / "file_list.csv").write_text(f"{KNEE}\n{BRAIN}\n")
    vols = root / "volumes"
    vols.mkdir()
    rng = np.random.default_rng(0)
    for name in (KNEE, BRAIN):
        with h5py.File(vols / f"{name}.h5", "w") as f:
            f.create_dataset("reconstruction_rss", data=rng.random((6, FRAME, FRAME)).astype(np.float32))
    return {"qa": qa, "annotations": ann, "file_list": root / "file_list.csv", "volumes": vols}


def _sgmri_args(src: dict, out: Path) -> list:
    return (["import", "sgmri-vqa"] + [a for p in src["qa"] for a in ("--qa", p)]
            + ["--annotations", src["annotations"], "--file-list", src["file_list"],
               "--volumes", src["volumes"], "--out", out])


def test_sgmri_import_corrects_knee_off_by_one_and_oracle_scores_100(tmp_path: Path) -> None:
    src = write_sgmri(tmp_path / "src")
    ds = tmp_path / "ds"
    invoke(*_sgmri_args(src, ds))
    items = {(it.study_id, it.template): it for it in read_items(ds)}
    # knee: published Frame N is fastMRI+ slice N (off by one) -> voxqa frame N; brain: N - 1
    assert items[(KNEE, "sgmri/detection/closed_ended/frame")].frames == [2]
    assert items[(BRAIN, "sgmri/detection/closed_ended/frame")].frames == [1]
    where = items[(KNEE, "sgmri/localization/open_ended/volume")].answer.value
    assert [(b.frame, b.box) for b in where] == [(2, (10, 12, 18, 18)), (3, (11, 12, 19, 18)), (3, (30, 30, 35, 35))]
    assert items[(BRAIN, "sgmri/localization/open_ended/frame")].answer.value[0].box == (20, 20, 30, 30)
    assert items[(KNEE, "sgmri/diagnosis/single_choice/frame")].answer.value == 0
    assert items[(KNEE, "sgmri/diagnosis/single_choice/frame")].options[1] == "Bone - Lesion"
    assert items[(KNEE, "sgmri/classification/multiple_choice/frame")].answer.value == [0]
    assert items[(KNEE, "sgmri/counting/closed_ended/volume")].answer.value == 2
    caption = items[(KNEE, "sgmri/captioning/open_ended/volume")]
    assert caption.answer.value == "Meniscus Tear: Frame 2: [10, 12, 18, 18]."  # voxqa's quote form
    # every knee box quoted in a record is counted once per record; brain boxes are never moved
    report = read_json(ds / "build_report.json")
    knee_quotes = 4 * 1 + 3 + 1  # four slice records x the tear; the volume answer's 3 boxes; the caption's
    assert report["repaired"]["frame_off_by_one_corrected"]["count"] == knee_quotes
    assert {e["anatomy"] for e in report["repaired"]["frame_off_by_one_corrected"]["examples"]} == {"knee"}
    assert report["totals"]["volumes_off_by_one"] == [KNEE]
    assert "warning" not in report  # every box is in fastMRI+
    studies = {s.id: s for s in read_studies(ds)}
    assert studies[KNEE].frame_count == 6 and studies[KNEE].frame_size == (FRAME, FRAME)

    # the oracle in SGMRI-VQA's convention (profile sgmri: frames from 1, <bbx> xywh)
    results = oracle_results(ds, tmp_path / "run", "val", "--as-published", "sgmri-vqa", profile="sgmri")
    assert_perfect(results)
    published = results["as_published"]["as_published"]
    for column in ("Detection", "Diagnosis", "Classification", "Counting", "Localization (V)", "Captioning"):
        assert published["columns"][column] == pytest.approx(100.0), column
    assert published["columns"]["Localization (AR)"] is None  # voxqa asks localization for boxes only
    assert published["avg"] == pytest.approx(100.0)
    assert published["map"]["localization"] == pytest.approx(100.0)
    assert published["frame_base"] == 1 and "not_computed" not in published


def test_sgmri_hidden_variant_imports_the_same_items(tmp_path: Path) -> None:
    """Reordered records, extra fields, renamed files (split given) and the loader's level
    names give the same items as the released layout."""
    base = write_sgmri(tmp_path / "a")
    invoke(*_sgmri_args(base, tmp_path / "ds_a"))
    records = sgmri_records()
    everything = [dict(r, extra_field="ignored") for recs in records.values() for r in recs]
    random.Random(3).shuffle(everything)
    for r in everything:
        r["level"] = {"slice": "image_level", "volume": "volume_level"}[r["level"]]
    variant = write_sgmri(tmp_path / "b", {"all_records.json": everything})
    invoke(*_sgmri_args(variant, tmp_path / "ds_b"), "--split", "val")
    strip = lambda items: sorted(it.model_dump_json() for it in items)  # noqa: E731
    assert strip(read_items(tmp_path / "ds_a")) == strip(read_items(tmp_path / "ds_b"))


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.pop("volume_id"), "missing field 'volume_id'"),
    (lambda r: r.update(type="ranking"), "field 'type' has unknown value 'ranking'"),
    (lambda r: r.update(level="study"), "field 'level' has unknown value 'study'"),
    (lambda r: r.update(slice_num="2"), "field 'slice_num' must be int"),
    (lambda r: r["ground_truth"]["bboxes"][0].pop("width"), "missing field 'width'"),
    (lambda r: r.update(modality="CT"), "field 'modality' has unknown value 'CT'"),
    (lambda r: r.update(answer="Perhaps"), "field 'answer' 'Perhaps' of a closed_ended question"),
])
def test_sgmri_refuses_unknown_shapes_naming_the_field(tmp_path: Path, change, message: str) -> None:
    records = sgmri_records()
    change(records["knee_val_slice_qa_pairs.json"][0])
    src = write_sgmri(tmp_path / "src", records)
    with pytest.raises(BuildError, match=message.replace("(", r"\(")):
        import_sgmri_vqa(src["qa"], [src["annotations"]], tmp_path / "ds")


def test_sgmri_file_without_split_in_its_name_needs_split(tmp_path: Path) -> None:
    src = write_sgmri(tmp_path / "src", {"records.json": sgmri_records()["knee_val_slice_qa_pairs.json"]})
    with pytest.raises(BuildError, match="give --split"):
        import_sgmri_vqa(src["qa"], [src["annotations"]], tmp_path / "ds")


def released_replies(ds: Path, records: dict[str, list[dict]]) -> dict[str, str]:
    """Item id -> the released record's answer as a model writing SGMRI-VQA's records would
    reply: with perfect boxes, i.e. knee frames one later (the released knee off-by-one undone:
    fastMRI+ slice + 1), brain frames as published. Records are found by the content digest
    that ends their item's id (``importers/sgmri_vqa.py``: level, task, type, question, answer)."""
    answers = {}
    for recs in records.values():
        for r in recs:
            level = "frame" if r["level"] == "slice" else "volume"
            digest = hashlib.sha1("\x1f".join((level, r["task"], r["type"], r["question"], str(r["answer"]))).encode())
            text = str(r["answer"])
            if r["modality"] == "knee":
                text = re.sub(r"Frame (\d+)", lambda m: f"Frame {int(m[1]) + 1}", text)
            answers[(r["volume_id"], digest.hexdigest()[:10])] = text
    return {it.id: answers[(it.study_id, it.id.rsplit(":", 1)[1])] for it in read_items(ds)}


def test_sgmri_released_answers_score_100_as_published_under_the_sgmri_profile(tmp_path: Path) -> None:
    """A model answering exactly as the released records do (``Frame N:`` from 1, ``<bbx>``
    xywh), with perfect boxes: 100 on every as-published column under ``--profile sgmri``. Under
    voxqa's 0-based prompt (``pixel``) the same replies are read one frame late, so voxqa's own
    volume V-Score drops to the hand-computed 0.1296 and the as-published V-Score is refused."""
    src = write_sgmri(tmp_path / "src")
    ds = tmp_path / "ds"
    invoke(*_sgmri_args(src, ds))
    invoke("render", ds, "--frames", "all")
    replies = released_replies(ds, sgmri_records())
    results = replay_results(ds, tmp_path / "sgmri", replies, "sgmri", "--as-published", "sgmri-vqa")
    published = results["as_published"]["as_published"]
    for column in ("Detection", "Diagnosis", "Classification", "Counting", "Localization (V)"):
        assert published["columns"][column] == pytest.approx(100.0), column
    assert published["breakdowns"]["level"]["volume"]["v_score"] == {"mean": pytest.approx(100.0), "count": 2}
    assert published["map"]["localization"] == pytest.approx(100.0)
    assert results["by"]["level"]["volume"]["metrics"]["v_score"]["mean"] == pytest.approx(1.0)

    late = replay_results(ds, tmp_path / "pixel", replies, "pixel", "--as-published", "sgmri-vqa")
    # knee: the tear read on frames 3, 4 (gold 2, 3): one pair left, IoU 42/54 of 3 gold boxes; brain: 0
    assert late["by"]["level"]["volume"]["metrics"]["v_score"]["mean"] == pytest.approx((42 / 54 / 3 + 0) / 2)
    late_published = late["as_published"]["as_published"]
    assert late_published["columns"]["Localization (V)"] is None and late_published["map"] == {}
    assert "--profile sgmri" in late_published["not_computed"]["Localization (V)"]
    assert late_published["columns"]["Detection"] == pytest.approx(100.0)  # no frame numbers in it


def test_sgmri_profile_prompt_and_target_number_frames_from_one(tmp_path: Path) -> None:
    """The sgmri profile's prompt labels stored frame k "Frame k+1", quotes boxes as
    ``<bbx>[x,y,w,h]</bbx>``, and its target's frames count from 1; replies are read back."""
    from voxqa.conversation import InlineBoxes, build_sample
    from voxqa.eval.parse import parse_answer
    from voxqa.eval.prompts import build_prompt

    src = write_sgmri(tmp_path / "src")
    ds = tmp_path / "ds"
    invoke(*_sgmri_args(src, ds))
    invoke("render", ds, "--frames", "all")
    items = {(it.study_id, it.template): it for it in read_items(ds)}
    sgmri, pixel = get_profile("sgmri"), get_profile("pixel")
    where = items[(KNEE, "sgmri/localization/open_ended/volume")]
    texts = [v for kind, v in build_prompt(where, ds, (FRAME, FRAME), sgmri).parts if kind == "text"]
    assert [t.strip() for t in texts[:6]] == [f"Frame {k}:" for k in range(1, 7)]
    assert "<bbx>[x, y, width, height]</bbx>" in texts[-2] and "numbered from 1" in texts[-2]
    target = json.loads(build_prompt(where, ds, (FRAME, FRAME), sgmri).target)
    assert target["answer"] == [{"frame": 3, "bbox": [10, 12, 8, 6]}, {"frame": 4, "bbox": [11, 12, 8, 6]},
                                {"frame": 4, "bbox": [30, 30, 5, 5]}]
    assert [v.strip() for k, v in build_prompt(where, ds, (FRAME, FRAME), pixel).parts if k == "text"][:2] == [
        "Frame 0:", "Frame 1:"]  # voxqa's own default: the stored index
    caption = items[(KNEE, "sgmri/captioning/open_ended/volume")]
    written = json.loads(build_sample(caption, ds.resolve(), (FRAME, FRAME), sgmri, InlineBoxes(sgmri)).target)
    assert written["answer"] == "Meniscus Tear: Frame 3: <bbx>[10,12,8,6]</bbx>."  # voxqa stores Frame 2
    # replies are read as labelled: "Frame 3" is stored frame 2; "Frame 0" is no frame of SGMRI's
    read = parse_answer("Frame 3: <bbx>[10,12,8,6]</bbx>", where, "sgmri")
    assert read.ok and read.value == [{"frame": 2, "box": [10, 12, 18, 18]}]
    assert "numbered from 1" in parse_answer("Frame 0: <bbx>[10,12,8,6]</bbx>", where, "sgmri").error
    assert parse_answer("Frame 3: <bbx>[10,12,8,6]</bbx>", where, "pixel").value == [{"frame": 3, "box": [10, 12, 18, 18]}]


def test_sgmri_import_reads_frame_lists_one_based(tmp_path: Path) -> None:
    """"frames 2-3 and 5" in a released text are 1-based like "Frame N": imported as voxqa's
    0-based numbers (brain: published N is slice N - 1), exported back as published."""
    records = sgmri_records()
    records["brain_val_volume_qa_pairs.json"].append(
        {"volume_id": BRAIN, "modality": "T1", "num_slices": 6, "level": "volume", "step": 0, "task": "captioning",
         "type": "open_ended", "question": "Describe the findings of this volume.",
         "answer": "A mass on frames 2-3 and 5, best on frame 2: <bbx>[20,20,10,10]</bbx>.", "reasoning": "",
         "ground_truth": {"final_diagnosis": ["Mass"]}})
    src = write_sgmri(tmp_path / "src", records)
    ds = tmp_path / "ds"
    invoke(*_sgmri_args(src, ds))
    caption = next(it for it in read_items(ds) if it.study_id == BRAIN and it.task == "captioning")
    assert caption.answer.value == "A mass on frames 1-2 and 4, best on frame 1: [20, 20, 30, 30]."
    invoke("render", ds, "--frames", "all")
    invoke("export", ds, "--format", "sgmri-vqa", "--out", tmp_path / "export")
    exported = json.loads((tmp_path / "export" / "brain_val_volume_qa_pairs.json").read_text())
    assert records["brain_val_volume_qa_pairs.json"][-1]["answer"] in [r["answer"] for r in exported]


def test_released_v_score_takes_true_positives_from_one_hungarian_matching() -> None:
    """The issue's matrix [[.9, .3], [.3, 0]] (gold x predicted IoU): the released code matches
    once (v_score.py L120) - pairs .9 and 0 - and counts a true positive per pair at or above
    each threshold: F1 1/2 at 0.1, 0.25 and 0.5, "mAP" 0.5 (voxqa's own hits, the largest
    matching per threshold, give 1, 1, 1/2: 0.833)."""
    m = np.array([[0.9, 0.3], [0.3, 0.0]])
    got = released_matching(m)
    assert got["map"] == pytest.approx(0.5) and got["v_score"] == pytest.approx(0.45)
    assert [got[f"F1@{t}"] for t in (0.1, 0.25, 0.5)] == pytest.approx([0.5, 0.5, 0.5])
    # the same matrix from boxes (xyxy; IoU 90/100, 60/200, 27/90, 0), through both scorers
    from voxqa.eval.metrics.items import score_item

    gold = [[0, 0, 10, 10], [0, 0, 3, 9]]
    pred = [[0, 0, 9, 10], [4, 0, 20, 10]]
    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    assert released_v_score([(1, xywh(b)) for b in gold], [(1, xywh(b)) for b in pred])["map"] == pytest.approx(0.5)
    mine = score_item("boxes", [{"frame": 0, "box": b} for b in gold], [{"frame": 0, "box": b} for b in pred])
    f1 = [2 * mine[f"tp@{t}"] / (2 * mine[f"tp@{t}"] + mine[f"fp@{t}"] + mine[f"fn@{t}"]) for t in (0.1, 0.25, 0.5)]
    assert sum(f1) / 3 == pytest.approx(2.5 / 3)  # voxqa's matching: what as-published used to report
    # frame-aware only when the gold boxes have frames (volume items): another frame is IoU 0
    assert released_v_score([(2, [0, 0, 10, 10])], [(3, [0, 0, 10, 10])])["v_score"] == 0.0
    assert released_v_score([(None, [0, 0, 10, 10])], [(3, [0, 0, 10, 10])])["v_score"] == 1.0


def _item(iid: str, task: str, answer_type: str, reply: str | None, gold, parsed=None, *, level: str = "frame",
          qa_type: str = "x", scores: dict | None = None, question: str = "Q?", published: str | None = None) -> SgmriItem:
    record = {"item_id": iid, "failed": False, "template": f"sgmri/{task}/{qa_type}/{level}", "task": task,
              "subtask": task, "level": level, "anatomy": "knee", "answer_type": answer_type,
              "parse_ok": parsed is not None, "scores": scores or {}}
    return SgmriItem(record, question, reply, gold, parsed, published)


def test_released_map_leaves_out_items_without_a_predicted_box() -> None:
    """An item whose reply holds no box gets V-Score 0 and no "mAP" (v_score.py L94-103, and
    run_evaluation.py L327-338 averages "map" where present): one perfect item and one empty
    one give V 50 and "mAP" 100 (it was 50); the duplicate "Locate the bounding box" phrasing is
    skipped (run_evaluation.py L184-192)."""
    box = [{"frame": 2, "box": [0, 0, 10, 10]}]
    items = [
        _item("l1", "localization", "boxes", "x", box, box, qa_type="open_ended"),
        _item("l2", "localization", "boxes", "none", box, [], qa_type="open_ended"),
        _item("l3", "localization", "boxes", "none", box, [], qa_type="open_ended",
              question="Locate the bounding box of the tear."),
    ]
    block = sgmri_vqa(items, frame_base=1)["as_published"]
    assert block["columns"]["Localization (V)"] == pytest.approx(50.0)
    assert block["map"]["localization"] == pytest.approx(100.0)
    assert block["skipped"] == {"duplicate_localization_question": 1}


@pytest.mark.parametrize(("text", "number"), [
    ("I cannot tell", None),  # no number: the released parser returns nothing (wrong even for gold 0)
    ("3", 3), (" 12 ", 12), ("-2", -2),
    ("Therefore, the final answer is: **4**", 4),
    ("2 lesions, best seen on frame 14", 14),  # the LAST number: a frame index
    ("No abnormal findings.", 0), ("none", 0), ("zero", 0),
    ("There are two.", None),
])
def test_released_number_reenacts_extract_number(text: str, number: int | None) -> None:
    """``_extract_number`` (a_score.py L78-110), hand-read case by case."""
    assert released_number(text) == number


def test_released_a_score_parsing_reproduces_the_published_bugs() -> None:
    """The as-published A-Score keeps the released parsing (source-benchmarks.md 1.8 #3, #4)."""
    assert released_a_score("There is a tear.", "(A)", "single_choice") == 1.0  # "a" read as option (A)
    assert released_yes_no("The knee shows an abnormality in the medial meniscus.") is False
    assert released_yes_no("Yes, no tear is missed.") is True  # the first word wins
    assert released_yes_no("There is no tear, yes.") is None  # both substrings: nothing
    assert released_a_score("I cannot tell", "0", "closed_ended") == 0.0  # voxqa read it as 0 (right)
    assert released_a_score("No abnormal findings", "0", "closed_ended") == 1.0
    assert released_a_score("Frame 7 shows 2 findings", "2", "closed_ended") == 1.0
    assert released_a_score("2 findings, see frame 9", "2", "closed_ended") == 0.0  # the last number
    assert released_a_score('{"answer": 2, "bboxes": [{"frame": 7}]}', "2", "closed_ended") == 0.0  # JSON is text
    assert released_a_score("It is not (B). (A) and (C).", "(A), (C)", "multiple_choice") == 1.0
    assert released_a_score("(A) and (B)", "(A), (C)", "multiple_choice") == pytest.approx(0.5)
    assert released_video_answer("Frames 3-5 show it. Therefore, the final answer is: **Yes**.", "closed_ended") == "Yes"
    assert released_video_answer("Therefore, the final answer is: B) Meniscus Tear", "single_choice") == "B"


def test_sgmri_as_published_columns_match_hand_computed_values() -> None:
    """The README table's columns from per-item replies, each value computed by hand below."""
    gold_boxes = [{"frame": 2, "box": [0, 0, 10, 10]}, {"frame": 3, "box": [0, 0, 10, 10]}]
    items = [
        _item("d1", "detection", "yes_no", "Yes, there is an abnormality.", "yes", "yes", qa_type="closed_ended"),
        _item("d2", "detection", "yes_no", "No abnormality.", "no", "no", qa_type="closed_ended"),
        # the substring "no": read as no
        _item("d3", "detection", "yes_no", "There is an abnormality in the meniscus.", "yes", qa_type="closed_ended",
              scores={"a_score": 1.0}),
        _item("g1", "diagnosis", "choice", "There is a tear.", 0, qa_type="single_choice", published="(A)"),
        _item("c1", "counting", "number", "2 findings, see frame 9", 2, level="volume", qa_type="closed_ended"),
        _item("c2", "counting", "number", "Frames 3 and 4. Therefore, the final answer is: 3", 3, level="volume",
              qa_type="closed_ended"),
        _item("c3", "counting", "number", "I cannot tell", 0, level="volume", qa_type="closed_ended"),
        _item("l1", "localization", "boxes", "x", gold_boxes, [{"frame": 2, "box": [0, 0, 10, 5]}],
              level="volume", qa_type="open_ended"),
        _item("t1", "captioning", "text", "A caption.", "A reference.", "A caption.", level="volume",
              qa_type="open_ended", scores={"token_f1": 0.5, "bleu": 0.2, "rouge_l": 0.3}),
    ]
    block = sgmri_vqa(items, frame_base=1)
    columns = block["as_published"]["columns"]
    assert columns["Detection"] == pytest.approx(100 * 2 / 3)
    assert columns["Diagnosis"] == pytest.approx(100.0) and block["voxqa"]["a_score"]["diagnosis"] == 0.0
    assert columns["Counting"] == pytest.approx(100 / 3)  # 9 != 2; 3; "I cannot tell": no number
    assert columns["Localization (V)"] == pytest.approx(100 * 0.5 / 2)  # IoU 0.5 on one of two gold boxes
    # one pair at IoU 0.5: P 1, R 1/2, F1 2/3 at every threshold
    assert block["as_published"]["map"]["localization"] == pytest.approx(100 * 2 / 3)
    assert columns["Captioning"] == pytest.approx(100 * (0.5 + 0.2 + 0.3) / 3)  # no judge: the text metrics alone
    assert columns["Classification"] is None and columns["Localization (AR)"] is None
    assert block["as_published"]["avg"] == pytest.approx((200 / 3 + 100 + 100 / 3 + 25 + 100 / 3) / 5)
    assert block["as_published"]["breakdowns"]["level"]["volume"]["a_score"] == {"mean": pytest.approx(100 / 3), "count": 3}


@pytest.mark.parametrize(("candidate", "own", "score"), [
    ("7,8,6", "10,10,10", 0.7),  # raw 0.7 / self 1.0
    ("7, 8, 6\n", "7,7,7", 1.0),  # 0.7 / 0.7, capped at 1
    ("6,6,6", "4,4,4", 1.0),  # 0.6 / 0.4 = 1.5, capped
    ("6,6,6", "0,0,0", 0.6),  # a self-rating of 0: raw
    ("6,6,6", "9,9", 0.6),  # a self-rating not of three numbers: raw (uncapped)
    ("6,6,6", "nine", 0.0),  # a part that is no number: the released except scores 0
    ("7,8", None, None),  # not three numbers: no GPTScore (the text metrics alone)
    ("Score: 7", None, 0.0),
])
def test_released_gptscore_arithmetic(candidate: str, own: str | None, score: float | None) -> None:
    """``_compute_gpt_score`` (ar_score.py L137-182) on hand-computed replies."""
    from voxqa.eval.gptscore import gpt_score

    got = gpt_score(candidate, own).score
    assert got == (None if score is None else pytest.approx(score))


def test_sgmri_gptscore_protocol_through_the_jury(tmp_path: Path) -> None:
    """``score --as-published sgmri-vqa --judge``: the caption's GPTScore asks the judge the
    released prompt (ar_score.py L108-121; temperature 0, max_tokens 20) for the candidate (the
    whole reply) and, as it gave three numbers, for the reference against itself: "7,8,6" and
    "10,10,10" give min(0.7 / 1.0, 1) = 0.7, AR = 0.4 * 0.7 + 0.6 * 1 (the oracle's text
    metrics) = 0.88. Re-scoring asks nothing again. Hand-computed variants: "8,8" is no
    GPTScore (text metrics alone: 1.0); "n/a" scores 0 (0.6); a self-rating of "5,5,5" caps at
    1 (1.0); a failed request gives no AR-Score, listed."""
    from openai_stub import StubServer

    from voxqa.eval.gptscore import PROMPT

    src = write_sgmri(tmp_path / "src")
    ds = tmp_path / "ds"
    invoke(*_sgmri_args(src, ds))
    results = oracle_results(ds, tmp_path / "run", "val", profile="sgmri")
    assert results["overall"]["parse_failures"]["count"] == 0
    reference = "Meniscus Tear: Frame 3: <bbx>[10,12,8,6]</bbx>."  # the gold as the model was asked to write it

    def judge(ratings: str, own: str):
        def answer(content: list) -> str:
            text = content[0]["text"]
            if text.startswith("You grade answers"):  # voxqa's own binary jury
                return "yes"
            candidate = text.split("Candidate answer:\n")[1].split("\n\nRate the candidate")[0]
            return own if candidate == reference else ratings
        return answer

    def score(answer, faults=None) -> dict:
        with StubServer(answer, faults=faults) as srv:
            invoke("score", tmp_path / "run", "--as-published", "sgmri-vqa", "--judge", "openai:gpt-4o",
                   "--judge-base-url", srv.url)
            requests = list(srv.requests)
        (tmp_path / "run" / "jury.jsonl").unlink()  # the next variant asks afresh
        return read_json(tmp_path / "run" / "results.json")["as_published"]["as_published"] | {"requests": requests}

    with StubServer(judge("7,8,6", "10,10,10")) as srv:
        invoke("score", tmp_path / "run", "--as-published", "sgmri-vqa", "--judge", "openai:gpt-4o", "--judge-base-url", srv.url)
        rated = [r for r in srv.requests if not r["messages"][0]["content"][0]["text"].startswith("You grade")]
        assert len(rated) == 2 and all(r["temperature"] == 0.0 and r["max_tokens"] == 20 for r in rated)
        texts = [r["messages"][0]["content"][0]["text"] for r in rated]
        candidate = texts[0].split("Candidate answer:\n")[1].split("\n\nRate")[0]
        assert texts[0] == PROMPT.format(reference=reference, candidate=candidate)
        assert texts[1] == PROMPT.format(reference=reference, candidate=reference)
        assert candidate.startswith('{"reasoning"')  # the whole reply, as released
        n = len(srv.requests)
        invoke("score", tmp_path / "run", "--as-published", "sgmri-vqa", "--judge", "openai:gpt-4o", "--judge-base-url", srv.url)
        assert len(srv.requests) == n  # cached in jury.jsonl
    block = read_json(tmp_path / "run" / "results.json")["as_published"]["as_published"]
    assert block["columns"]["Captioning"] == pytest.approx(100 * (0.4 * 0.7 + 0.6))
    assert block["gptscore_judge"] == "openai:gpt-4o"
    (tmp_path / "run" / "jury.jsonl").unlink()

    assert score(judge("8,8", "10,10,10"))["columns"]["Captioning"] == pytest.approx(100.0)
    assert score(judge("n/a", "10,10,10"))["columns"]["Captioning"] == pytest.approx(60.0)
    assert score(judge("7,8,6", "5,5,5"))["columns"]["Captioning"] == pytest.approx(100.0)
    failed = score(judge("7,8,6", "10,10,10"), faults=[None, "400"])  # the binary jury's, then the rating's
    assert failed["columns"]["Captioning"] is None and "request failed" in next(iter(failed["ar_failures"].values()))


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def reference(shared_reference: Path) -> Path:
    return shared_reference


def test_realdata_sgmri_sample_knee_off_by_one_found_in_every_knee_volume(reference: Path, shared_data: Path, tmp_path: Path) -> None:
    """The released-format sample carries the knee off-by-one (its SOURCE.md): every knee box
    is moved by one frame and lands on its fastMRI+ slice; brain boxes stay."""
    sample = reference / "samples" / "sgmri_vqa"
    fmp = shared_data / "fastmri_plus"
    qa = sorted(sample.glob("*_qa_pairs.json"))
    manifest = import_sgmri_vqa(qa, [fmp / "knee.csv", fmp / "brain.csv"], tmp_path / "ds",
                                file_lists=[fmp / "knee_file_list.csv", fmp / "brain_file_list.csv"])
    records = [r for p in qa for r in json.loads(p.read_text())]
    knee = {r["volume_id"] for r in records if r["modality"] == "knee"}
    report = read_json(tmp_path / "ds" / "build_report.json")
    assert sorted(report["totals"]["volumes_off_by_one"]) == sorted(knee)
    assert "warning" not in report  # every box, after the correction, is a fastMRI+ box
    assert manifest["counts"]["items"] == len(records)
    # independent check: each imported knee slice item sits on the fastMRI+ slice of its box
    def clipped(r: dict) -> tuple[int, ...]:  # the box clipped to the 320 x 320 frame, as stored
        x, y, w, h = (int(r[k]) for k in ("x", "y", "width", "height"))
        return max(x, 0), max(y, 0), min(x + w, 320), min(y + h, 320)

    rows = {(r["file"], int(r["slice"]), *clipped(r))
            for r in csv.DictReader((fmp / "knee.csv").open()) if r["study_level"] == "No"}
    checked = 0
    for it in read_items(tmp_path / "ds"):
        if it.level == "frame" and it.study_id in knee:
            for e in it.evidence:
                assert (it.study_id, e.frame, *e.box) in rows
                checked += 1
    assert checked > 0


def test_realdata_sgmri_released_records_as_replies_score_100_as_published(reference: Path, shared_data: Path,
                                                                           tmp_path: Path) -> None:
    """The shared samples' records as a model's replies (``Frame N:`` from 1, ``<bbx>`` xywh),
    with perfect boxes (knee frames moved to their fastMRI+ slice, the 4 boxes reaching y = -1
    clipped to the 320 px frame as stored): under ``--profile sgmri`` as-published Localization
    (V) and the volume V-Score are 100 (they were 83.9 and 0.381 under voxqa's 0-based
    prompt, which now leaves the as-published V-Score uncomputed)."""
    sample = reference / "samples" / "sgmri_vqa"
    fmp = shared_data / "fastmri_plus"
    qa = sorted(sample.glob("*_qa_pairs.json"))
    released = {p.name: json.loads(p.read_text()) for p in qa}
    frames: dict[str, int] = {}
    for r in (r for recs in released.values() for r in recs):
        shown = [int(n) + 1 for n in re.findall(r"Frame (\d+)", str(r["answer"]))] + [r.get("slice_num") or 0]
        frames[r["volume_id"]] = max([frames.get(r["volume_id"], 0), r.get("num_slices") or 0, *shown])
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    for name, n in frames.items():
        with h5py.File(volumes / f"{name}.h5", "w") as f:
            f.create_dataset("reconstruction_rss", data=np.zeros((n, 320, 320), np.float32), compression="gzip")
    ds = tmp_path / "ds"
    import_sgmri_vqa(qa, [fmp / "knee.csv", fmp / "brain.csv"], ds,
                     file_lists=[fmp / "knee_file_list.csv", fmp / "brain_file_list.csv"], volumes=volumes)
    invoke("render", ds)  # the volume items' capped frame set: boxes on other frames are read all the same

    def clipped(m: re.Match) -> str:
        x, y, w, h = (int(v) for v in m[1].split(","))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, 320), min(y + h, 320)
        return f"<bbx>[{x0},{y0},{x1 - x0},{y1 - y0}]</bbx>"

    replies = {i: re.sub(r"<bbx>\[([-\d,]+)\]</bbx>", clipped, text) for i, text in released_replies(ds, released).items()}
    block = replay_results(ds, tmp_path / "sgmri", replies, "sgmri", "--as-published", "sgmri-vqa")["as_published"]
    published = block["as_published"]
    assert published["columns"]["Localization (V)"] == pytest.approx(100.0)
    assert published["breakdowns"]["level"]["volume"]["v_score"]["mean"] == pytest.approx(100.0)
    assert published["map"]["localization"] == pytest.approx(100.0)
    assert published["columns"]["Detection"] == pytest.approx(100.0) and published["columns"]["Counting"] == pytest.approx(100.0)
    late = replay_results(ds, tmp_path / "pixel", replies, "pixel", "--as-published", "sgmri-vqa")
    assert late["by"]["level"]["volume"]["metrics"]["v_score"]["mean"] == pytest.approx(0.3815, abs=1e-4)
    assert late["as_published"]["as_published"]["columns"]["Localization (V)"] is None


# --------------------------------------------------------------------------- CT-SpatialVQA


def _volume_path(case: str) -> str:
    """The released image_path layout (dataset/data_volumes/dataset/valid_fixed/...)."""
    patient, scan = "_".join(case.split("_")[:2]), "_".join(case.split("_")[:3])
    return f"dataset/data_volumes/dataset/valid_fixed/{patient}/{scan}/{case}.nii.gz"


CT_QA = [  # (case_id, question, answer); the first question is asked of two cases
    ("valid_1_a_1.nii.gz", "Where is the nodule?", "In the right upper lobe."),
    ("valid_1_a_1.nii.gz", "Is the effusion bilateral?", "No, it is on the left only."),
    ("valid_2_a_1.nii.gz", "Where is the nodule?", "In the right upper lobe."),
    ("valid_2_a_1.nii.gz", "Which side is the pleural thickening on?", "The left side."),
    ("valid_3_b_1.nii.gz", "Is the aorta dilated at the arch?", "The aortic arch is normal in calibre."),
]
CT_CATEGORIES = [["Laterality & Bilateral Symmetry"], ["Laterality & Bilateral Symmetry", "Spatial Extent & Boundaries"],
                 ["Laterality & Bilateral Symmetry"], ["Laterality & Bilateral Symmetry"], ["Longitudinal (Vertical) Position"]]
# the model's answers and three judges' verdicts, released order; Gemini lost the second entry
CT_PREDICTIONS = ["Left lung.", "Bilateral.", "Right upper lobe.", "Left.", "Normal."]
CT_VERDICTS = {"gpt": [True, False, False, True, True], "qwen": [True, True, False, False, True],
               "gemini2.5": [True, None, False, True, False]}
# hand-computed: positional rows (gpt, qwen, gemini shifted by one from row 1 on) -> T, F, F, F;
# aligned: items 0, 2, 3, 4 judged by all three -> T, F, T, T
CT_POSITIONAL, CT_ALIGNED = 1 / 4, 3 / 4


#: VILA-M3's case: Gemini wrote entries with ``is_correct: null`` (reasoning "BLOCKED_OR_EMPTY_RESPONSE")
#: in place of verdicts; every entry is there, so nothing is shifted.
CT_NULL_VERDICTS = {"gpt": [True, False, False, True, True], "qwen": [True, True, False, False, True],
                    "gemini2.5": [True, "null", "null", True, False]}
# hand-computed, released rule (a null vote is 0; floor(100 * mean) / 100 >= 0.66):
# rows 1 1 1 | 0 1 0 | 0 0 0 | 1 0 1 | 1 1 0 -> T F F T T = 3/5; aligned: items 0, 3, 4 (all judged) -> 3/3
CT_NULL_POSITIONAL, CT_NULL_ALIGNED = 3 / 5, 1.0


def write_ct(root: Path, order: list[int] | None = None, extra: bool = False,
             verdicts_by_judge: dict | None = None) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    rows = [dict(zip(("case_id", "question", "answer"), r, strict=False)) | {"image_path": _volume_path(r[0])} for r in CT_QA]
    order = order or list(range(len(rows)))
    qa = root / "spatial_qa_filtered_full_nifti.jsonl"
    qa.write_text("".join(json.dumps(rows[i] | ({"source": "x"} if extra else {})) + "\n" for i in order))
    cats: dict[str, dict] = {}
    for r, c in zip(rows, CT_CATEGORIES, strict=False):
        cats.setdefault(r["case_id"], {"qa_pairs": []})["qa_pairs"].append(
            {"question": r["question"], "answer": r["answer"], "category": c})
    (root / "categories.json").write_text(json.dumps(cats))
    for case in sorted({r[0] for r in CT_QA}):
        path = root / "volumes" / _volume_path(case)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = np.random.default_rng(1).integers(-1000, 400, (24, 20, 4)).astype(np.int16)
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    evals = []
    for judge, verdicts in (verdicts_by_judge or CT_VERDICTS).items():
        entries = [{"case_id": None, "question": CT_QA[i][1], "answer": CT_QA[i][2], "prediction": CT_PREDICTIONS[i],
                    "is_correct": None if verdicts[i] == "null" else verdicts[i]}
                   | ({"reasoning": "BLOCKED_OR_EMPTY_RESPONSE"} if verdicts[i] == "null" else {})
                   | ({"reasoning": "same fact"} if extra and verdicts[i] != "null" else {})
                   for i in order if verdicts[i] is not None]
        name = f"toy_{judge}_eval_full.json" if judge.startswith("gemini") else f"toy_{judge}_eval.json"
        (root / name).write_text(json.dumps(entries))
        evals.append(root / name)
    return {"qa": qa, "categories": root / "categories.json", "volumes": root / "volumes", "evals": evals}


def test_ct_spatialvqa_import_run_and_scores_as_published(tmp_path: Path) -> None:
    src = write_ct(tmp_path / "src")
    ds, run = tmp_path / "ds", tmp_path / "published_run"
    invoke("import", "ct-spatialvqa", "--qa", src["qa"], "--categories", src["categories"],
           "--volumes-root", src["volumes"], "--out", ds)
    items = read_items(ds)
    assert len(items) == 5 and {it.answer.type for it in items} == {"text"}
    assert {it.category for it in items if it.question.startswith("Is the effusion")} == {
        "Laterality & Bilateral Symmetry; Spatial Extent & Boundaries"}
    studies = {s.id: s for s in read_studies(ds)}
    assert set(studies) == {"valid_1_a_1", "valid_2_a_1", "valid_3_b_1"}
    assert studies["valid_1_a_1"].patient_id == "valid_1" and studies["valid_1_a_1"].frame_count == 4
    assert studies["valid_1_a_1"].frame_size == (24, 20)

    invoke("import", "ct-spatialvqa-run", "--dataset", ds, *[a for e in src["evals"] for a in ("--eval", e)],
           "--out", run)
    report = read_json(run / "import_report.json")
    assert report["gaps"]["item_not_judged"]["count"] == 1  # Gemini's lost entry: a gap, not a shift
    assert report["judges"]["gemini"]["aligned"] == 4
    out = invoke("score", run, "--as-published", "ct-spatialvqa")
    block = read_json(run / "results.json")["as_published"]
    assert block["as_published"]["jury_accuracy"] == pytest.approx(CT_POSITIONAL)
    assert block["voxqa"]["jury_accuracy"] == pytest.approx(CT_ALIGNED) and block["voxqa"]["n"] == 4
    assert block["voxqa"]["by_category"]["Laterality & Bilateral Symmetry"] == {"jury_accuracy": pytest.approx(2 / 3), "n": 3}
    assert '"jury_accuracy": 0.75' in out
    predictions = {json.loads(line)["item_id"]: json.loads(line)["raw"] for line in (run / "predictions.jsonl").open()}
    by_case = {(it.study_id, it.question): predictions[it.id] for it in items}
    assert by_case[("valid_2_a_1", "Where is the nodule?")] == "Right upper lobe."  # same QA, its own answer

    assert_perfect(oracle_results(ds, tmp_path / "oracle", "test"))


def test_ct_spatialvqa_hidden_variant_reordered_with_extra_fields(tmp_path: Path) -> None:
    """Records and verdicts reordered alike, extra fields: the aligned score cannot move."""
    src = write_ct(tmp_path / "src", order=[4, 1, 2, 3, 0], extra=True)
    import_ct_spatialvqa(src["qa"], tmp_path / "ds", categories=src["categories"])
    import_ct_spatialvqa_run(tmp_path / "ds", src["evals"], tmp_path / "run")
    block = ct_published(tmp_path / "run", [{"item_id": it.id, "category": it.category}
                                             for it in read_items(tmp_path / "ds")])
    assert block["voxqa"]["jury_accuracy"] == pytest.approx(CT_ALIGNED)
    # positional rows now: items 4 | 1 with Gemini's 2 | 2 with 3 | 3 with 0 -> T, F, F, T
    assert block["as_published"]["jury_accuracy"] == pytest.approx(2 / 4)


def test_ct_spatialvqa_null_verdicts_are_recorded_jury_failures(tmp_path: Path) -> None:
    """VILA-M3's released Gemini file has five entries with ``is_correct: null``; the import
    used to refuse the whole file. Now each is a recorded jury failure of that judge: as
    published it counts as not correct (3/5, hand-computed above), aligned the item is left out
    (3/3 over the items every judge judged), and the import report and summary say so."""
    src = write_ct(tmp_path / "src", verdicts_by_judge=CT_NULL_VERDICTS)
    ds, run = tmp_path / "ds", tmp_path / "run"
    invoke("import", "ct-spatialvqa", "--qa", src["qa"], "--categories", src["categories"], "--out", ds)
    out = invoke("import", "ct-spatialvqa-run", "--dataset", ds, *[a for e in src["evals"] for a in ("--eval", e)],
                 "--out", run)
    assert "jury failures 2" in out and "counted as not correct as published" in " ".join(out.split())
    report = read_json(run / "import_report.json")
    failures = report["jury_failures"]
    assert (failures["count"], failures["items"]) == (2, 2)
    assert [(f["judge"], f["index"], f["reasoning"]) for f in failures["entries"]] == [
        ("gemini", 1, "BLOCKED_OR_EMPTY_RESPONSE"), ("gemini", 2, "BLOCKED_OR_EMPTY_RESPONSE")]
    assert report["judges"]["gemini"] | {"file": None} == {"file": None, "entries": 5, "aligned": 5, "failed": 2,
                                                           "model": report["judges"]["gemini"]["model"]}
    assert all(g["count"] == 0 for g in report["gaps"].values())  # nothing lost or shifted
    assert "counted as not correct" in failures["as_published"]
    # the jury cache holds verdicts only: a failure is never read back as a "no"
    cached = [json.loads(line) for line in (run / "jury.jsonl").open()]
    assert len(cached) == 13 and all(isinstance(c["verdict"], bool) for c in cached)
    invoke("score", run, "--as-published", "ct-spatialvqa")
    block = read_json(run / "results.json")["as_published"]
    assert block["as_published"]["jury_accuracy"] == pytest.approx(CT_NULL_POSITIONAL)
    assert (block["as_published"]["n"], block["as_published"]["null_verdicts_counted_wrong"]) == (5, 2)
    assert block["voxqa"]["jury_accuracy"] == pytest.approx(CT_NULL_ALIGNED) and block["voxqa"]["n"] == 3
    assert (block["voxqa"]["items_missing_a_verdict"], block["voxqa"]["items_with_jury_failures"]) == (2, 2)


@pytest.mark.parametrize(("target", "change", "message"), [
    ("qa", lambda r: r.pop("answer"), "missing field 'answer'"),
    ("qa", lambda r: r.update(question=["a", "list"]), "field 'question' must be str"),
    ("eval", lambda r: r.update(is_correct="yes"), "field 'is_correct' must be bool"),
    ("eval", lambda r: r.pop("prediction"), "missing field 'prediction'"),
])
def test_ct_spatialvqa_refuses_unknown_shapes_naming_the_field(tmp_path: Path, target: str, change, message: str) -> None:
    src = write_ct(tmp_path / "src")
    if target == "qa":
        rows = [json.loads(line) for line in src["qa"].read_text().splitlines()]
        change(rows[2])
        src["qa"].write_text("".join(json.dumps(r) + "\n" for r in rows))
        with pytest.raises(BuildError, match=message):
            import_ct_spatialvqa(src["qa"], tmp_path / "ds")
        return
    import_ct_spatialvqa(src["qa"], tmp_path / "ds")
    entries = json.loads(src["evals"][0].read_text())
    change(entries[1])
    src["evals"][0].write_text(json.dumps(entries))
    with pytest.raises(BuildError, match=message):
        import_ct_spatialvqa_run(tmp_path / "ds", src["evals"], tmp_path / "run")


def test_realdata_ct_spatialvqa_m3d_published_and_aligned(reference: Path, tmp_path: Path) -> None:
    """The released M3D files: 0.3057 as published (positional), 0.3122 aligned (2 of 3
    judges over the 9,074 items all three judged), as SOURCE.md states."""
    sample = reference / "samples" / "ct_spatialvqa"
    import_ct_spatialvqa(sample / "spatial_qa_filtered_full_nifti.jsonl", tmp_path / "ds",
                         categories=sample / "spatial_qa_filtered_full_with_categories.json")
    report = import_ct_spatialvqa_run(tmp_path / "ds", sorted(sample.glob("m3d_*eval*.json")), tmp_path / "run")
    assert report["predictions"] == 9077 and report["gaps"]["item_not_judged"]["count"] == 3
    items = read_items(tmp_path / "ds")
    block = ct_published(tmp_path / "run", [{"item_id": it.id, "category": it.category} for it in items])
    assert round(block["as_published"]["jury_accuracy"], 4) == 0.3057 and block["as_published"]["n"] == 9074
    assert round(block["voxqa"]["jury_accuracy"], 4) == 0.3122 and block["voxqa"]["n"] == 9074
    # an independent hand computation from the released files (no voxqa code)
    files = {j: json.loads(next(sample.glob(f"m3d_{j}*eval*.json")).read_text()) for j in ("gpt", "qwen", "gemini")}
    n = min(len(v) for v in files.values())
    positional = sum(math.floor(100 * sum(files[j][i]["is_correct"] for j in files) / 3) / 100 >= 0.66 for i in range(n)) / n
    assert block["as_published"]["jury_accuracy"] == pytest.approx(positional)


# --------------------------------------------------------------------------- 3DReasonKnee

RK_TEMPLATES = {  # in the released style: the answer JSON ends the template
    "1": "In this DESS MRI, can you diagnose bone-marrow lesions (BMLs) in the patella medial subregion? BMLs are "
         "scored using MOAKS components. Provide your reasoning, and the MOAKS scores. The output format should be a "
         'JSON object with the MOAKS scores: {"MOAKS_scores": {"patella medial BML": {"Size of BML (including cyst)": '
         '(grade from 0-3), "Number of BML within subregion": (grade from 0-3)}}}',
    "44": "In this DESS MRI, grade the medial meniscus anterior extrusion. Provide your reasoning, and the MOAKS "
          'extrusion grade. The output format should be a JSON object with the MOAKS grade: {"MOAKS_scores": '
          '{"medial meniscus anterior extrusion": (grade from 0-3)}}',
    "46": "In this DESS MRI, grade the lateral meniscus anterior extrusion. Provide your reasoning, and the MOAKS "
          'extrusion grade. The output format should be a JSON object with the MOAKS grade: {"MOAKS_scores": '
          '{"lateral meniscus anterior extrusion": {"grade": (grade from 0-3)}}}',
    "56": "In this DESS MRI, detect medial meniscal hypertrophy, if there is any. Provide your reasoning and whether "
          'it is present. The output format should be a JSON object: {"medial_meniscal_hypertrophy": {"presence": (0 | 1)}}',
    "58": "In this DESS MRI, detect a meniscal root tear at the MMRT, if there is any. Provide your reasoning and "
          'end_slice, x_min, x_max, y_min, y_max], "medial_meniscal_root_tear": {"presence": (0 | 1)}}',
}
RK_STUDIES = [("9000001", "00m", "0.C.2", "10000001", "RIGHT"), ("9000002", "12m", "1.C.2", "10000002", "LEFT")]
RK_GRADES = [  # per study: Q1 (size, number), Q44, Q46, Q56
    (2, 1, 0, 3, 1), (0, 0, 1, 2, 0),
]


def rk_records(with_ids: bool = True) -> list[dict]:
    out = []
    for study, (size, number, e44, e46, hyp) in zip(RK_STUDIES, RK_GRADES, strict=False):
        image = "images/" + "_".join(study[:4]) + ".nii.gz"
        answers = {
            "1": {"MOAKS_scores": {"patella medial BML": {"Size of BML (including cyst)": size,
                                                          "Number of BML within subregion": number}}},
            "44": {"MOAKS_scores": {"medial meniscus anterior extrusion": e44}},
            "46": {"MOAKS_scores": {"lateral meniscus anterior extrusion": {"grade": e46}}},
            "56": {"medial_meniscal_hypertrophy": {"presence": hyp}},
            "58": {"medial_meniscal_root_tear": {"presence": 0}},
        }
        for qid, answer in answers.items():
            rec = {"image": image, "prompt": RK_TEMPLATES[qid], "answer": json.dumps(answer),
                   "key": "_".join(study) + f"_{qid}"}
            out.append(rec | ({"question_id": qid} if with_ids else {}))
    return out


def write_rk(root: Path, records: list[dict], split_name: str = "test_split.csv") -> dict:
    root.mkdir(parents=True, exist_ok=True)
    (root / "questions.json").write_text(json.dumps(RK_TEMPLATES))
    (root / "answers.json").write_text(json.dumps(records))
    with (root / split_name).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "time", "study_folder", "series_folder", "knee_side", "image_filepath", "label_filepath"])
        for s in RK_STUDIES:
            stem = "_".join(s[:4])
            w.writerow([*s, f"images/{stem}.nii.gz", f"labels/{stem}_seg.nii.gz"])
            path = root / "volumes" / "images" / f"{stem}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.random.default_rng(2).random((8, 12, 10)).astype(np.float32), np.eye(4)), path)
    return {"questions": root / "questions.json", "answers": root / "answers.json", "split": root / split_name,
            "volumes": root / "volumes"}


def test_reasonknee_import_one_item_per_component_and_oracle_scores_100(tmp_path: Path) -> None:
    src = write_rk(tmp_path / "src", rk_records())
    ds = tmp_path / "ds"
    invoke("import", "reasonknee", "--questions", src["questions"], "--answers", src["answers"],
           "--splits", src["split"], "--volumes-root", src["volumes"], "--out", ds)
    items = read_items(ds)
    assert len(items) == 2 * 6  # Q1 two components, Q44, Q46, Q56, Q58 (its answer JSON's head restored)
    assert read_json(ds / "build_report.json")["info"]["template_answer_json_head_restored"]["count"] == 1
    study = "_".join(RK_STUDIES[0])
    mine = {it.subtask: it for it in items if it.study_id == study}
    # the knee family's MOAKS table names these components: its feature and region
    assert mine["bml_size"].label == "patella_medial" and mine["bml_size"].answer.value == 2
    assert mine["bml_number"].answer.value == 1 and mine["bml_number"].answer.scale == [0, 1, 2, 3]
    # Q44 writes a bare grade, Q46 nests {"grade": g}: both read
    assert {it.label: it.answer.value for it in items if it.subtask == "meniscal_extrusion_anterior"
            and it.study_id == study} == {"meniscus_medial": 0, "meniscus_lateral": 3}
    assert mine["meniscal_hypertrophy"].answer.value == "yes" and mine["root_tear"].label == "meniscus_medial"
    assert json.loads(mine["bml_size"].answer_text) == {
        "MOAKS_scores": {"patella medial BML": {"Size of BML (including cyst)": 2}}}
    studies = {s.id: s for s in read_studies(ds)}
    assert studies[study].split == "test" and studies[study].frame_count == 8
    assert studies[study].frame_size == (12, 10) and studies[study].view_axis == 0  # sagittal
    assert_perfect(oracle_results(ds, tmp_path / "run", "test"))


def test_reasonknee_hidden_variant_without_question_ids_reordered(tmp_path: Path) -> None:
    """No question_id (the released SFT records: the key or the prompt says it), shuffled, an
    extra field: the same items."""
    base = write_rk(tmp_path / "a", rk_records())
    variant_records = [dict(r, source="hf") for r in rk_records(with_ids=False)]
    for r in variant_records[::2]:
        r.pop("key")  # the prompt names the template
    random.Random(5).shuffle(variant_records)
    variant = write_rk(tmp_path / "b", variant_records, split_name="reasonknee_test_split_v2.csv")
    for src, out in ((base, "ds_a"), (variant, "ds_b")):
        from voxqa.importers.reasonknee import import_reasonknee

        import_reasonknee(src["questions"], src["answers"], tmp_path / out, splits=[src["split"]])
    strip = lambda items: sorted(it.model_dump_json() for it in items)  # noqa: E731
    assert strip(read_items(tmp_path / "ds_a")) == strip(read_items(tmp_path / "ds_b"))


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.update(answer=json.dumps({"MOAKS_scores": {"medial meniscus anterior extrusion": 5}})),
     "'MOAKS_scores.medial meniscus anterior extrusion' = 5 is not a grade on the template's scale"),
    (lambda r: r.update(answer=json.dumps({"MOAKS_scores": {"medial meniscus anterior extrusion": 1, "extra": 2}})),
     "answer field 'MOAKS_scores.extra' is not in template 44"),
    (lambda r: r.pop("image"), "missing field 'image'"),
    (lambda r: r.update(question_id="70"), "field 'question_id' '70' names no template"),
])
def test_reasonknee_refuses_unknown_shapes_naming_the_field(tmp_path: Path, change, message: str) -> None:
    from voxqa.importers.reasonknee import import_reasonknee

    records = rk_records()
    change(records[1])  # the first study's Q44 record
    src = write_rk(tmp_path / "src", records)
    with pytest.raises(BuildError, match=message.replace("(", r"\(").replace(".", r"\.")):
        import_reasonknee(src["questions"], src["answers"], tmp_path / "ds", splits=[src["split"]])


def test_realdata_reasonknee_released_templates(reference: Path, tmp_path: Path) -> None:
    """Both released question files: every template yields its answer shape (Q58/59's head,
    lost to the bbox stripping, restored with its 3D box); the sample answers import with one
    item per graded component, values as given, both files' prompts in one dataset."""
    from voxqa.importers.reasonknee import import_reasonknee, read_templates

    sample = reference / "samples" / "reasonknee"
    for name in ("questions_nobbox_zeroshot.json", "questions_nobbox_guided.json"):
        templates = read_templates(sample / name)
        assert len(templates) == 69
        assert sorted(q for q, t in templates.items() if t.repaired) == ["58", "59"]
        assert [c.path for c in templates["58"].components] == [("bbox",), ("medial_meniscal_root_tear", "presence")]
    import_reasonknee(sample / "questions_nobbox_zeroshot.json", sample / "sample_answers.json", tmp_path / "ds",
                      guided=sample / "questions_nobbox_guided.json", splits=[sample / "sample_split.csv"])
    records = json.loads((sample / "sample_answers.json").read_text())

    def leaves(value: object) -> list[int]:
        return [x for v in value.values() for x in leaves(v)] if isinstance(value, dict) else [value]

    items = read_items(tmp_path / "ds")
    assert len(items) == sum(len(leaves(json.loads(r["answer"]))) for r in records)
    for it in items:
        leaf = leaves(json.loads(it.answer_text))
        assert len(leaf) == 1
        assert it.answer.value == ({0: "no", 1: "yes"}[leaf[0]] if it.answer.type == "yes_no" else leaf[0])


# --------------------------------------------------------------------------- SGMRI-VQA export


def test_sgmri_export_round_trip_gives_the_same_items(tmp_path: Path) -> None:
    """voxqa -> SGMRI-VQA records (1-based frames, <bbx> xywh) -> voxqa: the same answers,
    frames and boxes; the export's frames are the brain convention (voxqa frame + 1)."""
    src = write_sgmri(tmp_path / "src")
    ds = tmp_path / "ds"
    invoke(*_sgmri_args(src, ds))
    invoke("render", ds, "--frames", "all")
    out = tmp_path / "export"
    invoke("export", ds, "--format", "sgmri-vqa", "--out", out)
    knee_slices = json.loads((out / "knee_val_slice_qa_pairs.json").read_text())
    detection = next(r for r in knee_slices if r["task"] == "detection")
    assert detection["slice_num"] == 3 and detection["image_path"].endswith("/0002.png")  # voxqa frame 2
    assert detection["ground_truth"]["bboxes"] == [{"x": 10, "y": 12, "width": 8, "height": 6, "label": "Meniscus Tear"}]
    diagnosis = next(r for r in knee_slices if r["task"] == "diagnosis")
    assert diagnosis["answer"] == "(A)" and "(B) Bone - Lesion" in diagnosis["question"]
    volume = json.loads((out / "knee_val_volume_qa_pairs.json").read_text())
    where = next(r for r in volume if r["task"] == "localization")
    assert "Meniscus Tear: Frame 3: <bbx>[10,12,8,6]</bbx>; Frame 4: <bbx>[11,12,8,6]</bbx>" in where["answer"]
    caption = next(r for r in volume if r["task"] == "captioning")
    assert caption["answer"] == "Meniscus Tear: Frame 3: <bbx>[10,12,8,6]</bbx>."  # the released text, frame + 1
    brain = json.loads((out / "brain_val_volume_qa_pairs.json").read_text())
    assert brain[0]["answer"] == sgmri_records()["brain_val_volume_qa_pairs.json"][0]["answer"]  # as released
    assert json.loads((out / "sgmri_export.json").read_text())["profile"] == "sgmri"

    # read back: the exported frames are 1-based without an off-by-one (CSV slice + 1)
    back = tmp_path / "back"
    qa = sorted(p for p in out.glob("*_qa_pairs.json"))
    import_sgmri_vqa(qa, [src["annotations"]], back, volumes=src["volumes"])
    report = read_json(back / "build_report.json")
    assert "frame_off_by_one_corrected" not in report.get("repaired", {}) and "warning" not in report

    def answers(folder: Path) -> list[tuple]:
        return sorted((it.study_id, it.template, tuple(it.frames), it.answer.model_dump_json()) for it in read_items(folder))

    assert answers(back) == answers(ds)


@pytest.mark.parametrize("profile", ["qwen2-vl", "pixel", "sgmri:frame_base=0"])
def test_sgmri_export_refuses_a_profile_other_than_sgmris(tmp_path: Path, profile: str) -> None:
    """The records are written in SGMRI-VQA's convention only: 1-based frames, <bbx> xywh."""
    src = write_sgmri(tmp_path / "src")
    invoke(*_sgmri_args(src, tmp_path / "ds"))
    invoke("render", tmp_path / "ds")
    res = runner.invoke(app, ["export", str(tmp_path / "ds"), "--format", "sgmri-vqa", "--out",
                              str(tmp_path / "x"), "--profile", profile])
    assert res.exit_code == 2 and "--profile sgmri" in res.output


def test_every_importer_is_a_command_documented_with_its_licence() -> None:
    """IMPORTERS lists the `voxqa import` commands; docs/importers.md documents each, with a
    licence and access paragraph per benchmark and every as-published benchmark in its table."""
    from voxqa.importers import IMPORTERS
    from voxqa.importers.published_scores import NAMES

    commands = set(invoke("import", "--help").split())
    docs = (Path(__file__).parents[1] / "docs" / "importers.md").read_text()
    for name in IMPORTERS:
        assert name in commands and f"voxqa import {name}" in docs, name
    assert docs.count("**Licence and access.**") == 3
    table = docs.split("## As published vs voxqa")[1]
    for name in NAMES:
        assert {"sgmri-vqa": "SGMRI-VQA", "ct-spatialvqa": "CT-SpatialVQA"}[name] in table


def test_a_released_image_path_leaving_the_volumes_root_is_refused(tmp_path: Path) -> None:
    """``image_path`` comes from a released file: ``../`` out of --volumes-root is refused and
    counted, the study built box-only, the file outside never opened."""
    src = write_ct(tmp_path / "src")
    rows = [json.loads(line) for line in src["qa"].read_text().splitlines()]
    outside = tmp_path / "outside.nii.gz"
    outside.write_bytes((src["volumes"] / rows[0]["image_path"]).read_bytes())
    rows[0]["image_path"] = "../../outside.nii.gz"
    src["qa"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = tmp_path / "ds"
    invoke("import", "ct-spatialvqa", "--qa", src["qa"], "--volumes-root", src["volumes"], "--out", ds)
    report = read_json(ds / "build_report.json")
    assert "outside.nii.gz" in json.dumps(report) and "volume_path_leaves_volumes_root" in json.dumps(report)
    assert all("outside" not in (s.volume.path if s.volume else "") for s in read_studies(ds))
