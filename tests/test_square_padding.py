"""Profiles measured on the image padded to a square (medgemma, shikra, llava) show the model
that padded square everywhere: eval requests, exports and ``voxqa train``.

The model stand-in below answers as a model does: it finds the frame's content in the image it
is shown and writes the box in fractions of that image. Shown the raw 48 x 96 frame, as voxqa
did before, the issue's case (a 320 x 640 frame, box (20, 40, 120, 300)) read back as
(-120, 40, 80, 300), IoU 0.25; shown the padded square, every box reads back exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from voxqa.boxes.geometry import iou
from voxqa.boxes.profiles import PROFILES, Profile, get_profile
from voxqa.dataset.folder import read_items, read_studies
from voxqa.eval.models.base import ModelAdapter
from voxqa.eval.prompts import Prompt, build_prompt
from voxqa.eval.run import PREDICTIONS, RUN, RunConfig, run_eval
from voxqa.export import SUMMARY, export_dataset
from voxqa.padding import pad_to_square, padding_record, square_png
from voxqa.render import map_box
from voxqa.schema import Item
from voxqa.train.data import TrainDataError, load_examples

SQUARE = ("medgemma", "shikra", "llava")
FILLS = {"medgemma": (0, 0, 0), "shikra": (255, 255, 255), "llava": (122, 116, 104)}


def _dataset(root: Path, shape: tuple[int, int, int]) -> Path:
    from voxqa.build import build_fastmri_plus
    from voxqa.phantom import write_phantom
    from voxqa.render import RenderSettings, render_dataset

    p = write_phantom(root / "src", n=6, seed=1, shape=shape)
    out = root / "ds"
    build_fastmri_plus([(p["annotations"], p["file_list"])], out, volumes=p["volumes"], fractions=(0.5, 0.25, 0.25))
    render_dataset(out, RenderSettings(size=96, context=2), workers=1)
    return out


@pytest.fixture(scope="module", params=["tall", "wide"])
def frames(request, tmp_path_factory) -> Path:
    """Knee phantoms rendered as 48 x 96 (tall) and 96 x 48 (wide) frames."""
    shape = (12, 96, 48) if request.param == "tall" else (12, 48, 96)
    return _dataset(tmp_path_factory.mktemp(request.param), shape)


def _seen_box(shown: Path, raw: Path, box: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Where ``box`` of the raw frame lies in the image shown (found by locating the frame's
    pixels in it), and the shown image's size."""
    with Image.open(shown) as s, Image.open(raw) as r:
        seen, frame = np.asarray(s.convert("RGB")).astype(int), np.asarray(r.convert("RGB")).astype(int)
    (H, W), (h, w) = seen.shape[:2], frame.shape[:2]
    spots = [(ox, oy) for oy in range(H - h + 1) for ox in range(W - w + 1)
             if np.array_equal(seen[oy:oy + h, ox:ox + w], frame)]
    assert len(spots) == 1, spots
    ox, oy = spots[0]
    return (box[0] + ox, box[1] + oy, box[2] + ox, box[3] + oy), (W, H)


def _numbers_seen(profile: Profile, shown: Path, raw: Path, box) -> list:
    """The box as a model writes it: in the profile's numbers of the image it sees."""
    seen, (W, H) = _seen_box(shown, raw, box)
    return dataclasses.replace(profile.space, pad="none").encode(seen, W, H)


def _writes_what_it_sees(profile: Profile, shown: Path, raw: Path, box, label: str = "finding") -> str:
    return profile.syntax.write(_numbers_seen(profile, shown, raw, box), label)


@pytest.mark.parametrize("name", SQUARE)
@pytest.mark.parametrize("size,box,exact", [
    ((320, 640), (20, 40, 120, 300), False), ((640, 320), (40, 20, 300, 120), False),  # the issue's case
    ((320, 640), (32, 64, 128, 320), True), ((640, 320), (64, 32, 320, 128), True),  # on every grid (llava: 0.01)
])
def test_the_issue_case_reads_back_exactly_when_the_square_is_shown(tmp_path, name, size, box, exact) -> None:
    profile = PROFILES[name]
    w, h = size
    raw = tmp_path / "frame.png"
    pixels = np.random.default_rng(0).integers(1, 255, (h, w), dtype=np.uint8)  # no pixel equals a fill
    Image.fromarray(pixels).save(raw)
    # before: the raw frame shown, read on the padded square
    before = profile.decode(_numbers_seen(profile, raw, raw, box), w, h)
    assert iou(before, box) < 0.3  # (-120, 40, 80, 300): IoU 0.25 on the tall frame
    # now: the padded copy shown; the target voxqa trains on is what the model sees
    shown = square_png(raw, tmp_path / "run", profile.pad_fill)
    with Image.open(shown) as im:
        assert im.size == (max(size), max(size)) and im.getpixel((0, 0)) == FILLS[name]
    seen = _numbers_seen(profile, shown, raw, box)
    assert seen == profile.encode(box, w, h)  # the target voxqa writes is what the model sees
    back = profile.decode(seen, w, h)
    assert max(abs(a - b) for a, b in zip(back, box, strict=True)) <= profile.space.max_error(w, h)
    assert iou(back, box) == 1.0 if exact or name != "llava" else iou(back, box) > 0.95


def test_pad_to_square_is_expand2square() -> None:
    """LLaVA's expand2square (llava/mm_utils.py L152-163): the image centred, offset (side - w) // 2."""
    im = Image.fromarray(np.full((5, 2), 200, np.uint8))
    out = np.asarray(pad_to_square(im, (1, 2, 3)))
    assert out.shape == (5, 5, 3)
    assert (out[:, 1:3] == 200).all() and (out[:, 0] == (1, 2, 3)).all() and (out[:, 3:] == (1, 2, 3)).all()
    assert pad_to_square(Image.new("L", (4, 4)), (9, 9, 9)).size == (4, 4)  # a square stays as it is


class SeesTheImage(ModelAdapter):
    """Answers box questions with the gold boxes as they lie in the images it is shown."""

    def __init__(self, folder: Path, profile: Profile):
        self.folder, self.profile, self.spec = folder.resolve(), profile, "py:sees"
        self.sizes = {s.id: s.frame_size for s in read_studies(folder)}

    def identity(self) -> dict[str, Any]:
        return {"spec": self.spec}

    async def answer(self, prompt: Prompt, item: Item) -> str:
        if item.answer.type != "boxes":
            return "no"
        shown = [Path(v) for k, v in prompt.parts if k == "image"]
        raw = {im.frame: self.folder / im.path for im in item.images or []}
        at = {im.frame: i for i, im in enumerate(item.images or [])}
        size = (item.images[0].width, item.images[0].height)
        return "\n".join(
            f"Frame {b.frame}: " + _writes_what_it_sees(self.profile, shown[at[b.frame]], raw[b.frame],
                                                        map_box(b.box, self.sizes[item.study_id], size))
            for b in item.answer.value if b.frame in at)


@pytest.mark.parametrize("name", SQUARE)
def test_eval_shows_the_square_and_reads_every_box_back(frames, tmp_path, name) -> None:
    profile = PROFILES[name]
    out = tmp_path / "run"
    cfg = RunConfig(dataset=frames, out=out, split=None, tasks=("localization", "detection"), profile=name)
    items = {it.id: it for it in read_items(frames) if it.images and it.answer.type == "boxes"
             and {b.frame for b in it.answer.value} <= {im.frame for im in it.images}}
    assert items
    asyncio.run(run_eval(cfg, SeesTheImage(frames, profile)))
    assert json.loads((out / RUN).read_text())["identity"]["image_padding"] == padding_record(profile)
    sizes = {s.id: s.frame_size for s in read_studies(frames)}
    checked = 0
    for line in (out / PREDICTIONS).read_text().splitlines():
        rec = json.loads(line)
        if rec["item_id"] not in items:
            continue
        it = items[rec["item_id"]]
        assert rec["parse_ok"], rec
        size = (it.images[0].width, it.images[0].height)
        gold = sorted((b.frame, map_box(b.box, sizes[it.study_id], size)) for b in it.answer.value)
        got = sorted((b["frame"], tuple(b["box"])) for b in rec["parsed"])
        assert [f for f, _ in got] == [f for f, _ in gold]
        assert all(iou(a, b) > 0.9 for (_, a), (_, b) in zip(got, gold, strict=True)), (got, gold)
        checked += len(gold)
    assert checked == sum(len(it.answer.value) for it in items.values())
    # every image the run showed is a padded square under the run folder
    shown = list((out / "square").glob("*.png"))
    assert shown and all(Image.open(p).size[0] == Image.open(p).size[1] == 96 for p in shown)


@pytest.mark.parametrize("fmt", ["trl", "llamafactory", "hf"])
def test_exports_reference_the_padded_square(frames, tmp_path, fmt) -> None:
    profile = PROFILES["medgemma"]
    summary = export_dataset(frames, fmt, tmp_path / "out", convention="medgemma")
    assert summary["image_padding"] == padding_record(profile)
    assert json.loads((tmp_path / "out" / SUMMARY).read_text())["image_padding"] == summary["image_padding"]
    if fmt == "trl":
        rows = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    elif fmt == "llamafactory":
        rows = json.loads((tmp_path / "out" / "voxqa_train.json").read_text())
    else:
        return  # hf embeds the padded PNGs (checked by size in test_train_rows_are_padded_like_eval)
    for r in rows:
        for p in r["images"]:
            assert Path(p).parent == (tmp_path / "out" / "square").resolve()
            assert Image.open(p).size == (96, 96)


def test_train_rows_are_padded_like_eval(frames, tmp_path) -> None:
    """``voxqa train`` from a dataset shows the same padded copies eval shows; a trl export
    written before padding existed (no ``image_padding``) is refused."""
    ex = load_examples(frames, profile="llava", padded=tmp_path / "train")
    sizes = {s.id: s.frame_size for s in read_studies(frames)}
    items = {it.id: it for it in read_items(frames)}
    for row in ex.rows[:10]:
        it = items[row["id"]]
        want = build_prompt(it, frames, sizes[it.study_id], get_profile("llava"), "structured", padded=tmp_path / "train")
        assert row["images"] == [v for k, v in want.parts if k == "image"]
        assert all(Image.open(p).size == (96, 96) for p in row["images"])
    export_dataset(frames, "trl", tmp_path / "trl", convention="llava")
    assert load_examples(tmp_path / "trl", padded=tmp_path / "t2").profile.name == "llava"
    summary = json.loads((tmp_path / "trl" / SUMMARY).read_text())
    del summary["image_padding"]
    (tmp_path / "trl" / SUMMARY).write_text(json.dumps(summary))
    with pytest.raises(TrainDataError, match="padded to a square"):
        load_examples(tmp_path / "trl")


def test_unpadded_profiles_show_the_rendered_png(frames, tmp_path) -> None:
    it = next(i for i in read_items(frames) if i.images)
    size = {s.id: s.frame_size for s in read_studies(frames)}[it.study_id]
    p = build_prompt(it, frames, size, PROFILES["gemini"], padded=tmp_path)
    assert [v for k, v in p.parts if k == "image"] == [str(frames.resolve() / im.path) for im in it.images]
    assert padding_record(PROFILES["gemini"]) is None and not (tmp_path / "square").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
