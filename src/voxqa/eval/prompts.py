"""Prompts: what a model is shown for an item, the same for every adapter.

The user turn is the one training exports write (voxqa.conversation.build_sample): each
image after a text label "Frame k:" with k the 0-based frame index stored in the item, then
the question with its boxes in the profile's convention, the options as (A), (B), ... and,
for answers with boxes, the profile's box hint. The mode decides what follows:

* ``minimal``: one line saying how to answer (the answer type's ``instruction``);
* ``structured``: the JSON schema {"reasoning", "answer", "bboxes"} (3DReasonKnee found an
  explicit schema helps), the same target the exports train on, and the box hint for the
  "bboxes" where the user turn has none;
* ``oracle_region``: the minimal line, after the ground-truth evidence (frames and boxes) is
  given, which separates localization failures from diagnosis failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voxqa.answers import ANSWER_TYPES
from voxqa.boxes.profiles import Profile
from voxqa.dataset.paths import check_png
from voxqa.conversation import InlineBoxes, build_sample, wants_box_hint
from voxqa.schema import Item

MODES = ("minimal", "structured", "oracle_region")
STRUCTURED = (
    'Reply with JSON only: {"reasoning": "<your reasoning>", "answer": <your answer>, '
    '"bboxes": [{"frame": <frame number>, "label": "<finding>", "bbox": <the box numbers as a JSON list>}]}'
)


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
    if mode == "oracle_region" and item.evidence:
        size = {im.frame: (im.width, im.height) for im in item.images or []}
        given = "; ".join(
            f"Frame {e.frame}: {profile.encode(e.image_box, *size.get(e.frame, next(iter(size.values()))))}"
            for e in item.evidence if e.image_box is not None
        )
        parts.append(("text", f"\nThe relevant region: {given}."))
    tail = STRUCTURED if mode == "structured" else ANSWER_TYPES[item.answer.type].instruction
    if mode == "structured" and not wants_box_hint(item):  # its "bboxes" need the convention
        tail += "\n" + profile.hint
    parts.append(("text", "\n" + tail))
    return Prompt(item_id=item.id, parts=tuple(parts), target=sample.target)
