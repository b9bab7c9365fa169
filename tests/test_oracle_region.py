"""`--mode oracle_region` gives the region a question asks about, never the answer: every item
of a template gets the line (a "no" item the region it names), items whose answer is the region
are left out and counted, and such runs stay off the headline rows of the leaderboard."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers import rendered_phantom

from voxqa.boxes.profiles import get_profile
from voxqa.dataset.folder import read_items, read_studies
from voxqa.eval.compare import REGION_GIVEN, leaderboard
from voxqa.eval.models.base import ModelAdapter
from voxqa.eval.models.baselines import Oracle
from voxqa.eval.prompts import RegionIsTheAnswer, build_prompt, region_line
from voxqa.eval.run import RunConfig, run_eval
from voxqa.eval.score import score_run

LINE = "The relevant region:"


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return rendered_phantom(tmp_path_factory.mktemp("oracle_region"), n=24, seed=4, size=160, context=4)


class LineReader(ModelAdapter):
    """Answers "yes" iff the prompt holds a region line with a box in it: the shortcut."""

    spec = "line-reader"

    def identity(self) -> dict:
        return {"spec": self.spec}

    async def answer(self, prompt, item) -> str:
        text = "".join(t for kind, t in prompt.parts if kind == "text")
        line = text.split(LINE, 1)[1] if LINE in text else ""
        return "yes" if "Frame" in line and "whole" not in line.split(".")[0] else "no"


def test_every_yes_no_item_gets_a_line_that_does_not_tell_its_answer(ds: Path) -> None:
    """Before: the line appeared only on items with evidence, i.e. only on "yes" items (the
    rule "yes iff the line is there" scored 1.0 on this phantom's frame-level items)."""
    sizes = {s.id: s.frame_size for s in read_studies(ds)}
    profile = get_profile("pixel")
    yes_no = [it for it in read_items(ds) if it.answer.type == "yes_no" and it.images]
    assert {it.level for it in yes_no} == {"frame", "volume"}
    for level in ("frame", "volume"):
        group = [it for it in yes_no if it.level == level]
        yes = [it.answer.value == "yes" for it in group]
        lines = [region_line(it, profile, sizes[it.study_id]) for it in group]
        assert all(LINE in ln for ln in lines)
        # the line's form (boxes or whole frames or whole volume) is the same for yes and no
        forms = {(y, ln.count("whole frame"), "whole volume" in ln, "[" in ln) for y, ln in zip(yes, lines, strict=True)}
        assert {f[1:] for f in forms if f[0]} == {f[1:] for f in forms if not f[0]}
        if level == "frame":  # "Frame k (the whole frame)": the frame the question names
            assert all(f"Frame {it.frames[0]} (the whole frame)" in ln for it, ln in zip(group, lines, strict=True))
        old_rule = sum(y == bool(it.evidence) for y, it in zip(yes, group, strict=True)) / len(group)
        assert old_rule > 0.9  # what the old line (evidence only) gave away
    p = build_prompt(yes_no[0], ds, sizes[yes_no[0].study_id], profile, "oracle_region")
    assert LINE in "".join(t for k, t in p.parts if k == "text")
    # a question that quotes a box gets that box as its region, whether or not it is evidence
    # (a "no" item has none): the box comes from the question's text, never from the answer
    no = next(it for it in yes_no if it.answer.value == "no" and it.frames)
    quoting = no.model_copy(update={"question": f"Is there edema inside the box [0, 0, 16, 16] on frame {no.frames[0]}?"})
    assert not quoting.evidence
    assert region_line(quoting, profile, sizes[no.study_id]).startswith(f"\n{LINE} Frame {no.frames[0]}: [")


def test_region_answers_are_refused(ds: Path) -> None:
    profile = get_profile("pixel")
    items = read_items(ds)
    for it in items:
        if it.task == "localization" or it.answer.type in ("boxes", "frames", "text"):
            with pytest.raises(RegionIsTheAnswer, match="cannot give its region"):
                region_line(it, profile, (320, 320))
    with pytest.raises(RegionIsTheAnswer, match="every selected item's answer is the region"):
        asyncio.run(run_eval(RunConfig(dataset=ds, out=ds.parent / "loc", split="test", mode="oracle_region",
                                       tasks=("localization",)), Oracle()))


def test_oracle_region_runs_leave_out_region_answers_and_stay_off_the_headline(ds: Path) -> None:
    runs = {}
    for mode, model in (("minimal", Oracle()), ("oracle_region", LineReader()), ("oracle_region", Oracle())):
        out = ds.parent / f"{mode}-{model.spec}"
        asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split="test", mode=mode), model))
        runs[(mode, model.spec)] = out
    res = score_run(runs[("oracle_region", "line-reader")])
    excluded = res["excluded_oracle_region"]
    assert excluded["count"] > 0 and set(excluded["templates"]) >= {"localization/where/frame"}
    assert "localization" not in res["by"]["task"] and "captioning" not in res["by"]["task"]
    assert not any("localization" in json.loads(ln)["item_id"] for ln in
                   (runs[("oracle_region", "line-reader")] / "predictions.jsonl").read_text().splitlines()
                   if "localization/" in ln)
    # the shortcut is at chance: yes/no accuracy equals the share of "yes" items it answers right
    det = res["by"]["task"]["detection"]
    assert det["metrics"]["accuracy"]["mean"] == pytest.approx(0.5, abs=0.02)
    minimal = score_run(runs[("minimal", "oracle")])
    assert "excluded_oracle_region" not in minimal and "localization" in minimal["by"]["task"]
    ordered = [runs[("oracle_region", "line-reader")], runs[("minimal", "oracle")], runs[("oracle_region", "oracle")]]
    header, rows = leaderboard(ordered)
    names = [r[0]["text"] for r in rows]
    assert names[0] == "chance" and names[1].startswith("oracle · minimal")
    assert names[2] == REGION_GIVEN and rows[2][0]["section"]
    assert all("oracle_region" in n for n in names[3:]) and len(names) == 5
