"""voxqa.eval.parse and the answer types' readers: every accepted reply format, the exported targets of real phantom items
read back to their answers under every box profile, and replies that must fail cleanly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, get_args

import pytest
from helpers import rendered_phantom, rendered_segmentation

from voxqa.boxes.profiles import PROFILES, Profile, get_profile
from voxqa.dataset.folder import read_items, read_studies
from voxqa.answers import ANSWER_TYPES
from voxqa.answers.reply import clean_reply
from voxqa.eval.parse import ParseResult, parse_answer
from voxqa.conversation import InlineBoxes, build_sample
from voxqa.render import map_box
from voxqa.schema import Answer, Item

OPTIONS = ["Meniscus Tear", "Joint Bodies", "Grade C lesion", "Soft Tissue Lesion"]


def make_item(answer: dict[str, Any], options: list[str] | None = None,
              images: list[tuple[int, int, int]] | None = None) -> Item:
    """A minimal item; ``images`` as (frame, width, height), default one 160 x 160 image of frame 3."""
    shown = [(3, 160, 160)] if images is None else images
    return Item.model_validate({
        "id": "t", "study_id": "s", "split": "test", "source": "phantom", "task": "detection",
        "subtask": "x", "level": "frame", "frames": [3], "question": "?", "options": options,
        "answer": answer, "answer_text": "", "reasoning": "", "template": "t",
        "images": [{"path": f"f{f}.png", "frame": f, "width": w, "height": h} for f, w, h in shown] or None,
    })


YES_NO = make_item({"type": "yes_no", "value": "yes"})
CHOICE = make_item({"type": "choice", "value": 1}, OPTIONS)
MULTI = make_item({"type": "multi_choice", "value": [0, 2]}, OPTIONS)
NUMBER = make_item({"type": "number", "value": 3})
FRAMES = make_item({"type": "frames", "value": [3, 4, 5]})
BOXES = make_item({"type": "boxes", "value": [{"frame": 3, "box": [10, 20, 30, 40]}]})
BOXES_TWO_IMAGES = make_item({"type": "boxes", "value": [{"frame": 3, "box": [10, 20, 30, 40]}]},
                             images=[(3, 200, 100), (4, 200, 100)])
BOX3D = make_item({"type": "box3d", "value": {"frame_start": 2, "frame_end": 5, "box": [10, 20, 30, 40]}})
TEXT = make_item({"type": "text", "value": "Normal knee."})
GRADE = make_item({"type": "grade", "value": 2, "scale": [0, 1, 2, 3]})


def ok(raw: str, item: Item, profile: str = "pixel", **kw: Any) -> Any:
    result = parse_answer(raw, item, profile, **kw)
    assert result.ok and result.error is None, (raw, result)
    return result.value


def fails(raw: str, item: Item, profile: str = "pixel", **kw: Any) -> str:
    result = parse_answer(raw, item, profile, **kw)
    assert not result.ok and result.value is None and result.error, (raw, result)
    return result.error


# --- the exported targets of real items ----------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Item, tuple[int, int]]]:
    """(folder, item, study frame size) of every item of two rendered phantoms: fastMRI+
    (128 px frames at 160 px) and a segmentation phantom (60 x 50 at 96 x 80, box3d answers)."""
    root = tmp_path_factory.mktemp("parse")
    knee = rendered_phantom(root, n=24, seed=0, size=160, context=4)  # select-all items need 24
    seg = rendered_segmentation(root, size=96, context=4)
    rows = []
    for folder in (knee, seg):
        sizes = {st.id: st.frame_size for st in read_studies(folder)}
        rows += [(folder.resolve(), it, sizes[it.study_id]) for it in read_items(folder) if it.images]
    assert {it.answer.type for _, it, _ in rows} >= {
        "yes_no", "choice", "multi_choice", "number", "frames", "boxes", "box3d", "text"}
    return rows


@pytest.fixture(scope="module")
def boxed(rendered) -> list[tuple[Path, Item, tuple[int, int]]]:
    """Up to 6 rendered items per (template, answer type) with boxes in their answer or
    target, plus one of every other answer type: what the per-profile tests read."""
    kept: dict[tuple[str, str], int] = {}
    rows = []
    for row in rendered:
        item = row[1]
        key = (item.template, item.answer.type)
        limit = 6 if item.answer.type in ("boxes", "box3d", "text") or item.evidence else 1
        if kept.get(key, 0) < limit:
            kept[key] = kept.get(key, 0) + 1
            rows.append(row)
    return rows


def assert_box_close(parsed: list[int], stored: tuple[int, ...], item: Item, frame_size: tuple[int, int],
                     profile: Profile) -> None:
    """``parsed`` is the stored-frame box on the rendered image, within the profile's rounding
    (a point profile's point lies inside it)."""
    w, h = item.images[0].width, item.images[0].height
    image_box = map_box(stored, frame_size, (w, h))
    if profile.answer_form == "points":
        x, y = parsed
        assert image_box[0] <= x <= image_box[2] and image_box[1] <= y <= image_box[3], (parsed, image_box)
        return
    bound = profile.space.max_error(w, h)
    assert max(abs(a - b) for a, b in zip(parsed, image_box, strict=False)) <= bound, (parsed, image_box, profile.name)
    if bound == 0:
        assert tuple(parsed) == image_box


def assert_answer(value: Any, item: Item, frame_size: tuple[int, int], profile: Profile, target: dict) -> None:
    a = item.answer
    if a.type == "boxes":
        assert [b["frame"] for b in value] == [b.frame for b in a.value]
        for got, want in zip(value, a.value, strict=False):
            assert_box_close(got.get("box", got.get("point")), want.box, item, frame_size, profile)
    elif a.type == "box3d":
        assert (value["frame_start"], value["frame_end"]) == (a.value.frame_start, a.value.frame_end)
        assert_box_close(value["box"], a.value.box, item, frame_size, profile)
    elif a.type == "text":  # the export rewrites boxes quoted in text into the profile's convention
        assert value == target["answer"]
    else:
        assert value == a.value and type(value) is type(a.value)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_exported_target_parses_back_to_the_answer(rendered, boxed, profile: str) -> None:
    """Every item under the pixel profile; the box-bearing sample under every other one."""
    p = get_profile(profile)
    for folder, item, frame_size in rendered if profile == "pixel" else boxed:
        if item.answer.type in p.cannot:
            continue
        target = build_sample(item, folder, frame_size, p, InlineBoxes(p)).target
        wrapped = f"<think>Maybe (A)? Answer: no.</think>\n```json\n{target}\n```\n"
        for raw in (target, wrapped):
            result = parse_answer(raw, item, profile, frame_size=frame_size)
            assert result.ok, (item.id, profile, result.error)
            assert_answer(result.value, item, frame_size, p, json.loads(target))


def _ranges(frames: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5, 9", as the minimal prompt asks."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][-1] + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def minimal_reply(item: Item, frame_size: tuple[int, int], profile: Profile) -> str:
    """The answer written the way the minimal prompt mode asks (voxqa.eval.prompts), frames
    numbered as the profile labels them."""
    a = item.answer
    w, h = item.images[0].width, item.images[0].height
    base = profile.frame_base

    def box(stored: tuple[int, ...]) -> str:
        return profile.write(map_box(stored, frame_size, (w, h)), w, h)

    if a.type == "choice":
        return "ABCDEFGHIJ"[a.value]
    if a.type == "multi_choice":
        return ", ".join("ABCDEFGHIJ"[i] for i in a.value) or "none"
    if a.type == "frames":
        return _ranges([k + base for k in a.value])
    if a.type == "boxes":
        return "\n".join(f"Frame {b.frame + base}: {box(b.box)}" for b in a.value)
    if a.type == "box3d":
        return f"frames {a.value.frame_start + base}-{a.value.frame_end + base}, {box(a.value.box)}"
    return str(a.value)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_minimal_mode_replies_parse_back_to_the_answer(boxed, profile: str) -> None:
    """Every answer written in the family's own syntax (as its docs show) reads back."""
    p = get_profile(profile)
    for _, item, frame_size in boxed:
        if item.answer.type in p.cannot or item.answer.type == "text":
            continue
        raw = minimal_reply(item, frame_size, p)
        for reply in (raw, f"<think>hmm</think>The final answer is {raw}"):
            result = parse_answer(reply, item, profile, frame_size=frame_size)
            assert result.ok, (item.id, reply, result.error)
            assert_answer(result.value, item, frame_size, p, {"answer": item.answer.value})


# --- cleaning and the answer phrase --------------------------------------------------------


@pytest.mark.parametrize("raw,clean", [
    ("<think>a\nb</think>\n  yes ", "yes"),
    ("<THINK>x</THINK><think>y</think>no", "no"),
    ("the prompt opened the thought </think> yes", "yes"),  # dangling: <think> was in the prompt
    ("yes <think>then it was cut off", "yes"),
    ("```json\n{\"answer\": 1}\n```", "{\"answer\": 1}"),
    ("The final answer is \\boxed{B}.", "The final answer is B."),
])
def test_clean_reply(raw: str, clean: str) -> None:
    assert clean_reply(raw) == clean


def test_last_answer_phrase_wins_and_only_its_line_counts() -> None:
    assert ok("Answer: yes. On reflection, the answer is no", YES_NO) == "no"
    assert ok("**Final Answer:** 7\nThat is, 7 of 9 frames.", NUMBER) == 7
    assert ok("**Answer**:\n\nC", CHOICE) == 2
    assert ok("I reasoned about (A) and (B).\nAnswer: (D)", CHOICE) == 3


def test_structured_json_wins_in_any_mode() -> None:
    structured = '{"reasoning": "Answer: no. (A)", "answer": "(B) Joint Bodies", "bboxes": []}'
    assert ok(structured, CHOICE) == 1
    assert ok(f"Sure! Here it is:\n{structured}\nHope this helps. Answer: (C)", CHOICE) == 1
    assert ok('{"answer": true}', YES_NO) == "yes"
    assert ok('{"answer": [5, 3, 4, 4]}', FRAMES) == [3, 4, 5]
    assert ok('{"answer": "31.7 mL"}', NUMBER) == 31.7
    cut_off = '{"reasoning": "Answer: no.", "answer": "yes", "bboxes": [{"frame": 3, "label": "tea'
    assert ok(cut_off, YES_NO) == "yes"
    assert ok('{"reasoning": "r", "answer": [{"frame": 3, "bbox": [1, 2, 3, 4]}], "bboxes": [{"fr', BOXES) == [
        {"frame": 3, "box": [1, 2, 3, 4]}]


# --- per answer type ----------------------------------------------------------------------


@pytest.mark.parametrize("raw,value", [
    ("yes", "yes"), ("No.", "no"), ("TRUE", "yes"), ("false", "no"), ("y", "yes"), ("N", "no"),
    ("Yes, there is a tear on frame 3.", "yes"), ("**No**", "no"),
    ("Answer: I think yes", "yes"), ("The lesion is visible. Final answer: No", "no"),
    ("**Answer:** yes", "yes"), ("<think>no no no</think>Yes", "yes"),
    ('{"reasoning": "r", "answer": "no", "bboxes": []}', "no"),
])
def test_yes_no(raw: str, value: str) -> None:
    assert ok(raw, YES_NO) == value


@pytest.mark.parametrize("raw", [
    "not sure", "Answer: not sure", "N/A", "yes/no", "There is no tear",  # no phrase: first word only
    "<think>yes</think>", "<think>yes, it is",
])
def test_yes_no_failures(raw: str) -> None:
    fails(raw, YES_NO)


@pytest.mark.parametrize("raw,value", [
    ("(B)", 1), ("B.", 1), ("B)", 1), ("b", 1), ("Option B", 1), ("option b", 1), ("answer: B", 1),
    ("B: Joint Bodies", 1), ("The answer is (B) Joint Bodies", 1), ("  joint   BODIES. ", 1),
    ("**Answer:** D", 3), ("Answer: (A) Meniscus Tear", 0), ("A", 0), ("A.", 0),
    ("(C) Grade C lesion", 2), ("grade c lesion", 2), ("Answer: C", 2),
    ("B because the box is dark", 1), ("The final answer is \\boxed{D}", 3),
    ("Answer: A meniscus tear is option (D)", 3),  # the article "A" is not a letter
])
def test_choice(raw: str, value: int) -> None:
    assert ok(raw, CHOICE) == value


@pytest.mark.parametrize("raw,error", [
    ("E", "past the last of 4 options"), ("(E)", "past the last"), ("Answer: option e", "past the last"),
    ("(A) or (B)", "several options"), ("Answer: A and B", "several options"), ("B, C", "several"),
    ("The answer is Joint Bodies or Meniscus Tear", "no option"), ("I cannot see the image", "no option"),
])
def test_choice_failures(raw: str, error: str) -> None:
    assert error in fails(raw, CHOICE)


def test_choice_without_options_fails() -> None:
    assert "no options" in fails("A", make_item({"type": "choice", "value": 0}))


@pytest.mark.parametrize("raw,value", [
    ("A, C", [0, 2]), ("A,C", [0, 2]), ("A and C", [0, 2]), ("(A) and (C)", [0, 2]), ("A C", [0, 2]),
    ("c, a, c", [0, 2]), ("Option A and option D", [0, 3]), ("A; C.", [0, 2]),
    ("(A) Meniscus Tear; (C) Grade C lesion", [0, 2]), ("Meniscus Tear, grade c lesion", [0, 2]),
    ("Answer: B", [1]), ("none", []), ("Answer: None of the above.", []),
    ('{"reasoning": "", "answer": "none", "bboxes": []}', []),
])
def test_multi_choice(raw: str, value: list[int]) -> None:
    assert ok(raw, MULTI) == value


@pytest.mark.parametrize("raw", ["AC", "A, E", "A, Tear", "I cannot see the image", "Answer:"])
def test_multi_choice_failures(raw: str) -> None:
    fails(raw, MULTI)


@pytest.mark.parametrize("raw,value", [
    ("3", 3), ("3.0", 3.0), ("12.5 mL", 12.5), ("1,234", 1234), ("-2", -2), ("three", 3),
    ("Twenty-one", 21), ("twenty one", 21), ("zero", 0), ("There are 4 lesions.", 4),
    ("I count three.", 3), ("Answer: 2 lesions, the larger 12.5 mL", 12.5),
    ("Answer: 3\nThey lie on frames 5 and 6.", 3), ("The final answer is \\boxed{7}", 7),
    ("4 lesions; 4 in total", 4), ('{"answer": 31.7}', 31.7),
])
def test_number(raw: str, value: float) -> None:
    got = ok(raw, NUMBER)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("raw", ["many", "There are 4 lesions on frames 3-5", "Answer: several", "vertebra L1"])
def test_number_failures(raw: str) -> None:
    fails(raw, NUMBER)


@pytest.mark.parametrize("raw,value", [
    ("[3, 4, 5]", [3, 4, 5]), ("frames 3-5, 9", [3, 4, 5, 9]), ("3 to 5", [3, 4, 5]), ("frame 7", [7]),
    ("Answer: 9, 3-4, 3", [3, 4, 9]), ("5 through 6", [5, 6]), ("frames 3–5 and 8.", [3, 4, 5, 8]),
    ("none", []), ('{"answer": []}', []),
])
def test_frames(raw: str, value: list[int]) -> None:
    assert ok(raw, FRAMES) == value


@pytest.mark.parametrize("raw", ["5-3", "frame 2.5", "no frames are visible", "0-99999999"])
def test_frames_failures(raw: str) -> None:
    fails(raw, FRAMES)


@pytest.mark.parametrize("raw,value", [
    ('{"bbox_2d": [10, 20, 30, 40], "frame": 3}', [(3, [10, 20, 30, 40])]),
    ('{"bbox": [10, 20, 30, 40], "frame": 5}', [(5, [10, 20, 30, 40])]),  # unshown frame: kept
    ('[{"bbox_2d": [10, 20, 30, 40], "frame": 3}, {"bbox": [1, 2, 3, 4], "frame": 4}]',
     [(3, [10, 20, 30, 40]), (4, [1, 2, 3, 4])]),
    ('```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "tear"}]\n```', [(3, [10, 20, 30, 40])]),
    ("Frame 3: <bbx>[10, 20, 20, 20]</bbx>", [(3, [10, 20, 30, 40])]),  # x, y, w, h
    ("Frame 14: [108, 168, 123, 178]\nFrame 15: [1, 2, 3, 4] tear; [5, 6, 7, 8]",
     [(14, [108, 168, 123, 178]), (15, [1, 2, 3, 4]), (15, [5, 6, 7, 8])]),
    ("[10, 20, 30, 40]", [(3, [10, 20, 30, 40])]),  # one image shown: its frame
    ("Answer: [30, 40, 10, 20]", [(3, [30, 40, 10, 20])]),  # invalid, kept as written
    ('{"reasoning": "r", "answer": "see bboxes", "bboxes": [{"frame": 3, "label": "x", "bbox": [10, 20, 30, 40]}]}',
     [(3, [10, 20, 30, 40])]),
    ('{"reasoning": "r", "answer": [], "bboxes": [{"frame": 3, "label": "x", "bbox": [1, 2, 3, 4]}]}', []),
    ("none", []),
])
def test_boxes(raw: str, value: list[tuple[int, list[int]]]) -> None:
    assert ok(raw, BOXES) == [{"frame": f, "box": b} for f, b in value]


@pytest.mark.parametrize("profile,raw,box", [
    # a 200 x 100 image: every convention, written by boxes.conventions itself, reads back to the same pixels
    *[(p, f"Frame {4 + PROFILES[p].frame_base}: {json.dumps(PROFILES[p].encode((20, 20, 100, 100), 200, 100))}",
       [20, 20, 100, 100]) for p in PROFILES if PROFILES[p].answer_form == "boxes" and PROFILES[p].space.max_error(200, 100) == 0],
    ("qwen2-vl", "Frame 4: [100, 200, 500, 1000]", [20, 20, 100, 100]),
    ("qwen2-vl", "Frame 4: <|box_start|>(100,200),(500,1000)<|box_end|>", [20, 20, 100, 100]),
    ("qwen2-vl", "Frame 4: <bbx>[100, 200, 400, 800]</bbx>", [20, 20, 100, 100]),
    ("norm1", "Frame 4: [0.1, 0.2, 0.5, 1.0]", [20, 20, 100, 100]),
    ("qwen2-vl", "Frame 4: [10, 20, 30, 40]", [2, 2, 6, 4]),  # small numbers are still 0-1000
])
def test_box_conventions(profile: str, raw: str, box: list[int]) -> None:
    assert ok(raw, BOXES_TWO_IMAGES, profile) == [{"frame": 4, "box": box}]


def test_boxes_need_a_frame_and_a_size() -> None:
    assert "no frame" in fails("[10, 20, 30, 40]", BOXES_TWO_IMAGES)
    assert "integers" in fails("Frame 4: [0.1, 0.2, 0.5, 1.0]", BOXES_TWO_IMAGES)  # pixel: never read as norm1
    no_images = make_item(BOXES.answer.model_dump(), images=[])
    assert "frame_size" in fails("Frame 3: [500, 500, 1000, 1000]", no_images, "qwen2-vl")
    assert ok("Frame 3: [500, 500, 1000, 1000]", no_images, "qwen2-vl", frame_size=(128, 128)) == [
        {"frame": 3, "box": [64, 64, 128, 128]}]
    assert "not a frame number" in fails('{"bbox": [1, 2, 3, 4], "frame": "three"}', BOXES)


@pytest.mark.parametrize("raw", ["I cannot see the image", "Frame 3: [1, 2, 3]", "Frame 3: [1.5, 2, 3, 4]",
                                 '{"bbox": "10, 20, 30, 40", "frame": 3}'])
def test_boxes_failures(raw: str) -> None:
    fails(raw, BOXES)


@pytest.mark.parametrize("profile,raw", [
    ("pixel", '{"frame_start": 2, "frame_end": 5, "bbox": [10, 20, 30, 40]}'),
    ("pixel", "frames 2-5, [10, 20, 30, 40]"),
    ("pixel", "Answer: frames 2 to 5, box [10, 20, 30, 40]."),
    ("pixel", '{"reasoning": "r", "answer": {"frame_start": 2, "frame_end": 5, "bbox": [10, 20, 30, 40]}, "bboxes": []}'),
    ("qwen2-vl", "frames 2-5, [63, 125, 188, 250]"),
])
def test_box3d(profile: str, raw: str) -> None:
    assert ok(raw, BOX3D, profile) == {"frame_start": 2, "frame_end": 5, "box": [10, 20, 30, 40]}


@pytest.mark.parametrize("raw", ["frames 2-5", "[10, 20, 30, 40]", '{"frame_start": "2", "frame_end": 5, "bbox": [1, 2, 3, 4]}'])
def test_box3d_failures(raw: str) -> None:
    fails(raw, BOX3D)


@pytest.mark.parametrize("raw,value", [
    ("The knee is normal.", "The knee is normal."), ("<think>x</think>  Answer: Normal knee. ", "Normal knee."),
    ('{"reasoning": "r", "answer": "Normal", "bboxes": []}', "Normal"), ("I cannot see the image", "I cannot see the image"),
])
def test_text(raw: str, value: str) -> None:
    assert ok(raw, TEXT) == value


@pytest.mark.parametrize("raw,value", [
    ("2", 2), ("grade 2", 2), ("Grade: 3", 3), ("Answer: grade two", 2), ("The lesion is grade 1 of 3", 1),
    ('{"answer": 0}', 0),
])
def test_grade(raw: str, value: int) -> None:
    assert ok(raw, GRADE) == value


@pytest.mark.parametrize("raw,error", [("grade 5", "not on the scale"), ("2.5", "not an integer"), ("severe", "no number")])
def test_grade_failures(raw: str, error: str) -> None:
    assert error in fails(raw, GRADE)


# --- adversarial replies and the API ------------------------------------------------------

ALL = [YES_NO, CHOICE, MULTI, NUMBER, FRAMES, BOXES, BOX3D, TEXT, GRADE]


@pytest.mark.parametrize("raw", ["", "   \n", "<think>yes (B) 3 frame 4 [1, 2, 3, 4]</think>", "```\n```"])
@pytest.mark.parametrize("item", ALL, ids=[it.answer.type for it in ALL])
def test_empty_replies_fail_for_every_type(raw: str, item: Item) -> None:
    fails(raw, item)


@pytest.mark.parametrize("item", [it for it in ALL if it.answer.type != "text"],
                         ids=[it.answer.type for it in ALL if it.answer.type != "text"])
def test_refusal_fails_for_every_typed_answer(item: Item) -> None:
    fails("I cannot see the image", item)
    fails("I'm sorry, I can't help with that.", item)


def test_registry_covers_every_answer_type_and_results_are_frozen() -> None:
    types = {m.model_fields["type"].default for m in get_args(get_args(Answer)[0])}
    assert set(ANSWER_TYPES) == types
    result = parse_answer("yes", YES_NO)
    assert result == ParseResult(True, "yes", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ok = False  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown box profile"):
        parse_answer("yes", YES_NO, "xyxy")


# --- answer reading gaps found by trying documented model outputs -----------------------------


def test_option_text_inside_a_sentence_and_letter_options() -> None:
    turns = make_item({"type": "choice", "value": 0}, ["Turn Left, Turn Right", "Turn Right, Turn Left"])
    assert ok("Looking at the frames... So the sequence is Turn Left, Turn Right.", turns) == 0
    letters = make_item({"type": "choice", "value": 3}, ["A", "B", "C", "D"])
    assert ok("Answer: D. D.", letters) == 3
    assert "exactly one option text" in fails("Either Turn Left, Turn Right or Turn Right, Turn Left.", turns)


def test_counts_beside_points_and_none() -> None:
    points = 'Counting the <points x1="10.5" y1="20.1" x2="30.2" y2="40.9" alt="tears">tears</points> shows a total of 5'
    assert ok(points, NUMBER) == 5
    assert ok("There are none.", NUMBER) == 0
    assert ok("There are no lesions visible.", NUMBER) == 0
    assert ok("Answer: none", NUMBER) == 0


def test_medgemma_thought_is_dropped() -> None:
    assert ok("<unused94>thought\nIs it (A)? No, 4 of them.<unused95>Answer: 3", NUMBER) == 3
    assert "no number" in fails("<unused94>thought\nThere are 3 tears, maybe", NUMBER)  # cut off


def test_frame_lists_with_context_counts() -> None:
    assert ok("frames 12, 13, 14 (of 24 frames shown)", FRAMES) == [12, 13, 14]
    assert ok("Answer: frames 3-5 out of 16 frames", FRAMES) == [3, 4, 5]
    assert ok("frames 3, 4 (and 5)", FRAMES) == [3, 4, 5]
