"""Knee grading (3DReasonKnee): the knee phantom through `voxqa build knee-grading`,
render, eval and score; the sagittal frame convention checked against the label map itself;
left and right knees; every graded (region, feature) asked; bad rows; box-only studies;
MOAKS JSON replies; the GT-region uplift in compare and the report."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from voxqa.anatomy.frames import sagittal_frame
from voxqa.cli import app
from voxqa.dataset.folder import read_items, read_studies
from voxqa.eval.parse import parse_answer
from voxqa.phantom import write_knee_phantom
from voxqa.render import to_uint8
from voxqa.anatomy.knee import COMPOSITES, FEATURES, REGIONS, label_name, moaks_scores, region_name

runner = CliRunner()


def cli(*args: object) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def build(ph: Path, out: Path, *extra: object) -> Path:
    cli("build", "knee-grading", "--studies", ph / "studies.csv", "--grades", ph / "grades.csv", "--out", out, *extra)
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Four knees (two patients, right and left), built and rendered."""
    root = tmp_path_factory.mktemp("knee")
    cli("phantom", "--knee", "--out", root / "ph", "--n", "4")
    ds = build(root / "ph", root / "ds")
    plain = (ds / "items.jsonl").read_bytes()
    cli("render", ds)
    return SimpleNamespace(root=root, ph=root / "ph", ds=ds, plain_items=plain)


def test_region_vocabulary_reads_any_word_order_and_abbreviations() -> None:
    assert region_name("Femur Medial Central") == "femur_central_medial"  # 3DReasonKnee's order
    assert region_name("tibia-lateral-posterior") == "tibia_posterior_lateral"
    assert region_name("MFC") == "femur_central_medial"
    assert region_name("medial meniscus") == "meniscus_medial"
    assert region_name("Anterior cruciate ligament") == "acl"
    assert region_name("femoral trochlear lateral") == "femur_trochlea_lateral"
    assert region_name("femur central") is None  # no side: not a subregion
    assert label_name("BML femur medial central") == "bml_femur_central_medial"
    assert label_name("bml_acl") is None  # lesion masks are of bone subregions only
    # MOAKS's osteophyte sites and meniscal parts, as 3DReasonKnee's templates write them
    assert region_name("femur medial anterior") == "femur_anterior_medial" != region_name("femur medial trochlea")
    assert region_name("patella superior") == "patella_superior" and region_name("tibia lateral") == "tibia_lateral"
    assert region_name("medial meniscus body") == "meniscus_medial_body" == region_name("MMB")
    assert region_name("LMP") == "meniscus_lateral_posterior"
    # a lesion mask names a region its kind is graded in (MOAKS: no subspinous cartilage)
    assert label_name("cartilage tibia subspinous") is None and label_name("bml tibia subspinous")
    assert label_name("osteophyte patella superior") == "osteophyte_patella_superior"
    assert label_name("osteophyte femur medial trochlea") is None  # a BML subregion, not an osteophyte site


def test_reoriented_copy_gives_identical_items(small: SimpleNamespace, tmp_path: Path) -> None:
    """The same knees stored with permuted and flipped array axes (and the matching affine)."""
    write_knee_phantom(tmp_path / "turned", n=4, axes=(2, 0, 1), flips=(True, False, True))
    first = nib.load(tmp_path / "turned" / "images" / "knee000.nii.gz")
    assert first.shape != nib.load(small.ph / "images" / "knee000.nii.gz").shape  # really re-stored
    turned = build(tmp_path / "turned", tmp_path / "ds")
    assert (turned / "items.jsonl").read_bytes() == small.plain_items


def _canonical(path: Path) -> np.ndarray:
    return np.asarray(nib.as_closest_canonical(nib.load(path)).dataobj)


def test_box3d_answers_are_the_label_maps_boxes_on_sagittal_frames(small: SimpleNamespace) -> None:
    """Frame f = n_i - 1 - i, x = n_j - 1 - j, y = n_k - 1 - k of the RAS+ array (docs/knee.md),
    computed here from the label map's voxels, not by voxqa's measuring code."""
    boxes = [it for it in read_items(small.ds) if it.subtask == "region_box3d"]
    assert {it.study_id for it in boxes} == {"knee000", "knee001", "knee002", "knee003"}
    assert len(boxes) == 4 * len(REGIONS)  # every region has a box: labelled, or the union of its parts
    for study in {it.study_id for it in boxes}:
        labels = _canonical(small.ph / "labels" / f"{study}.nii.gz")
        names = {label_name(n): int(i) for i, n in json.loads((small.ph / "labels" / f"{study}.json").read_text()).items()}
        n_i, n_j, n_k = labels.shape
        for it in (b for b in boxes if b.study_id == study):
            ids = [names[p] for p in COMPOSITES[it.label]] if it.label not in names else [names[it.label]]
            i, j, k = np.nonzero(np.isin(labels, ids))
            v = it.answer.value
            assert (v.frame_start, v.frame_end) == (n_i - 1 - i.max(), n_i - 1 - i.min())
            assert v.box == (n_j - 1 - j.max(), n_k - 1 - k.max(), n_j - j.min(), n_k - k.min())


def test_render_draws_the_stored_sagittal_frames(small: SimpleNamespace) -> None:
    record = json.loads((small.ds / "render.json").read_text())["studies"]["knee001"]
    image = _canonical(small.ph / "images" / "knee001.nii.gz")
    lo, hi = record["window"]
    assert record["frame_size"] == [image.shape[1], image.shape[2]]  # (width, height) = (n_j, n_k)
    for frame, rel in record["frames"].items():
        png = np.asarray(Image.open(small.ds / rel))
        assert np.array_equal(png, to_uint8(sagittal_frame(image, int(frame)), lo, hi))


def test_medial_lateral_follow_knee_side(small: SimpleNamespace, tmp_path: Path) -> None:
    """Frames run from the patient's right to left: medial is on higher frames in a right knee
    (towards the body's midline), on lower ones in a left knee; a contradicting side is refused."""
    sides = {r["study_id"]: r["knee_side"] for r in rows(small.ph / "studies.csv")}
    assert set(sides.values()) == {"RIGHT", "LEFT"}
    for s in read_studies(small.ds):
        centre = {f.label: (f.box3d.frame_start + f.box3d.frame_end) / 2 for f in s.findings if f.box3d}
        medial_higher = centre["femur_central_medial"] > centre["femur_central_lateral"]
        assert medial_higher == (sides[s.id] == "RIGHT")
    wrong = rows(small.ph / "studies.csv")
    wrong[0]["knee_side"] = "LEFT" if wrong[0]["knee_side"] == "RIGHT" else "RIGHT"
    bad = small.ph / "wrong_side.csv"
    with bad.open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(wrong[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(wrong)
    out = tmp_path / "ds"
    cli("build", "knee-grading", "--studies", bad, "--grades", small.ph / "grades.csv", "--out", out)
    skipped = json.loads((out / "build_report.json").read_text())["skipped"]["study_unreadable"]
    assert skipped["count"] == 1 and "wrong knee_side" in skipped["examples"][0]["error"]
    res = runner.invoke(app, ["build", "knee-grading", "--studies", str(bad), "--grades",
                              str(small.ph / "grades.csv"), "--out", str(tmp_path / "strict"), "--strict"])
    assert res.exit_code == 2 and "wrong_side.csv:2" in res.output


def test_every_graded_region_feature_has_its_items(small: SimpleNamespace) -> None:
    items = read_items(small.ds)
    by_key = {(it.study_id, it.subtask, it.label): it for it in items}
    report = json.loads((small.ds / "build_report.json").read_text())
    dropped = Counter()
    for reason, v in report.get("info", {}).items():
        if "dropped to balance" in reason:
            dropped[reason.split("question_not_asked: grading/")[1].split("/")[0]] += v["count"]
    binary = Counter()
    for r in rows(small.ph / "grades.csv"):
        feature = FEATURES[r["feature"]]
        it = by_key.get((r["study_id"], r["feature"], r["region"]))
        if feature.binary:  # yes/no, balanced per region: kept, or counted as dropped
            binary[r["feature"]] += 1
            if it is not None:
                assert it.answer.value == ("yes" if r["grade"] == "1" else "no")
            continue
        assert it is not None, r
        if feature.nominal:  # a tear location: a choice among the released legend, no order
            assert it.answer.type == "choice" and it.options == list(feature.legend(r["region"]))
            assert it.answer.value == int(r["grade"]) and it.chance == 1 / len(it.options)
        else:
            assert it.answer.value == int(r["grade"]) and it.answer.scale == list(feature.scale)
            assert it.options[int(r["grade"])].startswith(f"Grade {r['grade']}: ")
        # region first: locate (frames and the cited box) -> inspect -> grade
        assert it.reasoning.startswith("Locate: ") and "Inspect: " in it.reasoning
        verdict = "Decide:" if feature.nominal else "Grade:"
        assert it.reasoning.index("Locate") < it.reasoning.index("Inspect") < it.reasoning.index(verdict)
        for e in it.evidence:
            assert f"Frame {e.frame}: [{e.box[0]}, {e.box[1]}, {e.box[2]}, {e.box[3]}]" in it.reasoning
    kept = Counter(it.subtask for it in items if it.subtask in binary)
    assert {f: kept[f] + dropped[f] for f in binary} == dict(binary)
    presence = [it for it in items if it.subtask.endswith("_presence")]
    assert Counter(it.answer.value for it in presence)["yes"] == len(presence) / 2


def test_audit_flags_nothing_and_states_the_constant_baseline(tmp_path: Path) -> None:
    """Grades skew to 0 (as real MOAKS): grade items carry no uniform chance and the audit
    measures them against the best constant answer; the manifest states both."""
    cli("phantom", "--knee", "--out", tmp_path / "ph", "--n", "16")
    ds = build(tmp_path / "ph", tmp_path / "ds", "--split-fractions", "0.5,0.25,0.25")
    manifest = json.loads((ds / "manifest.json").read_text())
    audit = json.loads((ds / "audit.json").read_text())
    assert audit["flagged"] == []
    passed = [t for t, r in audit["templates"].items() if r["status"] == "pass"]
    assert {"grading/bml_size/volume", "grading/osteophyte/volume", "grading/bml_presence/volume"} <= set(passed)
    base = manifest["grade_baselines"]["bml_number"]
    # half the regions have no BML (number 0), the rest 1-3 BMLs: the constant 0 beats chance by far
    assert base["chance"] == 0.25 and base["constant_answer"] == 0 and base["constant_accuracy"] > 0.4
    assert audit["templates"]["grading/bml_number/volume"]["reference"] == "constant"


def test_oracle_is_perfect_in_all_three_modes_and_the_uplift_is_shown(small: SimpleNamespace) -> None:
    runs = []
    per_study = len([it for it in read_items(small.ds) if it.study_id == "knee000"])
    for mode in ("minimal", "guided", "oracle_region"):
        run = small.root / "runs" / mode  # one knee's items (every feature), to stay fast
        cli("eval", small.ds, "--model", "oracle", "--mode", mode, "--split", "all", "--limit", per_study,
            "--out", run)
        if mode == "minimal":  # eval scores its run too; `voxqa score` re-scores it the same
            cli("score", run)
        results = json.loads((run / "results.json").read_text())
        assert results["overall"]["metrics"]["accuracy"]["mean"] == 1.0
        grading = results["by"]["task"]["grading"]["metrics"]
        assert grading["qwk"]["mean"] == 1.0 and grading["mae"]["mean"] == 0.0
        if mode == "oracle_region":  # the region is region_box3d's answer: left out, counted
            boxes = [it for it in read_items(small.ds) if it.study_id == "knee000" and it.task == "localization"]
            assert results["excluded_oracle_region"]["templates"] == {"localization/region_box3d/volume": len(boxes)}
            assert "localization" not in results["by"]["task"]
        else:
            box = results["by"]["task/subtask"]["localization/region_box3d"]["metrics"]
            assert box["iou3d"]["mean"] == 1.0 and box["acc@0.5"]["mean"] == 1.0
        runs.append(run)
    out = cli("score", runs[2], "--uplift-from", runs[1])
    assert "GT-region uplift (oracle_region - guided, macro over features): accuracy +0.000" in out
    uplift = json.loads((runs[2] / "results.json").read_text())["region_uplift"]
    assert uplift["features"]["bml_size"]["accuracy"] == {"guided": 1.0, "gt_region": 1.0, "uplift": 0.0}
    refused = runner.invoke(app, ["score", str(runs[2]), "--uplift-from", str(runs[0])])
    assert refused.exit_code == 2 and "not one model's guided and oracle_region runs" in refused.output
    out = cli("compare", *runs)
    assert "GT-region uplift per grading feature" in out
    assert "| oracle | bml_size | 1.000 / 1.000 -> 1.000 (+0.000)" in out and "macro over features" in out
    cli("report", *runs, "--out", small.root / "report.html")
    html = (small.root / "report.html").read_text()
    assert 'id="uplift"' in html and "meniscal_morphology" in html


def test_bad_rows_are_counted_or_refused_under_strict(small: SimpleNamespace, tmp_path: Path) -> None:
    grades = tmp_path / "grades.csv"
    grades.write_text("study_id,region,feature,grade\n"
                      "knee000,femur medial central,bml_size,2\n"
                      "knee000,femur medial central,bml_size,1\n"  # repeated
                      "knee000,femur medial central,bml_bigness,1\n"  # unknown feature
                      "knee000,acl,bml_size,1\n"  # not graded there
                      "knee000,tibia medial,osteophyte,4\n"  # off the 0-3 scale
                      "knee999,acl,acl_tear,1\n")  # no such study
    out = tmp_path / "ds"
    cli("build", "knee-grading", "--studies", small.ph / "studies.csv", "--grades", grades, "--out", out)
    skipped = json.loads((out / "build_report.json").read_text())["skipped"]
    assert {k: v["count"] for k, v in skipped.items()} == {
        "grade_row_repeated": 1, "grade_row_unknown_feature": 1, "grade_row_region_not_graded_for_feature": 1,
        "grade_row_grade_off_scale": 1, "grade_row_study_not_in_studies_csv": 1}
    [kept] = [it for it in read_items(out) if it.task == "grading" and it.answer.type == "grade"]
    assert kept.answer.value == 2 and kept.label == "femur_central_medial"
    res = runner.invoke(app, ["build", "knee-grading", "--studies", str(small.ph / "studies.csv"),
                              "--grades", str(grades), "--out", str(tmp_path / "strict"), "--strict"])
    assert res.exit_code == 2 and "grades.csv:3" in res.output and "grade_row_repeated" in res.output


def test_box_only_studies_from_boxes_csv(tmp_path: Path) -> None:
    """3DReasonKnee's column order; frames inclusive, pixels max exclusive; no image needed."""
    (tmp_path / "studies.csv").write_text("study_id,image,labels,patient_id,knee_side\n"
                                          "a,,,p1,RIGHT\nb,,,p2,L\n")
    (tmp_path / "boxes.csv").write_text(
        "study_id,region,start_frame,end_frame,x_min,x_max,y_min,y_max\n"
        "a,femur medial central,90,120,100,180,150,210\n"
        "a,femur lateral central,20,50,100,180,150,210\n"
        "b,medial meniscus body,30,60,90,200,200,220\n")
    (tmp_path / "grades.csv").write_text("study_id,region,feature,grade\n"
                                         "a,femur medial central,cartilage_size,2\n"
                                         "b,medial meniscus body,meniscal_morphology,5\n")
    cli("build", "knee-grading", "--studies", tmp_path / "studies.csv", "--grades", tmp_path / "grades.csv",
        "--boxes", tmp_path / "boxes.csv", "--out", tmp_path / "ds")
    items = {(it.study_id, it.subtask, it.label): it for it in read_items(tmp_path / "ds")}
    box = items[("a", "region_box3d", "femur_central_medial")].answer.value
    assert (box.frame_start, box.frame_end, box.box) == (90, 120, (100, 150, 180, 210))
    morph = items[("b", "meniscal_morphology", "meniscus_medial_body")]
    assert morph.answer.value == 5 and len(morph.options) == 9 and morph.evidence == []
    assert morph.reasoning.startswith("Locate: the body of the medial meniscus spans frames 30-60; "
                                      "3D box [90, 200, 200, 220].")
    # the medial meniscus is located by its body (the only part given): a region of its own
    whole = items[("b", "region_box3d", "meniscus_medial")].answer.value
    assert (whole.frame_start, whole.frame_end, whole.box) == (30, 60, (90, 200, 200, 220))
    study = {s.id: s for s in read_studies(tmp_path / "ds")}["a"]
    assert study.volume is None and study.frame_count == 121 and study.frame_count_source == "annotations_lower_bound"


def test_replies_in_3dreasonknee_form(small: SimpleNamespace) -> None:
    """MOAKS JSON for grades (all three BML components in one object, as 3DReasonKnee asks),
    and the reasonknee profile's [start_frame, end_frame, x_min, x_max, y_min, y_max]."""
    items = read_items(small.ds)
    it = next(i for i in items if i.subtask == "bml_number" and i.label == "femur_central_medial")
    reply = {"MOAKS_scores": {"femur medial central BML": {
        "Size of BML (including cyst)": 3, "Number of BML within subregion": it.answer.value,
        "% of lesion that is BML (excluding cyst)": 0}}}
    assert parse_answer(json.dumps(reply), it).value == it.answer.value
    assert parse_answer(json.dumps(moaks_scores(it.label, it.subtask, 1)), it).value == 1
    both = {"reasoning": "...", "answer": 2, **moaks_scores(it.label, it.subtask, 1)}
    assert not parse_answer(json.dumps(both), it).ok  # two different answers
    extrusion = next(i for i in items if i.subtask == "meniscal_extrusion_medial")
    bare = {"MOAKS_grade": {"medial meniscus medial extrusion": 2}}  # 3DReasonKnee Q45's shape
    assert parse_answer(json.dumps(bare), extrusion).value == 2
    box = next(i for i in items if i.subtask == "region_box3d")
    v = box.answer.value
    six = [v.frame_start, v.frame_end, v.box[0], v.box[2], v.box[1], v.box[3]]
    assert parse_answer(json.dumps(six), box, profile="reasonknee").value == {
        "frame_start": v.frame_start, "frame_end": v.frame_end, "box": list(v.box)}


def test_a_stated_frame_set_is_cited_audited_and_rendered(small: SimpleNamespace, tmp_path: Path) -> None:
    """--frames 4: items cite only the 4 evenly spaced frames; the audit of the unrendered
    dataset and render (without --frames) follow the policy the manifest records."""
    from voxqa.dataset.audit import FramesShown, audit_dataset
    from voxqa.dataset.folder import read_studies
    from voxqa.dataset.frame_policy import recorded_policy

    ds = build(small.ph, tmp_path / "ds", "--frames", "4")
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["volume_frames"]["cap"] == 4
    shown = {0, 5, 10, 15}  # round(i * 15 / 3)
    items = read_items(ds)
    assert {e.frame for it in items for e in it.evidence} <= shown
    seen = FramesShown({s.id: s for s in read_studies(ds)}, recorded_policy(manifest))
    volume_items = [it for it in items if it.level == "volume"]
    assert volume_items and all(set(seen(it)) == shown for it in volume_items)
    assert json.loads((ds / "audit.json").read_text()) == audit_dataset(ds, update_manifest=False)
    cli("render", ds)
    render = json.loads((ds / "render.json").read_text())
    assert render["counts"]["volume_items_evidence_not_shown"] == 0
    assert {im.frame for it in read_items(ds) for im in it.images} == shown


def test_two_label_ids_naming_one_region_are_refused(small: SimpleNamespace, tmp_path: Path) -> None:
    names = json.loads((small.ph / "labels" / "knee000.json").read_text())
    acl = next(i for i, n in names.items() if n == "acl")
    names[acl] = "MFC"  # another spelling of femur_central_medial, which has its own id
    (tmp_path / "names.json").write_text(json.dumps(names))
    studies = rows(small.ph / "studies.csv")
    for r in studies:
        r["image"], r["labels"] = str(small.ph / r["image"]), str(small.ph / r["labels"])
        r["label_names"] = str(tmp_path / "names.json") if r["study_id"] == "knee000" else str(small.ph / r["label_names"])
    with (tmp_path / "studies.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(studies[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(studies)
    out = tmp_path / "ds"
    cli("build", "knee-grading", "--studies", tmp_path / "studies.csv", "--grades", small.ph / "grades.csv", "--out", out)
    skipped = json.loads((out / "build_report.json").read_text())["skipped"]["study_unreadable"]
    assert skipped["count"] == 1 and "both name femur_central_medial" in skipped["examples"][0]["error"]
    assert {s.id for s in read_studies(out)} == {"knee001", "knee002", "knee003"}


def test_structured_target_also_speaks_3dreasonknee(small: SimpleNamespace) -> None:
    """Grade targets (exports, structured mode) carry "MOAKS_scores" beside voxqa's fields;
    both read back to the grade, and other items carry none."""
    from voxqa.boxes.profiles import PROFILES
    from voxqa.conversation import InlineBoxes, build_sample

    sizes = {s.id: s.frame_size for s in read_studies(small.ds)}
    items = [i for i in read_items(small.ds) if i.images]
    grade = next(i for i in items if i.answer.type == "grade")
    other = next(i for i in items if i.answer.type != "grade")
    p = PROFILES["pixel"]
    target = json.loads(build_sample(grade, small.ds.resolve(), sizes[grade.study_id], p, InlineBoxes(p)).target)
    released = moaks_scores(grade.label, grade.subtask, grade.answer.value)
    assert {k: target[k] for k in released} == released
    assert list(target) == ["reasoning", "answer", *released, "bboxes"]
    assert parse_answer(json.dumps(target), grade).value == grade.answer.value
    plain = json.loads(build_sample(other, small.ds.resolve(), sizes[other.study_id], p, InlineBoxes(p)).target)
    assert "MOAKS_scores" not in plain
