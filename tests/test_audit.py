"""The blind audit: text-only learners per template, trained on train,
scored on val+test, flag a template whose exact 95% interval lies above chance.

The datasets are real phantom builds (``write_phantom`` + ``build_fastmri_plus``). The leak
is the old frame-set rule of ``voxqa render``: a volume-level item showed ``K`` evenly spaced
frames *plus every evidence frame of the study's volume-level items*, so a normal volume
showed exactly the evenly spaced set and an abnormal one more frames. The ``Frame k:`` labels
are prompt text, so a text-only learner can read the answer off them.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import data_unavailable
from typer.testing import CliRunner

from voxqa.build import build_fastmri_plus
from voxqa.cli import app
from voxqa.dataset.audit import (
    AUDIT,
    MIN_EVAL,
    MIN_TRAIN,
    assert_unflagged,
    audit_dataset,
    audit_items,
    shown_frames,
)
from voxqa.dataset.folder import ITEMS, MANIFEST, read_items, read_json, read_studies, write_jsonl
from voxqa.phantom import write_phantom
from voxqa.schema import ImageRef, Item, YesNoAnswer

ANY_VOLUME = "detection/any_abnormality/volume"
PRESENCE_FRAME = "detection/finding_presence/frame"
IN_BOX = "classification/finding_in_box/frame"
OLD_CONTEXT = 6  # evenly spaced frames of the old rule (the phantom has 12 frames)


def old_frame_set(frame_count: int, evidence: set[int], context: int) -> list[int]:
    """The frame set render used before the audit existed: evenly spaced frames plus evidence frames."""
    spaced = {round(i * (frame_count - 1) / max(context - 1, 1)) for i in range(context)}
    return sorted(spaced | {f for f in evidence if f < frame_count})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> SimpleNamespace:
    """120 phantom studies of 12 frames, built (today's rules: every frame shown), and a copy
    whose items show the frames the old rule showed (``images`` set as render set them)."""
    root = tmp_path_factory.mktemp("audit")
    src = write_phantom(root / "src", n=120, seed=3, shape=(12, 48, 48))
    clean = root / "clean"
    build_fastmri_plus([(src["annotations"], src["file_list"])], clean, volumes=src["volumes"],
                       fractions=(0.5, 0.25, 0.25))
    leaky = root / "leaky"
    shutil.copytree(clean, leaky)
    items = read_items(leaky)
    studies = {s.id: s for s in read_studies(leaky)}
    evidence: dict[str, set[int]] = defaultdict(set)
    for it in items:
        if it.level == "volume":
            evidence[it.study_id] |= {e.frame for e in it.evidence}
    shown = []
    for it in items:
        frames = it.frames if it.level == "frame" else old_frame_set(
            studies[it.study_id].frame_count, evidence[it.study_id], OLD_CONTEXT)
        images = [ImageRef(path=f"frames/{it.study_id}/{k:04d}.png", frame=k, width=48, height=48)
                  for k in frames]
        shown.append(it.model_copy(update={"images": images}))
    write_jsonl(leaky / ITEMS, shown)
    return SimpleNamespace(clean=clean, leaky=leaky, studies=studies)


def test_the_old_frame_set_rule_is_caught(built) -> None:
    """Done means: the audit flags the volume-level any-abnormality template under the old
    rule, and passes it on the same items under today's rule (all 12 frames shown)."""
    normal = [it for it in read_items(built.leaky) if it.template == ANY_VOLUME and it.answer.value == "no"]
    assert normal and all(len(it.images) == OLD_CONTEXT for it in normal)  # the tell being planted

    leaky = audit_dataset(built.leaky)
    row = leaky["templates"][ANY_VOLUME]
    assert row["n_train"] >= MIN_TRAIN and row["n"] >= MIN_EVAL
    assert row["chance"] == 0.5 and row["constant"]["accuracy"] == 0.5  # balanced yes/no
    assert row["learner"]["accuracy"] >= 0.8 and row["learner"]["ci"][0] > 0.5
    assert row["flagged"] and row["status"] == "flagged"
    assert ANY_VOLUME in leaky["flagged"] and leaky["status"] == "flagged"
    assert leaky["frames_shown_from"] == {"images": len(read_items(built.leaky))}

    clean = read_json(built.clean / AUDIT)  # written by the build
    assert clean["templates"][ANY_VOLUME]["status"] == "pass"
    assert clean["templates"][ANY_VOLUME]["learner"]["accuracy"] == 0.5  # every prompt identical
    manifest = read_json(built.clean / MANIFEST)
    assert manifest["audit"]["templates"][ANY_VOLUME]["status"] == "pass"


def test_shown_frames_follow_render_when_not_rendered(built) -> None:
    items = read_items(built.clean)
    vol = next(it for it in items if it.level == "volume")
    frame = next(it for it in items if it.level == "frame")
    study = built.studies[vol.study_id]
    assert shown_frames(vol, study) == list(range(12))  # 12 frames <= the render cap: all
    long = study.model_copy(update={"frame_count": 40})  # over the cap of 16: evenly spaced
    assert shown_frames(vol, long) == [round(i * 39 / 15) for i in range(16)]
    assert shown_frames(frame, built.studies[frame.study_id]) == frame.frames
    assert shown_frames(vol, study.model_copy(update={"volume": None})) == []  # box-only: none


def _randomized(items: list[Item], template: str, seed: int) -> list[Item]:
    """The items of ``template`` with answers drawn at random, independent of the text."""
    r = random.Random(seed)
    out = []
    for it in items:
        if it.template != template:
            continue
        if it.answer.type == "yes_no":
            answer = YesNoAnswer(value=r.choice(["yes", "no"]))
        else:
            answer = it.answer.model_copy(update={"value": r.randrange(len(it.options))})
        out.append(it.model_copy(update={"answer": answer}))
    return out


@pytest.mark.parametrize("template", [PRESENCE_FRAME, IN_BOX])
def test_answers_random_with_respect_to_the_text_are_not_flagged(built, template) -> None:
    """Over five independent random answer draws the learner is at chance on average and
    flagged at most once (a one-sided 97.5% bound is exceeded by luck 2.5% of the time)."""
    rows = []
    for seed in range(1, 6):
        audit = audit_items(_randomized(read_items(built.leaky), template, seed), built.studies.values())
        rows.append(audit["templates"][template])
    assert all(r["n_train"] >= MIN_TRAIN and r["n"] >= MIN_EVAL for r in rows)
    assert sum(r["flagged"] for r in rows) <= 1, rows
    mean = sum(r["learner"]["accuracy"] for r in rows) / len(rows)
    assert mean < rows[0]["chance"] + 0.07, rows


def test_below_the_minimum_the_audit_says_insufficient(built) -> None:
    items = [it for it in read_items(built.leaky) if it.template == ANY_VOLUME]
    train = [it for it in items if it.split == "train"]
    held = [it for it in items if it.split != "train"]
    short = audit_items(train[: MIN_TRAIN - 1] + held, built.studies.values())
    row = short["templates"][ANY_VOLUME]
    assert row["status"] == "insufficient" and not row["flagged"] and "learner" not in row
    assert row["reason"] == (f"needs >= {MIN_TRAIN} train and >= {MIN_EVAL} val+test items, "
                             f"has {MIN_TRAIN - 1} and {len(held)}")
    assert short["status"] == "insufficient" and short["insufficient"] == [ANY_VOLUME]

    enough = audit_items(train[:MIN_TRAIN] + held[:MIN_EVAL], built.studies.values())
    assert enough["templates"][ANY_VOLUME]["status"] in ("pass", "flagged")
    assert enough["templates"][ANY_VOLUME]["n"] == MIN_EVAL


def test_prior_answerable_items_are_audited_apart(built) -> None:
    items = [it.model_copy(update={"prior_answerable": it.template == ANY_VOLUME})
             for it in read_items(built.leaky)]
    audit = audit_items(items, built.studies.values())
    assert ANY_VOLUME not in audit["templates"] and ANY_VOLUME not in audit["flagged"]
    assert audit["prior_answerable"][ANY_VOLUME]["flagged"]
    assert audit["prior_answerable_flagged"] == [ANY_VOLUME]


def test_cli_audit_writes_audit_json_and_prints_a_table(built, tmp_path) -> None:
    folder = tmp_path / "ds"
    shutil.copytree(built.leaky, folder)
    (folder / AUDIT).unlink(missing_ok=True)
    res = CliRunner().invoke(app, ["audit", str(folder)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "Blind audit" in res.output and ANY_VOLUME in res.output and "flagged" in res.output
    audit = read_json(folder / AUDIT)
    assert ANY_VOLUME in audit["flagged"]
    manifest = read_json(folder / MANIFEST)
    assert manifest["audit"]["status"] == "flagged" and ANY_VOLUME in manifest["audit"]["flagged"]
    strict = CliRunner().invoke(app, ["audit", str(folder), "--strict"])
    assert strict.exit_code == 1
    res = CliRunner().invoke(app, ["audit", str(tmp_path / "missing")])
    assert res.exit_code == 2


def test_audit_is_deterministic(built, tmp_path) -> None:
    first = tmp_path / "a"
    second = tmp_path / "b"
    for folder in (first, second):
        shutil.copytree(built.leaky, folder)
        audit_dataset(folder)
    assert (first / AUDIT).read_bytes() == (second / AUDIT).read_bytes()
    assert (first / MANIFEST).read_bytes() == (second / MANIFEST).read_bytes()
    assert json.loads((first / AUDIT).read_bytes()) == audit_items(
        read_items(built.leaky), read_studies(built.leaky))


def test_prior_baseline_is_the_audit_learner(built) -> None:
    """The blind row of the leaderboard reads the old-rule leak; the old prior (the most
    frequent train answer) could not: it scores exactly chance on balanced yes/no."""
    from voxqa.eval.models import make_model

    prior = make_model("prior", built.leaky)
    items = read_items(built.leaky)
    train = [it for it in items if it.template == ANY_VOLUME and it.split == "train"]
    held = [it for it in items if it.template == ANY_VOLUME and it.split != "train"]
    answers = [asyncio.run(prior.answer(None, it)) for it in held]  # type: ignore[arg-type]
    learner = sum(a == it.answer.value for a, it in zip(answers, held, strict=False)) / len(held)
    most_frequent = Counter(it.answer.value for it in train).most_common(1)[0][0]
    old = sum(most_frequent == it.answer.value for it in held) / len(held)
    assert old == 0.5 and learner >= 0.8
    audited = audit_items(items, read_studies(built.leaky))["templates"][ANY_VOLUME]["learner"]
    assert abs(learner - audited["accuracy"]) < 1e-4  # the same learner as the audit's
    where = next(it for it in items if it.answer.type == "boxes")
    assert asyncio.run(prior.answer(None, where)) == ""  # type: ignore[arg-type]  # boxes: abstains
    choice = next(it for it in items if it.template == IN_BOX)
    assert asyncio.run(prior.answer(None, choice)) in "ABCD"  # type: ignore[arg-type]


@pytest.mark.realdata
def test_real_fastmri_plus_build_audits_clean(shared_data: Path, tmp_path) -> None:
    root = shared_data / "fastmri_plus"
    pairs = [(root / f"{a}.csv", root / f"{a}_file_list.csv") for a in ("knee", "brain")]
    if not all(p.is_file() for pair in pairs for p in pair):
        data_unavailable(f"{root} lacks the fastMRI+ CSVs")
    manifest = build_fastmri_plus(pairs, tmp_path / "ds", seed=0, fractions=(0.8, 0.1, 0.1))
    assert manifest["audit"]["insufficient"] == []
    audit = read_json(tmp_path / "ds" / AUDIT)
    # open leaks the stronger audit exposes (none of them is new to the build): quoted box
    # size x label (hidden before by the reversed pooled balance) and skewed count answers;
    # nothing else may be flagged
    assert audit["flagged"] == sorted(KNOWN_REAL_LEAKS), {
        t: audit["templates"][t]["learners"] for t in audit["flagged"]}
    no_new = {**audit, "templates": {t: r for t, r in audit["templates"].items() if t not in KNOWN_REAL_LEAKS}}
    assert_unflagged(no_new)
    # the label-rate rules are at chance in every choice template (split-aware balance)
    for t, r in audit["templates"].items():
        for name in ("least_right_in_train", "most_right_in_train"):
            if name in r.get("learners", {}):
                assert r["learners"][name]["flag"] is None, (t, name, r["learners"][name])


KNOWN_REAL_LEAKS = {
    IN_BOX: "label x quoted box size: the linear learner 0.34 held out",
    "counting/finding_types/volume": "answer skew: the constant 0.32 vs guessing 0.21",
    "counting/instances/volume": "answer skew: the constant 0.41 vs guessing 0.34",
}


def test_numbers_with_many_values_are_regressed(built) -> None:
    """A volume-in-mL-like template (every value distinct): the learner regresses; the organ
    named in the question gives the size away (liver 100-200 mL, spleen 10-20 mL, 30%
    tolerance), which the constant answer cannot use."""
    from voxqa.dataset.audit import MAX_NUMBER_CLASSES
    from voxqa.schema import NumberAnswer

    r = random.Random(0)
    base = [it for it in read_items(built.clean) if it.template == "counting/instances/volume"]
    items = []
    for n, it in enumerate(base):
        organ, (lo, hi) = ("liver", (100, 200)) if n % 2 else ("spleen", (10, 20))
        v = round(r.uniform(lo, hi), 1)
        items.append(it.model_copy(update={"question": f"What is the volume of the {organ} in mL?",
                                           "answer": NumberAnswer(value=v, tolerance=0.3 * v)}))
    assert len({it.answer.value for it in items if it.split == "train"}) > MAX_NUMBER_CLASSES
    row = audit_items(items, built.studies.values())["templates"]["counting/instances/volume"]
    assert row["reference"] == "train answer distribution" and row["constant"]["accuracy"] < 0.35
    assert row["learner"]["accuracy"] > 0.7 and row["flagged"]


def test_cli_render_redoes_the_audit_on_the_rendered_frames(tmp_path) -> None:
    src = write_phantom(tmp_path / "src", n=6, seed=2)
    ds = tmp_path / "ds"
    build_fastmri_plus([(src["annotations"], src["file_list"])], ds, volumes=src["volumes"])
    assert read_json(ds / AUDIT)["frames_shown_from"].get("images") is None  # built: not rendered
    res = CliRunner().invoke(app, ["render", str(ds), "--size", "64", "--frames", "4"])
    assert res.exit_code == 0, res.output
    assert "blind audit (rendered frames)" in res.output
    audit = read_json(ds / AUDIT)
    assert audit["frames_shown_from"] == {"images": len(read_items(ds))}
    assert read_json(ds / MANIFEST)["audit"]["status"] == audit["status"]


def test_multi_study_phantom_build_audits_clean(built) -> None:
    """Done means: the 120-study phantom build (today's rules) flags no template."""
    audit = read_json(built.clean / AUDIT)
    assert_unflagged(audit)
    assert audit["flagged"] == [] and audit["prior_answerable_flagged"] == []
    # findings_present keeps only the studies it can balance: too few here to judge
    assert audit["insufficient"] == ["classification/findings_present/volume"]
