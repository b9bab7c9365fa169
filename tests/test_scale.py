"""Past one machine: the Ray executor gives byte-identical datasets, renders and recipe
outputs; a killed worker's task is retried; replicas of a served model are load-balanced."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from openai_stub import StubServer

from voxqa.build import build_segmentation
from voxqa.executors import LocalExecutor, RayExecutor, make_executor
from voxqa.phantom import write_segmentation_phantom
from voxqa.render import RenderSettings, render_dataset
from voxqa.sources.segmentation import SegSpec


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs (as CI has), shut down after the module."""
    import sys

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    yield RayExecutor()
    ray.shutdown()


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> list[SegSpec]:
    root = tmp_path_factory.mktemp("scale")
    out = []
    for v in (1, 2, 3):
        s = write_segmentation_phantom(root / f"p{v}", variant=v)
        out.append(SegSpec(study_id=f"abdomen_{v}", image=s["image"], labels=s["labels"],
                           label_names=s["label_names"], modality="CT", patient_id=f"p{v}"))
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_ray_build_render_and_recipe_are_byte_identical_to_local(ray_cluster, specs, tmp_path) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    build_segmentation(specs, local, fractions=(0.5, 0.0, 0.5))
    build_segmentation(specs, remote, fractions=(0.5, 0.0, 0.5), executor=ray_cluster)
    assert _files(local) == _files(remote)  # items, studies, manifest, audit, build report

    settings = RenderSettings(size=96, context=4)
    render_dataset(local, settings, workers=2)
    render_dataset(remote, settings, executor=ray_cluster)
    from voxqa.model_inputs import render_recipe

    render_recipe(local, "m3d")
    render_recipe(remote, "m3d", executor=ray_cluster)
    got, want = _files(remote), _files(local)
    assert sorted(got) == sorted(want) and any(k.startswith("frames/") for k in got)
    assert got == want  # PNGs, items.jsonl with images, render.json, recipe arrays


def _dies_once(marker: str) -> str:
    """Kills its worker process the first time it runs (a node lost mid-task), then succeeds."""
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    return "survived"


def _raises(_: int) -> None:
    raise ValueError("bad study")


def test_a_killed_worker_is_retried_and_errors_stay_the_jobs(ray_cluster, tmp_path) -> None:
    marker = str(tmp_path / "died")
    [(i, outcome)] = list(ray_cluster.run(_dies_once, [marker]))
    assert (i, outcome.result()) == (0, "survived") and Path(marker).read_text() == "died"
    [(_, outcome)] = list(ray_cluster.run(_raises, [1]))  # the function's own error: not retried
    with pytest.raises(ValueError, match="bad study"):
        outcome.result()


def test_executor_names_and_local_pool(tmp_path) -> None:
    assert isinstance(make_executor("local", 2), LocalExecutor)
    with pytest.raises(ValueError, match="unknown executor 'dask'; known: local, ray"):
        make_executor("dask")
    with pytest.raises(ValueError, match="--address is for --executor ray"):
        make_executor("local", address="auto")
    results = dict((i, o.result()) for i, o in LocalExecutor(2).run(abs, [-3, 4, -5]))
    assert results == {0: 3, 1: 4, 2: 5}


def test_replicas_are_load_balanced_and_a_failing_one_is_routed_around() -> None:
    from voxqa.eval.models.openai_chat import OpenAIChat
    from voxqa.eval.prompts import Prompt

    prompt = Prompt(item_id="x", parts=(("text", "Is there a tear?"),), target="")
    with StubServer(lambda content: "yes") as a, StubServer(lambda content: "no", faults=["500"] * 50) as b:
        model = OpenAIChat("m", [a.url, b.url], backoff=0.0, max_retries=3)

        async def ask() -> list[str]:
            try:
                return await asyncio.gather(*(model.answer(prompt, None) for _ in range(12)))
            finally:
                await model.close()

        answers = asyncio.run(ask())
        assert answers == ["yes"] * 12  # every item answered, by the healthy replica
        assert len(a.requests) == 12 and len(b.requests) >= 6  # both were asked; b's failures retried on a
    assert model.identity()["base_url"] == sorted([a.url, b.url])


def test_cli_executor_ray_on_a_running_cluster(ray_cluster, specs, tmp_path) -> None:
    """`--executor ray --address auto` joins the running cluster; the dataset equals the local one."""
    from typer.testing import CliRunner

    from voxqa.cli import app

    runner = CliRunner()
    args = ["build", "segmentation", "--image", str(specs[0].image), "--labels", str(specs[0].labels),
            "--label-names", str(specs[0].label_names), "--modality", "CT"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "ray"), "--executor", "ray", "--address", "auto"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "local")])
    assert res.exit_code == 0, res.output
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    res = runner.invoke(app, ["render", str(tmp_path / "ray"), "--executor", "dask"])
    assert res.exit_code == 2 and "unknown executor 'dask'" in res.output


@pytest.mark.slow
def test_eval_on_ray_actors_scores_like_local(ray_cluster, tmp_path) -> None:
    """`voxqa eval --executor ray`: the model on Ray actors; run identity and scores equal the local run."""
    import json

    from helpers import rendered_segmentation
    from typer.testing import CliRunner

    from voxqa.cli import app

    data = rendered_segmentation(tmp_path, size=96, context=4)
    runner = CliRunner()
    for name, extra in (("local", []), ("ray", ["--executor", "ray", "--address", "auto", "--workers", "2"])):
        for spec in ("oracle", "random"):
            out = tmp_path / f"{spec}-{name}"
            res = runner.invoke(app, ["eval", str(data), "--model", spec, "--split", "all", "--out", str(out), *extra])
            assert res.exit_code == 0, res.output
            assert runner.invoke(app, ["score", str(out)]).exit_code == 0
    for spec in ("oracle", "random"):
        local = json.loads((tmp_path / f"{spec}-local" / "results.json").read_text())
        remote = json.loads((tmp_path / f"{spec}-ray" / "results.json").read_text())
        assert local["by"] == remote["by"] and local["run"]["model"] == remote["run"]["model"]
    res = runner.invoke(app, ["eval", str(data), "--model", "nope", "--out", str(tmp_path / "x"),
                              "--executor", "ray", "--address", "auto"])
    assert res.exit_code == 2 and "unknown model spec 'nope'" in res.output


@pytest.mark.slow
def test_a_lost_replica_is_a_failed_request_not_an_answer(ray_cluster, tmp_path) -> None:
    from voxqa.eval.models.distributed import RayModels
    from voxqa.eval.prompts import Prompt

    import ray

    models = RayModels("oracle", tmp_path, 1)
    ray.kill(models.actors[0])
    with pytest.raises(RuntimeError, match="model replica 0 lost"):
        asyncio.run(models.answer(Prompt(item_id="x", parts=(), target='{"answer": "yes"}'), None))
