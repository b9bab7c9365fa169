"""The command line end to end: phantom -> build -> inspect, and its error messages."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from voxqa.cli import app

runner = CliRunner()


def test_phantom_build_inspect(tmp_path):
    res = runner.invoke(app, ["phantom", "--out", str(tmp_path / "ph"), "--n", "8", "--seed", "3"])
    assert res.exit_code == 0, res.output
    ph = tmp_path / "ph"
    args = [
        "build", "fastmri-plus", "--annotations", str(ph / "annotations.csv"),
        "--file-list", str(ph / "file_list.csv"), "--volumes", str(ph / "volumes"),
        "--out", str(tmp_path / "ds"), "--seed", "5", "--split-fractions", "0.5,0.25,0.25",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["options"]["split_fractions"] == [0.5, 0.25, 0.25]
    assert manifest["box_convention"]["format"] == "pixel_xyxy"
    assert {f["role"] for f in manifest["source_files"]} == {"annotations", "file_list"}
    assert all(len(f["sha256"]) == 64 for f in manifest["source_files"])
    assert manifest["frame_sizes"][0]["source"] == "volume"
    n_items = sum(1 for _ in (tmp_path / "ds" / "items.jsonl").open())
    assert manifest["counts"]["items"] == n_items > 0

    res = runner.invoke(app, ["inspect", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    for text in ("Items by task", "Answer balance", "detection", "box_clipped", "duplicate_row"):
        assert text in res.output


def test_build_errors_name_the_problem(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text("file,slice,label\n")
    lst = tmp_path / "l.csv"
    lst.write_text("file1\n")
    base = ["build", "fastmri-plus", "--out", str(tmp_path / "o")]
    res = runner.invoke(app, base + ["--annotations", str(csv), "--file-list", str(lst)])
    assert res.exit_code == 2 and "missing columns" in res.output and "a.csv" in res.output
    res = runner.invoke(app, base + ["--annotations", str(csv)] * 2 + ["--file-list", str(lst)])
    assert res.exit_code == 2 and "one --file-list per --annotations" in res.output
    res = runner.invoke(
        app, base + ["--annotations", str(csv), "--file-list", str(lst), "--split-fractions", "0.9,0.2,0"]
    )
    assert res.exit_code == 2 and "sum" in res.output
    res = runner.invoke(app, ["inspect", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "items.jsonl" in res.output


@pytest.mark.slow
def test_console_script_demo(tmp_path):
    """The README's first command, as a real process."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "voxqa", "demo", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "dataset" / "items.jsonl").stat().st_size > 0
    assert "demo datasets" in proc.stderr
    assert (out / "spatial_dataset" / "items.jsonl").stat().st_size > 0
    assert "<script>" in (out / "report.html").read_text() and "demo reports" in proc.stderr
    assert "spatial/laterality" in (out / "spatial_report.html").read_text()
    # stdout: the compact leaderboard alone (progress and messages on stderr), no trailing blank line
    lines = proc.stdout.split("\n")
    assert lines[0] == "| dataset | model | n | accuracy [95% CI] |" and lines[-1] == "" and lines[-2]
    assert "demo" not in proc.stdout and "rendering" not in proc.stdout and "\x1b" not in proc.stdout
    assert "━" not in proc.stderr + proc.stdout  # progress bars only on a terminal
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:] if ln.startswith("|")]
    by = {(r[0], r[1]): r for r in rows}
    assert {m for _, m in by} == {"chance", "oracle", "prior", "random"}
    for name, data in (("fastMRI+ boxes", "dataset"), ("spatial", "spatial_dataset")):
        items = [json.loads(ln) for ln in (out / data / "items.jsonl").open()]
        test = [it for it in items if it["split"] == "test"]
        assert test and any(it["split"] == "train" for it in items), data  # evaluated on a held-out split
        for model in ("oracle", "prior", "random"):
            results = json.loads((out / ("runs" if data == "dataset" else "spatial_runs") / model
                                  / "results.json").read_text())
            assert results["run"]["split"] == "test"
            headline = [it for it in test if not it.get("prior_answerable")]  # scored apart
            assert results["overall"]["n"] == len(headline) > 0
            # n is the items the accuracy covers (box answers have no accuracy)
            with_accuracy = [it for it in headline if it["answer"]["type"] in (
                "yes_no", "choice", "multi_choice", "number", "grade")]
            assert int(by[(name, model)][2]) == results["overall"]["metrics"]["accuracy"]["n"] == len(with_accuracy)
            assert results["answered"] == len(test)
        assert by[(name, "oracle")][3].startswith("1.000 [")
        assert not by[(name, "prior")][3].startswith("1.000")  # held-out items: no free marks
    studies = [json.loads(ln) for ln in (out / "spatial_dataset" / "studies.jsonl").open()]
    assert len({s["patient_id"] for s in studies}) >= 5  # several phantom patients


def test_render_export_profiles(tmp_path):
    ph = tmp_path / "ph"
    assert runner.invoke(app, ["phantom", "--out", str(ph), "--n", "6", "--seed", "2"]).exit_code == 0
    ds = tmp_path / "ds"
    res = runner.invoke(app, ["build", "fastmri-plus", "--annotations", str(ph / "annotations.csv"),
                              "--file-list", str(ph / "file_list.csv"), "--volumes", str(ph / "volumes"),
                              "--out", str(ds), "--split-fractions", "0.5,0.25,0.25"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["render", str(ds), "--size", "160", "--frames", "4", "--window", "nope"])
    assert res.exit_code == 2 and "abdomen" in res.output
    res = runner.invoke(app, ["render", str(ds), "--size", "160", "--frames", "4"])
    assert res.exit_code == 0, res.output
    assert json.loads((ds / "render.json").read_text())["settings"]["size"] == 160
    res = runner.invoke(app, ["export", str(ds), "--format", "trl", "--out", str(tmp_path / "trl"),
                              "--convention", "qwen2-vl"])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "trl").rglob("*.jsonl")
    assert sum(1 for f in lines for _ in f.open()) > 0
    res = runner.invoke(app, ["export", str(ds), "--format", "trl", "--out", str(tmp_path / "x"),
                              "--convention", "qwen9"])
    assert res.exit_code == 2 and "qwen2.5-vl" in res.output
    res = runner.invoke(app, ["profiles"], terminal_width=200)
    assert res.exit_code == 0 and "qwen2.5-vl" in res.output and "<loc0160><loc0448>" in res.output


@pytest.mark.slow
def test_demo_with_a_served_model(tmp_path):
    """`voxqa demo --base-url` also evaluates a model on an OpenAI-compatible server."""
    from openai_stub import StubServer

    with StubServer(lambda content: "yes") as srv:
        res = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--base-url", srv.url,
                                  "--model-name", "tiny-vlm"])
        assert res.exit_code == 0, res.output
        assert len(srv.requests) > 0
    results = json.loads((tmp_path / "d" / "runs" / "openai_tiny-vlm" / "results.json").read_text())
    assert results["run"]["model"]["spec"] == "openai:tiny-vlm"
    assert "openai:tiny-vlm" in (tmp_path / "d" / "report.html").read_text()


def test_version():
    from voxqa import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == __version__
    proc = subprocess.run([sys.executable, "-m", "voxqa", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == __version__, proc.stderr


def _commands(cmd, path=()):
    """Every command under the typer app, as (argv path, click command)."""
    yield path, cmd
    if hasattr(cmd, "commands"):  # a group
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))


def test_help_of_every_command_names_no_python_types():
    import typer

    seen = []
    for path, cmd in _commands(typer.main.get_command(app)):
        for param in cmd.params:
            name = getattr(param, "opts", [param.name])[0]
            assert getattr(param, "help", None), f"voxqa {' '.join(path)}: {name} has no help text"
        res = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert res.exit_code == 0, res.output
        for bad in ("list[", "Path]", "Optional", "<str>", "<int>", "<float>", "<path>", "<bool>", "NoneType"):
            assert bad not in res.output, f"voxqa {' '.join(path)} --help shows {bad!r}:\n{res.output}"
        seen.append(" ".join(path))
    assert {"build fastmri-plus", "build segmentation", "eval", "compare", "demo"} <= set(seen)
    res = runner.invoke(app, ["eval", "--help"], terminal_width=200)
    assert "train|val|test|all" in res.output and "oracle_region" in res.output and "mirrored" in res.output
