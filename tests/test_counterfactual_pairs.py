"""A multi-study segmentation build: the blind audit finds no text-only shortcut, and the
mirrored twins separate a model that reads the image from one that answers from priors."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from voxqa.build import build_segmentation
from voxqa.dataset.audit import AUDIT, assert_unflagged
from voxqa.dataset.folder import read_items, read_json
from voxqa.eval.models import make_model
from voxqa.eval.run import RunConfig, run_eval
from voxqa.eval.score import score_run
from voxqa.phantom import write_segmentation_phantom
from voxqa.render import RenderSettings, render_dataset
from voxqa.sources.segmentation import SegSpec

N_STUDIES = 40


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    """40 phantom patients (organs moved and resized, 1-3 lesions in the liver or spleen)."""
    tmp = tmp_path_factory.mktemp("multi")
    specs = []
    for v in range(1, N_STUDIES + 1):
        p = write_segmentation_phantom(tmp / "src" / str(v), variant=v)
        specs.append(SegSpec(study_id=f"p{v:02d}", image=p["image"], labels=p["labels"],
                             label_names=p["label_names"], modality="CT"))
    build_segmentation(specs, tmp / "ds", fractions=(0.5, 0.25, 0.25))
    render_dataset(tmp / "ds", RenderSettings(size=64), workers=1)
    return tmp / "ds"


def test_multi_study_segmentation_build_audits_clean(multi: Path) -> None:
    audit = read_json(multi / AUDIT)
    assert_unflagged(audit)  # no headline template beats chance from text alone
    audited = [t for t, r in audit["templates"].items() if (r.get("learner") or {}).get("accuracy") is not None]
    assert "spatial/laterality/volume" in audited  # the pairs are audited, and pass
    # prior-answerable templates are reported apart, not hidden
    assert audit["prior_answerable"]


def test_every_side_question_has_a_twin_with_the_other_answer(multi: Path) -> None:
    items = read_items(multi)
    pairs: dict[str, dict[str, object]] = defaultdict(dict)
    for it in items:
        if it.pair_id:
            pairs[it.pair_id][it.variant] = it
    assert len(pairs) >= 2 * N_STUDIES
    for pair in pairs.values():
        a, b = pair["original"], pair["mirrored"]
        assert a.question == b.question and a.options == b.options and a.split == b.split
        assert a.answer.value != b.answer.value
        assert b.study_id == a.study_id + ".mirrored"


def _pair_accuracy(ds: Path, out: Path, model: str) -> dict:
    asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None, tasks=("spatial",)),
                         make_model(model, ds)))
    return score_run(out)


def test_oracle_gets_both_of_every_pair_and_the_blind_learner_one(multi: Path, tmp_path) -> None:
    oracle = _pair_accuracy(multi, tmp_path / "oracle", "oracle")
    assert oracle["pair_accuracy"]["overall"]["value"] == 1.0
    assert oracle["overall"]["metrics"]["accuracy"]["mean"] == 1.0
    blind = _pair_accuracy(multi, tmp_path / "prior", "prior")
    pa = blind["pair_accuracy"]["overall"]
    # same text, other answer: a text-only model is right on at most one item of a pair
    assert pa["n_pairs"] >= N_STUDIES and pa["both_right"] == 0
    lat = blind["by"]["task/subtask"]["spatial/laterality"]["metrics"]["accuracy"]["mean"]
    assert lat == pytest.approx(0.5, abs=0.01)
