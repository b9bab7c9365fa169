"""box3d: one 3D box, ``value`` {frame_start, frame_end (inclusive), box} in canonical pixels.

Reading: JSON {"frame_start", "frame_end", "bbox"|"bbox_2d"|"box"}, "frames a-b, <box>", or
six numbers in the profile's 3D layout (3DReasonKnee's [start, end, x_min, x_max, y_min,
y_max]; M3D's fractions for ``m3d``). The box is sized by the image of ``frame_start`` (see
``voxqa.answers.boxes``). Frame numbers written in the reply (all but M3D's, which its
transform maps) are read as the prompt labels frames, from the profile's ``frame_base``, and
the target writes them so. Scores: 3D IoU and accuracy at IoU thresholds.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

from voxqa.answers.base import AnswerType, Scores, ScoreContext, TargetWriter
from voxqa.answers.boxes import BOX_KEYS, is_number, pixels, random_box, stored_frame, written_boxes
from voxqa.answers.reply import Number, ParseContext, ParseError, Reply, json_values
from voxqa.boxes.profiles import Profile
from voxqa.eval.metrics.boxes import BOX3D_THRESHOLDS, box3d_iou
from voxqa.schema import Box3DAnswer, Item

_FRAME_RANGE_WORDS = re.compile(r"\bframes?\s*(\d+)\s*(?:-|–|—|\bto\b|\bthrough\b)\s*(\d+)", re.IGNORECASE)


def _box3d_json(value: Any) -> dict[str, Any] | None:
    """The first {"frame_start", "frame_end", box} object inside a JSON value."""
    if isinstance(value, dict):
        key = next((k for k in BOX_KEYS if k in value), None)
        if key is not None and "frame_start" in value and "frame_end" in value:
            return {"frame_start": value["frame_start"], "frame_end": value["frame_end"],
                    "box": value[key]}
        value = list(value.values())
    if isinstance(value, list):
        return next((f for v in value if (f := _box3d_json(v)) is not None), None)
    return None


def _six(text: str) -> list[Number] | None:
    """The first list of six numbers in ``text`` (a 3D box in the profile's layout)."""
    return next((v for _, v in json_values(text)
                 if isinstance(v, list) and len(v) == 6 and all(is_number(x) for x in v)), None)


def _reasonknee(v: list[Number], ctx: ParseContext) -> dict[str, Any]:
    """3DReasonKnee's ``[start_frame, end_frame, x_min, x_max, y_min, y_max]``, x and y in the
    profile's 2D space (written in its axis order before decoding)."""
    f0, f1, x0, x1, y0, y1 = v
    xy = [x0, y0, x1, y1]
    if getattr(ctx.profile.space, "order", "xy") == "yx":
        xy = [y0, x0, y1, x1]
    return {"frame_start": f0, "frame_end": f1, "box": xy}


class Box3DType(AnswerType):
    name = "box3d"
    instruction = "Answer as: frames a-b, then the box on frame a."
    holds_boxes = True
    blind_prior = False

    def parse(self, reply: Reply, ctx: ParseContext) -> dict[str, Any]:
        """Frames inclusive and a box in pixels, sized by the image of ``frame_start``: a JSON
        {"frame_start", "frame_end", "bbox"}, "frames a-b, <box>", or six numbers in the
        profile's 3D layout (3DReasonKnee's, or M3D-LaMed's with a recipe transform)."""
        text = reply.answer
        found = next((f for _, v in json_values(text) if (f := _box3d_json(v)) is not None), None)
        if found is None and (six := _six(text)) is not None:
            if ctx.profile.box3d == "m3d":
                if ctx.volume_box is None:
                    raise ParseError("an M3D 3D box needs the study's `render --recipe m3d` transform")
                try:
                    return ctx.volume_box(six)
                except ValueError as exc:
                    raise ParseError(str(exc)) from None
            found = _reasonknee(six, ctx)
        if found is None:
            m = _FRAME_RANGE_WORDS.search(text)
            boxes = written_boxes(text[m.end():], ctx.profile) if m else []
            if m is None or not boxes:
                raise ParseError('no "frames a-b, <box>", frame_start/frame_end/bbox or 6-number 3D box found')
            found = {"frame_start": int(m[1]), "frame_end": int(m[2]), "box": boxes[0].values}
        for key in ("frame_start", "frame_end"):
            found[key] = stored_frame(found[key], ctx)
        found["box"] = pixels(found["box"], found["frame_start"], ctx)
        return found

    def score(self, gold: Any, pred: Any, ctx: ScoreContext) -> Scores:
        v = box3d_iou(gold, pred) if pred is not None else 0.0
        return {"iou3d": v, **{f"acc@{t}": float(v >= t) for t in BOX3D_THRESHOLDS}}

    def target(self, item: Item, write: TargetWriter) -> str:
        v = cast(Box3DAnswer, item.answer).value
        return (f'{{"frame_start": {write.frame(v.frame_start)}, "frame_end": {write.frame(v.frame_end)}, '
                f'"bbox": {write.box(v.frame_start, v.box)}}}')

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        im, box = random_box(item, rng, profile)
        return f"frames {im.frame + profile.frame_base}-{im.frame + profile.frame_base}, {box}"

    def on_image(self, value: Any, to_image: Callable[[Sequence[int]], list[int]]) -> Any:
        return {**value, "box": to_image(value["box"])}

    def boxes_of(self, value: Any) -> list[tuple[int, list[int]]]:
        if isinstance(value, dict) and "box" in value:
            return [(value["frame_start"], list(value["box"]))]
        return []


BOX3D = Box3DType()
