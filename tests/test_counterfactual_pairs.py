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


@pytest.mark.slow
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


@pytest.mark.realdata
def test_totalsegmentator_crops_build_audits_clean(shared_data: Path, tmp_path) -> None:
    """40 studies cut from the shared TotalSegmentator CT and MR (random crops: other fields
    of view, frame indices and truncations): no headline template beats chance from text."""
    import json

    import nibabel as nib
    import numpy as np

    from voxqa.anatomy.labelnames import header_label_names

    src = shared_data / "totalsegmentator"
    specs = []
    for image, labels, tag, seed in (("example_ct_sm.nii.gz", "example_seg.nii.gz", "ct", 0),
                                     ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz", "mr", 1)):
        img, lab = nib.load(src / image), nib.load(src / labels)
        names = tmp_path / f"{tag}_names.json"
        names.write_text(json.dumps({str(k): v for k, v in header_label_names(src / labels).items()}))
        data, seg = np.asarray(img.dataobj), np.asarray(lab.dataobj)
        r = np.random.default_rng(seed)
        for c in range(20):
            lo = [int(r.integers(0, n // 4)) for n in data.shape]
            hi = [int(n - r.integers(0, n // 4)) for n in data.shape]
            crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=False))
            affine = img.affine.copy()
            affine[:3, 3] = img.affine[:3, :3] @ lo + img.affine[:3, 3]  # same world position
            d = tmp_path / f"{tag}{c:02d}"
            d.mkdir()
            nib.save(nib.Nifti1Image(data[crop], affine), d / "image.nii.gz")
            nib.save(nib.Nifti1Image(seg[crop], affine), d / "labels.nii.gz")
            specs.append(SegSpec(study_id=d.name, image=d / "image.nii.gz", labels=d / "labels.nii.gz",
                                 label_names=names, modality=tag.upper()))
    manifest = build_segmentation(specs, tmp_path / "ds", fractions=(0.5, 0.25, 0.25))
    audit = read_json(tmp_path / "ds" / AUDIT)
    assert_unflagged(audit)
    assert manifest["audit"]["flagged"] == []
    passed = [t for t, r in audit["templates"].items() if r["status"] == "pass"]
    assert {"detection/presence/frame", "detection/presence/volume"} <= set(passed)


def test_shuffled_control_shows_another_patients_frames(tmp_path: Path) -> None:
    """Three patients, one scanned twice, each study with its mirrored twin: under
    ``--control shuffled`` no item is shown frames of its own patient (its twin, or the
    patient's other scan), and the choice is the same on every run."""
    from voxqa.eval.models.base import ModelAdapter

    specs = []
    for study, patient, v in (("a1", "A", 1), ("a2", "A", 2), ("b", "B", 3), ("c", "C", 4)):
        p = write_segmentation_phantom(tmp_path / "src" / study, variant=v)
        specs.append(SegSpec(study_id=study, patient_id=patient, image=p["image"], labels=p["labels"],
                             label_names=p["label_names"], modality="CT"))
    build_segmentation(specs, tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    render_dataset(tmp_path / "ds", RenderSettings(size=48), workers=1)
    patient = {"a1": "A", "a2": "A", "b": "B", "c": "C"}

    class Recorder(ModelAdapter):
        spec = "recorder"

        def __init__(self) -> None:
            self.shown: dict[str, set[str]] = {}

        def identity(self) -> dict:
            return {"spec": self.spec}

        async def answer(self, prompt, item) -> str:  # noqa: ANN001
            self.shown[item.id] = {Path(v).parent.name for k, v in prompt.parts if k == "image"}
            return "yes"

    runs = []
    for n in range(2):
        model = Recorder()
        asyncio.run(run_eval(RunConfig(dataset=tmp_path / "ds", out=tmp_path / f"run{n}", split=None,
                                       control="shuffled"), model))
        runs.append(model.shown)
    items = {it.id: it for it in read_items(tmp_path / "ds") if it.images}
    assert runs[0] == runs[1] and set(runs[0]) == set(items)
    kinds = set()
    for item_id, studies in runs[0].items():
        own = patient[items[item_id].study_id.removesuffix(".mirrored")]
        assert studies and all(patient[s.removesuffix(".mirrored")] != own for s in studies), item_id
        kinds.add((items[item_id].level, items[item_id].study_id.endswith(".mirrored")))
    assert {("volume", False), ("volume", True), ("frame", False)} <= kinds
