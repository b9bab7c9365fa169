"""`voxqa render`: PNGs drawn as the boxes were stored, image boxes on the structures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import rendered_phantom
from PIL import Image

from voxqa.build import build_fastmri_plus, build_segmentation
from voxqa.dataset.folder import read_items, read_studies
from voxqa.anatomy.frames import axial_frame
from voxqa.io import open_volume
from voxqa.phantom import write_phantom, write_segmentation_phantom
from voxqa.dataset.frame_policy import FramePolicy
from voxqa.render import RENDER, RenderSettings, map_box, output_size, parse_window, render_dataset
from voxqa.sources.segmentation import SegSpec


@pytest.fixture(scope="module")
def fastmri(tmp_path_factory) -> Path:
    return rendered_phantom(tmp_path_factory.mktemp("render"), n=8, seed=3, size=200, context=6,
                            workers=2)


def _png(folder: Path, rel: str) -> np.ndarray:
    return np.asarray(Image.open(folder / rel), dtype=float)


def test_image_boxes_sit_on_the_phantom_lesions(fastmri) -> None:
    n = 0
    for it in read_items(fastmri):
        if it.task != "localization" or it.level != "frame":
            continue
        (img,) = it.images
        assert (img.width, img.height) == (200, 200)  # 128 x 128 frames, longer side 200
        pix = _png(fastmri, img.path)
        tissue = np.median(pix[pix > 60])
        for e in it.evidence:
            if e.box[1] == 0:
                continue  # the phantom's planted y = -1 box sits on the empty corner on purpose
            x0, y0, x1, y1 = e.image_box
            assert (x1 - x0) * 128 / 200 == pytest.approx(e.box[2] - e.box[0], abs=2)
            box = np.zeros(pix.shape, bool)
            box[y0:y1, x0:x1] = True
            ring = np.zeros(pix.shape, bool)
            ring[max(y0 - 5, 0):y1 + 5, max(x0 - 5, 0):x1 + 5] = True
            ring &= ~box
            inside = np.abs(pix[box] - tissue).mean()
            outside = np.abs(pix[ring] - tissue).mean()
            assert inside > 2 * outside and inside > 10, (it.id, inside, outside)
            n += 1
    assert n > 10


def test_images_per_item(fastmri) -> None:
    items = read_items(fastmri)
    studies = {s.id: s for s in read_studies(fastmri)}
    per_study: dict[str, list[int]] = {}
    for it in items:
        assert it.images, it.id
        frames = [im.frame for im in it.images]
        if it.level == "frame":
            assert frames == it.frames
        else:  # one frame set per study, a function of its frame count only
            assert per_study.setdefault(it.study_id, frames) == frames
            assert frames == FramePolicy(6).frames(studies[it.study_id].frame_count)
        for im in it.images:
            assert (fastmri / im.path).is_file()
        for e in it.evidence:
            assert e.image_box is not None


def test_resume_determinism_and_settings(fastmri, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(fastmri, copy)
    again = render_dataset(copy, RenderSettings(size=200, context=6), workers=1)
    assert again["counts"]["frames_written"] == 0  # everything kept
    png = next((copy / "frames").rglob("*.png"))
    png.write_bytes(png.read_bytes()[:50])  # corrupt one frame
    again = render_dataset(copy, RenderSettings(size=200, context=6), workers=1)
    assert again["counts"]["frames_written"] == 1
    assert png.read_bytes() == (fastmri / png.relative_to(copy)).read_bytes()  # deterministic
    assert (copy / "items.jsonl").read_bytes() == (fastmri / "items.jsonl").read_bytes()
    changed = render_dataset(copy, RenderSettings(size=100, context=6), workers=1)
    assert changed["counts"]["frames_written"] == changed["counts"]["frames"]
    assert json.loads((copy / RENDER).read_text())["settings"]["size"] == 100


def test_box_mapping_and_windows() -> None:
    assert map_box((10, 20, 30, 40), (100, 100), (100, 100)) == (10, 20, 30, 40)
    assert map_box((10, 20, 31, 41), (100, 100), (50, 50)) == (5, 10, 16, 21)  # covering box
    assert map_box((0, 0, 128, 128), (128, 128), (200, 200)) == (0, 0, 200, 200)
    assert output_size(320, 160, 256) == (256, 128)
    assert parse_window("lung") == (-600.0, 1500.0) and parse_window("40,400") == (40.0, 400.0)
    with pytest.raises(ValueError, match="abdomen"):
        parse_window("soft")


def test_segmentation_frames_are_radiological(tmp_path) -> None:
    p = write_segmentation_phantom(tmp_path / "src")
    build_segmentation([SegSpec(study_id="s", image=p["image"], labels=p["labels"],
                                label_names=p["label_names"], modality="CT")],
                       tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    render_dataset(tmp_path / "ds", RenderSettings(context=None), workers=1)
    labels = open_volume(p["labels"]).data
    names = {v: int(k) for k, v in json.loads(p["label_names"].read_text()).items()}
    n = 0
    for it in read_items(tmp_path / "ds"):
        # a mirrored twin's boxes are on the flipped volume
        lab = labels[::-1] if it.study_id.endswith(".mirrored") else labels
        for e in it.evidence:
            mask = axial_frame(lab, e.frame) == names[e.label]
            x0, y0, x1, y1 = e.image_box
            if it.id.endswith(":point") and (x1 - x0, y1 - y0) == (1, 1):
                assert mask[y0, x0]  # the point lies inside its structure
                continue
            ys, xs = np.nonzero(mask)
            assert tuple(e.image_box) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            n += 1
    assert n > 50
    # the liver (patient's right) is drawn on the image's left half, the spleen on the right
    items = read_items(tmp_path / "ds")
    box = {e.label: e.image_box for it in items for e in it.evidence if it.variant != "mirrored"}
    assert box["liver"][2] <= 40 and box["spleen"][0] >= 30  # 60 px wide frames


@pytest.mark.realdata
@pytest.mark.parametrize("image,labels,names", [
    ("totalsegmentator/example_ct_sm.nii.gz", "totalsegmentator/example_seg.nii.gz", None),
    # (dcmqi_ct3slice's liver fills all 3 slices: cut off, so it has no extent questions;
    # test_spatial checks its boxes on the DICOM pixels)
    ("pyradiomics/brain1_image.nrrd", "pyradiomics/brain1_label.nrrd", {"1": "brain_lesion"}),
])
def test_real_boxes_on_rendered_frames(shared_data, tmp_path, image, labels, names) -> None:
    names_path = None
    if names:
        names_path = tmp_path / "names.json"
        names_path.write_text(json.dumps(names))
    spec = SegSpec(study_id="r", image=shared_data / image, labels=shared_data / labels,
                   label_names=names_path)
    build_segmentation([spec], tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    render_dataset(tmp_path / "ds", RenderSettings(size=384), workers=1)
    lab = open_volume(shared_data / labels).data
    items = read_items(tmp_path / "ds")
    ids = {}
    if names:
        ids = {v: int(k) for k, v in names.items()}
    else:
        from voxqa.anatomy.labelnames import header_label_names
        ids = {v: k for k, v in header_label_names(shared_data / labels).items()}
    checked = 0
    for it in items:
        if it.task != "localization":
            continue
        paths = {im.frame: im.path for im in it.images}
        for e in it.evidence[:3]:
            # the label mask, drawn like the PNG (same frame, same resize), fills the image box
            mask = axial_frame(lab, e.frame) == ids[e.label]
            h, w = mask.shape
            pix = np.asarray(Image.open(tmp_path / "ds" / paths[e.frame]))
            scaled = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
                (pix.shape[1], pix.shape[0]), Image.Resampling.NEAREST)) > 0
            x0, y0, x1, y1 = e.image_box
            inside = scaled[y0:y1, x0:x1].sum()
            assert inside >= 0.95 * scaled.sum() and inside > 0, (e.label, e.frame)
            checked += 1
    assert checked > 0


def test_mp4_per_volume(tmp_path) -> None:
    import imageio_ffmpeg

    p = write_phantom(tmp_path / "src", n=2, seed=1, shape=(10, 63, 64))  # odd height: padded
    build_fastmri_plus([(p["annotations"], p["file_list"])], tmp_path / "ds", volumes=p["volumes"],
                       fractions=(1.0, 0.0, 0.0))
    summary = render_dataset(tmp_path / "ds", RenderSettings(context=None, video_fps=4), workers=1)
    for rec in summary["studies"].values():
        video = rec["video"]
        assert video["fps"] == 4 and video["frames"] == 10 and (video["width"], video["height"]) == (64, 64)
        reader = imageio_ffmpeg.read_frames(str(tmp_path / "ds" / video["path"]), pix_fmt="gray", bpp=1)
        meta = next(reader)
        assert tuple(meta["size"]) == (64, 64)
        frames = [np.frombuffer(f, np.uint8).reshape(64, 64) for f in reader]
        assert len(frames) == 10
        for k, frame in enumerate(frames):  # lossy, but the same picture as the PNG
            png = _png(tmp_path / "ds", rec["frames"][str(k)])
            assert np.abs(frame[:63].astype(float) - png).mean() < 12


def test_volume_frames_depend_on_the_frame_count_only() -> None:
    assert FramePolicy(16).frames(12) == list(range(12)) and FramePolicy(None).frames(12) == list(range(12))
    assert FramePolicy(4).frames(31) == [0, 10, 20, 30]
    assert FramePolicy(4).frames(None) == []
    assert len(FramePolicy(16).frames(45)) == 16


def _shown_frame_learner(train, held, features) -> float:
    """Logistic regression on which frame indices a volume-level item shows (its ``Frame k:``
    labels); held-out accuracy."""
    from sklearn.linear_model import LogisticRegression

    width = 1 + max(k for it in train + held for k in features(it))
    def x(items):
        return np.array([[k in features(it) for k in range(width)] for it in items], float)
    y = [it.answer.value for it in train]
    model = LogisticRegression(max_iter=1000).fit(x(train), y)
    return float(np.mean(model.predict(x(held)) == np.array([it.answer.value for it in held])))


def test_shown_frame_indices_do_not_predict_any_abnormality(tmp_path) -> None:
    """Rendered with fewer frames than the phantom's 12, the frames a volume-level item shows
    are a strict subset; they must be the same for a normal and an abnormal volume. The old
    rule (evenly spaced frames plus every evidence frame) is scored too, to show the learner
    finds that leak."""
    ds = rendered_phantom(tmp_path, n=40, seed=11, size=24, context=4, fractions=(0.5, 0.25, 0.25))
    items = [it for it in read_items(ds) if it.template == "detection/any_abnormality/volume"]
    train = [it for it in items if it.split == "train"]
    held = [it for it in items if it.split != "train"]
    assert len(train) >= 6 and len(held) >= 6
    shown = _shown_frame_learner(train, held, lambda it: {im.frame for im in it.images})
    assert shown == 0.5  # balanced per split and anatomy, and the features are all equal
    old = _shown_frame_learner(
        train, held, lambda it: {im.frame for im in it.images} | {e.frame for e in it.evidence}
    )
    assert old >= 0.9
