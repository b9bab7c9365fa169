"""Box profiles: every family's documented answer reads to the right pixels, round trips in
every family's own syntax, no family's box is read in another family's space, profile
options and processor checks, point answers and their scores, M3D's 3D boxes."""

from __future__ import annotations

import json
import random

import pytest
from test_parse import fails, make_item, ok

from voxqa.boxes.profiles import PROFILES, check_processor, get_profile
from voxqa.boxes.syntax import MARKERS
from voxqa.eval.metrics.items import score_item
from voxqa.model_inputs import RECIPES, m3d_normalized
from voxqa.schema import Box3D

# The documented example of every profile (profiles.py, as each family's docs write it) is
# a meniscus tear at pixels [448, 160, 720, 384] of a 1024 x 1024 image.
W = H = 1024
TEAR = [448, 160, 720, 384]
ONE_IMAGE = make_item({"type": "boxes", "value": [{"frame": 3, "box": TEAR}]}, images=[(3, W, H)])

# Kosmos-2 reads corners as cell centres when the two patches share no row or column
# (HF transformers' patch_index_to_coordinate): cells (14, 5) and (22, 11) of 32 px.
KOSMOS = [int(14.5 * 32), int(5.5 * 32), int(22.5 * 32), int(11.5 * 32)]


@pytest.mark.parametrize("name", [n for n, p in PROFILES.items() if "boxes" not in p.cannot])
def test_documented_example_reads_to_the_right_pixels(name: str) -> None:
    p = PROFILES[name]
    got = ok(p.example, ONE_IMAGE, name)
    if p.answer_form == "points":  # Molmo: the point (57.0 %, 26.6 %) is the tear's centre
        assert got == [{"frame": 3, "point": [583.68, 272.38]}]
        return
    want = KOSMOS if name == "kosmos-2" else TEAR
    # 2 px, or the family's own quantum where it is coarser (LLaVA's two decimals: 10 px here)
    # (RadGrounder's truncation at the 224 px resize: up to 8 px here)
    tolerance = max(2, p.space.max_error(W, H)) if name in ("llava", "radgrounder") else 2
    assert max(abs(a - b) for a, b in zip(got[0]["box"], want, strict=False)) <= tolerance, (name, got)
    assert got[0]["frame"] == 3


def test_multi_object_examples() -> None:
    """Several objects in one answer, joined as each family joins them."""
    assert [b["box"] for b in ok(PROFILES["paligemma"].example, ONE_IMAGE, "paligemma")] == [
        TEAR, [100, 601, 200, 701]]  # y first, loc / 1023 of 1024 px: 600 -> 600.59 -> 601
    cog = ok(PROFILES["cogvlm"].example, ONE_IMAGE, "cogvlm")  # "[[438,156,703,375;086,540,400,760]]"
    assert [b["box"] for b in cog] == [[449, 160, 720, 384], [88, 553, 410, 778]]
    kosmos = ("<phrase>tears</phrase><object><patch_index_0174><patch_index_0374>"
              "</delimiter_of_multi_objects/><patch_index_0000><patch_index_0000></object>")
    assert [b["box"] for b in ok(kosmos, ONE_IMAGE, "kosmos-2")] == [KOSMOS, [0, 0, 32, 32]]
    internvl = "<ref>tears</ref><box>[[438, 156, 703, 375], [0, 0, 100, 100]]</box>"
    assert [b["box"] for b in ok(internvl, ONE_IMAGE, "internvl")] == [[449, 160, 720, 384], [0, 0, 102, 102]]
    shikra = "tears[0.438,0.156,0.703,0.375;0.000,0.000,0.100,0.100]"
    assert [b["box"] for b in ok(shikra, ONE_IMAGE, "shikra")] == [[449, 160, 720, 384], [0, 0, 102, 102]]
    points = '<points x1="10" y1="20" x2="57" y2="26.6" alt="tears">tears</points>'
    assert [b["point"] for b in ok(points, ONE_IMAGE, "molmo")] == [[102.4, 204.8], [583.68, 272.38]]
    decoded = "meniscus tear(438,156),(703,375)"  # Qwen2-VL decoded without special tokens
    assert ok(decoded, ONE_IMAGE, "qwen2-vl") == [{"frame": 3, "box": [449, 160, 720, 384]}]


@pytest.mark.parametrize("name", [n for n, p in PROFILES.items() if "boxes" not in p.cannot])
def test_round_trip_in_every_family_syntax(name: str) -> None:
    """Boxes written by the profile's own writer (numbers, label, frame text as the profile
    numbers frames) read back within the profile's stated rounding on assorted image sizes."""
    p, r = PROFILES[name], random.Random(name)
    for w, h in ((1024, 1024), (160, 160), (96, 80), (640, 480), (300, 900)):
        for _ in range(20):
            x0, x1 = sorted(r.sample(range(w + 1), 2))
            y0, y1 = sorted(r.sample(range(h + 1), 2))
            item = make_item({"type": "boxes", "value": [{"frame": 5, "box": [x0, y0, x1, y1]}]},
                             images=[(5, w, h), (6, w, h)])
            got = ok(f"Frame {5 + p.frame_base}: {p.write((x0, y0, x1, y1), w, h, 'meniscus tear')}", item, name)
            assert len(got) == 1 and got[0]["frame"] == 5, (name, got)
            if p.answer_form == "points":
                px, py = got[0]["point"]
                assert x0 - 1 <= px <= x1 + 1 and y0 - 1 <= py <= y1 + 1
            else:
                err = max(abs(a - b) for a, b in zip(got[0]["box"], (x0, y0, x1, y1), strict=False))
                assert err <= p.space.max_error(w, h), (name, w, h, (x0, y0, x1, y1), got)


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_no_profile_reads_another_familys_box(name: str) -> None:
    """Each family's documented answer under every other profile: refused, never a box in
    the wrong space (profiles that share a family's syntax excepted)."""
    owner = PROFILES[name]
    for other in PROFILES.values():
        if other.markers == owner.markers:
            continue
        error = fails(owner.example, ONE_IMAGE, other.name)
        assert name in error and other.name in error, (name, other.name, error)


def test_gemini_is_y_first_and_medgemma_on_the_padded_square() -> None:
    """The issue's silent misread: box_2d is [y_min, x_min, y_max, x_max]."""
    wide = make_item({"type": "boxes", "value": [{"frame": 3, "box": TEAR}]}, images=[(3, 200, 100)])
    answer = '{"box_2d": [100, 200, 500, 600], "label": "x"}'
    assert ok(answer, wide, "gemini") == [{"frame": 3, "box": [40, 10, 120, 50]}]
    # 200 x 100 padded to 200 x 200, image centred 50 px down: y = v * 200 / 1000 - 50
    assert ok(answer, wide, "medgemma") == [{"frame": 3, "box": [40, -30, 120, 50]}]
    thought = "<unused94>thought\nLooking at [1, 2, 3, 4] first.<unused95>" + answer
    assert ok(thought, wide, "gemini") == [{"frame": 3, "box": [40, 10, 120, 50]}]
    assert "gemini" in fails(answer, wide, "qwen3-vl")


def test_qwen25_grid_uses_the_released_processor_limits() -> None:
    """A 1024 px frame: 1036 x 1036 input under the released limits, not 812 (1280 * 28 * 28)."""
    big = make_item({"type": "boxes", "value": [{"frame": 3, "box": TEAR}]}, images=[(3, 1024, 1024)])
    assert PROFILES["qwen2.5-vl"].space.size(1024, 1024) == (1036, 1036)
    assert ok(PROFILES["qwen2.5-vl"].example, big, "qwen2.5-vl")[0]["box"] == TEAR
    small = get_profile("qwen2.5-vl:max_pixels=1003520")
    assert small.spec == "qwen2.5-vl:max_pixels=1003520,min_pixels=3136" and small.space.size(1024, 1024) == (980, 980)
    answer = '{"bbox_2d": [429, 153, 689, 368]}'  # the tear on the 980 px grid (x * 980 / 1024, half up)
    assert ok(answer, big, small.spec)[0]["box"] == [448, 160, 720, 385]  # 368 * 1024 / 980 = 384.5
    assert ok(answer, big, "qwen2.5-vl")[0]["box"] == [424, 151, 681, 364]  # the default grid: 9-39 px off


@pytest.mark.parametrize("spec,message", [
    ("qwen2.5-vl:max_pixels=lots", "bad option"), ("qwen2.5-vl:factor=14", "bad option"),
    ("gemini:max_pixels=10", "takes no options"), ("qwen9", "unknown box profile"),
    ("qwen2.5-vl:min_pixels=5000,max_pixels=4000", "min_pixels 5000 > max_pixels 4000"),
    ("pixel:frame_base=2", "frame_base is 0"), ("sgmri:frame_base=one", "bad option"),
])
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_profile(spec)


def test_frame_base_is_part_of_the_convention() -> None:
    """Every profile takes frame_base=0|1 (recorded in its spec); the reply's frame numbers are
    read from it: "Frame 4" is stored frame 3 when frames are numbered from 1, "Frame 0" is none."""
    one = get_profile("qwen3-vl:frame_base=1")
    assert (one.spec, one.frame_base, get_profile("qwen3-vl").frame_base) == ("qwen3-vl:frame_base=1", 1, 0)
    assert ok("Frame 4: [438, 156, 703, 375]", ONE_IMAGE, one.spec) == [{"frame": 3, "box": [449, 160, 720, 384]}]
    assert "numbered from 1" in fails("Frame 0: [438, 156, 703, 375]", ONE_IMAGE, one.spec)
    assert ok('{"bbox_2d": [438, 156, 703, 375], "frame": 4}', ONE_IMAGE, one.spec)[0]["frame"] == 3
    sgmri = get_profile("sgmri")
    assert (sgmri.frame_base, sgmri.write(TEAR, W, H), sgmri.quoted(TEAR, W, H)) == (
        1, "<bbx>[448,160,272,224]</bbx>", "<bbx>[448,160,272,224]</bbx>")
    assert ok("Frame 3: <bbx>[448,160,272,224]</bbx>", ONE_IMAGE, "sgmri:frame_base=0")[0]["frame"] == 3
    assert ok("[448, 160, 272, 224]", ONE_IMAGE, "sgmri") == [{"frame": 3, "box": TEAR}]  # JSON lists are xywh too
    assert get_profile("qwen2.5-vl:max_pixels=1003520,frame_base=1").spec == (
        "qwen2.5-vl:frame_base=1,max_pixels=1003520,min_pixels=3136")


def test_check_processor(tmp_path) -> None:
    released = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(released))
    assert check_processor(get_profile("qwen2.5-vl"), tmp_path) == []
    assert check_processor(get_profile("qwen2.5-vl:max_pixels=1003520"), tmp_path) == [
        "max_pixels: processor 12845056, profile 1003520"]
    new_style = tmp_path / "new.json"  # transformers >= 4.5x writes size.{shortest,longest}_edge
    new_style.write_text(json.dumps({"size": {"shortest_edge": 3136, "longest_edge": 1003520}}))
    assert check_processor(get_profile("qwen2.5-vl:max_pixels=1003520"), new_style) == []
    assert check_processor(get_profile("qwen3-vl"), new_style) == []  # 0-1000: no grid to disagree on
    nested = tmp_path / "v5"  # transformers 5: processor_config.json with the image processor inside
    nested.mkdir()
    (nested / "processor_config.json").write_text(json.dumps({"image_processor": {"min_pixels": 3136, "max_pixels": 1003520}}))
    assert check_processor(get_profile("qwen2.5-vl"), nested) == ["max_pixels: processor 1003520, profile 12845056"]
    with pytest.raises(ValueError, match="cannot read"):
        check_processor(get_profile("qwen2.5-vl"), tmp_path / "missing.json")


def test_points_score_hits_not_iou() -> None:
    gold = [{"frame": 3, "box": TEAR}, {"frame": 4, "box": [0, 0, 10, 10]}]
    inside, outside = {"frame": 3, "point": [500.0, 200.0]}, {"frame": 4, "point": [50.0, 50.0]}
    assert score_item("boxes", gold, [inside, outside], points=True) == {"point_hit": 0.5, "point_in_box": 0.5}
    assert score_item("boxes", gold, [{"frame": 4, "point": [500.0, 200.0]}], points=True) == {
        "point_hit": 0.0, "point_in_box": 0.0}  # the right place on the wrong frame
    assert score_item("boxes", gold, None, points=True) == {"point_hit": 0.0, "point_in_box": 0.0}
    assert score_item("boxes", [], None, points=True) == {"point_hit": 0.0, "point_in_box": 0.0}
    assert score_item("boxes", [], [], points=True) == {"point_hit": 1.0, "point_in_box": 1.0}


def test_box3d_layouts() -> None:
    """3DReasonKnee's [start, end, x_min, x_max, y_min, y_max] in the profile's 2D space, and
    M3D's fractions of its 32 x 256 x 256 grid through the m3d recipe's transform."""
    item = make_item({"type": "box3d", "value": {"frame_start": 2, "frame_end": 5, "box": [10, 20, 30, 40]}},
                     images=[(2, 160, 160)])
    assert ok("[2, 5, 10, 30, 20, 40]", item) == {"frame_start": 2, "frame_end": 5, "box": [10, 20, 30, 40]}
    assert ok("[2, 5, 63, 188, 125, 250]", item, "qwen3-vl")["box"] == [10, 20, 30, 40]
    assert ok("[2, 5, 63, 188, 125, 250]", item, "gemini")["box"] == [10, 20, 30, 40]  # names, not positions

    transform = RECIPES["m3d"].plan((40, 160, 160), None)
    stored = Box3D(frame_start=2, frame_end=5, box=(10, 20, 30, 40))
    six = m3d_normalized(stored, transform)
    from voxqa.eval.run import volume_box_reader
    from voxqa.schema import Study

    study = Study(id="s", patient_id="p", source="phantom", modality="CT", anatomy="abdomen", view_axis=2,
                  frame_count=40, frame_size=(160, 160), frame_size_source="volume")
    read = volume_box_reader(PROFILES["m3d"], study, item)
    assert ok(json.dumps(six), item, "m3d", volume_box=read) == {"frame_start": 2, "frame_end": 5, "box": [10, 20, 30, 40]}
    assert "render --recipe m3d" in fails(json.dumps(six), item, "m3d")


def test_cli_check_processor_and_listing(tmp_path) -> None:
    from typer.testing import CliRunner

    from voxqa.cli import app

    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"min_pixels": 3136, "max_pixels": 1003520}))
    runner = CliRunner()
    res = runner.invoke(app, ["profiles", "--check-processor", str(tmp_path)], terminal_width=200)
    assert res.exit_code == 1 and "max_pixels: processor 1003520, profile 12845056" in res.output
    res = runner.invoke(app, ["profiles", "--check-processor", str(tmp_path), "--profile",
                              "qwen2.5-vl:max_pixels=1003520"], terminal_width=200)
    assert res.exit_code == 0 and "matches" in res.output
    res = runner.invoke(app, ["profiles"], terminal_width=250)
    assert all(name in res.output for name in PROFILES)


def test_a_family_that_cannot_write_an_answer_type_is_refused_before_any_request() -> None:
    from voxqa.eval.run import check_expressible

    box3d = make_item({"type": "box3d", "value": {"frame_start": 2, "frame_end": 5, "box": [10, 20, 30, 40]}})
    check_expressible(PROFILES["pixel"], [box3d, ONE_IMAGE])
    with pytest.raises(ValueError, match="profile molmo cannot express box3d answers: 1 selected items"):
        check_expressible(PROFILES["molmo"], [box3d, ONE_IMAGE])
    with pytest.raises(ValueError, match="profile m3d cannot express boxes answers"):
        check_expressible(PROFILES["m3d"], [box3d, ONE_IMAGE])


NATIVE = [name for name, p in PROFILES.items() if p.native and "boxes" not in p.cannot]


@pytest.fixture(scope="module")
def box_items(tmp_path_factory):
    from helpers import rendered_phantom

    from voxqa.dataset.folder import read_items, read_studies

    ds = rendered_phantom(tmp_path_factory.mktemp("native"), n=4, seed=0, size=64, context=2)
    sizes = {s.id: s.frame_size for s in read_studies(ds)}
    items = [it for it in read_items(ds) if it.images and it.answer.type == "boxes"]
    assert any(len(it.images) > 1 for it in items)  # frames are read from "Frame k:" lines
    return ds, sizes, items


def test_native_target_style_is_offered_for_every_family_with_its_own_form():
    assert {"paligemma", "qwen2-vl", "florence-2", "internvl", "minicpm-v"} <= set(NATIVE)
    assert get_profile("paligemma:target=native").spec == "paligemma:target=native"
    assert get_profile("paligemma:target=json").spec == "paligemma"
    assert get_profile("sgmri:frame_base=0,target=native").spec == "sgmri:frame_base=0,target=native"
    with pytest.raises(ValueError, match="JSON already"):
        get_profile("qwen3-vl:target=native")
    with pytest.raises(ValueError, match="target=json|native"):
        get_profile("paligemma:target=tokens")


@pytest.mark.parametrize("name", NATIVE)
def test_native_target_parses_back_to_the_same_boxes(box_items, name, tmp_path):
    """Each family's answer boxes written natively (<loc0123>, <|box_start|>(x1,y1),(x2,y2)<|box_end|>,
    <loc_123>, <ref>..</ref><box>..</box>, ...) are read back by the same profile as the same
    canonical boxes the JSON target gives, on the same frames."""
    from voxqa.answers.boxes import written_boxes
    from voxqa.eval.parse import parse_answer
    from voxqa.eval.prompts import build_prompt

    ds, sizes, items = box_items
    plain, native = get_profile(name), get_profile(f"{name}:target=native")
    for it in items:
        # square-padded families are shown padded copies, kept in the folder that uses them
        as_json = build_prompt(it, ds, sizes[it.study_id], plain, "structured", padded=tmp_path).target
        as_native = build_prompt(it, ds, sizes[it.study_id], native, "structured", padded=tmp_path).target
        answer = json.loads(as_native)["answer"]
        assert isinstance(answer, str) and answer.startswith(f"Frame {it.answer.value[0].frame + plain.frame_base}: ")
        assert len(written_boxes(answer, plain)) == len(it.answer.value)  # each box in the family's syntax
        assert all(isinstance(e["bbox"], str) and written_boxes(e["bbox"], plain)
                   for e in json.loads(as_native)["bboxes"])
        a = parse_answer(as_json, it, plain.spec, frame_size=sizes[it.study_id])
        b = parse_answer(as_native, it, native.spec, frame_size=sizes[it.study_id])
        assert a.ok and b.ok and b.value == a.value, (name, it.id, b.error, answer)
        assert [d["frame"] for d in b.value] == [bx.frame for bx in it.answer.value]
