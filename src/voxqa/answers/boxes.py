"""boxes: frame-indexed 2D boxes, ``value`` a list of {frame, box} in canonical pixels.

Reading, in the answer text: the profile's own syntax (``<|box_start|>``, ``<loc..>``,
``<box>[[..]]</box>``, ...); JSON {"bbox_2d"|"bbox"|"box"|"box_2d": [...], "frame": k} and
lists of them; bare lists of the profile's numbers; ``<bbx>[x, y, w, h]</bbx>`` (SGMRI-VQA;
x-first profiles). Another family's syntax fails. Point profiles give {"frame", "point": [x,
y]}. A box without its own "frame" takes the last "Frame k" written before it, else the only
image's frame (items showing one image), else fails. The structured ``bboxes`` are read only
when the answer field holds no box. "none" -> []. Frame numbers are read as the prompt
labels frames, from the profile's ``frame_base`` (voxqa's 0; SGMRI-VQA's 1 with ``sgmri``),
and stored 0-based: with base 1, "Frame 1" is frame 0 and "Frame 0" is no frame.

Every box's numbers, in whatever syntax, are in the profile's space (``voxqa.boxes.spaces``)
on the rendered image of the box's frame (``item.images``; a frame the item did not show is
sized like its first image, as the export does; without images, ``frame_size``). ``<bbx>``
values are x, y, width, height in that space's units. The result is canonical pixels of the
rendered image, ``{"frame": k, "box": [x0, y0, x1, y1]}`` in the order written, neither
clipped nor reordered: an invalid box stays visibly invalid for the metric to judge. Boxes on
frames the item did not show are kept (they simply match nothing).

Scores: mean IoU (= SGMRI-VQA's V-score) and TP/FP/FN per IoU threshold; point answers
(point profiles) ``point_hit`` and ``point_in_box``.

Keyword grounding (gold boxes with a ``keyword``, ``schema.KeywordBox``: report grounding):
each parsed box also carries the keyword the reply names for it: the label written with the
box (a JSON ``"label"`` or ``"keyword"`` beside the box, the profile syntax's own label such as
RadGrounder's ``<p bbox=...>keyword</p>`` or Qwen's ``<|object_ref_start|>``), else, for a box
written on its own (not inside a JSON list or object), the words before it on its line, after
any earlier box and without its ``Frame k:`` ("liver: Frame 3: [...]"). Such items are also
scored by keyword-box pairs (``eval.metrics.grounding``: ``g_iou``, ``keyword_iou``, keyword
TP/FP/FN overall and at IoU 0.5): box metrics ignore which keyword a box is given, so a reply
that puts every keyword on another keyword's box has mean IoU 1. A box the reply names no
keyword for is no predicted keyword.
"""

from __future__ import annotations

import bisect
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from voxqa.answers.base import AnswerType, Scores, ScoreContext, TargetWriter
from voxqa.answers.reply import NONE_ANSWERS, ParseContext, ParseError, Reply, json_values, normal
from voxqa.boxes.profiles import Profile
from voxqa.boxes.spaces import decode_point
from voxqa.boxes.syntax import BbxTags
from voxqa.eval.metrics.boxes import THRESHOLDS, as_dict, hits_at, iou_matrix, match_boxes
from voxqa.eval.metrics.grounding import Grounded, keyword_scores
from voxqa.schema import BoxesAnswer, ImageRef, Item, KeywordBox

BBX = BbxTags()  # SGMRI-VQA's <bbx>[x, y, w, h]</bbx>, read by every x-first profile
_FRAME_MENTION = re.compile(r"\bframe\b\s*[#:]?\s*(\d+)", re.IGNORECASE)
BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d")
#: Keys a JSON box may name its keyword (its label) under.
LABEL_KEYS = ("label", "keyword")
#: Where a box written earlier on the same line ends: the words after it are the next box's.
_BOX_END = re.compile(r".*[\]}>]", re.DOTALL)
_EDGE = " \t:;,.-=*\"'`"
#: How far before a box its keyword is looked for (bounded: a reply with thousands of boxes on
#: one line is read in linear time).
KEYWORD_SPAN = 200


@dataclass(frozen=True)
class Written:
    """A box as the model wrote it: numbers in the profile's space, at offset ``pos``."""

    pos: int
    values: list[Any]
    frame: Any = None  # the frame written with the box itself (a JSON "frame"), if any
    label: str | None = None  # the label written with the box itself (JSON, the syntax's own)
    top: bool = True  # written on its own, not inside a JSON list or object: the words before it may name it


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def json_boxes(pos: int, value: Any, arity: int, frame: Any = None, top: bool = True) -> list[Written]:
    """Boxes inside one JSON value: dicts with a box key (and maybe "frame" and a label), lists
    of ``arity`` numbers; ``top``: the value stands alone in the text (not inside another)."""
    if isinstance(value, dict):
        frame = value.get("frame", frame)
        key = next((k for k in BOX_KEYS if k in value), None)
        if key is not None:
            label = next((value[k] for k in LABEL_KEYS if isinstance(value.get(k), str)), None)
            return [Written(pos, value[key], frame, label, top)]
        return [b for v in value.values() for b in json_boxes(pos, v, arity, frame, False)]
    if isinstance(value, list):
        if len(value) == arity and all(is_number(v) for v in value):
            return [Written(pos, value, frame, None, top)]
        return [b for v in value for b in json_boxes(pos, v, arity, frame, False)]
    return []


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each span replaced by as many spaces, in one pass (spans may overlap)."""
    parts, pos = [], 0
    for a, b in sorted(spans):
        if b > pos:
            a = max(a, pos)
            parts += [text[pos:a], " " * (b - a)]
            pos = b
    parts.append(text[pos:])
    return "".join(parts)


def written_boxes(text: str, profile: Profile) -> list[Written]:
    """Every box in ``text`` in the profile's own syntax, in its JSON form, or as SGMRI-VQA's
    ``<bbx>[x, y, w, h]</bbx>`` (xy profiles), in text order. Another family's syntax is
    refused; written forms are blanked before JSON is sought so no box is read twice."""
    family = profile.foreign(text)
    if family is not None:
        raise ParseError(f"the reply writes boxes the way {family} does, but the profile is {profile.name}")
    own = profile.find(text)
    found = [Written(f.pos, f.values, label=f.label) for f in own]
    spans = [(f.pos, f.end) for f in own]
    if profile.space.arity == 4 and getattr(profile.space, "order", "xy") == "xy":
        for f in BBX.find(_blank(text, spans)):  # the sgmri profile's own syntax is read above
            x, y, w, h = f.values
            found.append(Written(f.pos, [x, y, x + w, y + h]))
            spans.append((f.pos, f.end))
    arity = 2 if profile.answer_form == "points" else profile.space.arity
    for pos, value in json_values(_blank(text, spans)):
        found += json_boxes(pos, value, arity)
    return sorted(found, key=lambda b: b.pos)


def stored_frame(label: Any, ctx: ParseContext) -> int:
    """The stored 0-based frame of a frame number written as the prompt labels frames (from
    the profile's ``frame_base``)."""
    base = ctx.profile.frame_base
    if not isinstance(label, int) or isinstance(label, bool) or label < base:
        raise ParseError(f"frame {label!r} is not a frame number (frames are numbered from {base})")
    return label - base


class FrameMentions:
    """The "Frame k" mentions of a text, found once: the last one before any offset in
    logarithmic time (a reply with thousands of boxes is read in one pass, not one per box)."""

    def __init__(self, text: str):
        self.text = text
        self.found = list(_FRAME_MENTION.finditer(text))
        self.ends = [m.end() for m in self.found]

    def last_before(self, pos: int) -> re.Match[str] | None:
        """What ``_FRAME_MENTION.finditer(text, 0, pos)`` finds last."""
        i = bisect.bisect_right(self.ends, pos)
        if i < len(self.found) and self.found[i].start() < pos:  # a mention across pos: read it as cut there
            cut = list(_FRAME_MENTION.finditer(self.text, self.found[i].start(), pos))
            if cut:
                return cut[-1]
        return self.found[i - 1] if i else None


def _frame_of(box: Written, mentions: FrameMentions, ctx: ParseContext) -> int:
    """The box's own frame, else the last "Frame k" before it (both as labelled), else the
    only image's frame."""
    if box.frame is not None:
        return stored_frame(box.frame, ctx)
    mention = mentions.last_before(box.pos)
    if mention:
        return stored_frame(int(mention[1]), ctx)
    frame = ctx.only_frame()
    if frame is None:
        raise ParseError(f"box {box.values} has no frame and the item shows several images")
    return frame


def _named(box: Written, text: str) -> str | None:
    """The keyword a reply names for ``box``: its own label, else (a box written on its own,
    not inside a JSON list or object) the words before it on its line (after any earlier box
    there, without "Frame k"), else None."""
    if box.label is not None and box.label.strip(_EDGE):
        return box.label.strip(_EDGE)
    if not box.top:
        return None
    before = text[max(text.rfind("\n", 0, box.pos) + 1, box.pos - KEYWORD_SPAN):box.pos]
    if (end := _BOX_END.match(before)) is not None:
        before = before[end.end():]
    words = " ".join(_FRAME_MENTION.sub(" ", before).split()).strip(_EDGE)
    return words or None


def grounds_keywords(item: Item) -> bool:
    """Whether ``item``'s gold boxes ground keywords (report grounding): scored by keyword-box pairs."""
    return isinstance(item.answer, BoxesAnswer) and any(isinstance(b, KeywordBox) for b in item.answer.value)


def pixels(values: Any, frame: int, ctx: ParseContext) -> list[int]:
    """Canonical pixels of a box written in the profile's space on ``frame``'s image."""
    if not isinstance(values, list):
        raise ParseError(f"box {values!r} is not a list of numbers")
    try:
        return list(ctx.profile.decode(values, *ctx.size(frame)))
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def _point(values: Any, frame: int, ctx: ParseContext) -> list[float]:
    """Pixel position of a point written in percent of ``frame``'s image."""
    try:
        return [round(v, 2) for v in decode_point(values, *ctx.size(frame))]
    except (TypeError, ValueError) as exc:
        raise ParseError(f"point {values!r}: {exc}") from None


def random_box(item: Item, rng: random.Random, profile: Profile) -> tuple[ImageRef, str]:
    """A uniform random box on a random shown image, in the profile's convention."""
    im = rng.choice(item.images or [])
    x0, x1 = sorted(rng.sample(range(im.width + 1), 2))
    y0, y1 = sorted(rng.sample(range(im.height + 1), 2))
    return im, json.dumps(profile.encode((x0, y0, x1, y1), im.width, im.height))


def _inside(point: Mapping[str, Any], box: Mapping[str, Any]) -> bool:
    x, y = point["point"]
    x0, y0, x1, y1 = box["box"]
    return point["frame"] == box["frame"] and x0 <= x < x1 and y0 <= y < y1


def _score_points(gold: Sequence[Mapping[str, Any]], pred: Sequence[Any] | None) -> Scores:
    """Point answers (Molmo-style profiles): ``point_hit`` is the share of gold boxes holding
    a point on their frame; ``point_in_box`` the share of points inside some gold box (no
    gold boxes: 1 for no points, else 0). An unparseable answer scores 0 on both. Box
    metrics do not apply to points."""
    if pred is None:
        return {"point_hit": 0.0, "point_in_box": 0.0}
    points = [as_dict(p) for p in pred]
    hit = sum(any(_inside(p, g) for p in points) for g in gold) / len(gold) if gold else float(not points)
    inside = sum(any(_inside(p, g) for g in gold) for p in points) / len(points) if points else float(not gold)
    return {"point_hit": hit, "point_in_box": inside}


def _score_keywords(gold: Sequence[Mapping[str, Any]], pred: Sequence[Any] | None) -> Scores:
    """Keyword-box pairs (``eval.metrics.grounding.keyword_scores``): gold boxes with their
    keywords against the predicted boxes the reply named a keyword for; an unparseable
    prediction names none."""
    def grounded(boxes: Sequence[Any]) -> list[Grounded]:
        return [Grounded(b["keyword"], tuple(b["box"]), b["frame"]) for b in map(as_dict, boxes)
                if b.get("keyword")]
    return keyword_scores(grounded(gold), grounded(pred or []))


def _score_boxes(gold: Sequence[Any], pred: Sequence[Any] | None) -> Scores:
    """Mean IoU over gold boxes (= SGMRI-VQA's V-score) and TP/FP/FN per IoU threshold.

    Mean IoU uses the matching with the largest total IoU; hits at each threshold use their
    own matching (``hits_at``): the most pairs with IoU >= t, which the max-total-IoU matching
    can miss. No gold boxes: mean IoU is 1 for an empty prediction and 0 otherwise. An
    unparseable prediction predicts nothing: every gold box is a false negative, mean IoU 0.
    """
    gold = [as_dict(b) for b in gold]
    boxes = [as_dict(b) for b in pred] if pred is not None else []
    ious = [v for _, _, v in match_boxes(gold, boxes)]
    miou = sum(ious) / len(gold) if gold else float(pred is not None and not boxes)
    scores: Scores = {"miou": miou, "v_score": miou}
    m = iou_matrix(gold, boxes)
    for t in THRESHOLDS:
        tp = hits_at(m, t)
        scores |= {f"tp@{t}": float(tp), f"fp@{t}": float(len(boxes) - tp),
                   f"fn@{t}": float(len(gold) - tp)}
    return scores


class Boxes(AnswerType):
    name = "boxes"
    instruction = "Answer with one line per box: Frame k: then the box."
    holds_boxes = True
    blind_prior = False

    def parse(self, reply: Reply, ctx: ParseContext) -> list[dict[str, Any]]:
        """Every box of the answer with its frame, in pixels (points for point profiles); the
        structured ``bboxes`` (the evidence) stand in only when the answer field names no box."""
        if normal(reply.scope()) in NONE_ANSWERS:
            return []
        text = reply.answer
        written = written_boxes(text, ctx.profile)
        if not written and reply.bboxes:
            arity = 2 if ctx.profile.answer_form == "points" else ctx.profile.space.arity
            text, written = "", json_boxes(0, reply.bboxes, arity)
        if not written:
            raise ParseError("no box found")
        out: list[dict[str, Any]] = []
        keywords = grounds_keywords(ctx.item)
        mentions = FrameMentions(text)
        for box in written:
            frame = _frame_of(box, mentions, ctx)
            if ctx.profile.answer_form == "points":
                out.append({"frame": frame, "point": _point(box.values, frame, ctx)})
            else:
                out.append({"frame": frame, "box": pixels(box.values, frame, ctx)})
            if keywords and (word := _named(box, text)) is not None:
                out[-1]["keyword"] = word
        return out

    def score(self, gold: Any, pred: Any, ctx: ScoreContext) -> Scores:
        if ctx.points:
            return _score_points([as_dict(b) for b in gold], pred)
        scores = _score_boxes(gold, pred)
        if any(as_dict(b).get("keyword") for b in gold):
            scores |= _score_keywords(gold, pred)
        return scores

    def target(self, item: Item, write: TargetWriter) -> str:
        """``[{"frame": k, "bbox": [...]}, ...]``; a keyword box writes its keyword as the box's
        ``"label"``, as the target's ``bboxes`` do. In the native target style, one string of
        ``Frame k: <box>`` lines in the family's own syntax (the keyword as its label), which
        ``parse`` reads back in the same profile."""
        boxes = cast(BoxesAnswer, item.answer).value
        native = write.native([(b.frame, b.box, b.keyword if isinstance(b, KeywordBox) else None) for b in boxes])
        if native is not None:
            return native
        return "[" + ", ".join(
            f'{{"frame": {write.frame(b.frame)}, '
            + (f'"label": {write.text(b.keyword)}, ' if isinstance(b, KeywordBox) else "")
            + f'"bbox": {write.box(b.frame, b.box)}}}' for b in cast(BoxesAnswer, item.answer).value
        ) + "]"

    def random_reply(self, item: Item, rng: random.Random, profile: Profile,
                     numbers: Sequence[float]) -> str:
        im, box = random_box(item, rng, profile)
        return f"Frame {im.frame + profile.frame_base}: {box}"

    def on_image(self, value: Any, to_image: Callable[[Sequence[int]], list[int]]) -> Any:
        return [b | {"box": to_image(b["box"])} for b in value]

    def boxes_of(self, value: Any) -> list[tuple[int, list[int]]]:
        if isinstance(value, list):
            return [(b["frame"], list(b["box"])) for b in value if isinstance(b, dict) and "box" in b]
        return []


BOXES = Boxes()
