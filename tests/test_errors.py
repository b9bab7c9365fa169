"""One error rule: every voxqa exception is a VoxqaError, the command line shows exactly those
as one line (exit code 2), `--debug` shows their traceback, and anything else (a bug) ends in
its traceback instead of passing for a user mistake. Also the model adapters' lifecycle hooks."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import rendered_phantom
from typer.testing import CliRunner

import voxqa
from voxqa.cli import app
from voxqa.errors import InputError, MissingFileError, VoxqaError

runner = CliRunner()


def _modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(voxqa.__path__, "voxqa.") if m.name != "voxqa.__main__"]


def test_every_exception_class_in_voxqa_derives_from_voxqa_error() -> None:
    found, missing_extras = [], []
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # an optional extra this install lacks
            missing_extras.append(f"{name}: {exc}")
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == name and issubclass(cls, BaseException)
                    and not issubclass(cls, Warning)):  # warnings are not errors
                found.append(cls)
    assert len(found) >= 16, found  # the walk reached the package (13 classes before the root)
    assert [c for c in found if not issubclass(c, VoxqaError)] == []
    from voxqa.eval.models.base import ServerConfigError
    from voxqa.io.volume import VolumeError

    assert issubclass(VolumeError, ValueError) and issubclass(ServerConfigError, ValueError)  # callers catch these
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(InputError, ValueError)


def _render_bad_window(folder: Path, *first: str):
    return runner.invoke(app, [*first, "render", str(folder), "--window", "nosuch"])


@pytest.mark.parametrize("case", ["option", "missing_run_json"])
def test_a_voxqa_error_is_one_line_and_exit_code_2(tmp_path, case) -> None:
    if case == "option":  # refused by the library (render.parse_window)
        res, needle = _render_bad_window(tmp_path), "window must be one of abdomen"
    else:  # a folder that is no run: MissingFileError from eval/score.py
        res, needle = runner.invoke(app, ["score", str(tmp_path)]), "run.json: not found"
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)
    assert res.output.startswith("error: ") and needle in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_debug_shows_the_traceback(tmp_path) -> None:
    res = _render_bad_window(tmp_path, "--debug")
    assert isinstance(res.exception, InputError) and res.exit_code == 1
    assert "error:" not in res.output
    proc = subprocess.run([sys.executable, "-m", "voxqa", "--debug", "render", str(tmp_path), "--window", "nosuch"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(voxqa.__file__).parents[1]), "COLUMNS": "200"})
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "InputError" in proc.stderr and "parse_window" in proc.stderr


def test_a_bug_is_never_shown_as_a_user_error(tmp_path) -> None:
    """A run.json without the identity fields makes the scorer fail with a KeyError: a
    traceback, not `error: 'dataset'` (compare used to catch KeyError as a user mistake)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"identity": {}}')
    (run / "predictions.jsonl").write_text("")
    res = runner.invoke(app, ["compare", str(run)])
    assert isinstance(res.exception, KeyError) and res.exit_code == 1
    assert "error:" not in res.output


def test_a_bug_inside_a_command_propagates(tmp_path, monkeypatch) -> None:
    """Whatever the library raises that is not a VoxqaError passes the command line untouched."""
    import voxqa.render

    def broken(text: str) -> tuple[float, float]:
        raise TypeError("a bug")

    monkeypatch.setattr(voxqa.render, "parse_window", broken)
    res = _render_bad_window(tmp_path)
    assert isinstance(res.exception, TypeError) and res.exit_code == 1
    assert "error:" not in res.output


def test_every_adapter_is_a_model_adapter() -> None:
    from voxqa.eval.models import base, baselines, distributed, hf_local, openai_chat, plugins

    adapters = [baselines.Oracle, baselines.Random, baselines.Prior, openai_chat.OpenAIChat, hf_local.HFLocal,
                plugins.PluginModel, distributed.RayModels]
    assert all(issubclass(a, base.ModelAdapter) for a in adapters)
    with pytest.raises(TypeError):  # identity() and answer() are required
        type("NoAnswer", (base.ModelAdapter,), {"identity": lambda self: {}})()


def test_the_runner_calls_preflight_before_writing_and_close_after(tmp_path) -> None:
    from voxqa.eval.models import make_model
    from voxqa.eval.run import RunConfig, run_eval

    ds = rendered_phantom(tmp_path, n=4, seed=1, size=48, context=2)
    out = tmp_path / "run"
    oracle = make_model("oracle", ds)
    calls: list[str] = []

    async def preflight() -> None:
        calls.append(f"preflight, run folder exists: {out.exists()}")

    async def close() -> None:
        calls.append("close")

    oracle.preflight, oracle.close = preflight, close  # type: ignore[method-assign]
    counts = asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None), oracle))
    assert counts["ok"] == counts["items"] > 0
    assert calls == ["preflight, run folder exists: False", "close"]
    assert asyncio.run(make_model("prior", ds).preflight()) is None  # the default: nothing to check
