"""The whole pipeline on built-in synthetic data (`voxqa demo`): phantoms -> two builds ->
render -> oracle/prior/random (and optionally a served model) on the test splits -> HTML
reports and leaderboard rows. Each step is announced to a callback and long loops advance a
``voxqa.progress.Progress``; the caller shows both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson

from voxqa.errors import InputError
from voxqa.progress import SILENT, Progress

FRACTIONS = (0.6, 0.2, 0.2)
#: Segmented abdomens per split: phantom variants (other "patients") picked by the split their
#: id falls in under the seed, so that train and test both hold studies.
ABDOMENS = {"train": 3, "test": 2}
LEADERBOARD_HEADER = ["dataset", "model", "n", "accuracy [95% CI]"]  # n: test items accuracy covers

Announce = Callable[[str], None]  # one line per step of the demo


def _quiet(message: str) -> None:
    """No announcements."""


def build_demo_datasets(out: Path, seed: int = 0, announce: Announce = _quiet,
                        progress: Progress = SILENT) -> tuple[Path, Path]:
    """The demo's fastMRI+-style box dataset and segmentation dataset under ``out``; refuses a
    folder holding a demo of another seed (its phantoms and runs would be mixed with these)."""
    from voxqa.build import build_fastmri_plus, build_segmentation
    from voxqa.dataset.splits import split_of
    from voxqa.phantom import write_phantom, write_segmentation_phantom
    from voxqa.sources.segmentation import SegSpec

    dataset, spatial = out / "dataset", out / "spatial_dataset"
    for made in (dataset, spatial):
        if (made / "manifest.json").is_file() and orjson.loads((made / "manifest.json").read_bytes()).get("seed") != seed:
            raise InputError(f"{out} holds a demo made with another --seed; give a new --out or remove {out}")
    announce("building the fastMRI+-style phantom dataset")
    paths = write_phantom(out / "phantom", n=24, seed=seed)
    build_fastmri_plus([(paths["annotations"], paths["file_list"])], dataset, volumes=paths["volumes"],
                       seed=seed, fractions=FRACTIONS, progress=progress)
    picked: dict[str, list[tuple[int, str]]] = {split: [] for split in ABDOMENS}
    for v in range(1, 200):
        sid = f"abdomen_{v:02d}"
        sp = split_of(sid, seed, FRACTIONS)
        if sp in picked and len(picked[sp]) < ABDOMENS[sp]:
            picked[sp].append((v, sid))
        if all(len(picked[k]) == n for k, n in ABDOMENS.items()):
            break
    announce(f"building the segmentation phantom dataset ({sum(map(len, picked.values()))} abdomens)")
    specs = []
    for v, sid in sorted(picked["train"] + picked["test"]):
        seg = write_segmentation_phantom(out / "segmentation_phantom" / sid, variant=v)
        specs.append(SegSpec(study_id=sid, image=seg["image"], labels=seg["labels"],
                             label_names=seg["label_names"], modality="CT", anatomy="abdomen"))
    build_segmentation(specs, spatial, seed=seed, fractions=FRACTIONS, progress=progress)
    return dataset, spatial


def evaluate_demo(out: Path, datasets: tuple[Path, Path], seed: int = 0, base_url: str | None = None,
                  model_name: str = "default", profile: str = "pixel",
                  announce: Announce = _quiet,
                  progress: Progress = SILENT) -> tuple[list[list[str]], tuple[Path, Path]]:
    """Render both demo datasets, evaluate the baselines (and ``openai:model_name`` with
    ``base_url``) on their test splits and write one HTML report each: (leaderboard rows under
    ``LEADERBOARD_HEADER``, a chance row first per dataset; the two reports)."""
    from voxqa.dataset.folder import read_items
    from voxqa.eval.compare import cell, load_results
    from voxqa.eval.models import make_model
    from voxqa.eval.run import RunConfig, run_eval
    from voxqa.eval.score import score_run
    from voxqa.render import RenderSettings, render_dataset
    from voxqa.views.html_report import build_report

    models = ["oracle", "prior", "random"] + ([f"openai:{model_name}"] if base_url else [])
    table: list[list[str]] = []
    reports = []
    dataset, spatial = datasets
    for data, name, runs_dir, page in ((dataset, "fastMRI+ boxes", out / "runs", out / "report.html"),
                                       (spatial, "spatial", out / "spatial_runs", out / "spatial_report.html")):
        announce(f"rendering and evaluating {data}")
        render_dataset(data, RenderSettings(size=192), workers=2, progress=progress)  # the frames the build assumed
        if not any(it.split == "test" and it.images for it in read_items(data)):
            raise InputError(f"the demo's {data} has no rendered test items; try another --seed")
        runs = []
        for spec in models:
            run = runs_dir / spec.replace(":", "_").replace("/", "_")
            adapter = make_model(spec, data, seed=seed, base_url=base_url, profile=profile)
            asyncio.run(run_eval(RunConfig(dataset=data, out=run, split="test", profile=profile), adapter,
                                 progress))
            score_run(run)
            runs.append(run)
        reports.append(build_report(runs, page, max_items=120))
        results = load_results(runs)  # the chance row first, then one row per model
        table.append([name, "chance", "", f"{results[0]['overall']['chance']:.3f}"
                      if results[0]["overall"].get("chance") is not None else ""])
        for r in results:
            accuracy = r["overall"]["metrics"].get("accuracy") or {}
            table.append([name, r["run"]["model"]["spec"], str(accuracy.get("n", "")),
                          cell(accuracy or None, r["overall"].get("below_chance"))])
    return table, (reports[0], reports[1])
