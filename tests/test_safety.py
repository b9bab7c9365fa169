"""Safety: containment (dataset content never reaches outside its folder), secrets (no API
key in any stored or printed text), fail fast (a server that cannot serve a run stops it)."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest
from helpers import rendered_segmentation
from openai_stub import StubServer
from typer.testing import CliRunner

from voxqa.cli import app

SECRET = "hunter2-not-a-pattern-9f3c"  # matches no Bearer/sk- pattern: only the env value hides it


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return rendered_segmentation(tmp_path_factory.mktemp("safety"), size=48, context=4)


def _copy(clean: Path, dst: Path) -> Path:
    shutil.copytree(clean, dst)
    return dst


def _rewrite(path: Path, edit) -> None:  # noqa: ANN001 - edit(dict) -> None, per JSON line
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        edit(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _crafted(clean: Path, dst: Path, path: str) -> tuple[Path, str]:
    """A copy of the dataset whose first rendered item shows ``path``; returns (folder, item id)."""
    ds = _copy(clean, dst)
    first: list[str] = []

    def edit(row: dict) -> None:
        if row.get("images") and not first:
            row["images"][0]["path"] = path
            first.append(row["id"])
    _rewrite(ds / "items.jsonl", edit)
    return ds, first[0]


def _secret_file(tmp_path: Path) -> Path:
    f = tmp_path / "outside" / "secret.txt"
    f.parent.mkdir()
    f.write_text("root:x:0:0:TOP-SECRET-CONTENT\n")
    return f


def _escape_path(ds: Path, target: Path) -> str:
    return "../" * len(ds.resolve().parts) + str(target.resolve()).lstrip("/")


# ---------------------------------------------------------------- containment


def test_eval_refuses_an_image_path_outside_the_dataset(clean, tmp_path) -> None:
    """Defect: eval sent ../../../../etc/passwd to the model server as a base64 "PNG"."""
    secret = _secret_file(tmp_path)
    ds, item = _crafted(clean, tmp_path / "ds", "")
    _rewrite(ds / "items.jsonl", lambda r: r["id"] == item and r["images"][0].update(path=_escape_path(ds, secret)))
    with StubServer(lambda content: "yes") as srv:
        res = CliRunner().invoke(app, ["eval", str(ds), "--model", "openai:m", "--base-url", srv.url,
                                       "--split", "all", "--out", str(tmp_path / "run")])
        assert res.exit_code != 0
        assert not srv.requests  # nothing was sent
    assert "leaves" in res.output and item in res.output
    assert not (tmp_path / "run").exists()


def test_eval_refuses_a_symlink_out_and_a_file_that_is_not_png(clean, tmp_path) -> None:
    """Defect: a symlink inside the dataset, or any non-PNG file, was read and sent as a PNG."""
    secret = _secret_file(tmp_path)
    ds, item = _crafted(clean, tmp_path / "ds", "frames/link.png")
    (ds / "frames" / "link.png").symlink_to(secret)
    res = CliRunner().invoke(app, ["eval", str(ds), "--model", "oracle", "--split", "all",
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code != 0 and "leaves" in res.output and item in res.output
    ds2, item2 = _crafted(clean, tmp_path / "ds2", "manifest.json")  # inside, but not a PNG
    res = CliRunner().invoke(app, ["eval", str(ds2), "--model", "oracle", "--split", "all",
                                   "--out", str(tmp_path / "run2")])
    assert res.exit_code != 0 and "not a PNG" in res.output and item2 in res.output


def test_report_refuses_to_embed_a_file_outside_the_dataset(clean, tmp_path) -> None:
    """Defect: report embedded the crafted path's bytes in report.html."""
    secret = _secret_file(tmp_path)
    ds = _copy(clean, tmp_path / "ds")
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(ds), "--model", "oracle", "--split", "all", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    _rewrite(ds / "items.jsonl", lambda r: r.get("images") and r["images"][0].update(path=_escape_path(ds, secret)))
    from voxqa.eval.run import dataset_hash

    run_json = tmp_path / "run" / "run.json"  # a crafted run to match: the dataset hash check passes
    meta = json.loads(run_json.read_text())
    meta["identity"]["dataset_sha256"] = dataset_hash(ds)
    run_json.write_text(json.dumps(meta))
    res = runner.invoke(app, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "report.html")])
    assert res.exit_code != 0 and "leaves" in res.output
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("fmt", ["hf", "llamafactory"])
def test_export_refuses_paths_outside_the_dataset(clean, tmp_path, fmt) -> None:
    """Defect: hf copied the file's bytes into Arrow; llamafactory wrote the outside path."""
    secret = _secret_file(tmp_path)
    ds, item = _crafted(clean, tmp_path / "ds", "")
    _rewrite(ds / "items.jsonl", lambda r: r["id"] == item and r["images"][0].update(path=_escape_path(ds, secret)))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["export", str(ds), "--format", fmt, "--out", str(out)])
    assert res.exit_code != 0 and "leaves" in res.output and item in res.output
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file()) if out.exists() else b""
    assert b"TOP-SECRET" not in written and str(secret).encode() not in written


def test_render_refuses_a_crafted_study_id_in_studies_jsonl(clean, tmp_path) -> None:
    """Defect: a study id ../../../escaped in studies.jsonl made render write PNGs above the dataset."""
    ds = _copy(clean, tmp_path / "a" / "b" / "ds")
    bad = "../../../escaped"
    _rewrite(ds / "studies.jsonl", lambda r: r.update(id=bad))
    _rewrite(ds / "items.jsonl", lambda r: r.update(study_id=bad))
    (ds / "render.json").unlink(missing_ok=True)
    res = CliRunner().invoke(app, ["render", str(ds), "--size", "48", "--frames", "4"])
    assert res.exit_code != 0 and bad in res.output and "studies.jsonl" in res.output
    assert not list(tmp_path.rglob("escaped"))


def test_render_refuses_a_frames_folder_symlinked_out(clean, tmp_path) -> None:
    """Defect: frames/<study> as a symlink made render write PNGs wherever it pointed."""
    ds = _copy(clean, tmp_path / "ds")
    study = json.loads((ds / "studies.jsonl").read_text().splitlines()[0])["id"]
    shutil.rmtree(ds / "frames" / study)
    (tmp_path / "elsewhere").mkdir()
    (ds / "frames" / study).symlink_to(tmp_path / "elsewhere")
    (ds / "render.json").unlink(missing_ok=True)
    res = CliRunner().invoke(app, ["render", str(ds), "--size", "40", "--frames", "4"])
    assert res.exit_code != 0 and "leaves" in res.output
    assert not list((tmp_path / "elsewhere").iterdir())


def test_build_refuses_unsafe_study_ids(tmp_path) -> None:
    """Defect: build segmentation --study-id ../../../escaped (or a crafted studies.csv) was accepted."""
    from voxqa.phantom import write_segmentation_phantom

    s = write_segmentation_phantom(tmp_path / "src")
    runner = CliRunner()
    res = runner.invoke(app, ["build", "segmentation", "--image", str(s["image"]), "--labels", str(s["labels"]),
                              "--study-id", "../../../escaped", "--out", str(tmp_path / "ds")])
    assert res.exit_code == 2 and "../../../escaped" in res.output and "not allowed" in res.output
    assert not (tmp_path / "ds").exists()
    csv = tmp_path / "studies.csv"
    csv.write_text(f"study_id,image,labels\n.hidden,{s['image']},{s['labels']}\n")
    res = runner.invoke(app, ["build", "segmentation", "--studies", str(csv), "--out", str(tmp_path / "ds")])
    assert res.exit_code == 2 and "'.hidden'" in res.output and "studies.csv" in res.output


# ---------------------------------------------------------------- secrets


def test_no_secret_in_predictions_results_report_or_output(clean, tmp_path, monkeypatch) -> None:
    """Defect: a reply echoing the Authorization header was stored verbatim and shown in the report."""
    monkeypatch.setenv("VOXQA_SAFETY_KEY", SECRET)
    run = tmp_path / "run"
    runner = CliRunner()
    with StubServer(lambda content: "yes", echo_auth=400) as srv:  # every item fails, echoing the key
        res = runner.invoke(app, ["eval", str(clean), "--model", "openai:m", "--base-url", srv.url, "--split", "all",
                                  "--limit", "3", "--api-key-env", "VOXQA_SAFETY_KEY", "--out", str(run)])
        assert srv.headers and all(h["Authorization"] == f"Bearer {SECRET}" for h in srv.headers)
    outputs = [res.output]
    preds = (run / "predictions.jsonl").read_text()
    assert "invalid key Bearer [REDACTED]" in preds
    res = runner.invoke(app, ["score", str(run), "--allow-incomplete"])
    outputs.append(res.output)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "report.html")])
    outputs.append(res.output)
    assert res.exit_code == 0, res.output
    for text in [preds, (run / "results.json").read_text(), (tmp_path / "report.html").read_text(), *outputs]:
        assert SECRET not in text
    with StubServer(lambda content: "yes", echo_auth=401) as srv:  # refused key: stops, says so, no key
        res = runner.invoke(app, ["eval", str(clean), "--model", "openai:m", "--base-url", srv.url, "--split", "all",
                                  "--api-key-env", "VOXQA_SAFETY_KEY", "--out", str(tmp_path / "r401")])
    assert res.exit_code != 0 and "HTTP 401" in res.output and SECRET not in res.output


def test_redact_masks_keys_tokens_and_env_values(monkeypatch) -> None:
    from voxqa.eval.redact import env_secrets, redact

    monkeypatch.setenv("MY_KEY", SECRET)
    text = f"bad Bearer abc.def-ghi, key sk-proj-AbC123xyz, echo {SECRET}"
    out = redact(text, env_secrets("MY_KEY"))
    assert "abc.def-ghi" not in out and "sk-proj" not in out and SECRET not in out
    assert out.count("[REDACTED]") == 3


# ---------------------------------------------------------------- fail fast


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["refused", "notaurl", "dns", "wrong_model", "404", "401"])
def test_unusable_server_stops_the_run_at_once(clean, tmp_path, case) -> None:
    """Defect: these exited 0 with accuracy 0.000, 'below chance', 'parse failures 100%' (49 s)."""
    run = tmp_path / "run"
    srv = StubServer(lambda content: "yes", models=["served-model"], echo_auth=401 if case == "401" else None)
    with srv:
        url = {"refused": f"http://127.0.0.1:{_closed_port()}/v1", "notaurl": "notaurl",
               "dns": "http://no-such-host.invalid/v1",
               "404": srv.url.removesuffix("/v1")}.get(case, srv.url)  # 404: /models and chat both 404
        if case == "404":
            srv.models = None
        t0 = time.monotonic()
        res = CliRunner().invoke(app, ["eval", str(clean), "--model", "openai:wrong-model" if case == "wrong_model"
                                       else "openai:served-model", "--base-url", url, "--split", "all",
                                       "--out", str(run)])
        took = time.monotonic() - t0
    assert res.exit_code != 0, res.output
    assert took < 10, took
    expected = {"refused": "cannot reach", "notaurl": "not an http(s) URL", "dns": "cannot reach",
                "wrong_model": "not served", "404": "HTTP 404", "401": "HTTP 401"}[case]
    line = next(x for x in res.output.splitlines() if x.startswith("error:"))  # one line
    assert expected in line, res.output
    assert not run.exists()  # no results, no half-written run folder


def test_failed_requests_make_a_run_incomplete(clean, tmp_path) -> None:
    """Defect: failed requests counted as parse failures and the run scored as the model's accuracy."""
    run = tmp_path / "run"
    runner = CliRunner()
    with StubServer(lambda content: "yes", faults=["400"]) as srv:
        res = runner.invoke(app, ["eval", str(clean), "--model", "openai:m", "--base-url", srv.url, "--split", "all",
                                  "--limit", "4", "--concurrency", "1", "--out", str(run)])
    assert res.exit_code != 0 and "incomplete" in res.output and "--allow-incomplete" in res.output
    assert not (run / "results.json").exists()
    res = runner.invoke(app, ["score", str(run)])
    assert res.exit_code != 0 and not (run / "results.json").exists()
    res = runner.invoke(app, ["score", str(run), "--allow-incomplete"])
    assert res.exit_code == 0 and "INCOMPLETE" in res.output
    results = json.loads((run / "results.json").read_text())
    preds = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    unparsed = sum(p["status"] == "ok" and not p["parse_ok"] for p in preds)
    assert results["failed"] == 1 and results["incomplete"] is True
    assert results["overall"]["parse_failures"]["count"] == unparsed  # the failed one is not a parse failure
    # nor a wrong answer: the failed item has no score, and accuracy covers answered items only
    from voxqa.eval.score import scored_run

    records = scored_run(run).records
    (failed,) = [r for r in records if r["failed"]]
    assert failed["scores"] == {}
    with_accuracy = [r for r in records if "correct" in r["scores"]]
    assert results["overall"]["metrics"]["accuracy"]["n"] == len(with_accuracy)
    assert len(with_accuracy) == sum(1 for r in records if not r["failed"] and r["answer_type"] in (
        "yes_no", "choice", "multi_choice", "number", "grade"))
    res = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "report.html")])
    assert res.exit_code == 0 and "INCOMPLETE" in (tmp_path / "report.html").read_text()
