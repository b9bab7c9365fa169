"""The source registry drives every build: each registered source builds through run_build,
with the common manifest, its own keys, the audit and the staged write."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from voxqa.anatomy.margins import MARGINS
from voxqa.build import build_segmentation, run_build
from voxqa.dataset.folder import read_items, read_studies
from voxqa.dataset.frame_policy import DEFAULT_FRAMES, VOLUME_FRAMES_RULE, FramePolicy
from voxqa.phantom import write_knee_phantom, write_phantom, write_segmentation_phantom
from voxqa.sources.base import Source
from voxqa.sources.fastmri_plus import FastMRIPlus
from voxqa.sources.knee import KneeGrading
from voxqa.sources.radreports import RadiologyReports
from voxqa.sources.registry import SOURCES
from voxqa.sources.segmentation import SegmentationSource, SegSpec

REPORT = "The spleen is on the left. The aorta lies anterior to the spinal cord."


def _fastmri(root: Path) -> Source:
    src = write_phantom(root / "fastmri", n=6, seed=1)
    return FastMRIPlus(pairs=[(src["annotations"], src["file_list"])], volumes=src["volumes"])


def _seg_spec(root: Path) -> SegSpec:
    src = write_segmentation_phantom(root / "seg")
    return SegSpec(study_id="ct1", image=src["image"], labels=src["labels"], label_names=src["label_names"])


def _segmentation(root: Path) -> Source:
    return SegmentationSource(specs=[_seg_spec(root)])


def _knee(root: Path) -> Source:
    src = write_knee_phantom(root / "knee", n=2)
    return KneeGrading(studies_csv=src["studies"], grades_csv=src["grades"], frames=FramePolicy(4))


def _reports(root: Path) -> Source:
    reports = root / "reports.jsonl"
    reports.write_text(json.dumps({"study_id": "ct1", "language": "en", "text": REPORT}) + "\n")
    return RadiologyReports(specs=[_seg_spec(root)], reports_path=reports)


#: Small inputs for every registered source (a new source adds its own here).
INPUTS: dict[str, Callable[[Path], Source]] = {
    "fastmri-plus": _fastmri, "segmentation": _segmentation, "knee-grading": _knee, "reports": _reports,
}


def test_every_registered_source_has_inputs_here() -> None:
    assert set(SOURCES) == set(INPUTS)
    for command, cls in SOURCES.items():
        assert cls.command == command


@pytest.mark.parametrize("command", sorted(SOURCES))
def test_each_registered_source_builds_through_run_build(command: str, tmp_path: Path) -> None:
    source = INPUTS[command](tmp_path)
    assert isinstance(source, SOURCES[command])
    out = tmp_path / "ds"
    manifest = run_build(source, out, name=f"test-{command}", seed=3, fractions=(1.0, 0.0, 0.0))
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    # the common keys, the same for every source
    assert manifest["name"] == f"test-{command}"
    assert manifest["command"] == f"voxqa build {command}"
    assert manifest["source"] == source.name
    assert manifest["seed"] == 3
    common_options = {k: manifest["options"][k] for k in ("seed", "split_fractions", "strict")}
    assert common_options == {"seed": 3, "split_fractions": [1.0, 0.0, 0.0], "strict": False}
    assert manifest["splits"]["unit"] == source.split_unit
    assert manifest["volume_frames"] == source.frames.manifest()  # every source records its frame policy
    assert manifest["box_convention"]["format"] == "pixel_xyxy"  # common, plus the source's frame orientation
    assert "frame_orientation" in manifest["box_convention"]
    # the items written are the ones counted and audited, from the source's families
    items = read_items(out)
    studies = read_studies(out)
    assert items and manifest["counts"]["items"] == len(items)
    assert manifest["counts"]["studies"] == len(studies)
    assert {s.source for s in studies} <= {source.name, "segmentation"}  # reports are built on segmentations
    assert (out / "audit.json").is_file() and manifest["audit"]
    assert (out / "build_report.json").is_file()


def test_frame_policy_and_margins_are_recorded_from_their_one_home(tmp_path: Path) -> None:
    knee = _knee(tmp_path)
    manifest = run_build(knee, tmp_path / "knee_ds", name="k", fractions=(1.0, 0.0, 0.0))
    assert manifest["volume_frames"] == {"cap": 4, "rule": VOLUME_FRAMES_RULE} == knee.frames.manifest()
    assert manifest["options"]["frames"] == 4
    seg = build_segmentation([_seg_spec(tmp_path)], tmp_path / "seg_ds", fractions=(1.0, 0.0, 0.0))
    assert seg["volume_frames"] == DEFAULT_FRAMES.manifest()
    assert seg["spatial_margins"] == MARGINS.manifest()
    assert seg["spatial_margins"]["min_centroid_separation_mm"] == MARGINS.min_centroid_separation_mm


def test_the_build_entry_point_is_run_build_with_its_source(tmp_path: Path) -> None:
    """``build_segmentation`` is a thin call: the same bytes as run_build on the source."""
    spec = _seg_spec(tmp_path)
    build_segmentation([spec], tmp_path / "a", seed=2)
    run_build(SegmentationSource(specs=[spec]), tmp_path / "b", name="segmentation", seed=2)
    for name in ("items.jsonl", "studies.jsonl", "manifest.json", "build_report.json", "audit.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_the_audit_takes_the_frame_policy_from_its_home_not_from_render() -> None:
    code = "import sys, voxqa.dataset.audit; print('voxqa.render' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"


def test_voxqa_build_has_one_command_per_registered_source() -> None:
    """The command line and the registry agree: `voxqa build NAME` exists exactly for the
    registered sources, so a new source cannot be registered without its command (or the reverse)."""
    import typer.main

    from voxqa.cli import build_app

    commands = set(typer.main.get_command(build_app).list_commands(None))
    assert commands == set(SOURCES)
