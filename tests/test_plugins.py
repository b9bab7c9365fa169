"""Plug-in models: `py:MODULE:FACTORY` and `voxqa.models` entry points, through the real CLI and runner."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import rendered_phantom
from typer.testing import CliRunner

from voxqa.cli import app
from voxqa.eval.models import PluginError, make_model
from voxqa.eval.models.baselines import Oracle
from voxqa.eval.models.plugins import PluginClashWarning, parse_model_args
from voxqa.eval.run import PREDICTIONS, RUN, RunConfig, read_predictions, run_eval

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "plugins"

# answers the constant reply of the item's answer form, logs every call next to itself
ECHO = '''
import json
from pathlib import Path

from voxqa.answers import ANSWER_TYPES

LOG = Path(__file__).with_name("calls.log")


class Echo:
    def __init__(self, got):
        self.got = got

    def identity(self):
        return {"name": "echo", "got": self.got}

    async def answer(self, prompt, item):
        with LOG.open("a") as fh:
            fh.write(item.id + "\\n")
        return ANSWER_TYPES[item.answer_type].constant_reply


def make(dataset, profile, seed, **model_args):
    return Echo({"dataset": str(dataset), "profile": profile, "seed": seed, **model_args})
'''


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rendered_phantom(tmp_path_factory.mktemp("plugins"), n=4, seed=0, size=32, context=2)


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the current directory; sys.path restored and the plug-ins written here forgotten."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))


def eval_cli(ds: Path, spec: str, out: Path, *extra: str):
    return CliRunner().invoke(app, ["eval", str(ds), "--model", spec, "--out", str(out), "--split", "all", *extra])


def test_py_plugin_runs_end_to_end_and_resumes(ds: Path, plugin_dir: Path) -> None:
    write_module(plugin_dir, "echo_plugin", ECHO)
    out = plugin_dir / "run"
    res = eval_cli(ds, "py:echo_plugin:make", out, "--seed", "3", "--limit", "8")
    assert res.exit_code == 0, res.output
    records = read_predictions(out / PREDICTIONS)
    asked = (plugin_dir / "calls.log").read_text().split()
    assert len(records) == 8 and sorted(asked) == sorted(records)
    assert all(r["status"] == "ok" for r in records.values())

    ident = json.loads((out / RUN).read_text())["identity"]["model"]
    assert ident == {"spec": "py:echo_plugin:make", "factory": "echo_plugin:make", "model_args": {},
                     "plugin": {"name": "echo", "got": {"dataset": str(ds.resolve()), "profile": "pixel",
                                                        "seed": 3}}}

    again = eval_cli(ds, "py:echo_plugin:make", out, "--seed", "3", "--limit", "8")
    assert again.exit_code == 0, again.output
    assert (plugin_dir / "calls.log").read_text().split() == asked  # resume asked nothing again

    scored = CliRunner().invoke(app, ["score", str(out)])
    assert scored.exit_code == 0, scored.output
    results = json.loads((out / "results.json").read_text())
    assert results["overall"]["n"] == len(records)


def test_the_worked_example_runs_end_to_end(ds: Path, plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES)  # the module is found in the current directory
    out = plugin_dir / "run"
    res = eval_cli(ds, "py:tiny_transformers_plugin:make_model", out, "--limit", "3")
    assert res.exit_code == 0, res.output
    records = read_predictions(out / PREDICTIONS)
    assert len(records) == 3 and all(r["status"] == "ok" and isinstance(r["raw"], str) for r in records.values())
    results = json.loads((out / "results.json").read_text())
    assert results["overall"]["n"] == 3
    ident = json.loads((out / RUN).read_text())["identity"]["model"]
    assert ident["plugin"] == {"model": "tiny-random-llama", "seed": 0, "max_new_tokens": 8, "greedy": True}


def test_model_args_reach_the_factory_and_the_identity(ds: Path, plugin_dir: Path) -> None:
    write_module(plugin_dir, "echo_args", ECHO)
    model = make_model("py:echo_args:make", ds, model_args={"temperature": "0.5"})
    assert model.identity()["model_args"] == {"temperature": "0.5"}
    assert model.identity()["plugin"]["got"]["temperature"] == "0.5"
    out = plugin_dir / "run"
    asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None, limit=2), model))
    # another setting of the same plug-in is another run: never mixed into this folder
    other = make_model("py:echo_args:make", ds, model_args={"temperature": "0.9"})
    with pytest.raises(ValueError, match="different run"):
        asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None, limit=2), other))
    with pytest.raises(ValueError, match="model args are for hf:PATH and plug-ins"):
        make_model("oracle", ds, model_args={"temperature": "0.5"})


def test_secret_model_args_never_reach_run_json(ds: Path, plugin_dir: Path) -> None:
    write_module(plugin_dir, "echo_args", ECHO)
    model = make_model("py:echo_args:make", ds, model_args={"api_key": "abc123xyz", "note": "Bearer sk-live1234"})
    out = plugin_dir / "secret_run"
    asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None, limit=1), model))
    text = (out / "run.json").read_text()
    assert "abc123xyz" not in text and "sk-live1234" not in text and "<redacted>" in text
    assert model.identity()["plugin"]["got"]["api_key"] == "<redacted>"  # echoed by the plug-in: masked too


def test_model_arg_options_parse_to_a_dict() -> None:
    assert parse_model_args(["path=/m/a=b", "max_new_tokens=16", "empty="]) == {
        "path": "/m/a=b", "max_new_tokens": "16", "empty": ""}
    with pytest.raises(PluginError, match="expected KEY=VALUE"):
        parse_model_args(["path"])
    with pytest.raises(PluginError, match="given twice"):
        parse_model_args(["a=1", "a=2"])


SYNC = '''
import threading
import time

state = {"active": 0, "most": 0, "threads": set()}


class Slow:
    def identity(self):
        return {"name": "slow"}

    def answer(self, prompt, item):
        state["active"] += 1
        state["most"] = max(state["most"], state["active"])
        state["threads"].add(threading.current_thread() is threading.main_thread())
        time.sleep(0.01)
        state["active"] -= 1
        return "yes"


def make():
    return Slow()
'''


def test_a_sync_answer_runs_in_a_worker_thread_one_at_a_time(ds: Path, plugin_dir: Path) -> None:
    write_module(plugin_dir, "sync_plugin", SYNC)
    model = make_model("py:sync_plugin:make", ds)  # a factory taking nothing gets nothing
    counts = asyncio.run(run_eval(RunConfig(dataset=ds, out=plugin_dir / "run", split=None, limit=6,
                                            concurrency=4), model))
    assert counts["ok"] == 6
    state = sys.modules["sync_plugin"].state
    assert state["most"] == 1 and state["threads"] == {False}


def test_a_failing_answer_fails_its_item_not_the_run(ds: Path, plugin_dir: Path) -> None:
    write_module(plugin_dir, "flaky", '''
        class Flaky:
            def identity(self):
                return {}

            def answer(self, prompt, item):
                raise KeyError("no such volume")


        def make():
            return Flaky()
        ''')
    counts = asyncio.run(run_eval(RunConfig(dataset=ds, out=plugin_dir / "run", split=None, limit=2),
                                  make_model("py:flaky:make", ds)))
    assert counts == {"items": 2, "already_done": 0, "ok": 0, "failed": 2}
    records = read_predictions(plugin_dir / "run" / PREDICTIONS).values()
    assert all(r["error"] == "RuntimeError: KeyError: 'no such volume'" for r in records)


BROKEN = '''
import not_installed_dependency_xyz
'''
NO_PROTOCOL = '''
class Half:
    def identity(self):
        return {}


def make():
    return Half()


NOT_CALLABLE = 42


def raises():
    raise RuntimeError("weights missing\\nat /models/x")
'''


@pytest.mark.parametrize(("spec", "expected"), [
    ("py:absent_module_xyz:make", "py:absent_module_xyz:make: no module 'absent_module_xyz' on sys.path or in "),
    ("py:broken_plugin:make", "py:broken_plugin:make: importing broken_plugin failed: ModuleNotFoundError: "
                              "No module named 'not_installed_dependency_xyz'"),
    ("py:bad_plugin:missing", "py:bad_plugin:missing: module bad_plugin ("),
    ("py:bad_plugin:NOT_CALLABLE", "py:bad_plugin:NOT_CALLABLE: bad_plugin:NOT_CALLABLE is not callable (it is a int)"),
    ("py:bad_plugin:make", "py:bad_plugin:make: the factory returned a Half without answer()"),
    ("py:bad_plugin:raises", "py:bad_plugin:raises: the factory bad_plugin:raises raised RuntimeError: "
                             "weights missing at /models/x"),
    ("py:bad_plugin", "py:bad_plugin: expected py:MODULE:FACTORY"),
])
def test_load_errors_are_one_line_naming_the_spec(ds: Path, plugin_dir: Path, spec: str, expected: str) -> None:
    write_module(plugin_dir, "broken_plugin", BROKEN)
    write_module(plugin_dir, "bad_plugin", NO_PROTOCOL)
    res = eval_cli(ds, spec, plugin_dir / "run")
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and line.startswith(f"error: {expected}"), line
    assert not (plugin_dir / "run").exists()


def test_an_unknown_model_arg_is_an_error(ds: Path, plugin_dir: Path) -> None:
    write_module(plugin_dir, "sync_args", SYNC)
    with pytest.raises(PluginError, match=r"^py:sync_args:make: sync_args:make cannot be called with \['typo'\]"):
        make_model("py:sync_args:make", ds, model_args={"typo": "1"})


def install_dist(site: Path, name: str, entry_points: str, module: str | None = None) -> None:
    """A minimal installed distribution (what importlib.metadata reads) in ``site``."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[voxqa.models]\n{entry_points}\n")
    if module is not None:
        (site / f"{name.replace('-', '_')}.py").write_text(textwrap.dedent(module))


def test_an_installed_entry_point_plugin(ds: Path, plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = plugin_dir / "site"
    install_dist(site, "voxqa-tinyplug", "tinyplug = voxqa_tinyplug:make\noracle = voxqa_tinyplug:make", '''
        class Said:
            def __init__(self, arg):
                self.arg = arg

            def identity(self):
                return {"arg": self.arg}

            async def answer(self, prompt, item):
                return prompt.target


        def make(arg=None):
            return Said(arg)
        ''')
    install_dist(site, "voxqa-other", "tinyplug = voxqa_other:make\nsolo = voxqa_other:nothing")
    monkeypatch.syspath_prepend(str(site))

    # two packages claiming one name: refused, naming both
    res = eval_cli(ds, "tinyplug:/models/m3d", plugin_dir / "run")
    assert res.exit_code == 2 and "2 installed plug-ins claim this name" in res.output
    (site / "voxqa_other-0.1.dist-info" / "entry_points.txt").write_text("[voxqa.models]\nsolo = voxqa_other:nothing\n")

    out = plugin_dir / "run"
    res = eval_cli(ds, "tinyplug:/models/m3d", out, "--limit", "4")
    assert res.exit_code == 0, res.output
    ident = json.loads((out / RUN).read_text())["identity"]["model"]
    assert ident == {"spec": "tinyplug:/models/m3d", "factory": "voxqa_tinyplug:make", "model_args": {},
                     "plugin": {"arg": "/models/m3d"}}
    assert json.loads((out / "results.json").read_text())["overall"]["metrics"]["accuracy"]["mean"] == 0.0  # no target
    assert make_model("tinyplug", ds).identity()["plugin"] == {"arg": None}

    with pytest.raises(PluginError, match=r"^solo: loading the plug-in voxqa_other:nothing from voxqa-other 0.1 "
                                          r"failed: ModuleNotFoundError"):
        make_model("solo", ds)
    with pytest.raises(ValueError, match=r"unknown model spec 'nothing'; known: .*tinyplug \(plug-in\)"):
        make_model("nothing", ds)
    # a plug-in named like a built-in: the built-in wins, and the clash is reported
    with pytest.warns(PluginClashWarning, match="'oracle'"):
        assert isinstance(make_model("oracle", ds), Oracle)


# reads every field it is given, answers with the gold when it finds one, logs what it saw
CHEAT = '''
import dataclasses
import json
from pathlib import Path

LOG = Path(__file__).with_name("seen.jsonl")


class Cheat:
    def identity(self):
        return {"name": "cheat"}

    def answer(self, prompt, item):
        fields = item.model_dump(mode="json") if hasattr(item, "model_dump") else dataclasses.asdict(item)
        seen = {"item": fields, "prompt": dataclasses.asdict(prompt)}
        with LOG.open("a") as fh:
            fh.write(json.dumps(seen) + "\\n")
        return prompt.target or getattr(item, "answer_text", "") or ""


def make():
    return Cheat()
'''


@pytest.mark.parametrize("control", ["none", "mirrored"])
def test_a_plugin_cannot_see_the_gold(ds: Path, plugin_dir: Path, control: str) -> None:
    """A plug-in gets the prompt without its target and only the shown fields of the item
    (the mirrored reading and the flipped PNGs under --control mirrored), so answering from
    the gold is impossible; the oracle, which reads the gold on its own path, stays perfect."""
    from voxqa.dataset.folder import read_items
    from voxqa.eval.controls import mirror_item
    from voxqa.eval.score import score_run

    write_module(plugin_dir, "cheat_plugin", CHEAT)
    res = eval_cli(ds, "py:cheat_plugin:make", plugin_dir / "run", "--limit", "12", "--control", control)
    assert res.exit_code == 0, res.output
    items = {it.id: it for it in read_items(ds)}
    seen = [json.loads(line) for line in (plugin_dir / "seen.jsonl").read_text().splitlines()]
    assert len(seen) == 12
    gold_fields = {"answer", "answer_text", "evidence", "reasoning", "pair_id", "variant", "label", "chance"}
    for s in seen:
        item, prompt = s["item"], s["prompt"]
        assert prompt["target"] == "" and not gold_fields & set(item)
        it = items[item["id"]]
        shown = mirror_item(it) if control == "mirrored" else it
        assert item["question"] == shown.question and item["options"] == shown.options
        assert item["images"] == [v for k, v in prompt["parts"] if k == "image"]
        assert all(("controls/mirrored" in p) == (control == "mirrored") for p in item["images"])
    assert score_run(plugin_dir / "run")["overall"]["metrics"]["accuracy"]["mean"] < 0.5
    oracle = eval_cli(ds, "oracle", plugin_dir / "oracle", "--limit", "12", "--control", control)
    assert oracle.exit_code == 0, oracle.output
    assert score_run(plugin_dir / "oracle")["overall"]["metrics"]["accuracy"]["mean"] == 1.0


def test_a_plugins_truncated_reply_is_recorded_as_truncated(ds: Path, plugin_dir: Path) -> None:
    """A plug-in that raises TruncatedReply: recorded as truncated (ok, not retried), not an answer."""
    write_module(plugin_dir, "capped", """
        from voxqa.eval.models.base import TruncatedReply

        class Capped:
            def identity(self):
                return {"name": "capped"}

            def answer(self, prompt, item):
                raise TruncatedReply('{"reasoning": "Frame', 3)

        def make():
            return Capped()
    """)
    out = plugin_dir / "run"
    res = eval_cli(ds, "py:capped:make", out, "--limit", "2")
    assert res.exit_code == 0, res.output
    records = read_predictions(out / PREDICTIONS)
    assert len(records) == 2 and all(r["status"] == "ok" and r["truncated"] and r["raw"] == '{"reasoning": "Frame'
                                     and "max_new_tokens=3" in r["parse_error"] for r in records.values())
    assert json.loads((out / "results.json").read_text())["truncated"] == 2
