"""Prompts: what a model is shown for an item, the same for every adapter.

The user turn is the one training exports write (voxqa.conversation.build_sample): each
image after a text label "Frame k:" with k the frame index stored in the item (0-based)
plus the profile's ``frame_base`` (0 for voxqa's profiles, so k is the stored index; 1 for
``sgmri``, SGMRI-VQA's numbering), frame numbers in the texts counted the same way, then
the question with its boxes in the profile's convention, the options as (A), (B), ... and,
for answers with boxes, the profile's box hint. The mode decides what follows:

* ``minimal``: one line saying how to answer (the answer type's ``instruction``);
  ReasonKnee-Bench's **zero-shot** setting (alias ``zero-shot``);
* ``structured``: the JSON schema {"reasoning", "answer", "bboxes"}, the same target the
  exports train on, and the box hint for the "bboxes" where the user turn has none;
* ``guided``: the minimal prompt with the item's ``guided_question`` in place of its question
  (3DReasonKnee's **guided** setting: the released guided template, or voxqa's question with
  the feature's released guidance sentence); refused when no selected item has one;
* ``oracle_region``: the guided prompt (the minimal one for items without guidance), the
  region the question asks about added and nothing else changed, which separates localization
  failures from diagnosis failures (3DReasonKnee's **GT region** setting, alias ``gt-region``;
  the uplift is oracle_region minus guided). Every item of a template gets the line, built
  from what the question names and never from the answer: a grading item's region 3D box
  (``Item.region``: its frames and in-plane box, the same whatever the grade; a run on grading
  items without one is refused, ``RegionNotGiven``), the boxes the question quotes, else the
  frames it names (whole frames), else the whole volume. Where the region is the answer
  (localization, box, 3D-box, frame-list and grounded-text answers) the mode refuses the item
  (``region_refusal``): it is left out of the run and counted in results.json
  (``excluded_oracle_region``). Giving the evidence instead stated the answer: it exists only
  for "yes" items and is the gold box of box answers.

An item whose question states its own reply JSON (``json_path``: 3DReasonKnee's released
templates) ends, instead of the answer type's line, with the released system prompt's
"Please provide your answer in JSON format." (code/zero_shot/qwen2vl.py L48, the system turn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from voxqa.answers import ANSWER_TYPES
from voxqa.boxes.profiles import Profile
from voxqa.dataset.paths import check_png
from voxqa.conversation import BOX_TEXT, InlineBoxes, build_sample, wants_box_hint
from voxqa.errors import InputError
from voxqa.padding import shown_images
from voxqa.render import map_box
from voxqa.schema import Item

MODES = ("minimal", "structured", "guided", "oracle_region")
#: ReasonKnee-Bench's names of its three settings -> the modes that are them.
MODE_ALIASES = {"zero-shot": "minimal", "zeroshot": "minimal", "gt-region": "oracle_region",
                "gt_region": "oracle_region"}
#: 3DReasonKnee's system prompt's answer line (code/zero_shot/qwen2vl.py L48, the system turn).
RELEASED_INSTRUCTION = "Please provide your answer in JSON format."
STRUCTURED = (
    'Reply with JSON only: {"reasoning": "<your reasoning>", "answer": <your answer>, '
    '"bboxes": [{"frame": <frame number>, "label": "<finding>", "bbox": <the box numbers as a JSON list>}]}'
)


#: Tasks whose evidence is the region the question names (a MOAKS subregion's box), computed
#: from the anatomy and the same whatever the answer; other tasks' evidence is the answer's.
NAMED_REGION_TASKS = frozenset({"grading"})
#: Answer types whose value is a location: giving "the region" would give the answer.
LOCATION_ANSWERS = frozenset({"boxes", "box3d", "frames"})


class RegionIsTheAnswer(InputError):
    """``oracle_region`` asked for an item whose answer is the region (a location)."""


class RegionNotGiven(InputError):
    """``oracle_region`` asked for grading items that carry no region (``Item.region``)."""


def canonical_mode(mode: str) -> str:
    """A mode or one of ReasonKnee-Bench's names for it (``MODE_ALIASES``)."""
    return MODE_ALIASES.get(mode, mode)


def check_mode(items: Sequence[Item], mode: str) -> None:
    """Refuse a run the mode cannot make as stated: ``guided`` on items none of which has
    guided instructions (it would be ``minimal`` under another name), ``oracle_region`` on
    grading items without a region (the prompt would carry no region, and the uplift would
    compare identical prompts)."""
    if mode == "guided" and items and not any(it.guided_question for it in items):
        raise InputError("--mode guided: no selected item has guided instructions (3DReasonKnee grading "
                         "items have them); use --mode minimal")
    if mode == "oracle_region":
        missing = [it for it in items if it.task in NAMED_REGION_TASKS and it.region is None]
        if missing:
            graded = sum(it.task in NAMED_REGION_TASKS for it in items)
            raise RegionNotGiven(
                f"--mode oracle_region (GT region): {len(missing)} of {graded} selected grading items carry no "
                f"region (e.g. {missing[0].id}); import their 3D boxes (bbox) or build with region boxes")


def region_refusal(item: Item) -> str | None:
    """Why ``oracle_region`` cannot give ``item`` a region (its answer is the region), or None."""
    if item.task == "localization" or item.answer.type in LOCATION_ANSWERS:
        return f"its answer ({item.answer.type}) is the region"
    if ANSWER_TYPES[item.answer.type].holds_boxes:
        return f"its answer ({item.answer.type}) quotes the boxes of the findings"
    return None


#: A region box: (frame, box in stored-frame pixels, box in rendered-image pixels if known).
RegionBox = tuple[int, tuple[int, int, int, int], tuple[int, int, int, int] | None]


def asked_region(item: Item) -> tuple[list[RegionBox], list[int]]:
    """The region ``item``'s question asks about, chosen without looking at the answer, when
    it is not a graded region's 3D box (``region3d_line``): (boxes, frames). Boxes: the boxes
    the question's text quotes (on the frame it names); frames (whole frames): the frames the
    question names when there are no boxes; both empty: the whole volume."""
    quoted = [tuple(int(g) for g in m.groups()) for m in BOX_TEXT.finditer(item.question)]
    if quoted and len(item.frames) == 1:
        return [(item.frames[0], cast(tuple[int, int, int, int], box), None) for box in quoted], []
    return [], list(item.frames)


def region_line(item: Item, profile: Profile, frame_size: tuple[int, int]) -> str:
    """The ``oracle_region`` line: the asked region in the profile's convention on the rendered
    images (``frame_size``: the stored frame's); raises ``RegionIsTheAnswer`` for an item the
    mode refuses."""
    if (why := region_refusal(item)) is not None:
        raise RegionIsTheAnswer(f"item {item.id}: --mode oracle_region cannot give its region: {why}")
    if item.task in NAMED_REGION_TASKS:
        return region3d_line(item, profile, frame_size)
    boxes, frames = asked_region(item)
    base = profile.frame_base
    if boxes:
        if not item.images:
            raise InputError(f"item {item.id}: render the dataset first")
        size = {im.frame: (im.width, im.height) for im in item.images}
        first = next(iter(size.values()))  # every image of an item has one size
        given = "; ".join(
            f"Frame {frame + base}: {profile.encode(shown or map_box(box, frame_size, size.get(frame, first)), *size.get(frame, first))}"
            for frame, box, shown in boxes)
    elif frames:
        given = "; ".join(f"Frame {k + base} (the whole frame)" for k in frames)
    else:
        given = "the whole volume (every frame shown)"
    return f"\nThe relevant region: {given}."


def region3d_line(item: Item, profile: Profile, frame_size: tuple[int, int]) -> str:
    """A graded region's 3D box as the ``oracle_region`` line: its frames (inclusive) and its
    in-plane box on the rendered images, in the profile's convention (the ``reasonknee``
    profile: 3DReasonKnee's [start_frame, end_frame, x_min, x_max, y_min, y_max]; frames
    counted from the profile's frame base, like every frame the prompt names)."""
    if item.region is None:
        raise RegionNotGiven(f"item {item.id}: --mode oracle_region: the item carries no region")
    if not item.images:
        raise InputError(f"item {item.id}: render the dataset first")
    size = (item.images[0].width, item.images[0].height)  # every image of an item has one size
    b = item.region
    x0, y0, x1, y1 = map_box(b.box, frame_size, size)
    start, end = b.frame_start + profile.frame_base, b.frame_end + profile.frame_base
    if profile.name == "reasonknee":
        given = f"{[start, end, x0, x1, y0, y1]} (3D box: start frame, end frame, x_min, x_max, y_min, y_max)"
    else:
        given = f"frames {start}-{end}, box {profile.encode((x0, y0, x1, y1), *size)} on those frames"
    return f"\nThe relevant region: {given}."


@dataclass(frozen=True)
class Prompt:
    """A user turn: ("text", str) and ("image", absolute PNG path) parts, in order."""

    item_id: str
    parts: tuple[tuple[str, str], ...]
    target: str  # the structured answer an ideal model gives (used by the oracle baseline)
    question: str = ""  # the question as this mode asks it (guided: the guided question)


def build_prompt(item: Item, folder: Path, frame_size: tuple[int, int], profile: Profile,
                 mode: str = "minimal", images: list[str] | None = None, padded: Path | None = None) -> Prompt:
    """The prompt of a rendered item; ``images`` replaces the PNG paths (controls). A profile
    measured on the padded square shows padded copies kept under ``padded/square/``
    (``voxqa.padding``: the run, export or training folder)."""
    if mode not in MODES:
        raise ValueError(f"unknown prompt mode {mode!r}; known: {', '.join(MODES)}")
    asked = item
    if mode in ("guided", "oracle_region") and item.guided_question:
        asked = item.model_copy(update={"question": item.guided_question})
    sample = build_sample(asked, Path(folder).resolve(), frame_size, profile, InlineBoxes(profile))
    paths = shown_images([str(check_png(p, f"item {item.id}")) for p in (images or sample.images)], profile, padded)
    parts: list[tuple[str, str]] = []
    n = 0
    for piece in sample.user:
        if piece is None:
            parts.append(("image", paths[n]))
            n += 1
        else:
            parts.append(("text", piece))
    if mode == "oracle_region":
        parts.append(("text", region_line(item, profile, frame_size)))
    if mode == "structured":
        tail = STRUCTURED + ("" if wants_box_hint(item) else "\n" + profile.hint)  # its "bboxes" need the convention
    else:
        tail = RELEASED_INSTRUCTION if item.json_path else ANSWER_TYPES[item.answer.type].instruction
    parts.append(("text", "\n" + tail))
    return Prompt(item_id=item.id, parts=tuple(parts), target=sample.target, question=asked.question)
