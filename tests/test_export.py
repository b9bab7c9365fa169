"""Exports load back in each format's own terms, and every exported box converts back to its
item's image box (exactly, or within the profile's stated rounding)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
import yaml
from helpers import rendered_phantom, rendered_segmentation

from voxqa.boxes.profiles import PROFILES, Profile, get_profile
from voxqa.dataset.folder import ITEMS, read_items, read_studies, write_jsonl
from voxqa.export import FORMATS, SUMMARY, export_dataset
from voxqa.render import map_box
from voxqa.schema import Item


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fastMRI+ phantom (128 px frames rendered at 200 px) and a segmentation phantom
    (60 x 50 frames rendered at 96 x 80: non-square, with box3d answers)."""
    root = tmp_path_factory.mktemp("export")
    knee = rendered_phantom(root, n=12, seed=0, size=200, context=8, fractions=(0.6, 0.2, 0.2))
    seg = rendered_segmentation(root, size=96, context=4)
    return {"knee": knee, "seg": seg}


@dataclass
class Row:
    """One exported record, read back the way its trainer would read it."""

    id: str
    user: str  # the user turn with "<image>" at each image
    images: list[str]
    target: dict  # the assistant JSON, placeholders filled
    convention: Profile  # the profile whose numbers the target's boxes are
    embedded: bool = False  # images stored inside the export (only their file names remain)


def _sharegpt_turns(messages: list[dict]) -> tuple[str, str]:
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert all(set(m) == {"role", "content"} for m in messages)
    return messages[0]["content"], messages[1]["content"]


def read_llamafactory(out: Path, convention: Profile) -> list[Row]:
    info = json.loads((out / "dataset_info.json").read_text())
    rows = []
    for name, entry in info.items():
        if not name.startswith("voxqa_"):
            continue
        assert entry == {
            "file_name": f"{name}.json", "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant"},
        }
        records = json.loads((out / entry["file_name"]).read_text())
        assert isinstance(records, list)
        for r in records:
            user, answer = _sharegpt_turns(r["messages"])
            assert "<image>" not in answer
            rows.append(Row(r["id"], user, r["images"], json.loads(answer), convention))
    return rows


def read_trl(out: Path, convention: Profile) -> list[Row]:
    rows = []
    for path in sorted(out.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            assert "messages" not in r  # prompt-completion: TRL masks the prompt
            (user,), (answer,) = r["prompt"], r["completion"]
            assert user["role"] == "user" and answer["role"] == "assistant"
            parts = user["content"]
            assert all(p == {"type": "image"} or (p["type"] == "text" and set(p) == {"type", "text"})
                       for p in parts)
            assert answer["content"][0]["type"] == "text" and len(answer["content"]) == 1
            text = "".join("<image>" if p["type"] == "image" else p["text"] for p in parts)
            rows.append(Row(r["id"], text, r["images"], json.loads(answer["content"][0]["text"]), convention))
    return rows


def _fill(text: str, refs: list[str], boxes: list[list]) -> str:
    ref_it, box_it = iter(refs), iter(boxes)
    return re.sub(r"<ref-object>|<bbox>",
                  lambda m: next(ref_it) if m.group(0) == "<ref-object>" else str(next(box_it)), text)


def read_swift(out: Path, convention: Profile) -> list[Row]:
    """Fills <ref-object> / <bbox> as ms-swift's template does: in text order, two counters,
    a box written as str(list) (its default, non-legacy format)."""
    rows = []
    for path in sorted(out.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            user, answer = _sharegpt_turns(r["messages"])
            objects = r["objects"]
            assert set(objects) == {"ref", "bbox", "bbox_type", "image_id"}
            assert objects["bbox_type"] == ("norm1" if convention.name == "norm1" else "real")
            text = user + "\x00" + answer
            assert text.count("<bbox>") == len(objects["bbox"]) == len(objects["image_id"])
            assert text.count("<ref-object>") == len(objects["ref"])
            assert all(0 <= i < len(r["images"]) for i in objects["image_id"])
            user, answer = _fill(text, objects["ref"], objects["bbox"]).split("\x00")
            rows.append(Row(r["id"], user, r["images"], json.loads(answer),
                            PROFILES["norm1" if convention.name == "norm1" else "pixel"]))
    return rows


def read_hf(out: Path, convention: Profile) -> list[Row]:
    dd = datasets.load_from_disk(str(out))
    assert isinstance(dd, datasets.DatasetDict)
    rows = []
    for split, ds in dd.items():
        assert ds.column_names == ["id", "split", "task", "subtask", "question", "options", "prompt",
                                   "answer", "images", "frames"]
        assert isinstance(ds.features["images"].feature, datasets.Image)
        for r in ds.cast_column("images", datasets.Sequence(datasets.Image(decode=False))):
            assert r["split"] == split and r["question"] in r["prompt"]
            assert len(r["images"]) == len(r["frames"]) == r["prompt"].count("<image>")
            paths = [im["path"] for im in r["images"]]
            embedded = all(im["bytes"] for im in r["images"])
            rows.append(Row(r["id"], r["prompt"], paths, json.loads(r["answer"]), convention, embedded))
    return rows


READERS = {"llamafactory": read_llamafactory, "trl": read_trl, "swift": read_swift, "hf": read_hf}


def _close(values: list, convention: Profile, image_box, w: int, h: int) -> None:
    if convention.answer_form == "points":  # a box's point is its centre: inside the box
        x, y = (v * side / 100 for v, side in zip(values, (w, h), strict=False))
        assert image_box[0] <= x <= image_box[2] and image_box[1] <= y <= image_box[3], (values, image_box)
        return
    back = convention.decode(values, w, h)
    bound = convention.space.max_error(w, h)
    assert max(abs(a - b) for a, b in zip(back, image_box, strict=False)) <= bound, (values, convention.name, image_box)
    if bound == 0:
        assert back == tuple(image_box)


def check_rows(folder: Path, rows: list[Row], profile: str, split: str | None = None) -> None:
    items = {it.id: it for it in read_items(folder) if it.images and split in (None, it.split)}
    assert sorted(r.id for r in rows) == sorted(items)
    frame_size = {s.id: s.frame_size for s in read_studies(folder)}
    hint = PROFILES[profile].hint
    base = get_profile(profile).frame_base  # frames as the profile numbers them
    root = folder.resolve()
    for r in rows:
        it: Item = items[r.id]
        expected = [str(root / im.path) for im in it.images]
        if get_profile(profile).pads_square:  # padded copies (tests/test_square_padding.py)
            assert all(Path(p).parent.name == "square" for p in r.images)
            expected = r.images
        if r.embedded:
            assert r.images == [Path(p).name for p in expected]
        else:
            assert r.images == expected and all(Path(p).is_file() for p in r.images)
        # "Frame k: <image>" per image, in order, then question, options, hint (answers with boxes only)
        assert r.user.count("<image>") == len(r.images)
        assert [int(k) for k in re.findall(r"Frame (\d+): <image>", r.user)] == [im.frame + base for im in it.images]
        lines = r.user.split("\n")
        if it.answer.type in ("boxes", "box3d", "text"):
            assert lines[-1] == hint
            lines = lines[:-1]
        assert hint not in lines and not any(ln.startswith("Give boxes as") for ln in lines)
        assert lines[len(it.images) + 1:] == [f"({chr(65 + i)}) {o}" for i, o in enumerate(it.options or [])]
        assert list(r.target) == ["reasoning", "answer", "bboxes"]
        w, h = it.images[0].width, it.images[0].height
        assert len(r.target["bboxes"]) == len(it.evidence)
        for b, e in zip(r.target["bboxes"], it.evidence, strict=False):
            assert b["frame"] == e.frame + base and b["label"] == e.label
            _close(b["bbox"], r.convention, e.image_box, w, h)
        a, answer = it.answer, r.target["answer"]
        if a.type == "choice":
            m = re.fullmatch(r"\(([A-Z])\) (.*)", answer)
            assert m and ord(m.group(1)) - 65 == a.value and m.group(2) == it.options[a.value]
        elif a.type == "boxes":
            image_box = {(e.frame, tuple(e.box)): e.image_box for e in it.evidence}
            assert [x["frame"] for x in answer] == [b.frame + base for b in a.value]
            for x, b in zip(answer, a.value, strict=False):
                _close(x["bbox"], r.convention, image_box[(b.frame, tuple(b.box))], w, h)
        elif a.type == "box3d":
            v = a.value
            assert (answer["frame_start"], answer["frame_end"]) == (v.frame_start + base, v.frame_end + base)
            _close(answer["bbox"], r.convention, map_box(v.box, frame_size[it.study_id], (w, h)), w, h)
        elif a.type == "frames":
            assert answer == [k + base for k in a.value]
        elif a.type in ("yes_no", "number"):
            assert answer == a.value


# trl covers every profile (the inline boxes llamafactory and hf share); swift writes only
# `real` or `norm1` boxes, so three profiles cover it
COMBOS = ([("trl", p) for p in PROFILES] + [("llamafactory", "pixel"), ("llamafactory", "qwen2.5-vl")]
          + [("swift", "pixel"), ("swift", "norm1"), ("swift", "qwen2-vl")])


@pytest.mark.parametrize("fmt,profile", COMBOS)
@pytest.mark.parametrize("data", ["knee", "seg"])
def test_exports_round_trip(rendered, tmp_path, data, fmt, profile) -> None:
    summary = export_dataset(rendered[data], fmt, tmp_path / "out", convention=profile)
    assert summary["exported"] > 0 and summary["skipped_no_images"] == 0 and summary["profile"] == profile
    assert json.loads((tmp_path / "out" / SUMMARY).read_text()) == summary
    check_rows(rendered[data], READERS[fmt](tmp_path / "out", PROFILES[profile]), profile)


@pytest.mark.parametrize("profile", ["pixel", "qwen2.5-vl"])
def test_hf_load_from_disk_round_trips(rendered, tmp_path, profile) -> None:
    folder = rendered["seg"] if profile == "pixel" else rendered["knee"]
    export_dataset(folder, "hf", tmp_path / "hf", convention=profile)
    check_rows(folder, read_hf(tmp_path / "hf", PROFILES[profile]), profile)
    items = {it.id: it for it in read_items(folder)}
    for ds in datasets.load_from_disk(str(tmp_path / "hf")).values():
        for r in ds.select(range(0, len(ds), 7)):  # decoding every image is slow; a spread is enough
            shown = items[r["id"]].images
            assert r["frames"] == [im.frame for im in shown]
            assert [(im.size, im.mode) for im in r["images"]] == [((s.width, s.height), "L") for s in shown]


def test_trl_jsonl_loads_with_datasets_and_images_decode(rendered, tmp_path) -> None:
    export_dataset(rendered["seg"], "trl", tmp_path / "trl")
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "trl" / "train.jsonl"), split="train",
                               cache_dir=str(tmp_path / "cache"))
    ds = ds.cast_column("images", datasets.Sequence(datasets.Image()))
    row = ds[0]
    assert row["images"][0].size == (96, 80)
    assert sum(p["type"] == "image" for p in row["prompt"][0]["content"]) == len(row["images"])


def test_quoted_boxes_are_rewritten_to_the_rendered_image(rendered, tmp_path) -> None:
    """Items quote boxes on the stored 128 px frame; the exported text must quote the 200 px image.
    (Train split: single-choice items are balanced within each split, and the 12-study
    phantom's test split is too small for one.)"""
    export_dataset(rendered["knee"], "llamafactory", tmp_path / "lf", split="train")
    rows = {r.id: r for r in read_llamafactory(tmp_path / "lf", PROFILES["pixel"])}
    n = 0
    for it in read_items(rendered["knee"]):
        if it.id not in rows or not it.evidence:
            continue
        r = rows[it.id]
        for e in it.evidence:
            assert str(list(e.image_box)) in r.target["reasoning"]
            if list(e.box) != list(e.image_box):
                assert str(list(e.box)) not in r.target["reasoning"]
        if it.subtask == "finding_in_box":
            box = it.evidence[0]
            assert str(list(box.image_box)) in r.user and str(list(box.box)) not in r.user
            n += 1
    assert n > 0


def test_split_filter_skips_and_merges_dataset_info(rendered, tmp_path) -> None:
    out = tmp_path / "lf"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    summary = export_dataset(rendered["knee"], "llamafactory", out, split="val")
    assert summary["split"] == "val" and list(summary["by_split"]) == ["val"]
    assert sorted(json.loads((out / "dataset_info.json").read_text())) == ["mine", "voxqa_val"]
    check_rows(rendered["knee"], read_llamafactory(out, PROFILES["pixel"]), "pixel", split="val")
    assert summary["exported"] == sum(1 for it in read_items(rendered["knee"]) if it.split == "val")


def test_items_without_images_are_skipped_and_counted(rendered, tmp_path) -> None:
    folder = tmp_path / "partly"
    folder.mkdir()
    for name in ("manifest.json", "studies.jsonl", "build_report.json"):
        (folder / name).write_bytes((rendered["seg"] / name).read_bytes())
    shutil.copytree(rendered["seg"] / "frames", folder / "frames")  # a symlink out is refused
    items = read_items(rendered["seg"])
    items = [it.model_copy(update={"images": None}) if i % 3 == 0 else it for i, it in enumerate(items)]
    write_jsonl(folder / ITEMS, items)
    summary = export_dataset(folder, "trl", tmp_path / "out")
    assert summary["skipped_no_images"] == len(items[::3]) > 0
    assert summary["exported"] == len(items) - len(items[::3])


def test_registry_and_errors(rendered, tmp_path) -> None:
    assert list(FORMATS) == ["hf", "llamafactory", "sgmri-vqa", "swift", "trl"]
    assert all(f.name == name for name, f in FORMATS.items())
    with pytest.raises(ValueError, match="known: hf, llamafactory, sgmri-vqa, swift, trl"):
        export_dataset(rendered["seg"], "csv", tmp_path / "x")
    with pytest.raises(ValueError, match="known: pixel, norm1, qwen2-vl, qwen2.5-vl, qwen3-vl, internvl"):
        export_dataset(rendered["seg"], "trl", tmp_path / "x", convention="xyxy")
    with pytest.raises(ValueError, match="train, val or test"):
        export_dataset(rendered["seg"], "trl", tmp_path / "x", split="dev")


@pytest.mark.parametrize("data", ["knee", "seg"])
def test_box_hint_only_on_answers_with_boxes(rendered, tmp_path, data) -> None:
    """The profile's box hint ends the user turn of boxes / box3d / text answers only; yes/no,
    choice, number ... items get none (eval builds the same user turn)."""
    from voxqa.eval.prompts import build_prompt

    export_dataset(rendered[data], "trl", tmp_path / "out", convention="qwen2.5-vl")
    rows = {r.id: r for r in READERS["trl"](tmp_path / "out", PROFILES["qwen2.5-vl"])}
    items = {it.id: it for it in read_items(rendered[data]) if it.images}
    hint = PROFILES["qwen2.5-vl"].hint
    frame_size = {s.id: s.frame_size for s in read_studies(rendered[data])}
    with_hint = {it.answer.type for it in items.values() if hint in rows[it.id].user}
    without = {it.answer.type for it in items.values() if hint not in rows[it.id].user}
    assert with_hint <= {"boxes", "box3d", "text"} and with_hint
    assert without and not without & {"boxes", "box3d", "text"}
    assert {"yes_no", "choice"} & without
    for it in items.values():  # eval's minimal prompt: the same user turn
        prompt = build_prompt(it, rendered[data], frame_size[it.study_id], PROFILES["qwen2.5-vl"])
        text = "".join(v for k, v in prompt.parts if k == "text")
        assert (hint in text) == (it.answer.type in ("boxes", "box3d", "text")), it.id
        structured = build_prompt(it, rendered[data], frame_size[it.study_id], PROFILES["qwen2.5-vl"], "structured")
        assert "".join(v for k, v in structured.parts if k == "text").count(hint) == 1


def test_trainer_settings_keep_the_profiles_boxes_true(rendered, tmp_path) -> None:
    """LLaMA-Factory must not resize images before the processor; ms-swift must write boxes
    as JSON lists (QWENVL_BBOX_FORMAT=new) with a template of the profile's scale."""
    sizes = [im.width * im.height for it in read_items(rendered["knee"]) for im in it.images or []]
    export_dataset(rendered["knee"], "llamafactory", tmp_path / "lf", convention="qwen2.5-vl")
    args = yaml.safe_load((tmp_path / "lf" / "llamafactory_args.yaml").read_text())
    assert int(args["image_max_pixels"]) == max(sizes) and int(args["image_min_pixels"]) == min(sizes)
    assert "min_pixels 3136, max_pixels 12845056" in (tmp_path / "lf" / "llamafactory_args.yaml").read_text()

    summary = export_dataset(rendered["knee"], "swift", tmp_path / "sw", convention="qwen2.5-vl")
    assert {"swift_args.json", "swift_env.sh"} <= set(summary["files"])
    args = json.loads((tmp_path / "sw" / "swift_args.json").read_text())
    env = {"QWENVL_BBOX_FORMAT": "new", "MAX_PIXELS": "12845056", "MIN_PIXELS": "3136"}
    assert {k: args[k] for k in ("env", "template", "profile", "eval_profile")} == {
        "env": env, "template": "qwen2_5_vl", "profile": "qwen2.5-vl", "eval_profile": "qwen2.5-vl"}
    assert (tmp_path / "sw" / "swift_env.sh").read_text() == "".join(f"export {k}={v}\n" for k, v in env.items())
    with pytest.raises(ValueError, match="profile gemini has no ms-swift template"):
        export_dataset(rendered["knee"], "swift", tmp_path / "sw2", convention="gemini")


def test_export_target_style_native_writes_the_familys_tokens(rendered, tmp_path) -> None:
    """`voxqa export --target-style native`: answer boxes as the family's own tokens, the spec
    in the summary; formats that write boxes their own way refuse it."""
    from typer.testing import CliRunner

    from voxqa.cli import app

    out = tmp_path / "pg"
    res = CliRunner().invoke(app, ["export", str(rendered["knee"]), "--format", "trl", "--out", str(out),
                                   "--profile", "paligemma", "--target-style", "native"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "voxqa_export.json").read_text())["profile"] == "paligemma:target=native"
    answers = [json.loads(json.loads(line)["completion"][0]["content"][0]["text"])["answer"]
               for path in out.glob("*.jsonl") for line in path.read_text().splitlines()]
    assert any(isinstance(a, str) and re.search(r"Frame \d+: <loc\d{4}><loc\d{4}><loc\d{4}><loc\d{4}>", a)
               for a in answers)
    res = CliRunner().invoke(app, ["export", str(rendered["knee"]), "--format", "swift", "--out",
                                   str(tmp_path / "sw"), "--profile", "qwen2-vl", "--target-style", "native"])
    assert res.exit_code == 2 and "writes boxes its own way" in res.output
