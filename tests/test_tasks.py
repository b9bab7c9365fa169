"""Task families on a built phantom: every item is checked against the inputs, not a snapshot.

Expectations are re-derived here from the phantom's CSV (parsed with the csv module), its
HDF5 pixels, and a small independent implementation of the linking rule documented in
``voxqa.boxes.instances``; the dataset folder is then compared with them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from reference import is_pathology, link, norm_label, parse_csv

from voxqa.build import build_fastmri_plus
from voxqa.dataset.folder import read_items, read_json, read_studies
from voxqa.views.inspection import answer_balance, beats_chance
from voxqa.io import open_volume
from voxqa.phantom import TISSUE, write_phantom
from voxqa.schema import Item, Study

CITE = "Frame {frame}: [{0}, {1}, {2}, {3}]"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ds(phantom_dataset) -> SimpleNamespace:
    out = phantom_dataset.out
    items = read_items(out)
    studies = {s.id: s for s in read_studies(out)}
    names = phantom_dataset.src["names"]
    sizes = {}
    for name in names:
        with h5py.File(phantom_dataset.src["volumes"] / f"{name}.h5", "r") as f:
            _, h, w = f["reconstruction_rss"].shape
        sizes[name] = (w, h)
    ref = parse_csv(phantom_dataset.src["annotations"], sizes.__getitem__)
    return SimpleNamespace(
        items=items, studies=studies, ref=ref, names=names, sizes=sizes,
        report=read_json(out / "build_report.json"), p=phantom_dataset,
    )


def labels_of(s: Study) -> set[str]:
    return {f.label for f in s.findings}


def boxed_labels_of(s: Study) -> set[str]:
    return {f.label for f in s.findings if not f.study_level}


def study_level_of(s: Study) -> set[str]:
    return {f.label for f in s.findings if f.study_level}


def boxes_of(s: Study, label: str | None = None, frame: int | None = None) -> set[tuple]:
    return {
        (f.label, b.frame, tuple(b.box))
        for f in s.findings
        for b in f.boxes
        if (label is None or f.label == label) and (frame is None or b.frame == frame)
    }


def ev_set(it: Item) -> set[tuple]:
    return {(e.label, e.frame, tuple(e.box)) for e in it.evidence}


def of(items, task: str, subtask: str | None = None, level: str | None = None) -> list[Item]:
    out = [
        it for it in items
        if it.task == task and (subtask is None or it.subtask == subtask)
        and (level is None or it.level == level)
    ]
    assert out, f"no {task}/{subtask}/{level} items at all: the check below would be vacuous"
    return out


# --------------------------------------------------------------------------- data model and splits


def test_items_and_studies_validate_and_ids_are_unique(ds) -> None:
    lines = (ds.p.out / "items.jsonl").read_text().splitlines()
    assert len(lines) == len(ds.items) == ds.p.manifest["counts"]["items"]
    for line in lines:
        Item.model_validate(json.loads(line))
    for line in (ds.p.out / "studies.jsonl").read_text().splitlines():
        Study.model_validate(json.loads(line))
    ids = Counter(it.id for it in ds.items)
    assert [i for i, n in ids.items() if n > 1] == []
    # one study per reviewed volume, normal ones included
    assert sorted(ds.studies) == sorted(ds.names)
    assert {it.study_id for it in ds.items} <= set(ds.studies)


def test_item_split_is_its_study_split_and_no_study_in_two_splits(ds) -> None:
    lines = [json.loads(x) for x in (ds.p.out / "studies.jsonl").read_text().splitlines()]
    assert len({s["id"] for s in lines}) == len(lines), "a study appears twice in studies.jsonl"
    splits_of_study: dict[str, set] = defaultdict(set)
    for it in ds.items:
        assert it.split == ds.studies[it.study_id].split, it.id
        splits_of_study[it.study_id].add(it.split)
    assert all(len(v) == 1 for v in splits_of_study.values())
    by_patient: dict[str, set] = defaultdict(set)
    for s in ds.studies.values():
        assert s.split in ("train", "val", "test")
        by_patient[s.patient_id].add(s.split)
    assert all(len(v) == 1 for v in by_patient.values())
    # all three splits are populated with fractions (0.6, 0.2, 0.2) and 24 volumes
    assert {s.split for s in ds.studies.values()} == {"train", "val", "test"}


def test_labels_are_normalised_and_raw_label_kept(ds) -> None:
    assert "Joint Effusion " in ds.ref.raw_labels["Joint Effusion"], "phantom plants the raw label"
    raw_seen = set()
    for s in ds.studies.values():
        for f in s.findings:
            assert f.label == norm_label(f.label)
            assert norm_label(f.raw_label) == f.label
            assert f.raw_label in ds.ref.raw_labels[f.label]
            raw_seen.add((f.label, f.raw_label))
    assert ("Joint Effusion", "Joint Effusion ") in raw_seen
    for it in ds.items:
        for text in [it.label or ""] + list(it.options or []):
            assert text == norm_label(text), (it.id, text)
        assert "  " not in it.question, it.id  # a raw trailing space would double up here


def test_item_frames_follow_the_level(ds) -> None:
    """Frame-level items name their one frame; volume-level items list none (no answer leak)."""
    for it in ds.items:
        if it.level == "frame":
            assert len(it.frames) == 1 and f"frame {it.frames[0]}" in it.question, it.id
            assert f":f{it.frames[0]}:" in it.id
        else:
            assert it.frames == [], it.id
            assert ":v:" in it.id


# --------------------------------------------------------------------------- build report


def test_build_report_accounts_for_every_row(ds) -> None:
    t = ds.report["totals"]
    assert list(t["rows_read"].values()) == [ds.ref.n_read]
    dropped = sum(t["rows_dropped_by_reason"].values())
    assert ds.ref.n_read == t["rows_kept_boxes"] + t["rows_kept_study_level"] + dropped
    assert t["rows_dropped_by_reason"]["duplicate_row"] == len(ds.ref.dup_lines) == 1
    assert t["rows_kept_boxes"] == sum(len(v) for v in ds.ref.boxes.values())
    assert t["rows_kept_study_level"] == sum(len(v) for v in ds.ref.study_level.values())
    assert len(ds.ref.clipped) == 1  # the planted y = -1 box
    clip = ds.report["repaired"]["box_clipped"]
    assert clip["count"] == len(ds.ref.clipped)
    ((raw, box),) = ds.ref.clipped.values()
    ex = clip["examples"][0]
    assert ex["to"] == list(box) and ex["box"][1] == raw[1] == -1
    # a small box in the empty top-left corner, not a tall box from the top edge over a lesion
    assert box[1] == 0 and box[3] - box[1] <= 6 and box[2] <= 16
    assert t["volumes_reviewed_without_rows"] == sum(
        1 for n in ds.names if n not in ds.ref.boxes and n not in ds.ref.study_level
    )


# --------------------------------------------------------------------------- detection


def test_detection_is_balanced_per_split_template_label(ds) -> None:
    groups: dict[tuple, Counter] = defaultdict(Counter)
    for it in of(ds.items, "detection"):
        assert it.answer.type == "yes_no" and it.chance == 0.5
        groups[(it.split, it.template, it.label)][it.answer.value] += 1
    for key, c in groups.items():
        assert c["yes"] == c["no"] > 0, (key, c)
    templates = {k[1] for k in groups}
    assert templates == {
        "detection/any_abnormality/volume", "detection/any_abnormality/frame",
        "detection/finding_presence/volume", "detection/finding_presence/frame",
    }


def test_detection_yes_items_are_grounded(ds) -> None:
    for it in of(ds.items, "detection"):
        if it.answer.value != "yes":
            continue
        s = ds.studies[it.study_id]
        assert it.evidence or it.level == "volume", it.id
        assert ev_set(it) <= boxes_of(s), it.id  # evidence really is a box of the study
        if it.subtask == "finding_presence":
            assert all(e.label == it.label for e in it.evidence), it.id
            if it.level == "volume":
                assert it.evidence or it.label in study_level_of(s), it.id
                assert ev_set(it) == boxes_of(s, it.label)
            else:
                assert it.evidence and all(e.frame == it.frames[0] for e in it.evidence)
                assert ev_set(it) == boxes_of(s, it.label, it.frames[0])
        else:  # any abnormality: pathology boxes, or a study-level pathology label
            assert all(is_pathology(e.label) for e in it.evidence), it.id
            if it.level == "volume":
                assert it.evidence or any(is_pathology(lab) for lab in study_level_of(s))
            else:
                assert it.evidence and all(e.frame == it.frames[0] for e in it.evidence)


def test_detection_no_items_are_grounded(ds) -> None:
    for it in of(ds.items, "detection"):
        if it.answer.value != "no":
            continue
        s = ds.studies[it.study_id]
        assert it.evidence == [], it.id
        if it.subtask == "finding_presence":
            # the study has no such label at all (no box, no study-level label)
            assert it.label not in labels_of(s), it.id
        elif it.level == "volume":
            assert not any(is_pathology(lab) for lab in labels_of(s)), it.id
        else:
            (k,) = it.frames
            assert boxes_of(s, frame=k) == set(), it.id
            assert not any(is_pathology(lab) for lab in study_level_of(s)), it.id
        if it.level == "frame":
            (k,) = it.frames
            assert 0 <= k < s.frame_count, it.id  # a frame that exists in the volume


def test_normal_volumes_are_studies_without_findings_and_answer_no(ds) -> None:
    normal = [n for n in ds.names if n not in ds.ref.boxes and n not in ds.ref.study_level]
    assert normal
    assert all(ds.studies[n].findings == [] for n in normal)
    asked_no = {it.study_id for it in ds.items if it.task == "detection" and it.answer.value == "no"}
    assert asked_no & set(normal)


# --------------------------------------------------------------------------- localization


def test_every_kept_box_is_localization_evidence(ds) -> None:
    loc = of(ds.items, "localization")
    covered: dict[str, set] = defaultdict(set)
    for it in loc:
        covered[it.study_id] |= ev_set(it)
    for s in ds.studies.values():
        assert boxes_of(s) <= covered[s.id], s.id
    # and every valid CSV box (re-derived from the CSV) is a box of its study
    for name in ds.names:
        assert ds.ref.boxes.get(name, set()) == boxes_of(ds.studies[name]), name
        assert ds.ref.boxes.get(name, set()) <= covered[name], name


def test_localization_answers_equal_their_evidence(ds) -> None:
    for it in of(ds.items, "localization"):
        s = ds.studies[it.study_id]
        label_boxes = boxes_of(s, it.label)
        assert all(e.label == it.label for e in it.evidence)
        if it.subtask == "where":
            answer = [(it.label, b.frame, tuple(b.box)) for b in it.answer.value]
            assert sorted(answer) == sorted(ev_set(it)) and len(answer) == len(it.evidence)
            if it.level == "volume":
                assert ev_set(it) == label_boxes, it.id
            else:
                (k,) = it.frames
                assert ev_set(it) == boxes_of(s, it.label, k), it.id
        else:
            assert it.subtask == "which_frames"
            assert it.answer.value == sorted({f for _, f, _ in label_boxes}), it.id
            assert ev_set(it) == label_boxes
    # every (study, boxed label) is asked both volume questions
    asked = Counter((it.study_id, it.label, it.subtask) for it in ds.items
                    if it.task == "localization" and it.level == "volume")
    for s in ds.studies.values():
        for lab in boxed_labels_of(s):
            assert asked[(s.id, lab, "where")] == 1 and asked[(s.id, lab, "which_frames")] == 1


# --------------------------------------------------------------------------- counting


def test_instance_counts_match_independent_linking(ds) -> None:
    counted = of(ds.items, "counting", "instances")
    answered = set()
    for it in counted:
        s = ds.studies[it.study_id]
        n = it.answer.value
        ids = {f.instance_id for f in s.findings if f.label == it.label and not f.study_level}
        mine = link([(f, b) for lab, f, b in ds.ref.boxes.get(s.id, set()) if lab == it.label])
        assert n == len(ids) == len(mine), (it.id, n, len(ids), len(mine))
        if n == 0:
            assert it.label not in labels_of(s), it.id
            assert it.evidence == []
        else:
            assert ev_set(it) == boxes_of(s, it.label)
        answered.add((s.id, it.label))
    # the instances in studies.jsonl are exactly the linked components, not just as many
    for s in ds.studies.values():
        for lab in boxed_labels_of(s):
            assert (s.id, lab) in answered, "a study with boxes of a label was not asked"
            stored = {
                frozenset((b.frame, tuple(b.box)) for b in f.boxes)
                for f in s.findings if f.label == lab and not f.study_level
            }
            mine = set(link([(f, b) for lab2, f, b in ds.ref.boxes[s.id] if lab2 == lab]))
            assert stored == mine, (s.id, lab)
    assert any(it.answer.value == 0 for it in counted) and any(it.answer.value > 1 for it in counted)


def test_finding_type_counts(ds) -> None:
    for it in of(ds.items, "counting", "finding_types"):
        s = ds.studies[it.study_id]
        assert it.answer.value == len({lab for lab in labels_of(s) if is_pathology(lab)}), it.id


# --------------------------------------------------------------------------- classification


def test_single_choice_answer_is_the_label_and_distractors_are_absent(ds) -> None:
    for sub in ("finding_in_box", "finding_on_frame"):
        for it in of(ds.items, "classification", sub):
            s = ds.studies[it.study_id]
            opts = it.options
            assert opts is not None and len(opts) == 4 and len(set(opts)) == 4, it.id
            assert opts[it.answer.value] == it.label, it.id
            assert it.label in boxed_labels_of(s)
            (k,) = it.frames
            # wrong options cannot be right: no box on frames k-1..k+1, not study-level
            near = {lab for f in (k - 1, k, k + 1) for lab, _, _ in boxes_of(s, frame=f)}
            for i, o in enumerate(opts):
                if i != it.answer.value:
                    assert o not in near | study_level_of(s), (it.id, o)
            assert it.evidence and all(e.label == it.label for e in it.evidence)
            assert ev_set(it) <= boxes_of(s, it.label, k)
            if sub == "finding_in_box":
                (e,) = it.evidence
                assert "[{}, {}, {}, {}]".format(*e.box) in it.question
            else:
                # asked only when the frame shows one finding: every box on it has this label
                assert {lab for lab, _, _ in boxes_of(s, frame=k)} == {it.label}, it.id
                assert ev_set(it) == boxes_of(s, frame=k)


def test_single_choice_positions_are_balanced(ds) -> None:
    pos: dict[tuple, Counter] = defaultdict(Counter)
    for it in ds.items:
        if it.answer.type == "choice":
            pos[(it.split, it.template)][it.answer.value] += 1
    assert pos
    for key, c in pos.items():
        counts = [c.get(p, 0) for p in range(4)]
        assert max(counts) - min(counts) <= 1, (key, counts)


def test_multi_choice_answers_map_to_present_labels(ds) -> None:
    for it in of(ds.items, "classification", "findings_present"):
        s = ds.studies[it.study_id]
        assert it.answer.value == sorted(set(it.answer.value)) and it.answer.value
        assert len(it.options) == len(set(it.options)) == 4
        for i, o in enumerate(it.options):
            assert (o in labels_of(s)) == (i in it.answer.value), (it.id, i, o)


# --------------------------------------------------------------------------- reasoning and geometry


def test_reasoning_cites_every_evidence_box(ds) -> None:
    n = 0
    for it in ds.items:
        if it.task in ("localization", "classification", "counting"):
            for e in it.evidence:
                assert CITE.format(*e.box, frame=e.frame) in it.reasoning, (it.id, e)
                n += 1
    assert n > 0


def test_yes_no_reasoning_ends_with_the_answer(ds) -> None:
    for it in ds.items:
        if it.answer.type == "yes_no":
            assert it.reasoning.endswith(f"Answer: {it.answer.value}."), it.id
            assert it.answer_text == it.answer.value


def test_evidence_boxes_lie_inside_their_frame(ds) -> None:
    for it in ds.items:
        s = ds.studies[it.study_id]
        width, height = s.frame_size
        assert (width, height) == ds.sizes[s.id]  # read from the HDF5, not the default
        for e in it.evidence:
            x0, y0, x1, y1 = e.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (it.id, e)
            assert 0 <= e.frame < s.frame_count, (it.id, e)


def _contrast(img: np.ndarray, box, tissue: float, ring: int = 3) -> tuple[float, float]:
    """Mean |intensity - tissue| inside the box and in a ring just outside it."""
    x0, y0, x1, y1 = box
    h, w = img.shape
    dev = np.abs(img.astype(np.float64) - tissue)
    inside = dev[y0:y1, x0:x1]
    outer = np.zeros_like(dev, bool)
    outer[max(y0 - ring, 0):min(y1 + ring, h), max(x0 - ring, 0):min(x1 + ring, w)] = True
    outer[y0:y1, x0:x1] = False
    return float(inside.mean()), float(dev[outer].mean())


def test_phantom_localization_boxes_sit_on_the_lesions(ds) -> None:
    clipped = ds.ref.clipped_at
    boxes = {
        (it.study_id, e.frame, tuple(e.box))
        for it in of(ds.items, "localization") for e in it.evidence
    } - clipped  # the planted y=-1 box sits on no lesion on purpose; it is checked in the report test
    assert len(boxes) > 50
    vols, raw = {}, {}
    for sid in {b[0] for b in boxes}:
        s = ds.studies[sid]
        vols[sid] = open_volume(s.volume.path).data
        with h5py.File(s.volume.path, "r") as f:
            raw[sid] = f["reconstruction_rss"][()]
    ok_raw = 0
    for sid, k, box in sorted(boxes):
        img = vols[sid][k]
        tissue = float(np.median(img[img > TISSUE / 2]))
        assert abs(tissue - TISSUE) < 5
        inside, ring = _contrast(img, box, tissue)
        # lesions are >= 60 grey levels off tissue over most of the box; the ring is noise
        assert inside > 30 and inside > 3 * ring, (sid, k, box, inside, ring)
        inside_raw, ring_raw = _contrast(raw[sid][k], box, tissue)
        ok_raw += inside_raw > 30 and inside_raw > 3 * ring_raw
    # control: on the stored (unflipped) array most boxes miss their lesion
    assert ok_raw < 0.5 * len(boxes)


# --------------------------------------------------------------------------- determinism and balance


def _build(p, out: Path, seed: int) -> Path:
    build_fastmri_plus(
        [(p.src["annotations"], p.src["file_list"])], out,
        volumes=p.src["volumes"], seed=seed, fractions=p.fractions,
    )
    return out


FILES = ("items.jsonl", "studies.jsonl", "manifest.json", "build_report.json")


def _build_in_subprocess(p, out: Path, seed: int, hash_seed: str) -> Path:
    """The same build in a fresh interpreter with another str-hash seed (set order varies)."""
    code = (
        "import sys; from pathlib import Path; from voxqa.build import build_fastmri_plus as b; "
        "a, f, v, o = map(Path, sys.argv[1:5]); "
        f"b([(a, f)], o, volumes=v, seed={seed}, fractions={tuple(p.fractions)!r})"
    )
    args = [p.src["annotations"], p.src["file_list"], p.src["volumes"], out]
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True, env=env)
    return out


def test_same_seed_builds_are_byte_identical(ds, tmp_path: Path) -> None:
    a = _build(ds.p, tmp_path / "a", ds.p.seed)
    b = _build_in_subprocess(ds.p, tmp_path / "elsewhere" / "b", ds.p.seed, hash_seed="4242")
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert (a / name).read_bytes() == (ds.p.out / name).read_bytes(), name
    # the output folder's path is not written into the dataset
    for name in FILES:
        assert str(tmp_path).encode() not in (a / name).read_bytes(), name


def test_phantom_is_deterministic_and_items_do_not_depend_on_its_location(ds, tmp_path) -> None:
    src = write_phantom(tmp_path / "copy", n=ds.p.n, seed=ds.p.phantom_seed)
    assert src["annotations"].read_bytes() == ds.p.src["annotations"].read_bytes()
    assert src["file_list"].read_bytes() == ds.p.src["file_list"].read_bytes()
    out = tmp_path / "copy_out"
    build_fastmri_plus([(src["annotations"], src["file_list"])], out, volumes=src["volumes"],
                       seed=ds.p.seed, fractions=ds.p.fractions)
    assert (out / "items.jsonl").read_bytes() == (ds.p.out / "items.jsonl").read_bytes()


def test_different_seed_changes_items(ds, tmp_path: Path) -> None:
    c = _build(ds.p, tmp_path / "c", ds.p.seed + 1)
    assert (c / "items.jsonl").read_bytes() != (ds.p.out / "items.jsonl").read_bytes()
    other = write_phantom(tmp_path / "other_src", n=ds.p.n, seed=ds.p.phantom_seed + 1)
    d = tmp_path / "d"
    build_fastmri_plus([(other["annotations"], other["file_list"])], d, volumes=other["volumes"],
                       seed=ds.p.seed, fractions=ds.p.fractions)
    assert (d / "items.jsonl").read_bytes() != (ds.p.out / "items.jsonl").read_bytes()


def test_answer_balance_blind_guess_does_not_beat_chance(ds) -> None:
    rows = answer_balance(ds.items)
    checked = 0
    for row in rows:
        first = next(it for it in ds.items if (it.split, it.template) == (row["split"], row["template"]))
        if first.answer.type not in ("yes_no", "choice"):
            continue
        n_template = sum(1 for it in ds.items if (it.split, it.template) == (row["split"], row["template"]))
        assert row["n"] == n_template
        if first.answer.type == "yes_no":
            assert row["chance"] == 0.5
            assert row["blind_best"] == 0.5, row  # exact 50/50 per label implies per template
        else:
            assert row["chance"] == pytest.approx(0.25)
            # round-robin positions: the most used position is used ceil(n / 4) times
            assert row["blind_best"] <= row["chance"] + 1 / row["n"] + 1e-9, row
        assert not beats_chance(row), row
        checked += row["n"] >= 8
    assert checked >= 4, "too few reasonably sized groups to say anything"


def test_multi_choice_correct_and_wrong_options_come_from_one_pool(ds) -> None:
    """Right and wrong options are both abnormal findings of the anatomy's vocabulary, so no
    label can only ever be right (e.g. a study-level 'artifact')."""
    vocab = ds.p.manifest["vocabulary"]
    n = 0
    for it in of(ds.items, "classification", "findings_present"):
        anatomy = ds.studies[it.study_id].anatomy
        pool = set(vocab["pathology"].get(anatomy, []))
        assert set(it.options) <= pool, it.id
        assert "artifact" not in it.options
        n += 1
    assert n > 0


# --------------------------------------------------------------------------- knee slabs


VOLUME_TEMPLATES = ("counting/finding_types/volume", "captioning/grounded_summary/volume",
                    "detection/any_abnormality/volume")


def _volume_answers(folder: Path) -> dict[str, Counter]:
    """Per volume-level template: how often each answer (a caption: normal or not) occurs."""
    out: dict[str, Counter] = defaultdict(Counter)
    for it in read_items(folder):
        if it.template in VOLUME_TEMPLATES:
            value = it.answer.value
            out[it.template][value == "No findings annotated." if it.answer.type == "text" else value] += 1
    return out


def test_knee_slabs_keep_their_volume_questions(tmp_path: Path) -> None:
    """36-slice volumes (fastMRI knee) whose lesions span a few slices: 16 evenly spaced frames
    miss the evidence of every annotated volume, so volume questions were left to the normal
    ones (finding types all 0, captions all "No findings annotated."). A fastMRI+ build shows
    every frame, a function of the frame count only: annotated volumes keep their questions."""
    src = write_phantom(tmp_path / "src", n=40, seed=5, shape=(36, 40, 40))
    normal = sum(1 for i in range(40) if i % 4 == 3)
    capped, full = tmp_path / "capped", tmp_path / "full"
    build_fastmri_plus([(src["annotations"], src["file_list"])], capped, volumes=src["volumes"], frame_cap=16)
    build_fastmri_plus([(src["annotations"], src["file_list"])], full, volumes=src["volumes"])

    before = _volume_answers(capped)
    assert set(before["counting/finding_types/volume"]) == {0}  # the old rule: only normal volumes asked
    assert before["captioning/grounded_summary/volume"] == Counter({True: normal})
    assert not before["detection/any_abnormality/volume"]  # nothing left to balance "no" against

    after = _volume_answers(full)
    types = after["counting/finding_types/volume"]
    assert sum(types.values()) == 40 and types[0] == normal  # every volume asked, zeros only for normal ones
    assert after["captioning/grounded_summary/volume"] == Counter({True: normal, False: 40 - normal})
    assert after["detection/any_abnormality/volume"] == Counter({"yes": normal, "no": normal})
    report = read_json(full / "build_report.json")
    assert not [r for r in report.get("info", {}) if "evidence_frames_not_shown" in r]

    manifest = read_json(full / "manifest.json")
    assert manifest["volume_frames"]["cap"] is None and manifest["options"]["frames"] == "all"
    from voxqa.dataset.frame_policy import recorded_policy

    policy = recorded_policy(manifest)  # render and the audit follow it: every frame, the same for all
    assert {tuple(policy.frames(s.frame_count)) for s in read_studies(full)} == {tuple(range(36))}
    assert read_json(capped / "manifest.json")["volume_frames"]["cap"] == 16
