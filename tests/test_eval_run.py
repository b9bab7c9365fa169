"""`voxqa eval`: baselines, a real OpenAI-compatible server on loopback, faults, resume."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import rendered_phantom
from openai_stub import StubServer
from PIL import Image

from voxqa.boxes.profiles import get_profile
from voxqa.dataset.folder import read_items, read_studies
from voxqa.eval.models import make_model
from voxqa.eval.prompts import build_prompt
from voxqa.eval.run import PREDICTIONS, RUN, RunConfig, RunMismatch, read_predictions, run_eval
from voxqa.render import map_box


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    # 24 studies: enough for balanced select-all (findings_present) items in every split
    return rendered_phantom(tmp_path_factory.mktemp("eval"), n=24, seed=4, size=160, context=4)


def _gold(item, frame_size):
    """The item's answer value in pixels of its rendered images (what parsing returns)."""
    a = item.answer
    size = (item.images[0].width, item.images[0].height)
    if a.type == "boxes":
        return sorted((b.frame, map_box(b.box, frame_size, size)) for b in a.value)
    return a.value if a.type != "box3d" else None


def _key(texts: list[str], images: list[bytes]) -> str:
    """A prompt's identity: its text (without the answer-format line) and its images."""
    digest = hashlib.sha256(b"".join(images)).hexdigest()
    return "".join(texts).rsplit("\n", 1)[0] + "|" + digest


def _targets(folder: Path, profile: str = "pixel") -> dict[str, str]:
    """Prompt identity -> the oracle's structured answer, for the stub server."""
    sizes = {s.id: s.frame_size for s in read_studies(folder)}
    out = {}
    for it in read_items(folder):
        if it.images:
            p = build_prompt(it, folder, sizes[it.study_id], get_profile(profile))
            texts = [v for k, v in p.parts if k == "text"]
            images = [Path(v).read_bytes() for k, v in p.parts if k == "image"]
            out[_key(texts, images)] = p.target
    return out


def _answerer(targets: dict[str, str]):
    def answer(content: list) -> str:
        texts = [p["text"] for p in content if p["type"] == "text"]
        images = [base64.b64decode(p["image_url"]["url"].split(",", 1)[1])
                  for p in content if p["type"] == "image_url"]
        return targets[_key(texts, images)]
    return answer


def _run(folder, out, model, **kw):
    cfg = RunConfig(dataset=folder, out=out, **kw)
    return asyncio.run(run_eval(cfg, model))


def _check_oracle_like(folder: Path, run: Path) -> int:
    sizes = {s.id: s.frame_size for s in read_studies(folder)}
    preds = read_predictions(run / PREDICTIONS)
    n = 0
    for it in read_items(folder):
        if it.id not in preds:
            continue
        rec = preds[it.id]
        assert rec["status"] == "ok" and rec["parse_ok"], (it.id, rec)
        if it.answer.type == "boxes":
            got = sorted((b["frame"], tuple(b["box"])) for b in rec["parsed"])
            assert got == _gold(it, sizes[it.study_id]), it.id
        elif it.answer.type in ("yes_no", "choice", "multi_choice", "number", "frames"):
            assert rec["parsed"] == it.answer.value, (it.id, rec["parsed"], it.answer.value)
        n += 1
    return n


def test_oracle_round_trips_every_item(rendered, tmp_path) -> None:
    counts = _run(rendered, tmp_path / "run", make_model("oracle", rendered), split=None)
    assert counts["ok"] == counts["items"] > 50
    assert _check_oracle_like(rendered, tmp_path / "run") == counts["items"]


@pytest.mark.parametrize("spec", ["random", "prior"])
def test_baselines_answer_every_item(rendered, tmp_path, spec) -> None:
    counts = _run(rendered, tmp_path / spec, make_model(spec, rendered), split="test")
    assert counts["ok"] == counts["items"] > 0 and counts["failed"] == 0
    preds = read_predictions(tmp_path / spec / PREDICTIONS)
    kinds = {it.id: it.answer.type for it in read_items(rendered)}
    closed = [r for i, r in preds.items() if kinds[i] in ("yes_no", "choice", "multi_choice")]
    assert closed and all(r["parse_ok"] for r in closed)


def test_openai_server_with_faults(rendered, tmp_path, monkeypatch) -> None:
    targets = _targets(rendered)
    monkeypatch.setenv("VOXQA_TEST_KEY", "sk-secret-123")
    faults = ["429", "500", "truncated", "slow", None, "429"]
    with StubServer(_answerer(targets), faults=faults, slow=2.0) as srv:
        model = make_model("openai:stub-vlm", rendered, base_url=srv.url, api_key_env="VOXQA_TEST_KEY",
                           timeout=1.0, max_retries=4)
        model.backoff = 0.01
        counts = _run(rendered, tmp_path / "run", model, split="test", concurrency=2)
        assert counts["ok"] == counts["items"] and counts["failed"] == 0
        assert len(srv.requests) == counts["items"] + 5  # five faults retried, one normal slot used
        assert all(h.get("Authorization") == "Bearer sk-secret-123" for h in srv.headers)
        first = srv.requests[0]["messages"][0]["content"]
        assert first[0] == {"type": "text", "text": first[0]["text"]} and first[0]["text"].startswith("Frame ")
        img = next(p for p in first if p["type"] == "image_url")["image_url"]["url"]
        assert img.startswith("data:image/png;base64,")
    _check_oracle_like(rendered, tmp_path / "run")
    for f in (RUN, PREDICTIONS):
        assert "sk-secret-123" not in (tmp_path / "run" / f).read_text()


def test_permanent_failure_is_recorded_then_retried_on_resume(rendered, tmp_path) -> None:
    targets = _targets(rendered)
    with StubServer(_answerer(targets), faults=["400"]) as srv:
        model = make_model("openai:stub-vlm", rendered, base_url=srv.url, max_retries=2)
        counts = _run(rendered, tmp_path / "run", model, split="val", concurrency=1)
        assert counts["failed"] == 1 and counts["ok"] == counts["items"] - 1
        failed = [r for r in read_predictions(tmp_path / "run" / PREDICTIONS).values() if r["status"] == "failed"]
        assert "HTTP 400" in failed[0]["error"]
        again = _run(rendered, tmp_path / "run", model, split="val", concurrency=1)
        assert again["already_done"] == counts["items"] - 1 and again["ok"] == 1
    preds = read_predictions(tmp_path / "run" / PREDICTIONS)
    assert all(r["status"] == "ok" for r in preds.values())


def test_a_different_configuration_is_refused(rendered, tmp_path) -> None:
    _run(rendered, tmp_path / "run", make_model("oracle", rendered), split="val")
    with pytest.raises(RunMismatch):
        _run(rendered, tmp_path / "run", make_model("oracle", rendered), split="val", mode="structured")


def test_controls(rendered, tmp_path) -> None:
    with StubServer(lambda content: "yes") as srv:
        model = make_model("openai:stub-vlm", rendered, base_url=srv.url)
        _run(rendered, tmp_path / "blank", model, split="val", control="blank", limit=3)
        for req in srv.requests:
            for part in req["messages"][0]["content"]:
                if part["type"] == "image_url":
                    data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                    assert np.asarray(Image.open(io.BytesIO(data))).max() == 0
        srv.requests.clear()
        _run(rendered, tmp_path / "shuffled", model, split="val", control="shuffled", limit=3,
             concurrency=1)
        preds = read_predictions(tmp_path / "shuffled" / PREDICTIONS)
        assert len(preds) == 3 and all(r["status"] == "ok" for r in preds.values())
        chosen = [it for it in read_items(rendered) if it.split == "val" and it.images][:3]
        for req, item in zip(srv.requests, chosen, strict=False):  # one worker: requests in item order
            sent = [p["image_url"]["url"].split(",", 1)[1] for p in req["messages"][0]["content"]
                    if p["type"] == "image_url"]
            own = {base64.b64encode((rendered / im.path).read_bytes()).decode() for im in item.images}
            assert len(sent) == len(item.images) and not set(sent) & own, item.id


@pytest.mark.slow
def test_resume_after_kill_9(rendered, tmp_path) -> None:
    targets = _targets(rendered)
    run = tmp_path / "run"
    with StubServer(_answerer(targets), delay=0.05) as srv:
        cmd = [sys.executable, "-m", "voxqa", "eval", str(rendered), "--model", "openai:stub-vlm",
               "--base-url", srv.url, "--out", str(run), "--split", "val", "--concurrency", "1"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            pred = run / PREDICTIONS
            if pred.is_file() and pred.read_bytes().count(b"\n") >= 8:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with (run / PREDICTIONS).open("ab") as fh:  # a torn last line, as a kill mid-write leaves
            fh.write(b'{"item_id": "torn')
        before = len(read_predictions(run / PREDICTIONS))
        assert 8 <= before
        srv.delay = 0.0
        subprocess.run(cmd[:-1] + ["8"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
    lines = [json.loads(x) for x in (run / PREDICTIONS).read_text().splitlines()]
    ids = [r["item_id"] for r in lines]
    assert len(ids) == len(set(ids)), "an item was answered twice"
    n_items = sum(1 for it in read_items(rendered) if it.images and it.split == "val")
    assert len(ids) == n_items > before and all(r["status"] == "ok" for r in lines)


def test_scores_oracle_perfect_random_near_chance(rendered, tmp_path) -> None:
    from typer.testing import CliRunner

    from voxqa.cli import app

    runner = CliRunner()
    for spec in ("oracle", "random"):
        res = runner.invoke(app, ["eval", str(rendered), "--model", spec, "--out", str(tmp_path / spec),
                                  "--split", "all", "--profile", "qwen2.5-vl"])
        assert res.exit_code == 0, res.output
    oracle = json.loads((tmp_path / "oracle" / "results.json").read_text())
    metrics = oracle["overall"]["metrics"]
    for name in ("accuracy", "set_f1", "frame_f1", "miou", "bleu", "entity_f1"):
        assert metrics[name]["mean"] == pytest.approx(1.0), name
    assert oracle["overall"]["parse_failures"]["count"] == 0
    assert set(oracle["by"]) >= {"task", "task/subtask", "level", "label"}
    rnd = json.loads((tmp_path / "random" / "results.json").read_text())
    # a random guesser scores chance: no group of its results file is flagged below chance
    from voxqa.eval.metrics.aggregate import all_groups

    groups = all_groups(rnd)
    tested = [g for g in groups if g["below_chance_test"]]
    assert tested and not rnd["overall"]["below_chance"]
    assert not any(g["below_chance"] for g in rnd["by"]["task"].values())
    assert all(g["below_chance"] == (g["below_chance_test"]["p_holm"] < 0.05) for g in tested)
    assert all(0 < g["below_chance_test"]["p"] <= g["below_chance_test"]["p_holm"] <= 1 for g in tested)
    assert rnd["overall"]["below_chance_test"]["family_size"] == len(tested)
    assert oracle["overall"]["metrics"]["accuracy"]["ci_method"] == "wilson"
    res = runner.invoke(app, ["score", str(tmp_path / "random")])  # re-score without re-running
    assert res.exit_code == 0 and "scored" in res.output


def test_compare_leaderboard(rendered, tmp_path) -> None:
    from typer.testing import CliRunner

    from voxqa.cli import app

    runner = CliRunner()
    for spec in ("oracle", "prior"):
        assert runner.invoke(app, ["eval", str(rendered), "--model", spec, "--out",
                                   str(tmp_path / spec), "--split", "val"]).exit_code == 0
    res = runner.invoke(app, ["compare", str(tmp_path / "oracle"), str(tmp_path / "prior"),
                              "--out", str(tmp_path / "board.csv")])
    assert res.exit_code == 0, res.output
    import csv as _csv
    rows = list(_csv.reader((tmp_path / "board.csv").open()))
    # the report's columns: run names from run.json (not paths), the counts apart
    assert rows[0][:6] == ["run", "n", "answered", "failed", "unparseable", "accuracy"]
    assert rows[1][0] == "chance"
    assert [r[0] for r in rows[2:]] == ["oracle · minimal", "prior (blind) · minimal"]
    assert not any(str(tmp_path) in c for r in rows for c in r)
    for row, spec in zip(rows[2:], ("oracle", "prior"), strict=False):
        res = json.loads((tmp_path / spec / "results.json").read_text())
        n = res["answered"] + res["failed"] + res["missing"]
        assert row[1:4] == [str(n), str(res["answered"]), str(res["failed"])]
        acc = res["overall"]["metrics"]["accuracy"]
        assert row[5].startswith(f"{acc['mean']:.3f} [")
        assert acc["ci_patient"] is None and acc["n_patients"] < 10  # a few test patients: no interval
        assert row[5].endswith(f"n={acc['n']} by patient: none ({acc['n_patients']} patients, under 10)")
    assert rows[2][5].startswith("1.000") and rows[2][4] == "0"
    assert all(len(r) == len(rows[0]) for r in rows)
    res = runner.invoke(app, ["compare", str(tmp_path / "oracle"), str(tmp_path / "prior"),
                              "--out", str(tmp_path / "board.md")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "board.md").read_text().split("\n")
    assert md[0].startswith("| run | n | answered | failed | unparseable | accuracy |")
    assert md[3].startswith("| oracle · minimal | ") and md[4].startswith("| prior (blind) · minimal | ")
    assert str(tmp_path) not in "\n".join(md)
    assert md[-1] == "" and md[-2].startswith("! = significantly below chance") and "Holm" in md[-2]


def test_mirrored_control_flips_images_sides_and_boxes(tmp_path) -> None:
    from helpers import rendered_segmentation

    from voxqa.eval.score import score_run

    ds = rendered_segmentation(tmp_path, size=96, context=4)
    sent = []

    def answer(content: list) -> str:
        sent.append([base64.b64decode(p["image_url"]["url"].split(",", 1)[1])
                     for p in content if p["type"] == "image_url"])
        return "right"

    with StubServer(answer) as srv:
        model = make_model("openai:stub-vlm", ds, base_url=srv.url)
        _run(ds, tmp_path / "mir", model, split=None, control="mirrored", tasks=("spatial",),
             concurrency=1)
    items = [it for it in read_items(ds) if it.task == "spatial"]
    assert len(sent) == len(items)
    for shown, it in zip(sent, items, strict=False):  # one worker: requests in item order
        own = np.asarray(Image.open(ds / it.images[0].path))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(shown[0]))), own[:, ::-1])
    # the stub always answers "right": scored against the mirrored gold, that is right exactly
    # for the structures on the patient's left
    from voxqa.eval.controls import mirror_item
    from voxqa.eval.score import scored_run

    scores = {r["item_id"]: r["scores"] for r in scored_run(tmp_path / "mir").records}
    lateral = [it for it in items if it.options == ["left", "right"] and not it.id.endswith(":paired")]
    assert lateral
    for it in lateral:
        assert mirror_item(it).answer.value == 1 - it.answer.value
        assert scores[it.id]["correct"] == (it.options[it.answer.value] == "left"), it.id
    oracle = asyncio.run(run_eval(RunConfig(dataset=ds, out=tmp_path / "o", split=None,
                                            control="mirrored"), make_model("oracle", ds)))
    assert oracle["ok"] == oracle["items"]
    res = score_run(tmp_path / "o")["overall"]["metrics"]
    assert res["accuracy"]["mean"] == 1.0 and res["miou"]["mean"] == 1.0


def test_llm_jury_majority_cache_and_ar_score(rendered, tmp_path) -> None:
    from typer.testing import CliRunner

    from voxqa.cli import app

    def judge(content: list) -> str:  # a judge that says yes when the candidate is the reference
        text = content[0]["text"]
        ref = text.split("Reference answer: ")[1].split("\nCandidate answer: ")[0]
        cand = text.split("Candidate answer: ")[1].split("\nIs the candidate")[0]
        return "Yes." if ref == cand else "No."

    runner = CliRunner()
    with StubServer(judge) as srv:
        for spec in ("oracle", "random"):
            assert runner.invoke(app, ["eval", str(rendered), "--model", spec, "--out",
                                       str(tmp_path / spec), "--split", "all", "--tasks", "captioning"]).exit_code == 0
            args = ["score", str(tmp_path / spec), "--judge-base-url", srv.url,
                    "--judge", "openai:j1", "--judge", "openai:j2", "--judge", "openai:j3"]
            res = runner.invoke(app, args)
            assert res.exit_code == 0, res.output
        n_requests = len(srv.requests)
        assert n_requests > 0
        assert runner.invoke(app, args).exit_code == 0  # re-scoring asks nobody again
        assert len(srv.requests) == n_requests
    oracle = json.loads((tmp_path / "oracle" / "results.json").read_text())["overall"]["metrics"]
    assert oracle["judge"]["mean"] == 1.0 and oracle["ar_score"]["mean"] == pytest.approx(1.0)
    rnd = json.loads((tmp_path / "random" / "results.json").read_text())["overall"]["metrics"]
    assert rnd["judge"]["mean"] < 0.5 and rnd["ar_score"]["mean"] < 0.5
    res = runner.invoke(app, ["score", str(tmp_path / "oracle"), "--judge", "gpt"])
    assert res.exit_code == 2 and "--judge-base-url" in res.output


def test_macro_averages_weigh_groups_equally() -> None:
    from voxqa.eval.score import macro_averages

    results = {"by": {"label": {
        "common": {"metrics": {"accuracy": {"mean": 0.9}, "miou": {"mean": None}}},
        "rare": {"metrics": {"accuracy": {"mean": 0.1}}},
    }}}
    assert macro_averages(results) == {"label": {"accuracy": pytest.approx(0.5)}}


def test_any_reply_is_its_items_outcome_never_the_runs_end(rendered, tmp_path) -> None:
    """Content that is a number or a list, or a reply nested past the JSON reader's depth, is
    that item's recorded failure or parse failure; the run answers every item and, with
    failed items, is refused as incomplete by score."""
    from voxqa.eval.score import score_run

    replies = iter([7, ["yes"], "[" * 1200 + "yes", "yes"] * 100)
    with StubServer(lambda content: next(replies)) as srv:
        model = make_model("openai:stub-vlm", rendered, base_url=srv.url, max_retries=1)
        counts = _run(rendered, tmp_path / "run", model, split="val", concurrency=1, limit=8)
    assert counts == {"items": 8, "already_done": 0, "ok": 4, "failed": 4}
    records = list(read_predictions(tmp_path / "run" / PREDICTIONS).values())
    assert sorted(r["error"] for r in records if r["status"] == "failed") == \
        ["the reply is a int, not text"] * 2 + ["the reply is a list, not text"] * 2
    nested = [r for r in records if r["status"] == "ok" and r["raw"].startswith("[[")]
    assert len(nested) == 2 and all(not r["parse_ok"] and r["parse_error"] for r in nested)
    with pytest.raises(ValueError, match="incomplete|failed"):
        score_run(tmp_path / "run")
