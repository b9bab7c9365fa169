"""Interrupted renders: per-study progress is recorded as it happens, a
resumed render redoes only the studies not done, Ctrl-C with --workers 2 stops within
seconds, and only complete PNGs are left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from voxqa import render as render_mod
from voxqa.build import build_fastmri_plus
from voxqa.phantom import write_phantom
from voxqa.render import PROGRESS, RENDER, RenderInterrupted, RenderSettings, render_dataset


def _built(root: Path, n: int = 6) -> Path:
    p = write_phantom(root / "src", n=n, seed=4)
    out = root / "ds"
    build_fastmri_plus([(p["annotations"], p["file_list"])], out, volumes=p["volumes"],
                       fractions=(0.5, 0.25, 0.25))
    return out


def _assert_only_complete_pngs(ds: Path) -> int:
    assert not list(ds.rglob("*.part")), "a half-written PNG was left"
    pngs = list((ds / "frames").rglob("*.png"))
    for png in pngs:
        with Image.open(png) as im:
            im.load()  # a torn PNG raises here
    return len(pngs)


def test_interrupted_render_resumes_from_the_studies_not_done(tmp_path, monkeypatch) -> None:
    """Defect: resume needed a finished render.json, so any interrupted render rewrote every
    frame (and the interruption surfaced as a bare KeyboardInterrupt)."""
    ds = _built(tmp_path)
    settings = RenderSettings(size=96, context=4)
    real = render_mod.render_study
    calls: list[str] = []

    def interrupted_on_third(job):  # noqa: ANN001
        calls.append(job[0].id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(render_mod, "render_study", interrupted_on_third)
    with pytest.raises(RenderInterrupted, match=r"2 of \d+ studies done"):
        render_dataset(ds, settings, workers=1)
    assert not (ds / RENDER).exists()
    assert (ds / PROGRESS).is_file()
    partial = _assert_only_complete_pngs(ds)
    assert partial > 0

    monkeypatch.setattr(render_mod, "render_study", real)
    summary = render_dataset(ds, settings, workers=1)
    total = summary["counts"]["frames"]
    # only the studies not done were rendered: the frames already written were not redone
    assert summary["counts"]["frames_written"] == total - partial
    assert len(calls) == 3 and summary["counts"]["studies_rendered"] > 3
    assert not (ds / PROGRESS).exists()  # render.json now records every study
    assert _assert_only_complete_pngs(ds) == total

    # and the result equals an uninterrupted render
    fresh = _built(tmp_path / "fresh")
    clean = render_dataset(fresh, settings, workers=1)
    assert clean["studies"] == summary["studies"]
    assert (fresh / "items.jsonl").read_bytes() == (ds / "items.jsonl").read_bytes()


SLOW_RENDER = textwrap.dedent("""
    import sys, time
    import voxqa.render as r
    from voxqa.cli import app

    real = r.render_study

    def slow(job):  # each study takes 2 s, so a full render takes many seconds
        time.sleep(2.0)
        return real(job)

    slow.__module__, slow.__qualname__ = "voxqa.render", "render_study"
    r.render_study = slow
    sys.argv = ["voxqa"] + sys.argv[1:]
    app()
""")


def test_ctrl_c_stops_a_parallel_render_within_seconds(tmp_path) -> None:
    """Defect: Ctrl-C with --workers 2 was ignored until every queued study finished, and
    then ended in a traceback."""
    ds = _built(tmp_path, n=12)
    script = tmp_path / "slow_render.py"
    script.write_text(SLOW_RENDER)
    proc = subprocess.Popen(
        [sys.executable, str(script), "render", str(ds), "--size", "64", "--frames", "4",
         "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    journal = ds / PROGRESS
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the first study is recorded
        if journal.is_file() and len(journal.read_bytes().splitlines()) >= 2:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("no study was recorded")
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("render kept running after Ctrl-C")
    elapsed = time.monotonic() - t0
    assert elapsed < 4, elapsed
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted" in err and "run the same command again to resume" in err, err
    assert not (ds / RENDER).exists()
    done = len(journal.read_bytes().splitlines()) - 1
    assert 1 <= done < 12
    _assert_only_complete_pngs(ds)

    # resume without the slowdown: only the studies not done are rendered
    res = subprocess.run([sys.executable, "-m", "voxqa", "render", str(ds), "--size", "64",
                          "--frames", "4", "--workers", "2"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    import orjson

    summary = orjson.loads((ds / RENDER).read_bytes())
    assert summary["counts"]["frames_written"] < summary["counts"]["frames"]
    assert not journal.exists()
    _assert_only_complete_pngs(ds)


@pytest.mark.parametrize("frames", ["abc", "-3", "0"])
def test_render_frames_must_be_a_positive_number(tmp_path, frames) -> None:
    """Defect: --frames abc gave `invalid literal for int()`, --frames -3 was accepted."""
    from typer.testing import CliRunner

    from voxqa.cli import app

    ds = _built(tmp_path, n=4)
    before = sorted(p.name for p in ds.iterdir())
    res = CliRunner().invoke(app, ["render", str(ds), "--frames", frames])
    assert res.exit_code == 2, res.output
    assert "--frames must be a positive whole number or 'all'" in res.output
    assert "invalid literal" not in res.output
    assert sorted(p.name for p in ds.iterdir()) == before  # nothing written
