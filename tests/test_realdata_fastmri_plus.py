"""fastMRI+ knee + brain (development split) built end to end: the issue's "done means" checks.

Needs VOXQA_TEST_DATA pointing at the shared data root (with ``fastmri_plus/``). Every
expectation is re-derived here from the CSVs with the csv module and an independent
implementation of the linking rule documented in ``voxqa.boxes.instances``; nothing is copied
from a previous run. Builds are box-only (no HDF5), so every frame is 320 x 320.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from reference import NON_PATHOLOGY, link, norm_label, parse_csv
from helpers import data_unavailable

from voxqa.build import build_fastmri_plus
from voxqa.dataset.folder import read_items, read_json, read_studies
from voxqa.views.inspection import answer_balance, beats_chance

pytestmark = pytest.mark.realdata

ANATOMIES = ("knee", "brain")
FRAME = (320, 320)  # fastMRI reconstruction_rss width, height (SOURCE.md / DEFAULT_FRAME_SIZE)
SEED = 0
FRACTIONS = (0.8, 0.1, 0.1)
COLUMNS = ("file", "slice", "study_level", "x", "y", "width", "height", "label")
FILES = ("items.jsonl", "studies.jsonl", "manifest.json", "build_report.json")


def parse(csv_path: Path, list_path: Path) -> SimpleNamespace:
    """One fastMRI+ CSV (box-only build: every frame 320 x 320) and its file list."""
    ref = parse_csv(csv_path, lambda _: FRAME)
    ref.listed = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
    return ref


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fmp(shared_data: Path) -> Path:
    root = shared_data / "fastmri_plus"
    need = [root / f"{a}{s}" for a in ANATOMIES for s in (".csv", "_file_list.csv")]
    missing = [p.name for p in need if not p.is_file()]
    if missing:
        data_unavailable(f"{root} lacks {missing} (fastMRI+ annotations not in VOXQA_TEST_DATA)")
    return root


def _pairs(root: Path) -> list[tuple[Path, Path]]:
    return [(root / f"{a}.csv", root / f"{a}_file_list.csv") for a in ANATOMIES]


@pytest.fixture(scope="module")
def built(fmp: Path, tmp_path_factory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("fastmri_plus") / "dataset"
    manifest = build_fastmri_plus(_pairs(fmp), out, seed=SEED, fractions=FRACTIONS)
    studies = {s.id: s for s in read_studies(out)}
    ref = {a: parse(*pair) for a, pair in zip(ANATOMIES, _pairs(fmp), strict=False)}
    boxes: dict[str, set] = defaultdict(set)
    study_level: dict[str, set] = defaultdict(set)
    for r in ref.values():
        for k, v in r.boxes.items():
            boxes[k] |= v
        for k, v in r.study_level.items():
            study_level[k] |= v
    return SimpleNamespace(
        root=fmp, out=out, manifest=manifest, items=read_items(out), studies=studies, ref=ref,
        boxes=boxes, study_level=study_level, report=read_json(out / "build_report.json"),
    )


def ev_set(it) -> set[tuple]:
    return {(e.label, e.frame, tuple(e.box)) for e in it.evidence}


def labels_of(s) -> set[str]:
    return {f.label for f in s.findings}


# --------------------------------------------------------------------------- done means


def test_every_valid_box_is_evidence_of_a_localization_item(built) -> None:
    covered: dict[str, set] = defaultdict(set)
    for it in built.items:
        if it.task == "localization":
            covered[it.study_id] |= ev_set(it)
    n = 0
    for name, expected in built.boxes.items():
        missing = expected - covered[name]
        assert not missing, (name, sorted(missing)[:5])
        n += len(expected)
    # and localization invents nothing: its evidence is exactly the valid boxes
    assert {k: v for k, v in covered.items() if v} == {k: v for k, v in built.boxes.items() if v}
    assert n == sum(len(f.boxes) for s in built.studies.values() for f in s.findings)
    assert n > 18000  # knee 13,122 + brain 5,854 box rows, minus the handful of bad ones


def test_clipped_boxes_are_kept_with_y_clipped_to_zero(built) -> None:
    knee = built.ref["knee"]
    assert knee.clipped, "the development knee CSV has boxes starting at y = -1"
    for line, (raw, box) in knee.clipped.items():
        assert raw[1] == -1 and box == (raw[0], 0, raw[2], raw[3]), line


def test_no_evidence_box_lies_outside_its_frame(built) -> None:
    n = 0
    for it in built.items:
        s = built.studies[it.study_id]
        assert tuple(s.frame_size) == FRAME
        for e in it.evidence:
            x0, y0, x1, y1 = e.box
            assert 0 <= x0 < x1 <= FRAME[0] and 0 <= y0 < y1 <= FRAME[1], (it.id, e)
            assert e.frame >= 0
            n += 1
    assert n > 0


def test_count_answers_equal_independently_linked_instances(built) -> None:
    counted = [it for it in built.items if it.task == "counting" and it.subtask == "instances"]
    assert len(counted) > 1000
    values = Counter()
    for it in counted:
        mine = link([(f, b) for lab, f, b in built.boxes.get(it.study_id, ()) if lab == it.label])
        assert it.answer.value == len(mine), (it.id, it.answer.value, len(mine))
        if it.answer.value == 0:
            assert it.label not in labels_of(built.studies[it.study_id]), it.id
        values[it.answer.value] += 1
    assert values[0] and max(values) > 3  # zeros and multi-lesion answers are both exercised
    # the stored instances are exactly the linked components (not merely as many of them)
    for s in built.studies.values():
        stored: dict[str, set] = defaultdict(set)
        for f in s.findings:
            if not f.study_level:
                stored[f.label].add(frozenset((b.frame, tuple(b.box)) for b in f.boxes))
        for lab, comps in stored.items():
            mine = link([(f, b) for lab2, f, b in built.boxes[s.id] if lab2 == lab])
            assert comps == set(mine), (s.id, lab)


@pytest.mark.slow
def test_two_builds_with_the_same_seed_are_byte_identical(built, tmp_path: Path) -> None:
    """The second build runs in a fresh interpreter with another str-hash seed, so set
    iteration order cannot leak into the output either."""
    again = tmp_path / "again"
    code = (
        "import sys; from pathlib import Path; from voxqa.build import build_fastmri_plus as b; "
        "r = Path(sys.argv[1]); "
        "b([(r / f'{a}.csv', r / f'{a}_file_list.csv') for a in ('knee', 'brain')], "
        f"Path(sys.argv[2]), seed={SEED}, fractions={FRACTIONS!r})"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(built.root), str(again)], check=True, env=env)
    for name in FILES:
        assert (again / name).read_bytes() == (built.out / name).read_bytes(), name


def test_splits_are_by_study_and_near_the_requested_fractions(built) -> None:
    lines = [json.loads(x) for x in (built.out / "studies.jsonl").read_text().splitlines()]
    assert len({s["id"] for s in lines}) == len(lines)
    for it in built.items:
        assert it.split == built.studies[it.study_id].split, it.id
    by_split = Counter(s.split for s in built.studies.values())
    total = sum(by_split.values())
    for name, fraction in zip(("train", "val", "test"), FRACTIONS, strict=False):
        assert abs(by_split[name] / total - fraction) <= 0.03, (name, by_split)


def test_build_report_accounts_for_every_row(built) -> None:
    t = built.report["totals"]
    read = {Path(p).name: n for p, n in t["rows_read"].items()}
    assert read == {f"{a}.csv": built.ref[a].n_read for a in ANATOMIES}
    dropped = t["rows_dropped_by_reason"]
    assert sum(read.values()) == t["rows_kept_boxes"] + t["rows_kept_study_level"] + sum(dropped.values())
    assert t["rows_dropped"] == sum(dropped.values())
    assert t["rows_accounted"] is True
    # each term matches the CSVs
    assert t["rows_kept_boxes"] == sum(len(v) for v in built.boxes.values())
    assert t["rows_kept_study_level"] == sum(len(v) for v in built.study_level.values())
    assert dropped["duplicate_row"] == sum(len(r.dup_lines) for r in built.ref.values())
    assert dropped["zero_area_box"] == sum(len(r.zero_lines) for r in built.ref.values())
    assert dropped["duplicate_row"] >= 1 and dropped["zero_area_box"] >= 1
    assert set(dropped) >= {"duplicate_row", "zero_area_box"}
    # per-anatomy kept boxes, from studies.jsonl
    for a in ANATOMIES:
        kept = sum(len(f.boxes) for s in built.studies.values() if s.anatomy == a for f in s.findings)
        assert kept == sum(len(v) for v in built.ref[a].boxes.values()), a


def _example_lines(entry: dict) -> set[tuple[str, int]]:
    out = set()
    for ex in entry["examples"]:
        path, line = ex["where"].rsplit(":", 1)
        out.add((Path(path).name, int(line)))
    return out


def _expected_lines(built, attr: str) -> set[tuple[str, int]]:
    return {(f"{a}.csv", line) for a in ANATOMIES for line in getattr(built.ref[a], attr)}


def test_build_report_lists_clipped_zero_area_and_duplicate_rows(built) -> None:
    rep = built.report
    clipped = rep["repaired"]["box_clipped"]
    assert clipped["count"] == sum(len(r.clipped) for r in built.ref.values())
    assert clipped["examples"] and _example_lines(clipped) <= _expected_lines(built, "clipped")
    for ex in clipped["examples"]:
        path, line = ex["where"].rsplit(":", 1)
        raw, box = built.ref[Path(path).stem].clipped[int(line)]
        assert ex["box"] == list(raw) and ex["to"] == list(box)
    zero = rep["dropped"]["zero_area_box"]
    assert zero["examples"] and _example_lines(zero) <= _expected_lines(built, "zero_lines")
    dup = rep["dropped"]["duplicate_row"]
    assert dup["examples"] and _example_lines(dup) <= _expected_lines(built, "dup_lines")


def test_reviewed_volumes_without_rows_are_normal_studies_asked_no(built) -> None:
    volume_name = re.compile(r"^file[A-Za-z0-9_]+$")
    normal = set()
    for r in built.ref.values():
        normal |= {n for n in r.listed if volume_name.match(n)} - r.files_with_rows
    assert len(normal) > 100
    # lines of the file lists that are no volume name (knee ends with "Knee data") are reported
    junk = sum(1 for r in built.ref.values() for n in r.listed if not volume_name.match(n))
    if junk:
        assert built.report["dropped"]["file_list_invalid_name"]["count"] == junk
    assert built.report["totals"]["volumes_reviewed_without_rows"] == len(normal)
    for n in normal:
        assert built.studies[n].findings == [], n
    asked_no = {it.study_id for it in built.items if it.task == "detection" and it.answer.value == "no"}
    assert asked_no & normal
    # every reviewed or annotated volume is a study, and nothing else is
    expected = set(normal) | set().union(*(r.files_with_rows for r in built.ref.values()))
    assert set(built.studies) == expected


def test_labels_are_whitespace_normalised_with_raw_label_kept(built) -> None:
    for it in built.items:
        for text in [it.label or ""] + list(it.options or []) + [e.label for e in it.evidence]:
            assert text == norm_label(text), (it.id, repr(text))
    labels = {it.label for it in built.items}
    assert "Joint Effusion" in labels and "Joint Effusion " not in labels
    effusion = [f for s in built.studies.values() for f in s.findings if f.label == "Joint Effusion"]
    assert effusion and all(f.raw_label == "Joint Effusion " for f in effusion)
    for s in built.studies.values():
        for f in s.findings:
            assert f.raw_label in built.ref[s.anatomy].raw_labels[f.label], (s.id, f.raw_label)


# --------------------------------------------------------------------------- beyond the phantom


def test_detection_is_balanced_and_grounded_with_study_level_labels(built) -> None:
    """Brain has study-level pathology labels, which the phantom lacks."""
    groups: dict[tuple, Counter] = defaultdict(Counter)
    for it in built.items:
        if it.task != "detection":
            continue
        groups[(it.split, it.template, it.label)][it.answer.value] += 1
        s = built.studies[it.study_id]
        if it.answer.value == "no":
            assert it.evidence == [], it.id
            if it.subtask == "finding_presence":
                assert it.label not in labels_of(s), it.id
            elif it.level == "volume":
                assert all(lab.lower() in NON_PATHOLOGY for lab in labels_of(s)), it.id
        elif it.subtask == "finding_presence":
            assert ev_set(it) <= built.boxes[s.id]
            assert it.evidence or it.label in built.study_level[s.id], it.id
    for key, c in groups.items():
        assert c["yes"] == c["no"] > 0, (key, c)


def test_constant_answers_do_not_beat_chance(built) -> None:
    rows = [r for r in answer_balance(built.items) if r["chance"] is not None]
    assert len(rows) >= 12  # yes/no and single-choice templates x 3 splits
    for row in rows:
        if row["template"].startswith(("detection/", "classification/finding_")):
            assert not beats_chance(row), row


def test_single_choice_distractors_cannot_be_right(built) -> None:
    """Wrong options have no box on the asked frame or its neighbours and are not
    study-level labels (which apply to every frame)."""
    n = 0
    for it in built.items:
        if it.answer.type == "choice":
            s = built.studies[it.study_id]
            (k,) = it.frames
            near = {f.label for f in s.findings for b in f.boxes if abs(b.frame - k) <= 1}
            near |= {f.label for f in s.findings if f.study_level}
            assert it.options[it.answer.value] == it.label
            wrong = [o for i, o in enumerate(it.options) if i != it.answer.value]
            assert not set(wrong) & near, it.id
            n += 1
    assert n > 1000


def test_multi_choice_no_option_label_is_always_correct(built) -> None:
    seen: dict[str, Counter] = defaultdict(Counter)
    for it in built.items:
        if it.subtask == "findings_present":
            for i, o in enumerate(it.options):
                seen[o][i in it.answer.value] += 1
    always_right = {o: c[True] for o, c in seen.items() if c[True] >= 5 and c[False] == 0}
    assert always_right == {}


def _blind_accuracy(built, template: str, feature, guess) -> tuple[float, int, float]:
    """Fit a text-only guesser on train items of ``template``, score it on val + test."""
    train = [it for it in built.items if it.template == template and it.split == "train"]
    held = [it for it in built.items if it.template == template and it.split != "train"]
    model = guess(train, feature)
    right = sum(model(it) == it.answer.value for it in held)
    return right / len(held), len(held), held[0].chance


def _majority_by(train, feature):
    votes: dict = defaultdict(Counter)
    for it in train:
        votes[feature(it)][it.answer.value] += 1
    overall = Counter(it.answer.value for it in train).most_common(1)[0][0]
    return lambda it: votes[feature(it)].most_common(1)[0][0] if feature(it) in votes else overall


def _beats_chance(acc: float, n: int, chance: float) -> bool:
    return acc - chance > 3 * (chance * (1 - chance) / n) ** 0.5


def test_frame_index_in_the_question_does_not_give_the_answer_away(built) -> None:
    leaks = {}
    for template in ("detection/any_abnormality/frame", "detection/finding_presence/frame"):
        acc, n, chance = _blind_accuracy(
            built, template, lambda it: (built.studies[it.study_id].anatomy, it.frames[0]),
            _majority_by,
        )
        if _beats_chance(acc, n, chance):
            leaks[template] = (round(acc, 3), n)
    assert leaks == {}


def test_label_frequency_does_not_give_single_choice_answers_away(built) -> None:
    def prior_pick(train, feature):
        prior = Counter(it.label for it in train)
        return lambda it: max(range(len(it.options)), key=lambda i: (prior[it.options[i]], -i))

    leaks = {}
    for template in ("classification/finding_in_box/frame", "classification/finding_on_frame/frame"):
        acc, n, chance = _blind_accuracy(built, template, None, prior_pick)
        if _beats_chance(acc, n, chance):
            leaks[template] = (round(acc, 3), n)
    assert leaks == {}


def test_single_choice_labels_are_right_one_in_n_times_shown_in_every_split(built) -> None:
    """Balance within each split: pooled over splits, a label's train hit rate mirrored its
    held-out one and "the option least often right in train" scored 0.40 on val + test."""
    shown: dict[tuple, Counter] = defaultdict(Counter)
    for it in built.items:
        if it.answer.type == "choice" and it.task == "classification":
            for i, o in enumerate(it.options):
                shown[(it.template, it.split, o)][i == it.answer.value] += 1
    off = {k: dict(c) for k, c in shown.items() if c[False] != 3 * c[True]}
    assert off == {} and len(shown) > 100


def test_select_all_option_sets_do_not_carry_the_answer(built) -> None:
    """A learner on option x other options (and x the whole set), fitted on train, stays at
    chance on val + test (it reached 0.23 vs 1/15 when options were picked by a max flow in
    label order)."""
    import numpy as np
    from scipy.sparse import csr_matrix
    from scipy.stats import binomtest
    from sklearn.linear_model import LogisticRegression

    from voxqa.dataset.audit import likeliest_subset

    fp = [it for it in built.items if it.subtask == "findings_present"]
    train = [it for it in fp if it.split == "train"]
    held = [it for it in fp if it.split != "train"]

    def rows(it):
        for i, o in enumerate(it.options):
            yield {"o=" + o, o + "|set=" + "+".join(sorted(it.options))} | {
                f"{o}|{m}" for j, m in enumerate(it.options) if j != i}

    vocab = {k: j for j, k in enumerate(sorted({k for it in train for r in rows(it) for k in r}))}

    def matrix(its):
        cols = [[vocab[k] for k in r if k in vocab] for it in its for r in rows(it)]
        ptr = np.cumsum([0] + [len(c) for c in cols])
        return csr_matrix((np.ones(ptr[-1]), [j for c in cols for j in c], ptr), shape=(len(cols), len(vocab)))

    y = [int(i in it.answer.value) for it in train for i in range(len(it.options))]
    clf = LogisticRegression(solver="liblinear").fit(matrix(train), y)
    p = clf.predict_proba(matrix(held))[:, 1].reshape(len(held), -1)
    sizes = Counter(len(it.answer.value) for it in train)
    k = sum(likeliest_subset(dict(enumerate(pi)), sizes) == tuple(it.answer.value)
            for it, pi in zip(held, p, strict=True))
    low = binomtest(k, len(held)).proportion_ci(method="exact").low
    assert low <= 1 / 15, (k, len(held))
