"""Progress through the ``voxqa.progress.Progress`` protocol: render and eval report each step to
the caller's object and draw nothing themselves."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from voxqa.build import build_fastmri_plus
from voxqa.eval.models import make_model
from voxqa.eval.run import RunConfig, run_eval
from voxqa.phantom import write_phantom
from voxqa.render import RenderSettings, render_dataset


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, what: str, total: int) -> None:
        self.calls.append(("start", what, total))

    def advance(self, steps: int = 1) -> None:
        self.calls.append(("advance", steps))

    def done(self) -> None:
        self.calls.append(("done",))


def test_render_and_eval_report_every_step_to_the_callers_progress(tmp_path: Path, capfd) -> None:
    p = write_phantom(tmp_path / "src", n=4, seed=4)
    ds = tmp_path / "ds"
    build_fastmri_plus([(p["annotations"], p["file_list"])], ds, volumes=p["volumes"], fractions=(0.5, 0.25, 0.25))
    capfd.readouterr()

    shown = Recorder()
    summary = render_dataset(ds, RenderSettings(size=64, context=2), workers=1, progress=shown)
    n = summary["counts"]["studies_rendered"]
    assert n > 0
    assert shown.calls == [("start", "rendering studies", n), *[("advance", 1)] * n, ("done",)]
    audit = json.loads((ds / "audit.json").read_text())  # render audits the frames it drew, for every caller
    assert set(audit["frames_shown_from"]) == {"images"}

    shown = Recorder()
    counts = asyncio.run(run_eval(RunConfig(dataset=ds, out=tmp_path / "run", split=None),
                                  make_model("oracle", ds), progress=shown))
    k = counts["ok"]
    assert k == counts["items"] > 0
    assert shown.calls == [("start", f"oracle on {k} items", k), *[("advance", 1)] * k, ("done",)]

    shown = Recorder()  # resumed: nothing left to answer
    asyncio.run(run_eval(RunConfig(dataset=ds, out=tmp_path / "run", split=None), make_model("oracle", ds),
                         progress=shown))
    assert shown.calls == [("start", "oracle on 0 items", 0), ("done",)]
    assert capfd.readouterr() == ("", "")  # library code printed nothing


def test_builds_report_loading_and_item_generation_to_the_callers_progress(tmp_path: Path, capfd) -> None:
    """A segmentation build advances once per study measured and once per question family, on
    the caller's object; nothing reaches stdout or stderr (the old bar drew on stdout)."""
    from voxqa.build import build_segmentation
    from voxqa.phantom import write_segmentation_phantom
    from voxqa.sources.segmentation import SegSpec

    specs = []
    for v in (1, 2):
        s = write_segmentation_phantom(tmp_path / f"seg{v}", variant=v)
        specs.append(SegSpec(study_id=f"s{v}", image=s["image"], labels=s["labels"],
                             label_names=s["label_names"], modality="CT"))
    capfd.readouterr()
    shown = Recorder()
    build_segmentation(specs, tmp_path / "ds", fractions=(1.0, 0.0, 0.0), progress=shown)
    starts = [c for c in shown.calls if c[0] == "start"]
    assert [c[1] for c in starts] == ["measuring structures", "generating items"]
    assert starts[0][2] == 2 and starts[1][2] >= 1
    assert shown.calls.count(("advance", 1)) == 2 + starts[1][2]
    assert shown.calls.count(("done",)) == 2
    assert capfd.readouterr() == ("", "")
