"""The conversation a model sees: the user turn, the JSON target and where each box goes.

One module for what training exports write and what evaluation asks, so a model is trained
and tested on the same text. An item becomes one user turn and one assistant turn. The user
turn shows every image as ``Frame {k}:`` followed by the image, then the question, the options
as ``(A) ...`` lines and, when the answer has boxes (``boxes``, ``box3d``, a grounded text
summary), the profile's prompt hint. The assistant turn is the JSON text

    {"reasoning": ..., "answer": ..., "bboxes": [{"frame": k, "label": ..., "bbox": [...]}]}

with one ``bboxes`` entry per evidence entry (its ``image_box``); the answer is written by its
answer type (``voxqa.answers``), which may add fields before ``bboxes`` (a knee MOAKS grade
carries 3DReasonKnee's ``"MOAKS_scores"``). Boxes are written in the
chosen profile's convention on the image the model sees, and so is every box quoted in the
question, reasoning or a text answer: items quote boxes in pixels of the *stored* frame,
which stop being true once `voxqa render` resizes the frame. A quoted box is recognised only
as the exact text of a box the item itself holds (evidence, answer), never by guessing.

How a box reaches the text is a ``BoxStyle``: numbers in the profile's convention
(``InlineBoxes``; quoted in running text as the profile's ``quote`` says), or a placeholder a
trainer fills in later (ms-swift's export).
Image paths are absolute, so exports work from any working directory without copying PNGs.

**Frame numbers.** Items store 0-based frame indices. The conversation numbers frames from
the profile's ``frame_base``: ``Frame {k + base}:`` labels, every ``frame k`` / ``frames a-b,
c`` in the question, options, reasoning and text answers (``label_frames``), and every
``"frame"`` and frame list of the target. With voxqa's default (0) the text is the item's;
with SGMRI-VQA's (1, profile ``sgmri``) a model reads and writes the numbers SGMRI's records
use, and ``voxqa.answers`` subtracts the base again when it reads a reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from voxqa.answers import ANSWER_TYPES
from voxqa.answers.options import marked
from voxqa.boxes.profiles import Profile
from voxqa.dataset.paths import inside
from voxqa.errors import InputError
from voxqa.render import map_box
from voxqa.schema import Item

IMAGE_TOKEN = "<image>"
BOX_TEXT = re.compile(r"\[(\d+), (\d+), (\d+), (\d+)\]")
Box = tuple[int, int, int, int]
_FRAME_NUMBER = r"\d+(?:\s*(?:-|–|\bto\b|\bthrough\b)\s*\d+)?"
#: "Frame 7", "frame 7", "frames 3-5, 9", "frames 3, 5 and 7": the frame numbers items write
FRAME_MENTION = re.compile(rf"\b(frames?\s+)({_FRAME_NUMBER}(?:(?:\s*,\s*|\s+and\s+){_FRAME_NUMBER})*)",
                           re.IGNORECASE)
_DIGITS = re.compile(r"\d+")


def label_frames(text: str, base: int) -> str:
    """``text`` with every frame number it writes (``FRAME_MENTION``: items' 0-based indices)
    as the prompt labels frames, counted from ``base``."""
    if not base:
        return text
    return FRAME_MENTION.sub(
        lambda m: m[1] + _DIGITS.sub(lambda n: str(int(n[0]) + base), m[2]), text)


@dataclass(frozen=True)
class BoxRef:
    """A box to write: canonical pixels of a rendered image, and which image of the item."""

    image_box: Box
    image_index: int
    width: int
    height: int


class BoxStyle(Protocol):
    """How boxes and box labels land in the text (called in text order, user turn first)."""

    def box(self, ref: BoxRef) -> str:
        """JSON text standing for the box."""
        ...

    def quote(self, ref: BoxRef) -> str:
        """The box as running text quotes it (inside a JSON string: no quotes or backslashes)."""
        ...

    def label(self, label: str) -> str:
        """The inside of a JSON string standing for a box's label."""
        ...


class InlineBoxes:
    """Boxes written out as numbers in the profile's convention."""

    def __init__(self, profile: Profile):
        self.profile = profile

    def box(self, ref: BoxRef) -> str:
        return json.dumps(self.profile.encode(ref.image_box, ref.width, ref.height))

    def quote(self, ref: BoxRef) -> str:
        return self.profile.quoted(ref.image_box, ref.width, ref.height)

    def label(self, label: str) -> str:
        return json.dumps(label, ensure_ascii=False)[1:-1]


@dataclass(frozen=True)
class Sample:
    """One exported item: images in the order shown, the user turn, the assistant target.

    ``user`` alternates text and images: each ``None`` is where an image goes.
    """

    item: Item
    images: list[str]
    frames: list[int]
    question: str
    options: list[str] | None
    user: list[str | None]
    target: str
    boxes: BoxStyle

    def user_text(self, token: str = IMAGE_TOKEN) -> str:
        """The user turn as one string with ``token`` at each image."""
        return "".join(token if part is None else part for part in self.user)


class _Boxes:
    """The boxes an item can quote, keyed by their stored-frame pixels."""

    def __init__(self, item: Item, frame_size: tuple[int, int]):
        assert item.images
        sizes = {(im.width, im.height) for im in item.images}
        if len(sizes) != 1:
            raise InputError(f"item {item.id}: its images differ in size {sorted(sizes)}")
        self.size = sizes.pop()
        self.frame_size = frame_size
        self.index = {im.frame: i for i, im in enumerate(item.images)}
        self.by_stored: dict[Box, BoxRef] = {}
        self.evidence: list[BoxRef] = []
        for e in item.evidence:
            if e.image_box is None:
                raise InputError(f"item {item.id}: evidence on frame {e.frame} has no image_box")
            ref = self._ref(e.frame, e.image_box)
            self.evidence.append(ref)
            self.by_stored.setdefault(tuple(e.box), ref)

    def _ref(self, frame: int, image_box: Sequence[int]) -> BoxRef:
        # a frame that is not shown uses the first image: all images of an item share one size
        return BoxRef(tuple(image_box), self.index.get(frame, 0), *self.size)

    def stored(self, frame: int, box: Sequence[int]) -> BoxRef:
        """A stored-frame box on the rendered image: its evidence entry, else mapped as render does."""
        key = tuple(box)
        if key not in self.by_stored:
            self.by_stored[key] = self._ref(frame, map_box(box, self.frame_size, self.size))
        return self.by_stored[key]


def _rewrite(text: str, boxes: _Boxes, style: BoxStyle, escape: Callable[[str], str]) -> str:
    """``text`` with every box it quotes rewritten in order, the rest passed through ``escape``."""
    out, last = [], 0
    for m in BOX_TEXT.finditer(text):
        ref = boxes.by_stored.get(tuple(int(g) for g in m.groups()))
        out += [escape(text[last:m.start()]), m.group(0) if ref is None else style.quote(ref)]
        last = m.end()
    out.append(escape(text[last:]))
    return "".join(out)


def _plain(text: str, boxes: _Boxes, style: BoxStyle) -> str:
    return _rewrite(text, boxes, style, lambda s: s)


def _json_string(text: str, boxes: _Boxes, style: BoxStyle) -> str:
    """``text`` as a JSON string literal, its quoted boxes rewritten."""
    return '"' + _rewrite(text, boxes, style, lambda s: json.dumps(s, ensure_ascii=False)[1:-1]) + '"'


class _Target:
    """The ``TargetWriter`` answer types write their target with (``voxqa.answers.base``)."""

    def __init__(self, boxes: _Boxes, style: BoxStyle, frame_base: int, native: Profile | None = None):
        self.boxes, self.style, self.frame_base, self.profile = boxes, style, frame_base, native

    def text(self, text: str) -> str:
        return _json_string(label_frames(text, self.frame_base), self.boxes, self.style)

    def box(self, frame: int, box: Sequence[int]) -> str:
        return self.style.box(self.boxes.stored(frame, box))

    def frame(self, frame: int) -> int:
        return frame + self.frame_base

    def native(self, boxes: Sequence[tuple[int, Sequence[int], str | None]]) -> str | None:
        if self.profile is None or not boxes:
            return None
        lines = []
        for frame, box, label in boxes:
            ref = self.boxes.stored(frame, box)
            lines.append(f"Frame {self.frame(frame)}: {self.profile.write(ref.image_box, ref.width, ref.height, label)}")
        return json.dumps("\n".join(lines), ensure_ascii=False)


def wants_box_hint(item: Item) -> bool:
    """Whether the user turn ends with the profile's box hint: answers with boxes only. A text
    answer (a grounded summary) quotes boxes when the study has any; every text item gets the
    hint, so its presence never tells a study without findings apart."""
    return ANSWER_TYPES[item.answer.type].holds_boxes


def build_sample(
    item: Item, folder: Path, frame_size: tuple[int, int], profile: Profile, style: BoxStyle
) -> Sample:
    """Prompt and target of one rendered item.

    ``folder`` is the dataset folder as an absolute path; ``frame_size`` is the (width,
    height) of the item's study's stored frame.
    """
    assert item.images
    boxes = _Boxes(item, frame_size)
    kind = ANSWER_TYPES[item.answer.type]
    for frame, box in kind.boxes_of(item.answer.model_dump(mode="json")["value"]):
        boxes.stored(frame, box)  # answer boxes may be quoted before the answer is written

    base = profile.frame_base
    question = _plain(label_frames(item.question, base), boxes, style)
    options = None if item.options is None else [_plain(label_frames(o, base), boxes, style) for o in item.options]
    body = [question] + [f"{marked(i)} {o}" for i, o in enumerate(options or [])]
    user: list[str | None] = []
    for n, im in enumerate(item.images):
        user += [("\n" if n else "") + f"Frame {im.frame + base}: ", None]
    hint = [profile.hint] if wants_box_hint(item) else []  # yes/no, choice, ...: none
    user.append("\n" + "\n".join(body + hint))

    reasoning = _json_string(label_frames(item.reasoning, base), boxes, style)
    # native target style: answer and evidence boxes in the family's own text form (inline boxes only)
    native = profile if profile.target == "native" and isinstance(style, InlineBoxes) else None
    answer = kind.target(item, _Target(boxes, style, base, native))

    def bbox(ref: BoxRef) -> str:
        if native is None:
            return style.box(ref)
        return json.dumps(native.write(ref.image_box, ref.width, ref.height), ensure_ascii=False)

    cited = ", ".join(
        f'{{"frame": {e.frame + base}, "label": "{style.label(e.label)}", "bbox": {bbox(ref)}}}'
        for e, ref in zip(item.evidence, boxes.evidence, strict=False)
    )
    target = f'{{"reasoning": {reasoning}, "answer": {answer}, {kind.target_fields(item)}"bboxes": [{cited}]}}'
    return Sample(
        item=item,
        images=[str(inside(folder, im.path, f"item {item.id}")) for im in item.images],
        frames=[im.frame for im in item.images],
        question=question,
        options=options,
        user=user,
        target=target,
        boxes=style,
    )


def text_messages(sample: Sample) -> list[dict[str, str]]:
    """The two turns as plain strings, one ``<image>`` per image (ShareGPT / OpenAI style)."""
    return [{"role": "user", "content": sample.user_text(IMAGE_TOKEN)},
            {"role": "assistant", "content": sample.target}]
