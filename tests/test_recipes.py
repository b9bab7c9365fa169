"""`render --recipe`: model inputs of the documented shapes, with a known structure where its box says."""

from __future__ import annotations

import hashlib
import math
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from voxqa.build import build_fastmri_plus, build_segmentation
from voxqa.dataset.folder import STUDIES, read_studies, write_jsonl
from voxqa.phantom import write_phantom, write_segmentation_phantom
from voxqa.model_inputs import (
    RECIPES,
    RecipeRefused,
    Transform,
    box_from_model,
    box_to_model,
    from_m3d_normalized,
    m3d_normalized,
    render_recipe,
)
from voxqa.model_inputs.base import STORED_AXES, resize
from voxqa.schema import Box3D
from voxqa.sources.segmentation import SegSpec

SHAPES = {
    "m3d": ((1, 32, 256, 256), np.float32),
    "med3dvlm": ((128, 256, 256), np.float32),
    "radfm": ((3, 512, 512, 40), np.float32),  # RadFM: 40 frames -> the multiple of 4 nearest, at most 64
    "merlin": ((224, 224, 160), np.float32),
    "ctchat": ((240, 480, 480), np.float32),
    "medgemma-ct": ((40, 896, 896, 3), np.uint8),  # 40 <= 85 frames: each shown once, none repeated
    "lingshu": ((32, 50, 60, 3), np.uint8),  # native frames of the phantom: 60 x 50 pixels
}
MARKER = "kidney_left"


@pytest.fixture(scope="module")
def marker(tmp_path_factory) -> Path:
    """The CT phantom stored with permuted and flipped axes, its left kidney at +1000 HU, the
    rest of the body at -990 HU (just above air, so edges stay midway) and the air around it at -1000 HU: a bright marker whose box the
    build measured independently, inside a body that M3D's foreground crop cuts to."""
    tmp = tmp_path_factory.mktemp("recipes")
    paths = write_segmentation_phantom(tmp / "src", axes=(2, 0, 1), flips=(True, False, True))
    labels = nib.load(paths["labels"])
    names = {v: int(k) for k, v in json.loads(paths["label_names"].read_text()).items()}
    body = np.asarray(nib.load(paths["image"]).dataobj) > -500  # the phantom: -100 HU + noise in the body
    image = np.where(np.asarray(labels.dataobj) == names[MARKER], 1000.0,
                     np.where(body, -990.0, -1000.0)).astype(np.float32)
    nib.save(nib.Nifti1Image(image, labels.affine), paths["image"])
    build_segmentation([SegSpec(study_id="ct", image=paths["image"], labels=paths["labels"],
                                label_names=paths["label_names"], modality="CT")], tmp / "ds",
                       fractions=(1.0, 0.0, 0.0))
    return tmp / "ds"


@pytest.fixture(scope="module")
def single(marker: Path, tmp_path_factory) -> Path:
    """The marker dataset without its mirrored twin: the large recipes written once (its
    manifest says where the build's inputs lie, so render may read the volume)."""
    out = tmp_path_factory.mktemp("single")
    write_jsonl(out / STUDIES, [s for s in read_studies(marker) if s.id == "ct"])
    shutil.copy(marker / "manifest.json", out / "manifest.json")
    return out


def _marker_box(study) -> Box3D:
    (finding,) = [f for f in study.findings if f.label == MARKER]
    return finding.box3d


def _spatial(array: np.ndarray, transform: Transform) -> np.ndarray:
    """The array without its channel axes (first channel: the widest window for RGB)."""
    return array[tuple(slice(None) if a is not None else 0 for a in transform.axes)]


def _check_marker(folder: Path, record: dict, study) -> list[tuple[float, float]]:
    """Assert the lit marker spans, per model axis, the box box_to_model predicts (within a
    voxel); returns the prediction."""
    transform = Transform.from_json(record["transform"])
    array = np.load(folder / record["file"], mmap_mode="r")
    assert array.shape == transform.shape
    spatial = _spatial(array, transform)
    lit = spatial >= (float(spatial.min()) + float(spatial.max())) / 2
    predicted = box_to_model(_marker_box(study), transform)
    for axis, (lo, hi) in enumerate(predicted):
        other = tuple(d for d in range(spatial.ndim) if d != axis)
        hits = np.flatnonzero(lit.any(axis=other))
        assert abs(hits[0] - lo) <= 1 and abs(hits[-1] + 1 - hi) <= 1, (study.id, axis, hits[[0, -1]], lo, hi)
    return predicted


def _centre_x(record: dict, predicted: list[tuple[float, float]]) -> float:
    """Centre of the box along the model axis showing stored x, as a fraction of that axis."""
    axes = [a for a in record["transform"]["axes"] if a is not None]
    ((lo, hi), size), = [(p, a["size"]) for a, p in zip(axes, predicted, strict=False) if a["from"] == "x"]
    return (lo + hi) / 2 / size


@pytest.mark.parametrize("name", list(SHAPES))
def test_recipe_shape_and_the_marker_where_its_box_maps(single: Path, name: str) -> None:
    summary = render_recipe(single, name)
    assert summary["counts"] == {"studies": 1, "written": 1, "refused": 0, "failed": 0}
    (study,) = read_studies(single)
    record = summary["studies"]["ct"]
    shape, dtype = SHAPES[name]
    assert tuple(record["shape"]) == shape and record["dtype"] == np.dtype(dtype).name
    assert np.load(single / record["file"], mmap_mode="r").dtype == dtype
    predicted = _check_marker(single, record, study)
    # what lies outside the stored volume on the model grid is padding: air (-1000 HU, the
    # clip minimum) normalised like every voxel, never 0 HU or a type code
    transform = Transform.from_json(record["transform"])
    spatial = _spatial(np.load(single / record["file"], mmap_mode="r"), transform)
    padded = 0
    for axis, a in enumerate(transform.spatial):
        lo, hi = sorted((a.to_model(0), a.to_model(transform.stored[STORED_AXES.index(a.source)])))
        outside = np.r_[0:math.floor(lo), math.ceil(hi):a.size]
        if len(outside):
            assert np.all(np.take(spatial, outside, axis=axis) == record["intensity"]["to"][0])
            padded += len(outside)
    assert (padded > 0) == (name in ("merlin", "ctchat"))  # the phantom spans 240 x 200 x 200 mm
    if padded:
        assert record["pad_value"] == -1000.0
    # the left kidney lies on the patient's left: in Merlin's and CT-CLIP's RAS order x grows
    # towards the patient's right; in the stored (radiological) order the patient's left is on
    # the image right
    assert (_centre_x(record, predicted) < 0.5) == (name in ("merlin", "ctchat"))


@pytest.mark.parametrize("name", ["m3d", "merlin"])
def test_mirrored_twin_shows_the_marker_on_the_other_side(marker: Path, name: str) -> None:
    summary = render_recipe(marker, name)
    studies = {s.id: s for s in read_studies(marker)}
    sides = {sid: _centre_x(record, _check_marker(marker, record, studies[sid]))
             for sid, record in summary["studies"].items()}
    assert sides.keys() == {"ct", "ct.mirrored"}
    assert (sides["ct"] < 0.5) != (sides["ct.mirrored"] < 0.5)


def test_box_round_trips(marker: Path) -> None:
    study = {s.id: s for s in read_studies(marker)}["ct"]
    box = _marker_box(study)
    for name, recipe in RECIPES.items():
        transform = recipe.plan((40, 50, 60), (5.0, 4.0, 4.0))
        assert box_from_model(box_to_model(box, transform), transform) == box, name
        # an integer model box covering it comes back within one model step of it
        outer = [(np.floor(lo), np.ceil(hi)) for lo, hi in box_to_model(box, transform)]
        back = box_from_model(outer, transform)
        steps = {a.source: np.ceil(1 / abs(a.scale)) for a in transform.spatial}
        got = {"frame": (back.frame_start, back.frame_end + 1), "x": back.box[0::2], "y": back.box[1::2]}
        want = {"frame": (box.frame_start, box.frame_end + 1), "x": box.box[0::2], "y": box.box[1::2]}
        for axis, step in steps.items():
            assert np.all(np.abs(np.subtract(got[axis], want[axis])) <= step), (name, axis)
    m3d = RECIPES["m3d"].plan((40, 50, 60), None)
    x0, y0, x1, y1 = box.box
    assert m3d_normalized(box, m3d) == pytest.approx(
        [box.frame_start / 40, y0 / 50, x0 / 60, (box.frame_end + 1) / 40, y1 / 50, x1 / 60])
    assert from_m3d_normalized(m3d_normalized(box, m3d), m3d) == box
    # never empty: a zero-size answer, and one in the padding beyond the volume, give one voxel
    merlin = RECIPES["merlin"].plan((40, 50, 60), (5.0, 4.0, 4.0))
    assert box_from_model([(101, 101), (0, 3), (158, 160)], merlin) == Box3D(
        frame_start=39, frame_end=39, box=(34, 49, 35, 50))


def test_rerun_is_byte_identical_and_resumes(marker: Path) -> None:
    out = marker / "recipes" / "merlin"

    def digest() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}

    render_recipe(marker, "merlin")
    first = digest()
    assert render_recipe(marker, "merlin")["counts"]["written"] == 0  # resumed: nothing redone
    shutil.rmtree(out)
    assert render_recipe(marker, "merlin", workers=2)["counts"]["written"] == 2
    assert digest() == first and set(first) == {"ct.npy", "ct.record.json", "ct.mirrored.npy",
                                                "ct.mirrored.record.json", "recipe.json"}


def test_fastmri_without_geometry_is_refused_for_hu_and_spacing(tmp_path: Path) -> None:
    src = write_phantom(tmp_path / "src", n=2, seed=1)
    build_fastmri_plus([(src["annotations"], src["file_list"])], tmp_path / "ds", volumes=src["volumes"],
                       fractions=(1.0, 0.0, 0.0))
    ids = sorted(s.id for s in read_studies(tmp_path / "ds"))
    for name, reason in (("merlin", "needs physical voxel spacing"), ("medgemma-ct", "needs CT Hounsfield units")):
        summary = render_recipe(tmp_path / "ds", name)
        assert summary["counts"] == {"studies": 0, "written": 0, "refused": 2, "failed": 0}
        for sid in ids:
            message = summary["not_rendered"]["refused"][sid]
            assert sid in message and reason in message and "\n" not in message
    with pytest.raises(RecipeRefused, match="no patient geometry"):
        render_recipe(tmp_path / "ds", "ctchat", strict=True)
    # a recipe that needs neither resizes the frames as stored
    summary = render_recipe(tmp_path / "ds", "m3d")
    assert summary["counts"]["studies"] == 2
    array = np.load(tmp_path / "ds" / summary["studies"][ids[0]]["file"])
    assert array.shape == (1, 32, 256, 256) and 0.0 <= array.min() < array.max() <= 1.0


def test_unknown_recipe_is_named(marker: Path) -> None:
    with pytest.raises(ValueError, match="unknown recipe 'm3' .*m3d"):
        render_recipe(marker, "m3")


def test_resize_equals_scipy_zoom_with_edges_aligned() -> None:
    data = np.random.default_rng(0).normal(size=(7, 12, 5)).astype(np.float32)
    for shape in ((3, 30, 5), (16, 5, 11), (7, 12, 5)):
        expected = ndimage.zoom(data, np.divide(shape, data.shape), order=1, mode="nearest", grid_mode=True)
        assert resize(data, shape) == pytest.approx(expected, abs=1e-5)


def test_cli_render_recipe_warns_about_refused_studies(tmp_path: Path) -> None:
    """`voxqa render --recipe`: one warning line naming what was skipped; --strict stops."""
    from typer.testing import CliRunner

    from voxqa.cli import app

    src = write_phantom(tmp_path / "src", n=2, seed=1)
    build_fastmri_plus([(src["annotations"], src["file_list"])], tmp_path / "ds", volumes=src["volumes"],
                       fractions=(1.0, 0.0, 0.0))
    runner = CliRunner()
    res = runner.invoke(app, ["render", str(tmp_path / "ds"), "--recipe", "merlin"], terminal_width=300)
    assert res.exit_code == 0, res.output
    assert "0 studies" in res.output and "warning: not rendered: 2 refused" in res.output
    assert "needs physical voxel spacing" in res.output
    res = runner.invoke(app, ["render", str(tmp_path / "ds"), "--recipe", "merlin", "--strict"], terminal_width=300)
    assert res.exit_code == 2 and "needs physical voxel spacing" in res.output
    res = runner.invoke(app, ["render", str(tmp_path / "ds"), "--recipe", "m3"], terminal_width=300)
    assert res.exit_code == 2 and "m3d" in res.output


def test_published_depth_and_slice_sampling_rules() -> None:
    """Hand-computed: RadFM's depth (radiopaedia.py caps at 64, multi_dataset_test.py picks the
    nearest of 4, 8, ..., 64 with a strict '<', so a tie keeps the smaller) and the frames MedGemma's
    CT notebook / the CT-SpatialVQA harness show (all of at most N, else round(linspace))."""
    from voxqa.model_inputs.base import frames_sampled, sampled_axis
    from voxqa.model_inputs.volume import nearest_step

    assert [nearest_step(n, 4, 64) for n in (1, 2, 6, 7, 40, 63, 64, 65, 128, 300)] == [
        4, 4, 4, 8, 40, 64, 64, 64, 64, 64]
    assert frames_sampled(40, 85) == list(range(40))  # never a frame repeated
    assert frames_sampled(10, 4) == [0, 3, 6, 9]
    assert frames_sampled(9, 4) == [0, 3, 5, 8]  # 0, 2.67, 5.33, 8
    assert len(frames_sampled(300, 85)) == 85 and frames_sampled(300, 85)[-1] == 299
    for n, count in ((9, 4), (300, 85), (100, 32)):  # model slice s shows frame round(s * (n-1)/(count-1))
        axis = sampled_axis(n, count)
        for s, f in enumerate(frames_sampled(n, count)):
            assert abs(axis.to_model(f + 0.5) - (s + 0.5)) <= 0.5 * axis.scale + 1e-9
    assert RECIPES["radfm"].plan((128, 50, 60), None).shape == (3, 512, 512, 64)  # was 128
    assert RECIPES["medgemma-ct"].plan((40, 50, 60), None).shape == (40, 896, 896, 3)  # was 85, repeating
    assert RECIPES["medgemma-ct"].windows[0].lo == -1024.0 and RECIPES["lingshu"].windows[0].hi == 1024.0


def test_foreground_crop_is_in_the_transform_the_m3d_reader_uses(single: Path) -> None:
    """M3D and Med3DVLM crop to the foreground first (MONAI CropForeground after min-max): the
    record's transform holds the crop, ``study_transform`` (what eval reads M3D boxes with)
    computes the same one, and a box read through it comes back to the kidney's stored box."""
    from voxqa.model_inputs import study_transform

    (study,) = read_studies(single)
    box = _marker_box(study)
    for name in ("m3d", "med3dvlm"):
        record = render_recipe(single, name)["studies"]["ct"]
        assert record["foreground"] == {"frame": [0, 40], "y": [1, 49], "x": [1, 59]}  # the body, not the air
        transform = study_transform(study, name)
        assert transform == Transform.from_json(record["transform"])
        assert from_m3d_normalized(m3d_normalized(box, transform), transform) == box
        # read on the uncropped grid, the same answer lands off the kidney
        whole = RECIPES[name].plan(transform.stored, None)
        assert from_m3d_normalized(m3d_normalized(box, transform), whole) != box


def test_ctchat_shows_ras_axes_as_ct_clip_reads_a_nifti(single: Path) -> None:
    """CT-CLIP (data_inference_nii.py L98-161) feeds get_fdata()'s axes as (k, i, j): rows are the
    file's axis 0, columns its axis 1. voxqa feeds the RAS+ canonical volume that way (its
    orientation fix kept), not its radiological (y, x) frames: the marker's offset from the
    grid centre, in mm, is the kidney's along RAS i (rows) and j (columns)."""
    (study,) = read_studies(single)
    record = render_recipe(single, "ctchat")["studies"]["ct"]
    array = np.load(single / record["file"], mmap_mode="r")
    lit = np.argwhere(array > 0.5)  # the kidney: +1000 HU -> 1.0
    canonical = nib.as_closest_canonical(nib.load(study.volume.path))
    ras = np.asarray(canonical.dataobj)
    kidney = np.argwhere(ras > 500)
    spacing = canonical.header.get_zooms()
    for axis, (ras_axis, mm) in enumerate(((2, 1.5), (0, 0.75), (1, 0.75))):
        model_mm = (lit[:, axis].mean() + 0.5 - array.shape[axis] / 2) * mm
        ras_mm = (kidney[:, ras_axis].mean() + 0.5 - ras.shape[ras_axis] / 2) * spacing[ras_axis]
        assert abs(model_mm - ras_mm) <= 2 * mm, (axis, model_mm, ras_mm)


def test_m3d_refseg_percentiles_crop_and_file_axes() -> None:
    """M3D's grounding data (m3d_refseg_data_prepare.py L11-15, L26): NIfTI axes (k, i, j),
    percentiles 0.5-99.5 to [0, 1], CropForeground, Resize. On a stack whose bright cube is 2 % of
    the volume (so the 99.5th percentile is the cube), the cube lies where its box maps."""
    stack = np.full((20, 30, 40), -1000.0, np.float32)  # (frame, y, x), radiological
    stack[2:18, 3:27, 4:36] = -990.0  # the body: the foreground crop
    stack[5:12, 6:15, 25:33] = 1000.0  # the cube: frames 5-11, y 6-15, x 25-33 (patient left)
    recipe = RECIPES["m3d-refseg"]
    array, transform, extra = recipe.make(stack, None, "CT")
    assert array.shape == (1, 32, 256, 256) and extra["foreground"] == {"frame": [2, 18], "y": [3, 27], "x": [4, 36]}
    assert [a.source for a in transform.spatial] == ["frame", "x", "y"]  # rows: RAS i, columns: RAS j
    assert [a.scale < 0 for a in transform.spatial] == [False, True, True]
    box = Box3D(frame_start=5, frame_end=11, box=(25, 6, 33, 15))
    lit = array[0] > 0.5
    for axis, (lo, hi) in enumerate(box_to_model(box, transform)):
        hits = np.flatnonzero(lit.any(axis=tuple(d for d in range(3) if d != axis)))
        assert abs(hits[0] - lo) <= 1 and abs(hits[-1] + 1 - hi) <= 1, (axis, hits[[0, -1]], lo, hi)
    assert from_m3d_normalized(m3d_normalized(box, transform), transform) == box
