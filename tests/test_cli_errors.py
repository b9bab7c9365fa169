"""User mistakes end in one line naming the problem, never a traceback, and leave nothing
half-written."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import rendered_phantom, rendered_segmentation
from typer.testing import CliRunner

from voxqa.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    return rendered_phantom(tmp_path_factory.mktemp("errs"), n=6, seed=2, size=64, context=4)


@pytest.fixture(scope="module")
def one_study_seg(tmp_path_factory) -> Path:
    return rendered_segmentation(tmp_path_factory.mktemp("seg"), size=64, context=4)


def _one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    assert "error:" in res.output
    flat = " ".join(res.output.split())
    for needle in needles:
        assert needle in flat, (needle, res.output)


def _eval(ds: Path, out: Path, *extra: str):
    return runner.invoke(app, ["eval", str(ds), "--model", "oracle", "--out", str(out), *extra])


def test_eval_unknown_split_lists_the_splits(rendered, tmp_path) -> None:
    """Defect: `--split tset` selected nothing, wrote run.json and an empty predictions.jsonl,
    then raised a traceback while scoring."""
    out = tmp_path / "run"
    _one_line_error(_eval(rendered, out, "--split", "tset"), "'tset' is not a split", "train, val, test")
    assert not out.exists()


def test_eval_unknown_task_lists_the_datasets_tasks(rendered, tmp_path) -> None:
    """Defect: `--tasks detectoin` selected nothing and ended in a traceback, leaving run.json."""
    out = tmp_path / "run"
    _one_line_error(_eval(rendered, out, "--split", "all", "--tasks", "detectoin"),
                    "--tasks detectoin: not a task of", "detection", "localization")
    assert not out.exists()


def test_eval_of_an_unrendered_dataset_says_render_first(tmp_path) -> None:
    """Defect: an unrendered dataset selected nothing -> traceback, run.json left behind."""
    from voxqa.build import build_fastmri_plus
    from voxqa.phantom import write_phantom

    p = write_phantom(tmp_path / "src", n=4, seed=1)
    ds = tmp_path / "ds"
    build_fastmri_plus([(p["annotations"], p["file_list"])], ds, volumes=p["volumes"])
    out = tmp_path / "run"
    _one_line_error(_eval(ds, out, "--split", "all"), "has images: run `voxqa render")
    assert not out.exists()


def test_eval_of_a_one_study_build_names_its_split(one_study_seg, tmp_path) -> None:
    """Defect: a one-study segmentation build puts its study in train; the default
    `--split test` selected nothing and ended in a traceback with run.json written."""
    out = tmp_path / "run"
    _one_line_error(_eval(one_study_seg, out), "is in split test", "are all in split train",
                    "--split train or --split all")
    assert not out.exists()


def test_eval_out_pointing_at_a_file(rendered, tmp_path) -> None:
    """Defect: `--out` naming a file raised FileExistsError with a traceback."""
    out = tmp_path / "file.txt"
    out.write_text("keep me")
    _one_line_error(_eval(rendered, out), "is a file, not a run folder")
    assert out.read_text() == "keep me"


def test_eval_missing_hf_model(rendered, tmp_path) -> None:
    """Defect: `--model hf:/nonexistent` raised PermanentError with a traceback."""
    out = tmp_path / "run"
    res = runner.invoke(app, ["eval", str(rendered), "--model", "hf:/nonexistent", "--out", str(out)])
    _one_line_error(res, "hf:/nonexistent", "no config.json")
    assert not out.exists()


def test_garbage_prediction_line_names_file_and_line_and_eval_resumes_past_it(rendered, tmp_path) -> None:
    """Defect: a garbage line in predictions.jsonl (not the torn last line) raised an error
    with no file or line, and blocked score, report and resume."""
    out = tmp_path / "run"
    res = _eval(rendered, out, "--split", "all", "--limit", "5")
    assert res.exit_code == 0, res.output
    preds = out / "predictions.jsonl"
    lines = preds.read_bytes().splitlines(keepends=True)
    assert len(lines) == 5
    lost = lines[1]
    preds.write_bytes(lines[0] + b'{"garbage": tru\n' + b"".join(lines[2:]))

    for args in (["score", str(out)], ["report", str(out), "--out", str(tmp_path / "r.html")]):
        _one_line_error(runner.invoke(app, args), f"{preds}:2: not a prediction record",
                        "re-run `voxqa eval` with the same --out")
    assert not (tmp_path / "r.html").exists()

    res = _eval(rendered, out, "--split", "all", "--limit", "5")
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "predictions.corrupt.jsonl" in res.output
    assert (out / "predictions.corrupt.jsonl").read_bytes() == b'{"garbage": tru\n'
    import orjson

    recs = [orjson.loads(line) for line in preds.read_bytes().splitlines()]
    assert len(recs) == 5 and orjson.loads(lost)["item_id"] in {r["item_id"] for r in recs}
    assert all(r["status"] == "ok" for r in recs)
    assert runner.invoke(app, ["score", str(out)]).exit_code == 0


def _build_args(ph: Path, out: Path, *extra: str) -> list[str]:
    return ["build", "fastmri-plus", "--annotations", str(ph / "annotations.csv"),
            "--file-list", str(ph / "file_list.csv"), "--volumes", str(ph / "volumes"),
            "--out", str(out), *extra]


@pytest.fixture(scope="module")
def phantom_src(tmp_path_factory) -> Path:
    from voxqa.phantom import write_phantom

    root = tmp_path_factory.mktemp("ph")
    write_phantom(root, n=6, seed=3)
    return root


def test_build_refuses_a_folder_holding_other_files(phantom_src, tmp_path) -> None:
    """Defect: building into a folder holding other files mixed the dataset into them."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    _one_line_error(runner.invoke(app, _build_args(phantom_src, out)),
                    "not a voxqa dataset and is not empty", "thesis.tex")
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "precious"


def test_rebuild_replaces_a_rendered_dataset_whole(phantom_src, tmp_path) -> None:
    """Defect: rebuilding into a rendered dataset stripped `images` but left the old frames
    and render.json behind (a stale, inconsistent dataset)."""
    out = tmp_path / "ds"
    assert runner.invoke(app, _build_args(phantom_src, out)).exit_code == 0
    assert runner.invoke(app, ["render", str(out), "--size", "64", "--frames", "4"]).exit_code == 0
    assert (out / "render.json").is_file() and (out / "frames").is_dir()
    res = runner.invoke(app, _build_args(phantom_src, out, "--seed", "1"))
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert "frames" not in names and "render.json" not in names, names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    from voxqa.dataset.folder import read_items

    assert all(not it.images for it in read_items(out))


@pytest.mark.parametrize("fractions", ["nan,0.5,0.5", "inf,0,0", "-0.5,1,0.5"])
def test_split_fractions_must_be_finite(phantom_src, tmp_path, fractions) -> None:
    """Defect: --split-fractions nan,0.5,0.5 was accepted (nan fails every comparison)."""
    out = tmp_path / "ds"
    _one_line_error(runner.invoke(app, _build_args(phantom_src, out, "--split-fractions", fractions)),
                    "finite, non-negative numbers summing to 1")
    assert not out.exists()


def test_demo_refuses_a_demo_folder_of_another_seed(tmp_path) -> None:
    """Defect: `demo --seed 1` into an existing demo folder rewrote the phantoms and datasets,
    then died with a traceback (RunMismatch) on the old runs."""
    out = tmp_path / "demo"
    (out / "dataset").mkdir(parents=True)
    (out / "dataset" / "manifest.json").write_text('{"seed": 0}')
    _one_line_error(runner.invoke(app, ["demo", "--out", str(out), "--seed", "1"]),
                    "holds a demo made with another --seed")
    assert sorted(p.name for p in out.iterdir()) == ["dataset"]


def test_compare_out_in_a_missing_folder(rendered, tmp_path) -> None:
    """Defect: `compare --out nodir/x.md` raised FileNotFoundError with a traceback."""
    run = tmp_path / "run"
    assert _eval(rendered, run, "--split", "all", "--limit", "3").exit_code == 0
    out = tmp_path / "nodir" / "x.md"
    _one_line_error(runner.invoke(app, ["compare", str(run), "--out", str(out)]),
                    "does not exist")
    assert not (tmp_path / "nodir").exists()


def test_compare_and_report_refuse_runs_of_different_datasets(rendered, one_study_seg, tmp_path) -> None:
    """Defect: runs of different datasets were put side by side in one leaderboard/report."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert _eval(rendered, a, "--split", "all", "--limit", "3").exit_code == 0
    assert _eval(one_study_seg, b, "--split", "all", "--limit", "3").exit_code == 0
    board, page = tmp_path / "board.md", tmp_path / "r.html"
    _one_line_error(runner.invoke(app, ["compare", str(a), str(b), "--out", str(board)]),
                    "2 different datasets")
    _one_line_error(runner.invoke(app, ["report", str(a), str(b), "--out", str(page)]),
                    "2 different datasets")
    assert not board.exists() and not page.exists()


def _csv_with(phantom_src: Path, tmp_path: Path, rows: list[str]) -> Path:
    lines = (phantom_src / "annotations.csv").read_text().splitlines()
    name = (phantom_src / "file_list.csv").read_text().split()[0]
    csv = tmp_path / "ann.csv"
    csv.write_text("\n".join(lines + [r.format(file=name) for r in rows]) + "\n")
    return csv


def _build_with(phantom_src: Path, csv: Path, out: Path, *extra: str):
    return runner.invoke(app, ["build", "fastmri-plus", "--annotations", str(csv), "--file-list",
                               str(phantom_src / "file_list.csv"), "--volumes", str(phantom_src / "volumes"),
                               "--out", str(out), *extra])


def test_decimal_coordinates_are_a_counted_repair_or_refused_under_strict(phantom_src, tmp_path) -> None:
    """Defect: decimal fastMRI+ coordinates were silently truncated (10.7 -> 10)."""
    import orjson

    csv = _csv_with(phantom_src, tmp_path, ["{file},2,No,10.7,20.2,30.6,40,lesion"])
    out = tmp_path / "ds"
    res = _build_with(phantom_src, csv, out)
    assert res.exit_code == 0, res.output
    rep = orjson.loads((out / "build_report.json").read_bytes())
    rounded = rep["repaired"]["coordinates_rounded"]
    assert rounded["count"] == 1
    assert rounded["examples"][0]["box"] == [11, 20, 11 + 31, 60]  # rounded, not truncated
    clean = tmp_path / "clean.csv"  # only the decimal row (the phantom plants other quirks)
    head, *_ = (phantom_src / "annotations.csv").read_text().splitlines()
    clean.write_text(head + "\n" + csv.read_text().splitlines()[-1] + "\n")
    strict = tmp_path / "strict"
    _one_line_error(_build_with(phantom_src, clean, strict, "--strict"),
                    "box coordinates are not whole pixels", "x=10.7")
    assert not strict.exists()


def test_strict_errors_are_plain_text_not_python_dicts(phantom_src, tmp_path) -> None:
    """Defect: --strict build errors were printed as Python dicts ({'where': ..., 'row': ...})."""
    out = tmp_path / "ds"
    res = runner.invoke(app, _build_args(phantom_src, out, "--strict"))
    _one_line_error(res, "--strict:", "annotations.csv:", "dropped (duplicate_row)")
    assert "{'" not in res.output and "'where'" not in res.output
    assert not out.exists()


def test_negative_box_size_is_its_own_reason(phantom_src, tmp_path) -> None:
    """Defect: a negative box width was reported as zero_area_box."""
    import orjson

    csv = _csv_with(phantom_src, tmp_path, ["{file},2,No,50,20,-30,40,lesion"])
    out = tmp_path / "ds"
    assert _build_with(phantom_src, csv, out).exit_code == 0
    rep = orjson.loads((out / "build_report.json").read_bytes())
    neg = rep["dropped"]["negative_box_size"]
    assert neg["count"] == 1 and neg["examples"][0]["width"] == -30
    assert "zero_area_box" not in rep["dropped"] or all(
        e["box"] != [50, 20, 20, 60] for e in rep["dropped"]["zero_area_box"]["examples"])
