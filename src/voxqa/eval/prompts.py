"""Prompts: what a model is shown for an item, the same for every adapter.

The user turn is the one training exports write (voxqa.conversation.build_sample): each
image after a text label "Frame k:" with k the frame index stored in the item (0-based)
plus the profile's ``frame_base`` (0 for voxqa's profiles, so k is the stored index; 1 for
``sgmri``, SGMRI-VQA's numbering), frame numbers in the texts counted the same way, then
the question with its boxes in the profile's convention, the options as (A), (B), ... and,
for answers with boxes, the profile's box hint. The mode decides what follows:

* ``minimal``: one line saying how to answer (the answer type's ``instruction``);
* ``structured``: the JSON schema {"reasoning", "answer", "bboxes"} (3DReasonKnee found an
  explicit schema helps), the same target the exports train on, and the box hint for the
  "bboxes" where the user turn has none;
* ``oracle_region``: the minimal line, after the region the question asks about is given
  (``asked_region``), which separates localization failures from diagnosis failures
  (3DReasonKnee's GT-region uplift). Every item of a template gets the line, built from what
  the question names and never from the answer: a graded subregion's box (the same whatever
  the grade), the boxes the question quotes, else the frames it names (whole frames), else the
  whole volume. Where the region is the answer (localization, box, 3D-box, frame-list and
  grounded-text answers) the mode refuses the item (``region_refusal``): it is left out of the
  run and counted in results.json (``excluded_oracle_region``). Giving the evidence instead
  stated the answer: it exists only for "yes" items and is the gold box of box answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from voxqa.answers import ANSWER_TYPES
from voxqa.boxes.profiles import Profile
from voxqa.dataset.paths import check_png
from voxqa.conversation import BOX_TEXT, InlineBoxes, build_sample, wants_box_hint
from voxqa.errors import InputError
from voxqa.render import map_box
from voxqa.schema import Item

MODES = ("minimal", "structured", "oracle_region")
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
    """The region ``item``'s question asks about, chosen without looking at the answer: (boxes,
    frames). Boxes: a graded subregion's (``NAMED_REGION_TASKS``), else the boxes the question's
    text quotes (on the frame it names); frames (whole frames): the frames the question names
    when there are no boxes; both empty: the whole volume."""
    if item.task in NAMED_REGION_TASKS and item.evidence:
        return [(e.frame, e.box, e.image_box) for e in item.evidence], []
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


@dataclass(frozen=True)
class Prompt:
    """A user turn: ("text", str) and ("image", absolute PNG path) parts, in order."""

    item_id: str
    parts: tuple[tuple[str, str], ...]
    target: str  # the structured answer an ideal model gives (used by the oracle baseline)


def build_prompt(item: Item, folder: Path, frame_size: tuple[int, int], profile: Profile,
                 mode: str = "minimal", images: list[str] | None = None) -> Prompt:
    """The prompt of a rendered item; ``images`` replaces the PNG paths (controls)."""
    if mode not in MODES:
        raise ValueError(f"unknown prompt mode {mode!r}; known: {', '.join(MODES)}")
    sample = build_sample(item, Path(folder).resolve(), frame_size, profile, InlineBoxes(profile))
    paths = [str(check_png(p, f"item {item.id}")) for p in (images or sample.images)]
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
    tail = STRUCTURED if mode == "structured" else ANSWER_TYPES[item.answer.type].instruction
    if mode == "structured" and not wants_box_hint(item):  # its "bboxes" need the convention
        tail += "\n" + profile.hint
    parts.append(("text", "\n" + tail))
    return Prompt(item_id=item.id, parts=tuple(parts), target=sample.target)
