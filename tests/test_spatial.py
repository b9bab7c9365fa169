"""Spatial questions from segmentations: answers checked against independent facts."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from voxqa.build import build_segmentation
from voxqa.cli import app
from voxqa.dataset.folder import read_items, read_json, read_studies
from voxqa.anatomy.frames import axial_frame
from voxqa.io import open_volume
from voxqa.anatomy.labelnames import display_name, side_of
from voxqa.phantom import ORGANS, write_segmentation_phantom
from voxqa.sources.segmentation import SegSpec, load_segmentation, relate

ALL_TRAIN = (1.0, 0.0, 0.0)


def _build(tmp: Path, name: str, **phantom_kw) -> list:
    paths = write_segmentation_phantom(tmp / f"{name}_src", **phantom_kw)
    spec = SegSpec(study_id="phantom", image=paths["image"], labels=paths["labels"],
                   label_names=paths["label_names"])
    build_segmentation([spec], tmp / name, fractions=ALL_TRAIN)
    return paths


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("spatial")
    out = {}
    for name, kw in {
        "ref": {},
        "reoriented": {"axes": (2, 0, 1), "flips": (True, False, True)},
        "mirrored": {"mirror": True},
    }.items():
        paths = _build(tmp, name, **kw)
        out[name] = {"dir": tmp / name, "items": read_items(tmp / name), "paths": paths}
    return out


def _geometry(paths: dict):
    return relate(load_segmentation(paths["image"], paths["labels"], paths["label_names"]))[1]


def _answers(items, subtask: str) -> dict[str, str]:
    out = {}
    for it in items:
        if it.subtask == subtask and it.answer.type == "choice":
            out[it.question] = it.options[it.answer.value]
    return out


DISPLAY = {display_name(n): n for n in ORGANS}


def test_laterality_matches_the_phantom_anatomy(built) -> None:
    # independent fact: ORGANS places each structure at a world x (+x = patient's right)
    items = built["ref"]["items"]
    lat = {it.label: it.options[it.answer.value] for it in items
           if it.subtask == "laterality" and it.variant == "original" and not it.id.endswith(":paired")}
    assert set(lat) == {"liver", "liver_lesion", "spleen", "stomach"}
    for name, side in lat.items():
        expected = "right" if ORGANS[name][0][0] > 0 else "left"
        assert side == expected, name
    # a name that carries its side is never asked its side; midline structures neither
    asked = {it.label for it in items if it.subtask == "laterality"}
    assert not asked & {"kidney_left", "kidney_right", "aorta", "spinal_cord"}
    (paired,) = [it for it in items if it.id == "phantom:laterality:v:kidney:paired"]
    assert paired.question == "Which is larger, the left or the right kidney?"
    # the left kidney's ellipsoid has the larger radii
    assert paired.options[paired.answer.value] == "left"


def test_side_questions_come_in_mirrored_pairs(built) -> None:
    """Every side question has a twin with the same text about the study mirrored along
    patient x, and the other answer; the twin's boxes are those of an independently
    mirrored copy of the phantom."""
    items = built["ref"]["items"]
    side = [it for it in items if it.subtask == "laterality"]
    assert side and all(it.pair_id and it.variant in ("original", "mirrored") for it in side)
    assert not [it for it in items if it.subtask != "laterality" and it.pair_id]
    pairs = defaultdict(dict)
    for it in side:
        pairs[it.pair_id][it.variant] = it
    assert len(pairs) == 5
    flip = {"left": "right", "right": "left"}
    mirror_boxes = {f.label: {b.frame: tuple(b.box) for b in f.boxes}
                    for f in read_studies(built["mirrored"]["dir"])[0].findings}
    for pair in pairs.values():
        a, b = pair["original"], pair["mirrored"]
        assert (a.question, a.options, a.split) == (b.question, b.options, b.split)
        assert b.options[b.answer.value] == flip[a.options[a.answer.value]]
        assert b.study_id == "phantom.mirrored"
        for e in b.evidence:
            assert mirror_boxes[e.label][e.frame] == tuple(e.box), (b.id, e)
    (twin,) = [s for s in read_studies(built["ref"]["dir"]) if s.id == "phantom.mirrored"]
    assert twin.volume.mirrored and twin.patient_id == "phantom"


def test_no_question_states_its_answer(built) -> None:
    for it in built["ref"]["items"]:
        assert "_" not in it.question, it.question  # natural names, never label ids
        if it.answer.type == "choice" and not all(o in it.question for o in it.options):
            # an answer may be named in the question only beside every other option
            assert it.options[it.answer.value] not in it.question, it.question


def test_reorientation_does_not_change_any_answer(built) -> None:
    ref = (built["ref"]["dir"] / "items.jsonl").read_bytes()
    assert (built["reoriented"]["dir"] / "items.jsonl").read_bytes() == ref


def test_mirrored_scan_with_sided_names_gets_no_side_questions(built) -> None:
    """A scan mirrored with its label names kept puts kidney_left on the patient's right:
    the build flags it and asks no side question; vertical and depth answers are unchanged."""
    ref, mir = built["ref"]["items"], built["mirrored"]["items"]
    assert not [it for it in mir if it.subtask == "laterality"]
    report = read_json(built["mirrored"]["dir"] / "build_report.json")
    flagged = report["warning"]["side_in_name_contradicts_geometry_no_side_questions"]
    assert {e["structure"] for e in flagged["examples"]} == {"kidney_left", "kidney_right"}
    assert _answers(ref, "vertical") == _answers(mir, "vertical")
    assert _answers(ref, "anterior_posterior") == _answers(mir, "anterior_posterior")


def test_point_containment_answers_match_the_label_map(built) -> None:
    labels = nib.load(built["ref"]["paths"]["labels"])
    names = {int(k): v for k, v in json.loads(built["ref"]["paths"]["label_names"].read_text()).items()}
    inv = np.linalg.inv(labels.affine)
    data = np.asarray(labels.dataobj)
    assert np.allclose(inv[:3, :3], np.diag(np.diag(inv[:3, :3])))  # stored RAS, unrotated
    n_i, n_j = data.shape[:2]
    n = 0
    for it in built["ref"]["items"]:
        if it.subtask == "adjacency" and it.id.endswith(":point"):
            box = [int(v) for v in it.question.split("box [")[1].split("]")[0].split(",")]
            k = int(it.question.split("on frame ")[1].rstrip("?"))
            assert it.frames == [k]  # the frame is shown with the question
            x, y = box[0], box[1]  # the one-pixel box -> voxel (voxqa.anatomy.frames)
            assert box[2:] == [x + 1, y + 1]
            label = names[int(data[n_i - 1 - x, n_j - 1 - y, k])]
            assert display_name(label) == it.options[it.answer.value], it.id
            others = {DISPLAY.get(o, o) for o in it.options} - {label}
            assert "liver" not in others or label != "liver_lesion", it.id  # never two true options
            n += 1
    assert n >= 8


def test_relations_sizes_counts_and_touching(built) -> None:
    items = built["ref"]["items"]
    vertical = _answers(items, "vertical")
    for q, ans in vertical.items():  # check against the phantom's centres (z = superior)
        first = DISPLAY[q.split("Is the ")[1].split(" superior")[0]]
        second = DISPLAY[q.split("to the ")[1].rstrip("?")]
        z1, z2 = ORGANS[first][0][2], ORGANS[second][0][2]
        assert ans == ("superior" if z1 > z2 else "inferior"), q
    # in one study a relation goes one way only, so its (non-prior) question is not asked;
    # the geometry it would be asked from is checked directly
    g = _geometry(built["ref"]["paths"])
    assert frozenset({"liver", "liver_lesion"}) in g.touching
    assert g.containers["liver_lesion"][0] == "liver"
    assert not [it for it in items if it.label == "liver" and it.id.endswith(":liver-lesion")]
    lesions = next(it for it in items if it.subtask == "count" and it.label == "liver_lesion")
    assert lesions.answer.value == 2  # two separate spheres carry the lesion label
    assert lesions.question == "How many separate liver lesions are there?"
    # every counted lesion is cited, the smaller one included: one box on each sphere
    assert len(lesions.evidence) == 2 and len({e.frame for e in lesions.evidence}) == 2
    vertebrae = next(it for it in items if it.subtask == "count" and it.label == "vertebrae")
    assert vertebrae.answer.value == 2
    labels = np.asarray(nib.load(built["ref"]["paths"]["labels"]).dataobj)
    for it in items:
        if it.subtask == "size" and it.answer.type == "number":
            label_id = 1 + list(ORGANS).index(it.label)
            ml = (labels == label_id).sum() * 4 * 4 * 5 / 1000
            assert abs(it.answer.value - ml) <= 0.05 + 1e-9, it.id
            assert it.answer.tolerance == pytest.approx(0.1 * it.answer.value, abs=1e-3)


def test_balance_and_reasoning(built) -> None:
    items = built["ref"]["items"]
    per = defaultdict(Counter)
    for it in items:
        assert it.category is not None and it.reasoning.endswith(f"Answer: {it.answer_text}.")
        if it.answer.type == "yes_no":
            per[it.template][it.answer.value] += 1
        for e in it.evidence:
            assert f"Frame {e.frame}: [{e.box[0]}, {e.box[1]}, {e.box[2]}, {e.box[3]}]" in it.reasoning, it.id
    for template, c in per.items():
        assert c["yes"] == c["no"], (template, c)


def test_evidence_boxes_sit_on_their_structure(built) -> None:
    """Boxes drawn on the radiological axial frame enclose the structure's pixels exactly."""
    labels = open_volume(built["ref"]["paths"]["labels"]).data
    names = {v: int(k) for k, v in json.loads(built["ref"]["paths"]["label_names"].read_text()).items()}
    n = 0
    for it in built["ref"]["items"]:
        if it.task == "localization":
            for e in it.evidence:
                frame = axial_frame(labels, e.frame) == names[e.label]
                ys, xs = np.nonzero(frame)
                assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == list(e.box), it.id
                n += 1
    assert n > 20


def test_tiny_and_empty_labels(tmp_path) -> None:
    data = np.zeros((20, 20, 10), np.uint8)
    data[2:8, 2:8, 2:6] = 1
    data[15:19, 3:9, 2:7] = 2
    data[10, 10, 5] = 3  # one voxel
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=data.shape).astype(np.float32),
                             affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "seg.nii.gz")
    (tmp_path / "names.json").write_text(json.dumps(
        {"1": "kidney_left", "2": "kidney_right", "3": "speck", "4": "spleen"}))
    spec = SegSpec(study_id="s", image=tmp_path / "img.nii.gz", labels=tmp_path / "seg.nii.gz",
                   label_names=tmp_path / "names.json")
    build_segmentation([spec], tmp_path / "ds", fractions=ALL_TRAIN)
    items = read_items(tmp_path / "ds")
    assert not [it for it in items if it.label == "speck"]
    # spleen: named, no voxel; never present, so "is it visible?" (always no) is not asked
    assert _geometry({"image": tmp_path / "img.nii.gz", "labels": tmp_path / "seg.nii.gz",
                      "label_names": tmp_path / "names.json"}).absent == ["spleen"]
    assert not [it for it in items if it.label == "spleen"]
    study, twin = read_studies(tmp_path / "ds")
    assert twin.id == "s.mirrored"
    assert "speck" in {f.label for f in study.findings}  # measured and kept, just not asked
    report = read_json(tmp_path / "ds" / "build_report.json")
    assert report["info"]["structure_too_small_not_asked"]["count"] == 1


def test_cli_studies_csv_and_errors(tmp_path, built) -> None:
    src = built["ref"]["paths"]
    with (tmp_path / "studies.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study_id", "image", "labels", "label_names", "patient_id", "modality"])
        w.writerow(["a", src["image"], src["labels"], src["label_names"], "p1", "CT"])
        w.writerow(["b", src["image"], src["labels"], src["label_names"], "p2", "CT"])
    res = CliRunner().invoke(app, ["build", "segmentation", "--studies", str(tmp_path / "studies.csv"),
                                   "--out", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    studies = read_studies(tmp_path / "ds")
    assert [s.id for s in studies] == ["a", "a.mirrored", "b", "b.mirrored"]
    assert studies[0].modality == "CT"
    res = CliRunner().invoke(app, ["build", "segmentation", "--image", str(src["image"]),
                                   "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--studies" in res.output


# --------------------------------------------------------------------------- real data


def _real_build(shared: Path, tmp: Path, image: str, labels: str, names: dict | None = None) -> list:
    """Build one real study (names: a label-name table written as JSON) and read its items."""
    names_path = None
    if names is not None:
        names_path = tmp.parent / f"{tmp.name}_names.json"
        names_path.write_text(json.dumps(names))
    spec = SegSpec(study_id=tmp.name, image=shared / image, labels=shared / labels,
                   label_names=names_path)
    build_segmentation([spec], tmp, fractions=ALL_TRAIN)
    return read_items(tmp)


@pytest.mark.realdata
@pytest.mark.parametrize("image,labels", [
    ("totalsegmentator/example_ct_sm.nii.gz", "totalsegmentator/example_seg.nii.gz"),  # RAS
    ("totalsegmentator/example_mr_sm.nii.gz", "totalsegmentator/example_seg_mr.nii.gz"),  # LPS
])
def test_totalsegmentator_sides(shared_data, tmp_path, image, labels) -> None:
    items = _real_build(shared_data, tmp_path / "ts", image, labels)
    lat = {it.label: it.options[it.answer.value] for it in items
           if it.subtask == "laterality" and "larger" not in it.question and it.variant == "original"}
    # anatomy: spleen on the patient's left, liver and gallbladder on the right
    assert lat["spleen"] == "left" and lat.get("liver", "right") == "right"
    assert lat.get("gallbladder", "right") == "right"
    assert not [n for n in lat if side_of(n)]  # a sided name is never asked its side
    # names and geometry agree on this scan: nothing flagged, so side questions are asked
    report = read_json(tmp_path / "ts" / "build_report.json")
    assert "side_in_name_contradicts_geometry_no_side_questions" not in report.get("warning", {})
    twins = [it for it in items if it.variant == "mirrored"]
    assert len(twins) == sum(1 for it in items if it.variant == "original") > 0
    vertical = _answers(items, "vertical")
    assert vertical, "no vertical questions"


@pytest.mark.realdata
def test_dcmqi_dicom_liver_boxes_are_on_soft_tissue(shared_data, tmp_path) -> None:
    items = _real_build(shared_data, tmp_path / "dcm", "dcmqi_ct3slice/ct",
                        "dcmqi_ct3slice/liver_seg.nrrd", {"1": "Liver"})
    ct = open_volume(shared_data / "dcmqi_ct3slice" / "ct").data
    # the 3-slice liver is cut off by the field of view: no extent or size questions; its
    # geometry (the boxes any question would cite) is still measured and stored
    assert not [it for it in items if it.subtask in ("extent", "size")]
    study = next(s for s in read_studies(tmp_path / "dcm") if s.id == "dcm")
    boxes = [b for f in study.findings for b in f.boxes]
    assert boxes and all(f.label == "liver" and f.attributes["truncated"] for f in study.findings)
    for e in boxes:
        frame = axial_frame(ct, e.frame)
        x0, y0, x1, y1 = e.box
        inside = frame[y0:y1, x0:x1]
        assert 0 < np.median(inside) < 100  # liver parenchyma HU
        assert np.median(inside) - np.median(frame) > 500  # the frame is mostly air


@pytest.mark.realdata
def test_pyradiomics_lesion_box_is_on_the_enhancing_lesion(shared_data, tmp_path) -> None:
    items = _real_build(shared_data, tmp_path / "pr", "pyradiomics/brain1_image.nrrd",
                        "pyradiomics/brain1_label.nrrd", {"1": "brain_lesion"})
    img = open_volume(shared_data / "pyradiomics" / "brain1_image.nrrd").data
    ev = [e for it in items if it.task == "localization" for e in it.evidence]
    assert ev
    for e in ev:
        frame = axial_frame(img, e.frame).astype(float)
        x0, y0, x1, y1 = e.box
        ring = frame[max(y0 - 6, 0):y1 + 6, max(x0 - 6, 0):x1 + 6].sum() - frame[y0:y1, x0:x1].sum()
        ring_n = (min(y1 + 6, frame.shape[0]) - max(y0 - 6, 0)) * (min(x1 + 6, frame.shape[1]) - max(x0 - 6, 0)) - (y1 - y0) * (x1 - x0)
        assert frame[y0:y1, x0:x1].mean() > 1.1 * ring / ring_n
    count = [it for it in items if it.subtask == "count"]
    assert count and count[0].answer.value >= 1


def test_lesion_container(built) -> None:
    (it,) = [it for it in built["ref"]["items"] if it.id.endswith(":container")]
    # the lesion is pointed at by its box: its name would give the organ away
    assert it.question.startswith("Which structure contains the lesion in the box [")
    assert it.options[it.answer.value] == "liver" and len(set(it.options)) == 4


@pytest.mark.realdata
def test_jpeg2000_dicom_series_gives_the_same_items(shared_data, tmp_path) -> None:
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    src = shared_data / "dcmqi_ct3slice"
    j2k = tmp_path / "ct_j2k"
    j2k.mkdir()
    for f in sorted((src / "ct").iterdir()):
        ds = pydicom.dcmread(f)
        ds.compress(JPEG2000Lossless)
        ds.save_as(j2k / f.name)
    assert pydicom.dcmread(next(j2k.iterdir())).file_meta.TransferSyntaxUID == JPEG2000Lossless
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"1": "liver"}))
    for folder, out in ((src / "ct", "plain"), (j2k, "j2k")):
        spec = SegSpec(study_id="ct", image=folder, labels=src / "liver_seg.nrrd", label_names=names)
        build_segmentation([spec], tmp_path / out, fractions=ALL_TRAIN)
    assert (tmp_path / "plain" / "items.jsonl").read_bytes() == (tmp_path / "j2k" / "items.jsonl").read_bytes()
    study, _twin = read_studies(tmp_path / "j2k")
    assert study.modality == "CT" and study.volume.loader == "dicom"


def test_mask_folder_with_overlapping_masks(tmp_path) -> None:
    """TotalSegmentator-style output without --ml: one binary mask per structure; the liver
    mask includes its lesion (overlap), as a vessel mask would include its lumen."""
    from voxqa.phantom import segmentation_phantom

    image, labels, affine, names = segmentation_phantom()
    ids = {v: k for k, v in names.items()}
    masks = tmp_path / "masks"
    masks.mkdir()
    wanted = {
        "liver": np.isin(labels, [ids["liver"], ids["liver_lesion"]]),
        "liver_lesion": labels == ids["liver_lesion"],
        "spleen": labels == ids["spleen"],
        "kidney_left": labels == ids["kidney_left"],
        "kidney_right": labels == ids["kidney_right"],
    }
    for name, m in wanted.items():
        nib.save(nib.Nifti1Image(m.astype(np.uint8), affine), masks / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "ct.nii.gz")
    build_segmentation([SegSpec(study_id="m", image=tmp_path / "ct.nii.gz", labels=masks)],
                       tmp_path / "ds", fractions=ALL_TRAIN)
    items = read_items(tmp_path / "ds")
    (container,) = [it for it in items if it.id.endswith(":container")]
    assert container.options[container.answer.value] == "liver"
    g = relate(load_segmentation(tmp_path / "ct.nii.gz", masks))[1]
    assert frozenset({"liver", "liver_lesion"}) in g.touching
    volume = {it.label: it.answer.value for it in items if it.id.endswith(":ml")}
    assert volume["liver"] == pytest.approx(wanted["liver"].sum() * 0.08, abs=0.05)
    lat = {it.label: it.options[it.answer.value] for it in items
           if it.subtask == "laterality" and "larger" not in it.question and it.variant == "original"}
    assert lat["spleen"] == "left" and "kidney_right" not in lat


def test_no_orientation_no_sides_unless_assumed(tmp_path, built) -> None:
    """A NIfTI with qform_code = sform_code = 0 states no orientation: no side or direction
    questions (and no mirrored twin) unless --assume-orientation says what the axes are."""
    src = built["ref"]["paths"]
    for name in ("image", "labels"):
        img = nib.load(src[name])
        bare = nib.Nifti1Image(np.asarray(img.dataobj), None)
        bare.header.set_zooms(img.header.get_zooms())
        bare.set_qform(None, code=0)
        bare.set_sform(None, code=0)
        nib.save(bare, tmp_path / f"{name}.nii.gz")
    assert not open_volume(tmp_path / "image.nii.gz").world_known
    args = ["build", "segmentation", "--image", str(tmp_path / "image.nii.gz"),
            "--labels", str(tmp_path / "labels.nii.gz"), "--label-names", str(src["label_names"]),
            "--study-id", "phantom", "--split-fractions", "1,0,0"]
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "bare")])
    assert res.exit_code == 0, res.output
    items = read_items(tmp_path / "bare")
    directional = {"laterality", "vertical", "anterior_posterior", "medial_lateral"}
    assert items and not [it for it in items if it.subtask in directional]
    assert [s.id for s in read_studies(tmp_path / "bare")] == ["phantom"]  # no twin
    report = read_json(tmp_path / "bare" / "build_report.json")
    assert report["warning"]["no_patient_orientation_no_side_questions"]["count"] == 1
    # told the truth (the phantom is stored RAS), the answers are those of the oriented file
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "ras"), "--assume-orientation", "ras"])
    assert res.exit_code == 0, res.output
    for subtask in directional:
        assert _answers(read_items(tmp_path / "ras"), subtask) == _answers(built["ref"]["items"], subtask)
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "x"), "--assume-orientation", "RAR"])
    assert res.exit_code != 0 and "RAR" in res.output
