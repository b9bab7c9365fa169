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
import json
import math
import random
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from voxqa.cli import app
from voxqa.dataset.folder import read_items, read_json, read_studies
from voxqa.errors import BuildError
from voxqa.importers.ct_spatialvqa import import_ct_spatialvqa, import_ct_spatialvqa_run
from voxqa.importers.published_scores import (
    ct_spatialvqa as ct_published,
    released_a_score,
    released_yes_no,
)
from voxqa.importers.sgmri_vqa import import_sgmri_vqa

runner = CliRunner()
FRAME = 48  # pixels of the test volumes' frames


def invoke(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def oracle_results(ds: Path, run: Path, split: str, *extra: str) -> dict:
    """Render ``ds``, run the oracle through the CLI and score it; results.json."""
    invoke("render", ds, "--frames", "all")
    invoke("eval", ds, "--model", "oracle", "--out", run, "--split", split)
    invoke("score", run, *extra)
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

    results = oracle_results(ds, tmp_path / "run", "val", "--as-published", "sgmri-vqa")
    assert_perfect(results)
    published = results["as_published"]["as_published"]
    for column in ("Detection", "Diagnosis", "Classification", "Counting", "Localization (V)", "Captioning"):
        assert published["columns"][column] == pytest.approx(100.0), column
    assert published["columns"]["Localization (AR)"] is None  # voxqa asks localization for boxes only
    assert published["avg"] == pytest.approx(100.0)
    assert published["map"]["localization"] == pytest.approx(100.0)


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


def test_released_a_score_parsing_reproduces_the_published_bugs() -> None:
    """The as-published A-Score keeps the released parsing (source-benchmarks.md 1.8 #3, #4)."""
    assert released_a_score("There is a tear.", "choice", 0) == 1.0  # "a" read as option (A)
    assert released_yes_no("The knee shows an abnormality in the medial meniscus.") is False
    assert released_a_score('{"answer": "Frame 7 shows 2 findings"}', "number", 2) == 1.0
    assert released_a_score("Frame 7 shows 2 findings, see frame 9", "number", 2) == 0.0  # last number


def test_sgmri_as_published_columns_match_hand_computed_values() -> None:
    """The README table's columns from per-item records, each value computed by hand below."""
    from voxqa.eval.metrics.items import score_item
    from voxqa.importers.published_scores import sgmri_vqa

    def rec(iid: str, task: str, answer_type: str, scores: dict) -> dict:
        return {"item_id": iid, "failed": False, "template": f"sgmri/{task}/x/frame", "task": task,
                "subtask": task, "answer_type": answer_type, "scores": scores}

    gold_boxes = [{"frame": 2, "box": [0, 0, 10, 10]}, {"frame": 3, "box": [0, 0, 10, 10]}]
    records = [
        rec("d1", "detection", "yes_no", {"a_score": 1.0}),
        rec("d2", "detection", "yes_no", {"a_score": 1.0}),
        rec("d3", "detection", "yes_no", {"a_score": 1.0}),
        rec("g1", "diagnosis", "choice", {"a_score": 0.0}),
        rec("c1", "counting", "number", {"a_score": 1.0}),
        rec("c2", "counting", "number", {"a_score": 1.0}),
        rec("l1", "localization", "boxes", score_item("boxes", gold_boxes, [{"frame": 2, "box": [0, 0, 10, 5]}])),
        rec("t1", "captioning", "text", {"token_f1": 0.5, "bleu": 0.2, "rouge_l": 0.3, "judge": 1.0}),
    ]
    replies = {"d1": "Yes, there is an abnormality.", "d2": "No abnormality.",
               "d3": "There is an abnormality in the meniscus.",  # the substring "no": read as no
               "g1": "There is a tear.",  # the article "a": read as option (A)
               "c1": "2 findings, see frame 9",  # the last number: 9
               "c2": "Therefore, the final answer is: 3"}
    golds = {"d1": "yes", "d2": "no", "d3": "yes", "g1": 0, "c1": 2, "c2": 3}
    block = sgmri_vqa(records, replies, golds)
    columns = block["as_published"]["columns"]
    assert columns["Detection"] == pytest.approx(100 * 2 / 3)
    assert columns["Diagnosis"] == pytest.approx(100.0) and block["voxqa"]["a_score"]["diagnosis"] == 0.0
    assert columns["Counting"] == pytest.approx(50.0)
    assert columns["Localization (V)"] == pytest.approx(100 * 0.5 / 2)  # IoU 0.5 on one of two gold boxes
    assert block["as_published"]["map"]["localization"] == pytest.approx(100 * 2 / 3)  # F1 2/3 at each IoU
    assert columns["Captioning"] == pytest.approx(100 * (0.4 * 1.0 + 0.2 * (0.5 + 0.2 + 0.3)))
    assert columns["Classification"] is None and columns["Localization (AR)"] is None
    assert block["as_published"]["avg"] == pytest.approx((200 / 3 + 100 + 50 + 25 + 60) / 5)


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


def write_ct(root: Path, order: list[int] | None = None, extra: bool = False) -> dict:
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
    for judge, verdicts in CT_VERDICTS.items():
        entries = [{"case_id": None, "question": CT_QA[i][1], "answer": CT_QA[i][2], "prediction": CT_PREDICTIONS[i],
                    "is_correct": verdicts[i]} | ({"reasoning": "same fact"} if extra else {})
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

    # read back: the exported frames are 1-based without an off-by-one (CSV slice + 1)
    back = tmp_path / "back"
    qa = sorted(p for p in out.glob("*_qa_pairs.json"))
    import_sgmri_vqa(qa, [src["annotations"]], back, volumes=src["volumes"])
    report = read_json(back / "build_report.json")
    assert "frame_off_by_one_corrected" not in report.get("repaired", {}) and "warning" not in report

    def answers(folder: Path) -> list[tuple]:
        return sorted((it.study_id, it.template, tuple(it.frames), it.answer.model_dump_json()) for it in read_items(folder))

    assert answers(back) == answers(ds)


def test_sgmri_export_refuses_a_non_pixel_profile(tmp_path: Path) -> None:
    src = write_sgmri(tmp_path / "src")
    invoke(*_sgmri_args(src, tmp_path / "ds"))
    invoke("render", tmp_path / "ds")
    res = runner.invoke(app, ["export", str(tmp_path / "ds"), "--format", "sgmri-vqa", "--out",
                              str(tmp_path / "x"), "--profile", "qwen2-vl"])
    assert res.exit_code == 2 and "--profile pixel" in res.output


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
