"""Helpers shared by the tests (fixtures stay in conftest.py): real-data skips and small
phantom datasets built and rendered through the library."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def data_unavailable(reason: str) -> None:
    """Skip a real-data test locally; in CI (CI set) real-data tests must run, so fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (real-data tests may not skip in CI)")
    pytest.skip(reason)


def rendered_phantom(root: Path, *, n: int, seed: int, size: int, context: int,
                     fractions=(0.5, 0.25, 0.25), workers: int = 1) -> Path:
    """A fastMRI+-style phantom, built and rendered: the dataset folder."""
    from voxqa.build import build_fastmri_plus
    from voxqa.phantom import write_phantom
    from voxqa.render import RenderSettings, render_dataset

    p = write_phantom(root / "src", n=n, seed=seed)
    out = root / "ds"
    build_fastmri_plus([(p["annotations"], p["file_list"])], out, volumes=p["volumes"], fractions=fractions)
    render_dataset(out, RenderSettings(size=size, context=context), workers=workers)
    return out


def rendered_segmentation(root: Path, *, size: int, context: int) -> Path:
    """The segmentation phantom (one CT study), built and rendered: the dataset folder."""
    from voxqa.build import build_segmentation
    from voxqa.phantom import write_segmentation_phantom
    from voxqa.render import RenderSettings, render_dataset
    from voxqa.sources.segmentation import SegSpec

    s = write_segmentation_phantom(root / "seg_src")
    out = root / "seg"
    build_segmentation([SegSpec(study_id="s", image=s["image"], labels=s["labels"],
                                label_names=s["label_names"], modality="CT")], out, fractions=(1.0, 0.0, 0.0))
    render_dataset(out, RenderSettings(size=size, context=context), workers=1)
    return out


def keyword_swapped_target(target: str) -> str:
    """The oracle's structured reply with every keyword moved to the next keyword's box (the
    last to the first's): perfect boxes, each named as another keyword."""
    import json

    reply = json.loads(target)
    boxes = reply["answer"]
    labels = [b["label"] for b in boxes]
    for i, b in enumerate(boxes):
        b["label"] = labels[(i + 1) % len(labels)]
    return json.dumps(reply)


def swapped_giou(items) -> float:
    """The keyword-swapped reply's G-IoU, computed by hand from the items' gold boxes: keyword i
    is matched to its own word on box i+1, so an item scores sum_i IoU(box_i, box_i+1) / n."""
    def iou(a, b) -> float:
        w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union

    per = []
    for it in items:
        boxes = [b.box for b in it.answer.value]
        per.append(sum(iou(boxes[i], boxes[(i + 1) % len(boxes)]) for i in range(len(boxes))) / len(boxes))
    return sum(per) / len(per)


def run_keyword_models(ds: Path, out: Path, split: str = "train") -> dict[str, dict]:
    """The oracle and the keyword-swapped model on the dataset's localization items, scored:
    each run's results.json, keyed "oracle" and "swapped"."""
    import asyncio

    from voxqa.eval.models.baselines import Oracle
    from voxqa.eval.run import RunConfig, run_eval
    from voxqa.eval.score import score_run

    class Swapped(Oracle):
        spec = "keyword-swapped"

        async def answer(self, prompt, item) -> str:  # noqa: ANN001 - the adapter signature
            return keyword_swapped_target(prompt.target)

    results = {}
    for name, model in (("oracle", Oracle()), ("swapped", Swapped())):
        asyncio.run(run_eval(RunConfig(dataset=ds, out=out / name, split=split, tasks=("localization",)), model))
        results[name] = score_run(out / name)
    return results
