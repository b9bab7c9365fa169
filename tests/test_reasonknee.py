"""ReasonKnee-Bench as its authors ran it: the MOAKS vocabulary one to one with the released
templates, the three settings (zero-shot, guided, GT region) and their uplift, imports of every
released template with its answer schema, and region-first traces that state their evidence.

Released files: ../shared/reference/samples/reasonknee (VOXQA_TEST_DATA's sibling reference/,
or VOXQA_TEST_REFERENCE); tests that read them skip when it is absent. The rest run on the knee
phantom and on records written here in the released shapes."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from voxqa.anatomy.knee import (
    COMPOSITES,
    FEATURES,
    FOLLOW_UP_ONLY,
    MENISCAL_PARTS,
    TEAR_GRADES,
    released_components,
)
from voxqa.boxes.profiles import get_profile
from voxqa.cli import app
from voxqa.dataset.folder import read_items, read_studies
from voxqa.errors import InputError
from voxqa.eval.models.base import ModelAdapter
from voxqa.eval.parse import parse_answer
from voxqa.eval.prompts import RELEASED_INSTRUCTION, build_prompt, check_mode
from voxqa.eval.run import RunConfig, run_eval
from voxqa.importers.reasonknee import import_reasonknee, read_templates
from voxqa.phantom import write_knee_phantom

runner = CliRunner()
QUESTION_FILES = ("questions_nobbox_zeroshot.json", "questions_nobbox_guided.json")


def cli(*args: object) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def text_of(prompt) -> str:  # noqa: ANN001 - a voxqa.eval.prompts.Prompt
    return "".join(v for k, v in prompt.parts if k == "text")


@pytest.fixture(scope="module")
def released(shared_reference: Path) -> Path:
    return shared_reference / "samples" / "reasonknee"


@pytest.fixture(scope="module")
def knee(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Four phantom knees (two patients, right and left), built and rendered."""
    root = tmp_path_factory.mktemp("rk_knee")
    cli("phantom", "--knee", "--out", root / "ph", "--n", "4")
    cli("build", "knee-grading", "--studies", root / "ph" / "studies.csv", "--grades", root / "ph" / "grades.csv",
        "--out", root / "ds")
    cli("render", root / "ds")
    items = read_items(root / "ds")
    return SimpleNamespace(root=root, ph=root / "ph", ds=root / "ds", items=items,
                           sizes={s.id: s.frame_size for s in read_studies(root / "ds")},
                           studies={s.id: s for s in read_studies(root / "ds")})


def q_ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "Q1-3, Q5" (how docs/knee.md cites templates)."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"Q{r[0]}-{r[-1]}" if len(r) > 1 else f"Q{r[0]}" for r in runs)


# --------------------------------------------------------------------------- 1. MOAKS vocabulary


def test_feature_table_is_the_released_templates_one_to_one(released: Path) -> None:
    """Every graded component of the 69 released templates is one (feature, region) of the
    table with its key path, and every table entry is one component: 15 BML subregions, 14
    cartilage (no subspinous), the 12 osteophyte sites, extrusion medial+anterior / lateral+
    anterior, morphology per horn and body, Q54-69 each under its own feature."""
    table = released_components()
    assert sorted(table) == list(range(1, 70))
    pairs = [(f, r) for comps in table.values() for f, r, _ in comps]
    assert len(pairs) == len(set(pairs)) == 118
    for name in QUESTION_FILES:
        templates = read_templates(released / name)
        assert sorted(templates, key=int) == [str(q) for q in range(1, 70)]
        for qid, t in templates.items():
            asked = [c.path for c in t.components if not c.box]
            assert asked == [p for _, _, p in table[int(qid)]], (name, qid)
        # the tear location's legend is the released one, code by code
        legend = next(c.legend for c in templates["54"].components if c.path[-1] == "tear_location")
        assert legend == FEATURES["meniscal_tear_location"].legend("meniscus_medial")
    regions = {f: set(FEATURES[f].regions) for f in FEATURES}
    assert len(regions["bml_size"]) == 15 and "tibia_subspinous" not in regions["cartilage_size"]
    assert len(regions["cartilage_size"]) == 14 and len(regions["osteophyte"]) == 12
    assert regions["meniscal_extrusion_medial"] == {"meniscus_medial"}
    assert regions["meniscal_extrusion_lateral"] == {"meniscus_lateral"}
    assert regions["meniscal_extrusion_anterior"] == {"meniscus_medial", "meniscus_lateral"}
    assert regions["meniscal_morphology"] == set(MENISCAL_PARTS)
    # guided mode's text: each feature's sentence is in its guided templates, not the zero-shot ones
    zero, guided = (json.loads((released / n).read_text()) for n in QUESTION_FILES)
    for f in FEATURES.values():
        for _, r in f.templates:
            assert f.guidance in guided[str(r.template)] and f.guidance not in zero[str(r.template)], (f.name, r)


def test_docs_feature_table_cites_the_released_templates() -> None:
    """docs/knee.md's feature table has one row per feature naming its template numbers."""
    doc = (Path(__file__).parents[1] / "docs" / "knee.md").read_text()
    table = doc.split("## MOAKS features", 1)[1].split("\n\n")[2]
    rows = {r.split("|")[1].strip().strip("`"): r for r in table.splitlines()[2:]}
    assert set(rows) == set(FEATURES)
    for f in FEATURES.values():
        assert rows[f.name].split("|")[2].strip().startswith(q_ranges([r.template for _, r in f.templates])), f.name


def test_phantom_plants_only_possible_findings(knee: SimpleNamespace, tmp_path: Path) -> None:
    """Before: 16 knees gave 16 lateral-extrusion items of the medial meniscus, 16 medial ones
    of the lateral, 76 subspinous cartilage/osteophyte items and morphology per whole meniscus.
    Now every grade is a table entry, the combinations are possible, every lesion grade has
    its mask, and no item asks about an impossible finding."""
    paths = write_knee_phantom(tmp_path / "ph", n=16, seed=3)
    with paths["grades"].open() as fh:
        rows = list(csv.DictReader(fh))
    table = {(f.name, r) for f in FEATURES.values() for r in f.regions}
    by_study: dict[str, dict[tuple[str, str], int]] = {}
    for r in rows:
        assert (r["feature"], r["region"]) in table, r
        by_study.setdefault(r["study_id"], {})[(r["feature"], r["region"])] = int(r["grade"])
    assert all(len(g) == len(table) for g in by_study.values())
    for sid, g in by_study.items():
        names = json.loads((tmp_path / "ph" / "labels" / f"{sid}.json").read_text())
        labels = np.asarray(nib.load(tmp_path / "ph" / "labels" / f"{sid}.nii.gz").dataobj)
        for region in FEATURES["bml_size"].regions:
            assert (g[("bml_number", region)] > 0) == (g[("bml_size", region)] > 0)
            assert g[("bml_size", region)] > 0 or g[("bml_percent", region)] == 0
        for region in FEATURES["cartilage_size"].regions:
            assert g[("cartilage_size", region)] > 0 or g[("cartilage_full_thickness", region)] == 0
        for part in MENISCAL_PARTS:
            assert g[("meniscal_morphology", part)] not in FOLLOW_UP_ONLY["meniscal_morphology"]
        for meniscus in ("meniscus_medial", "meniscus_lateral"):
            torn = [n for n, p in enumerate(COMPOSITES[meniscus]) if g[("meniscal_morphology", p)] in TEAR_GRADES]
            assert len(torn) <= 1 and g[("meniscal_tear_location", meniscus)] == (torn[0] if torn else 3)
            if any(g[("meniscal_morphology", p)] >= 6 for p in COMPOSITES[meniscus]):
                assert g[("meniscal_hypertrophy", meniscus)] == 0
        # every lesion grade > 0 has its own mask, none hidden under another
        masks = {n: int(i) for i, n in names.items()}
        for (feature, region), grade in g.items():
            kind = FEATURES[feature].lesion
            if kind and FEATURES[feature].presence and grade:
                assert (labels == masks[f"{kind}_{region}"]).sum() > 0, (sid, kind, region)
    impossible = [(it.subtask, it.label) for it in knee.items if it.task == "grading"
                  and it.subtask in FEATURES and (it.subtask, it.label) not in table]
    assert impossible == []
    morph = {it.label for it in knee.items if it.subtask == "meniscal_morphology"}
    assert morph == set(MENISCAL_PARTS)


# --------------------------------------------------------------------------- 2. the three modes


def test_guided_and_gt_region_prompts_add_one_thing_each(knee: SimpleNamespace) -> None:
    """zero-shot (minimal) -> guided: the question gains its feature's released guidance
    sentence, nothing else; guided -> GT region (oracle_region): one line with the region's 3D
    box (its frames and in-plane box), nothing else. The line is the same for every grade."""
    pixel, rk = get_profile("pixel"), get_profile("reasonknee")
    seen = set()
    for it in (i for i in knee.items if i.task == "grading"):
        size = knee.sizes[it.study_id]
        zero, guided, gt = (text_of(build_prompt(it, knee.ds, size, pixel, m))
                            for m in ("minimal", "guided", "oracle_region"))
        guidance = FEATURES[it.subtask if it.subtask in FEATURES else
                            {"bml_presence": "bml_size", "cartilage_presence": "cartilage_size",
                             "osteophyte_presence": "osteophyte"}[it.subtask]].guidance
        assert guided == zero.replace(it.question, f"{it.question} {guidance}", 1)
        b = it.region
        (w, h) = (it.images[0].width, it.images[0].height)
        sx, sy = w / size[0], h / size[1]
        box = [round(b.box[0] * sx), round(b.box[1] * sy), round(b.box[2] * sx), round(b.box[3] * sy)]
        line = f"\nThe relevant region: frames {b.frame_start}-{b.frame_end}, box {box} on those frames."
        tail = guided.rsplit("\n", 1)
        assert gt == tail[0] + line + "\n" + tail[1]
        if it.subtask not in seen:  # the reasonknee profile: 3DReasonKnee's six numbers
            seen.add(it.subtask)
            six = [b.frame_start, b.frame_end, box[0], box[2], box[1], box[3]]
            assert f"The relevant region: {six}" in text_of(build_prompt(it, knee.ds, size, rk, "oracle_region"))
            # frames counted from 1 under a 1-based profile, like the prompt's Frame labels
            one = text_of(build_prompt(it, knee.ds, size, get_profile("pixel:frame_base=1"), "oracle_region"))
            assert f"frames {b.frame_start + 1}-{b.frame_end + 1}, box {box}" in one
    # the lesion is inside the region given, on every lesion-kind item with a mask (before: the
    # key frame of the one 2D box held the lesion in 0 of 1,440 such items of 16 knees)
    inside = total = 0
    for it in knee.items:
        kind = FEATURES[it.subtask].lesion if it.subtask in FEATURES else None
        lesion = [f for f in knee.studies[it.study_id].findings if kind and f.label == f"{kind}_{it.label}"]
        if lesion:
            total += 1
            lb, rb = lesion[0].box3d, it.region
            inside += (rb.frame_start <= lb.frame_start and lb.frame_end <= rb.frame_end
                       and rb.box[0] <= lb.box[0] and rb.box[1] <= lb.box[1]
                       and lb.box[2] <= rb.box[2] and lb.box[3] <= rb.box[3])
    assert total > 50 and inside == total


def test_modes_refuse_what_they_cannot_make(knee: SimpleNamespace) -> None:
    """GT region on grading items without a region, guided on items without guidance: one line."""
    grading = [it for it in knee.items if it.task == "grading"][:5]
    check_mode(grading, "oracle_region")
    check_mode(grading, "guided")
    bare = [it.model_copy(update={"region": None}) for it in grading]
    with pytest.raises(InputError, match=r"^--mode oracle_region \(GT region\): 5 of 5 selected grading items "
                                         r"carry no region \(e\.g\. .*\); import their 3D boxes"):
        check_mode(bare, "oracle_region")
    with pytest.raises(InputError, match="--mode guided: no selected item has guided instructions"):
        check_mode([it.model_copy(update={"guided_question": None}) for it in grading], "guided")


class RegionReader(ModelAdapter):
    """Grades right only when the prompt gives the region: the gold (the oracle's target) with
    the region line, else a constant (grade 0, "no", option A)."""

    spec = "region-reader"

    def identity(self) -> dict:
        return {"spec": self.spec}

    async def answer(self, prompt, item) -> str:  # noqa: ANN001
        if "The relevant region:" in text_of(prompt):
            return prompt.target
        return {"grade": "0", "yes_no": "no", "choice": "(A)"}.get(item.answer.type, "0")


def test_compare_shows_the_per_feature_uplift(knee: SimpleNamespace) -> None:
    """zero-shot, guided and GT-region runs of one model: `voxqa compare` prints GT region
    minus guided per feature. Hand computation: the model is right in zero-shot and guided
    exactly where the gold is its constant, and always right given the region."""
    runs = []
    for mode in ("minimal", "guided", "oracle_region"):
        out = knee.root / "runs" / mode
        asyncio.run(run_eval(RunConfig(dataset=knee.ds, out=out, split=None, mode=mode, tasks=("grading",)),
                             RegionReader()))
        runs.append(out)
    out = cli("compare", *runs)
    assert "GT-region uplift per grading feature" in out
    constant = {"grade": 0, "yes_no": "no", "choice": 0}
    for feature in ("bml_size", "meniscal_morphology", "meniscal_tear_location", "acl_tear", "osteophyte_presence"):
        group = [it for it in knee.items if it.subtask == feature]
        share = sum(it.answer.value == constant[it.answer.type] for it in group) / len(group)
        row = next(ln for ln in out.splitlines() if ln.startswith(f"| region-reader | {feature} |"))
        assert f"{share:.3f} / {share:.3f} -> 1.000 ({1 - share:+.3f})" in row, row
        if feature == "meniscal_tear_location":  # a nominal code: accuracy only, no QWK or MAE
            assert row.rstrip().endswith("|  |  |")
    results = json.loads((runs[2] / "results.json").read_text())
    assert "grading/meniscal_tear_location" in results["by"]["task/subtask"]
    assert set(results["by"]["task/subtask"]["grading/meniscal_tear_location"]["metrics"]) & {"qwk", "mae"} == set()


# --------------------------------------------------------------------------- 3. imports


def _answer_for(template, rng: random.Random) -> dict:  # noqa: ANN001 - importers.reasonknee.Template
    """A valid answer in a template's released shape (random grades, a box where it asks one)."""
    out: dict = {}
    for c in template.components:
        node = out
        for key in c.path[:-1]:
            node = node.setdefault(key, {})
        node[c.path[-1]] = [1, 3, 4, 9, 2, 7] if c.box else rng.choice(c.scale)
    return out


def released_records(released: Path, studies: list[tuple[str, ...]], rng: random.Random) -> list[dict]:
    """One record per (study, template) in the released SFT shape, answers in each template's
    own JSON; the first study's Q1 carries a 3D box and a reasoning trace."""
    templates = read_templates(released / QUESTION_FILES[0])
    out = []
    for study in studies:
        image = "images/" + "_".join(study[:4]) + ".nii.gz"
        for qid, t in sorted(templates.items(), key=lambda kv: int(kv[0])):
            answer = _answer_for(t, rng)
            if study == studies[0] and qid == "1":
                answer |= {"bbox": [2, 5, 3, 9, 1, 8], "reasoning": "The BML is on frames 3-4 of the patella."}
            out.append({"image": image, "prompt": t.text, "answer": json.dumps(answer),
                        "key": "_".join(study) + f"_{qid}"})
    return out


@pytest.fixture(scope="module")
def imported(released: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The released question files (zero-shot + guided) with answers to all 69 templates for
    the sample split's two studies, volumes written here (the OAI images are not released)."""
    root = tmp_path_factory.mktemp("rk_import")
    with (released / "sample_split.csv").open() as fh:
        split = list(csv.DictReader(fh))
    studies = [tuple(r[c] for c in ("patient_id", "time", "study_folder", "series_folder", "knee_side")) for r in split]
    for r in split:
        path = root / "volumes" / r["image_filepath"]
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.random.default_rng(1).random((10, 12, 12)).astype(np.float32), np.eye(4)), path)
    records = released_records(released, studies, random.Random(7))
    (root / "answers.json").write_text(json.dumps(records))
    ds = root / "ds"
    cli("import", "reasonknee", "--questions", released / QUESTION_FILES[0], "--guided", released / QUESTION_FILES[1],
        "--answers", root / "answers.json", "--splits", released / "sample_split.csv",
        "--volumes-root", root / "volumes", "--out", ds)
    cli("render", ds, "--frames", "all")
    return SimpleNamespace(root=root, ds=ds, records=records, items=read_items(ds),
                           sizes={s.id: s.frame_size for s in read_studies(ds)})


def test_every_released_template_imports_with_its_answer_schema(imported: SimpleNamespace, released: Path) -> None:
    """Before: Q58/59 dropped as garbled, a `bbox` or `reasoning` key refused, 6 of 12
    osteophyte components imported as `osteophyte`, the tear location a 0-3 grade."""
    items = imported.items
    grading = [it for it in items if it.task == "grading"]
    assert len(grading) == 2 * 118 and {it.template.split("/")[1] for it in grading} == {f"q{q}" for q in range(1, 70)}
    assert all(it.subtask in FEATURES and it.label in FEATURES[it.subtask].regions for it in grading)
    assert Counter(it.subtask for it in grading)["osteophyte"] == 2 * 12
    report = json.loads((imported.ds / "build_report.json").read_text())
    assert report["info"]["template_answer_json_head_restored"]["examples"][0]["templates"] == ["58", "59"]
    zero, guided = (json.loads((released / n).read_text()) for n in QUESTION_FILES)
    by_id = {(r["key"].rsplit("_", 1)[0], r["key"].rsplit("_", 1)[1]): json.loads(r["answer"]) for r in imported.records}
    for it in grading:  # the released prompts, both settings in one dataset; values as answered
        qid = it.template.split("/")[1][1:]
        assert it.question == zero[qid] and it.guided_question == guided[qid]
        leaf = by_id[(it.study_id, qid)]
        for key in it.json_path:
            leaf = leaf[key]
        assert it.answer.value == ({0: "no", 1: "yes"}[leaf] if it.answer.type == "yes_no" else leaf)
    # tear location: a nominal code, a choice among the released legend (1 in 4 by chance), no grade scale
    tear = next(it for it in grading if it.subtask == "meniscal_tear_location" and it.label == "meniscus_medial")
    assert tear.answer.type == "choice" and tear.chance == 0.25
    assert tear.options == ["0 = MMA (Medial Meniscus Anterior)", "1 = MMB (Medial Meniscus Body)",
                            "2 = MMP (Medial Meniscus Posterior)", "3 = No tear detected"]
    # 3D boxes in [start, end, x_min, x_max, y_min, y_max]: Q58/59's restored bbox and Q1's extra key
    boxes = {(it.study_id, it.template): it for it in items if it.subtask == "region_box3d"}
    assert len(boxes) == 2 * 2 + 1
    study = next(r["key"].rsplit("_", 1)[0] for r in imported.records)
    q1 = boxes[(study, "reasonknee/q1/region-box3d")]
    assert (q1.answer.value.frame_start, q1.answer.value.frame_end, q1.answer.value.box) == (2, 5, (3, 1, 9, 8))
    bml = [it for it in grading if it.study_id == study and it.template.startswith("reasonknee/q1/")]
    assert len(bml) == 3 and all(it.region == q1.answer.value for it in bml)
    assert all(it.reasoning == "The BML is on frames 3-4 of the patella." for it in bml)
    root = [it for it in grading if it.subtask == "root_tear"]
    assert len(root) == 4 and all(it.region is not None for it in root)


def test_released_replies_are_read_at_their_path(imported: SimpleNamespace) -> None:
    """A reply in the template's own JSON (as the authors' models replied) is read at the
    item's key path; wrapper added, dropped or swapped; Q46/47's {"grade": g}."""
    items = {(it.study_id, it.subtask, it.label): it for it in imported.items}
    study = imported.items[0].study_id
    cyst, tear = items[(study, "meniscal_cyst", "meniscus_medial")], items[(study, "meniscal_tear_location", "meniscus_medial")]
    reply = 'Reasoning... {"medial_meniscal_cyst": {"presence": 1, "tear_location": 2}}'
    assert parse_answer(reply, cyst).value == "yes" and parse_answer(reply, tear).value == 2
    q33 = items[(study, "osteophyte", "patella_lateral")]  # released without "MOAKS_scores"
    assert parse_answer('{"MOAKS_scores": {"patella lateral osteophyte": {"grade": 3}}}', q33).value == 3
    q46 = items[(study, "meniscal_extrusion_anterior", "meniscus_lateral")]
    assert parse_answer('{"MOAKS_grade": {"lateral meniscus anterior extrusion": {"grade": 1}}}', q46).value == 1
    box = next(it for it in imported.items if it.subtask == "region_box3d")
    v = box.answer.value
    six = [v.frame_start, v.frame_end, v.box[0], v.box[2], v.box[1], v.box[3]]
    assert parse_answer(json.dumps({"bbox": six, "medial_meniscal_root_tear": {"presence": 0}}), box,
                        profile="reasonknee").value == {"frame_start": v.frame_start, "frame_end": v.frame_end,
                                                        "box": list(v.box)}


def test_imported_settings_run_side_by_side_and_gt_region_is_refused_without_boxes(imported: SimpleNamespace) -> None:
    """One dataset: zero-shot (the released zero-shot template + the released system line) and
    guided (the guided template) runs of one model compare; GT region on grading items whose
    records carry no box is refused in one line; nominal codes are scored by accuracy only."""
    it = next(i for i in imported.items if i.subtask == "bml_size")
    size = imported.sizes[it.study_id]
    zero = text_of(build_prompt(it, imported.ds, size, get_profile("pixel"), "minimal"))
    guided = text_of(build_prompt(it, imported.ds, size, get_profile("pixel"), "guided"))
    assert zero.endswith(f"{it.question}\n{RELEASED_INSTRUCTION}") and guided.endswith(f"{it.guided_question}\n{RELEASED_INSTRUCTION}")
    runs = []
    for mode in ("zero-shot", "guided"):
        out = imported.root / "runs" / mode
        cli("eval", imported.ds, "--model", "oracle", "--mode", mode, "--split", "all", "--out", out)
        runs.append(out)
    text = cli("compare", *runs)
    assert "oracle · minimal" in text and "oracle · guided" in text
    results = json.loads((runs[1] / "results.json").read_text())
    assert results["overall"]["metrics"]["accuracy"]["mean"] == 1.0
    assert set(results["by"]["task/subtask"]["grading/meniscal_tear_location"]["metrics"]) & {"qwk", "mae"} == set()
    res = runner.invoke(app, ["eval", str(imported.ds), "--model", "oracle", "--mode", "gt-region", "--split", "all",
                              "--out", str(imported.root / "runs" / "gt")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "carry no region" in res.output and not (imported.root / "runs" / "gt").exists()
    # with only the items that carry a box, GT region runs: the region line is the record's box
    boxed = [i for i in imported.items if i.task == "grading" and i.region is not None]
    gt = text_of(build_prompt(boxed[0], imported.ds, imported.sizes[boxed[0].study_id], get_profile("pixel"),
                              "oracle_region"))
    b = boxed[0].region
    assert gt.endswith(f"The relevant region: frames {b.frame_start}-{b.frame_end}, box {list(b.box)} on those "
                       f"frames.\n{RELEASED_INSTRUCTION}") and boxed[0].guided_question in gt


def test_import_refuses_what_it_cannot_read(released: Path, tmp_path: Path) -> None:
    """A box that is not [start, end, x_min, x_max, y_min, y_max], an empty one, a reasoning
    that is not text, a guided file asking another answer JSON: refused naming the field."""
    templates = read_templates(released / QUESTION_FILES[0])
    base = {"image": "images/a.nii.gz", "question_id": "1", "prompt": templates["1"].text}
    answer = _answer_for(templates["1"], random.Random(1))
    cases = [({"bbox": [1, 2, 3, 4]}, "is not one 3D box"), ({"bbox": [5, 2, 1, 4, 1, 4]}, "is empty"),
             ({"reasoning": 3}, "'reasoning' must be a non-empty string"),
             ({"bboxes": [[1, 2, 1, 4, 1, 4]]}, "answer field 'bboxes' is not in template 1")]
    for extra, message in cases:
        (tmp_path / "a.json").write_text(json.dumps([base | {"answer": json.dumps(answer | extra)}]))
        with pytest.raises(Exception, match=re.escape(message)):
            import_reasonknee(released / QUESTION_FILES[0], tmp_path / "a.json", tmp_path / "ds")
    other = json.loads((released / QUESTION_FILES[1]).read_text())
    other["5"] = other["5"].replace('"Number of BML within subregion": (grade from 0-3), ', "")
    (tmp_path / "guided.json").write_text(json.dumps(other))
    (tmp_path / "a.json").write_text(json.dumps([base | {"answer": json.dumps(answer)}]))
    with pytest.raises(Exception, match=r"\['5'\]: the guided template asks another answer JSON"):
        import_reasonknee(released / QUESTION_FILES[0], tmp_path / "a.json", tmp_path / "ds",
                          guided=tmp_path / "guided.json")


# --------------------------------------------------------------------------- 4. region-first traces

_NOT_THERE = re.compile(r"no [a-z ]+ is labelled there")


def _check_trace(it) -> None:  # noqa: ANN001 - an Item
    """Grammatical, region first, and never "none" beside a grade or answer that says "some"."""
    r = it.reasoning
    assert not re.search(r"\bno an? ", r) and "  " not in r and r.endswith("."), r
    assert not re.search(r"so there is (?!a |an |cartilage loss|none)", r), r
    assert r.startswith("Locate: ") and r.index("Locate: ") < r.index("Inspect: "), r
    positive = it.answer.value not in (0, "no") if it.answer.type in ("grade", "yes_no") else None
    if positive:
        assert not _NOT_THERE.search(r), r


def test_traces_state_their_evidence_and_never_contradict_the_grade(knee: SimpleNamespace, tmp_path: Path) -> None:
    """Before: "Inspect: frames 90-120 of the femur medial central subregion, with no a bone
    marrow lesion labelled. Grade: the size ... meets Grade 3" on a study without lesion masks."""
    grading = [it for it in knee.items if it.task == "grading"]
    for it in grading:
        _check_trace(it)
    masked = [it for it in grading if "mask of the region covers frames" in it.reasoning]
    assert masked and all(it.subtask in ("bml_size", "bml_number", "bml_percent", "cartilage_size",
                                         "cartilage_full_thickness", "osteophyte") or it.subtask.endswith("_presence")
                          for it in masked)
    reading = [it for it in grading if "comes from the MOAKS reading" in it.reasoning]
    assert {it.subtask for it in reading} >= {"meniscal_morphology", "acl_tear", "effusion_synovitis"}
    # a region located by its parts says so
    assert any("(located by the anterior horn of the medial meniscus, the body of the medial meniscus and "
               "the posterior horn of the medial meniscus)" in it.reasoning for it in grading)
    # a box-only study (no lesion masks): a grade > 0 comes from the reading, said so
    (tmp_path / "studies.csv").write_text("study_id,image,labels,patient_id,knee_side\na,,,p1,RIGHT\n")
    (tmp_path / "boxes.csv").write_text("study_id,region,start_frame,end_frame,x_min,x_max,y_min,y_max\n"
                                        "a,femur medial central,90,120,100,180,150,210\n"
                                        "a,femur lateral central,20,50,100,180,150,210\n")
    (tmp_path / "grades.csv").write_text("study_id,region,feature,grade\na,femur medial central,bml_size,3\n"
                                         "a,femur medial central,bml_number,0\n")
    cli("build", "knee-grading", "--studies", tmp_path / "studies.csv", "--grades", tmp_path / "grades.csv",
        "--boxes", tmp_path / "boxes.csv", "--out", tmp_path / "ds")
    traces = {it.subtask: it for it in read_items(tmp_path / "ds") if it.task == "grading"}
    assert traces["bml_size"].reasoning == (
        "Locate: the femur medial central subregion spans frames 90-120; 3D box [100, 150, 180, 210]. "
        "Inspect: frames 90-120 of the region; the study has no lesion masks, so the grade comes from the MOAKS "
        "reading. Grade: the size of bone marrow lesions (including cysts) is Grade 3 (>66% of subregion).")
    for it in traces.values():
        _check_trace(it)


def test_traces_without_masks_on_the_phantom(knee: SimpleNamespace, tmp_path: Path) -> None:
    """The phantom's label maps without their lesion names: every lesion grade > 0 is the
    reading's, said so; grade 0 items never claim a lesion."""
    ph = tmp_path / "ph"
    ph.mkdir()
    rows = list(csv.DictReader((knee.ph / "studies.csv").open()))
    for r in rows:
        names = json.loads((knee.ph / r["label_names"]).read_text())
        keep = {i: n for i, n in names.items() if n.split("_")[0] not in ("bml", "cartilage", "osteophyte")}
        (ph / f"{r['study_id']}.json").write_text(json.dumps(keep))
        r.update(image=str(knee.ph / r["image"]), labels=str(knee.ph / r["labels"]),
                 label_names=str(ph / f"{r['study_id']}.json"))
    with (ph / "studies.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    cli("build", "knee-grading", "--studies", ph / "studies.csv", "--grades", knee.ph / "grades.csv",
        "--out", tmp_path / "ds")
    items = [it for it in read_items(tmp_path / "ds") if it.task == "grading"]
    assert items and not any("mask of the region covers" in it.reasoning for it in items)
    for it in items:
        _check_trace(it)
        if it.subtask == "bml_size" and it.answer.value > 0:
            assert "the study has no lesion masks, so the grade comes from the MOAKS reading" in it.reasoning
    assert {it.label for it in items} == {r for f in FEATURES.values() for r in f.regions}
