"""Box syntaxes: how each model family writes boxes in text, written and found exactly.

A syntax turns a box's numbers (already in the family's coordinate space,
``voxqa.boxes.spaces``) and an optional label into text, and finds every box written that way
in a reply, with its position and label. Syntaxes never convert coordinates and never guess
one form from another: the profile (``voxqa.boxes.profiles``) pairs one syntax with one
space. JSON forms (``[x1, y1, x2, y2]``, ``{"bbox_2d": [...]}``) are found by the parser's
JSON reader for every profile; ``JsonBox`` only writes them.

``MARKERS`` are the tokens that identify a family's syntax beyond doubt, so a reply written
in another family's form is refused instead of read in the wrong space.

Every ``find`` takes time linear in the text's length, whatever the text repeats: no pattern
is tried again from inside a run it has already scanned (an opening tag without its closing
one, prose without a tag, a run of spaces), and labels are sought back only to the previous box.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Number = int | float
NUM = r"-?\d+(?:\.\d+)?"


def _num(text: str) -> Number:
    """A written number; zero-padded integers ("086", CogVLM) are ints."""
    return float(text) if "." in text else int(text)


@dataclass(frozen=True)
class Found:
    """One box (or point) as written: its numbers in the family's space, where, and its label."""

    pos: int
    end: int
    values: list[Number]
    label: str | None = None


class Syntax(Protocol):
    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        """One box in this syntax."""
        ...

    def find(self, text: str) -> list[Found]:
        """Every box written in this syntax, in text order."""
        ...


def _fmt(v: Number) -> str:
    return json.dumps(v)


@dataclass(frozen=True)
class JsonBox:
    """``[x1, y1, x2, y2]`` or, with ``key``, ``{"key": [...], "label": ...}`` (found by the
    parser's JSON reader)."""

    key: str | None = None

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        if self.key is None:
            return json.dumps(list(values))
        obj: dict[str, object] = {self.key: list(values)}
        if label is not None:
            obj["label"] = label
        return json.dumps(obj, ensure_ascii=False)

    def find(self, text: str) -> list[Found]:
        return []


_QWEN_REF = ("<|object_ref_start|>", "<|object_ref_end|>")
# a box with the spaces before it, from where they start (never from inside the run of spaces)
_QWEN_BOX = re.compile(
    rf"(?<!\s)\s*<\|box_start\|>\s*\(\s*({NUM})\s*,\s*({NUM})\s*\)\s*,\s*\(\s*({NUM})\s*,\s*({NUM})\s*\)\s*<\|box_end\|>")
_QWEN_DECODED = re.compile(rf"\(\s*({NUM})\s*,\s*({NUM})\s*\)\s*,\s*\(\s*({NUM})\s*,\s*({NUM})\s*\)")


def _occurrences(text: str, needle: str) -> list[int]:
    found, i = [], text.find(needle)
    while i >= 0:
        found.append(i)
        i = text.find(needle, i + len(needle))
    return found


def _qwen_tokens(text: str) -> list[tuple[int, int, list[str], str | None]]:
    """(start, end, numbers, label) of every ``[<|object_ref_start|>label<|object_ref_end|>]
    <|box_start|>(x1,y1),(x2,y2)<|box_end|>``, exactly as the regular expression
    ``(?:REF_START(.*?)REF_END)?\\s*BOX`` finds them left to right (a label runs from a
    reference start to the first reference end that a box follows), in linear time."""
    boxes = list(_QWEN_BOX.finditer(text))
    box_at = {m.start(): m for m in boxes}  # keyed by where the spaces before the box start
    opens = _occurrences(text, _QWEN_REF[0])
    closes = [c for c in _occurrences(text, _QWEN_REF[1]) if c + len(_QWEN_REF[1]) in box_at]
    found: list[tuple[int, int, list[str], str | None]] = []
    pos = b = o = c = 0
    while True:
        while b < len(boxes) and boxes[b].start() < pos:
            b += 1
        while o < len(opens) and opens[o] < pos:
            o += 1
        labelled = None
        if o < len(opens):
            c = bisect.bisect_left(closes, opens[o] + len(_QWEN_REF[0]), c)
            if c < len(closes):
                labelled = opens[o]
        if labelled is None and b == len(boxes):
            return found
        if labelled is not None and (b == len(boxes) or labelled < boxes[b].start()):
            close = closes[c]
            m = box_at[close + len(_QWEN_REF[1])]
            found.append((labelled, m.end(), list(m.groups()), text[labelled + len(_QWEN_REF[0]):close]))
        else:
            m = boxes[b]
            found.append((m.start(), m.end(), list(m.groups()), None))
        pos = m.end()


@dataclass(frozen=True)
class QwenBoxTokens:
    """Qwen2-VL: ``<|object_ref_start|>phrase<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``,
    and the decoded text without special tokens, ``phrase(x1,y1),(x2,y2)``."""

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        ref = f"<|object_ref_start|>{label}<|object_ref_end|>" if label else ""
        x1, y1, x2, y2 = (_fmt(v) for v in values)
        return f"{ref}<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"

    def find(self, text: str) -> list[Found]:
        tokens = _qwen_tokens(text)
        found = [Found(a, b, [_num(g) for g in values], label) for a, b, values, label in tokens]
        parts, pos = [], 0  # the tokens blanked, so their numbers are not read again as decoded text
        for a, b, _, _ in tokens:
            parts += [text[pos:a], " " * (b - a)]
            pos = b
        blanked = "".join(parts) + text[pos:]
        found += [Found(m.start(), m.end(), [_num(g) for g in m.groups()]) for m in _QWEN_DECODED.finditer(blanked)]
        return sorted(found, key=lambda f: f.pos)


def _label_before(text: str, start: int, pos: int, tags: tuple[str, str]) -> str | None:
    """The label a tag pair (``<ref>``, ``</ref>``) closes right before ``pos`` (spaces
    between allowed), sought back no further than ``start`` (the previous box's end)."""
    opening, closing = tags
    end = pos
    while end > start and text[end - 1].isspace():
        end -= 1
    if end - len(closing) < start or not text.startswith(closing, end - len(closing)):
        return None
    at = text.rfind(opening, start, end - len(closing))
    return text[at + len(opening):end - len(closing)].strip() if at >= 0 else None


def _last_end(text: str, pattern: re.Pattern[str]) -> int:
    """Where the last match of ``pattern`` ends (0 without one): no match of a pattern ending
    in it can end later, so scans stop there instead of at the end of the text."""
    end = 0
    for m in pattern.finditer(text):
        end = m.end()
    return end


@dataclass(frozen=True)
class TaggedList:
    """A list of boxes between tags, each box ``[x1, y1, x2, y2]``, after a tagged phrase:
    InternVL ``<ref>phrase</ref><box>[[...], ...]</box>``, DeepSeek-VL2
    ``<|ref|>phrase<|/ref|><|det|>[[...], ...]<|/det|>``."""

    ref: tuple[str, str]
    box: tuple[str, str]

    def _patterns(self) -> tuple[re.Pattern[str], re.Pattern[str]]:
        """The box (``<box>[...]</box>``) and its end (``]</box>``)."""
        b0, b1 = map(re.escape, self.box)
        return re.compile(rf"{b0}\s*(\[.*?\])\s*{b1}", re.DOTALL), re.compile(rf"\]\s*{b1}")

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        ref = f"{self.ref[0]}{label}{self.ref[1]}" if label else ""
        return f"{ref}{self.box[0]}[{json.dumps(list(values))}]{self.box[1]}"

    def find(self, text: str) -> list[Found]:
        box, box_end = self._patterns()
        found, previous = [], 0
        for m in box.finditer(text, 0, _last_end(text, box_end)):
            label = _label_before(text, previous, m.start(), self.ref)
            previous = m.end()
            for values in re.findall(rf"\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]", m[1]):
                found.append(Found(m.start(), m.end(), [_num(v) for v in values], label))
        return found


_MINICPM = re.compile(rf"<box>\s*({NUM})\s+({NUM})\s+({NUM})\s+({NUM})\s*</box>")


@dataclass(frozen=True)
class SpacedBox:
    """MiniCPM-V: ``<ref>phrase</ref><box>x1 y1 x2 y2</box>``, numbers separated by spaces."""

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        ref = f"<ref>{label}</ref>" if label else ""
        return f"{ref}<box>{' '.join(_fmt(v) for v in values)}</box>"

    def find(self, text: str) -> list[Found]:
        found, previous = [], 0
        for m in _MINICPM.finditer(text):
            found.append(Found(m.start(), m.end(), [_num(g) for g in m.groups()],
                               _label_before(text, previous, m.start(), ("<ref>", "</ref>"))))
            previous = m.end()
        return found


_FLORENCE = re.compile(r"<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>")


@dataclass(frozen=True)
class FlorenceLocs:
    """Florence-2: ``label<loc_x1><loc_y1><loc_x2><loc_y2>``, the label first."""

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        return (label or "") + "".join(f"<loc_{int(v)}>" for v in values)

    def find(self, text: str) -> list[Found]:
        """Each box with its label: the text before it back to the previous tag or box (what
        ``([^<>]*?)<loc_..>`` matches, without trying that pattern from every character)."""
        found, previous = [], 0
        for m in _FLORENCE.finditer(text):
            start = max(previous, text.rfind("<", previous, m.start()) + 1, text.rfind(">", previous, m.start()) + 1)
            found.append(Found(m.start(), m.end(), [int(g) for g in m.groups()], text[start:m.start()].strip() or None))
            previous = m.end()
        return found


_PALIGEMMA = re.compile(r"(?<!bbox=)(?<!\d>)<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})>\s*([^;<>\n]*)")


@dataclass(frozen=True)
class PaliGemmaLocs:
    """PaliGemma: ``<locY1><locX1><locY2><locX2> label`` (4-digit tokens), objects joined by `` ; ``."""

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        return "".join(f"<loc{int(v):04d}>" for v in values) + (f" {label}" if label else "")

    def find(self, text: str) -> list[Found]:
        return [Found(m.start(), m.end(), [int(g) for g in m.groups()[:4]], m[5].strip() or None)
                for m in _PALIGEMMA.finditer(text)]


_KOSMOS_OBJECT = re.compile(r"<object>(.*?)</object>", re.DOTALL)
_KOSMOS_PAIR = re.compile(r"<patch_index_(\d+)>\s*<patch_index_(\d+)>")


@dataclass(frozen=True)
class KosmosPatches:
    """Kosmos-2: ``<phrase>p</phrase><object><patch_index_UL><patch_index_LR></object>``,
    several boxes of one phrase joined by ``</delimiter_of_multi_objects/>``."""

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        phrase = f"<phrase>{label}</phrase>" if label else ""
        ul, lr = (int(v) for v in values)
        return f"{phrase}<object><patch_index_{ul:04d}><patch_index_{lr:04d}></object>"

    def find(self, text: str) -> list[Found]:
        found, previous = [], 0
        for m in _KOSMOS_OBJECT.finditer(text, 0, text.rfind("</object>") + len("</object>")):
            label = _label_before(text, previous, m.start(), ("<phrase>", "</phrase>"))
            previous = m.end()
            found += [Found(m.start(), m.end(), [int(p[0]), int(p[1])], label) for p in _KOSMOS_PAIR.findall(m[1])]
        return found


_QUAD = rf"\s*{NUM}\s*,\s*{NUM}\s*,\s*{NUM}\s*,\s*{NUM}\s*"
_BRACKETS = re.compile(rf"\[(\[)?({_QUAD}(?:;{_QUAD})*)\](?(1)\])")


@dataclass(frozen=True)
class Brackets:
    """``[x1,y1,x2,y2]`` lists, several boxes ``;``-joined in one bracket (Shikra), double
    brackets and zero-padded digits allowed (CogVLM ``phrase[[086,540,400,760]]``)."""

    double: bool = False
    decimals: int | None = None  # digits written (Shikra: 3); None: as the number is
    pad: int = 0  # zero-padded width of integers (CogVLM: 3)

    def _fmt(self, v: Number) -> str:
        if self.decimals is not None:
            return f"{float(v):.{self.decimals}f}"
        return f"{int(v):0{self.pad}d}" if self.pad else _fmt(v)

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        inner = ",".join(self._fmt(v) for v in values)
        return (label or "") + (f"[[{inner}]]" if self.double else f"[{inner}]")

    def find(self, text: str) -> list[Found]:
        found = []
        for m in _BRACKETS.finditer(text):
            try:  # plain JSON lists are the JSON reader's, which also keeps their "frame"
                json.loads(m[0])
                continue
            except json.JSONDecodeError:
                pass
            for quad in m[2].split(";"):
                found.append(Found(m.start(), m.end(), [_num(v.strip()) for v in quad.split(",")]))
        return found


_BBX = re.compile(rf"<bbx>\s*\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]\s*</bbx>", re.IGNORECASE)


@dataclass(frozen=True)
class BbxTags:
    """SGMRI-VQA: ``<bbx>[x,y,w,h]</bbx>`` (its released records and models write no spaces);
    the numbers are the space's (x, y, width, height), the label is written before the frame
    ("Meniscus Tear: Frame 7: <bbx>[...]</bbx>"), so not by the box."""

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        return "<bbx>[" + ",".join(_fmt(v) for v in values) + "]</bbx>"

    def find(self, text: str) -> list[Found]:
        return [Found(m.start(), m.end(), [_num(g) for g in m.groups()]) for m in _BBX.finditer(text)]


# the start of ``<point x="X" y="Y" ...>label</point>`` and of ``<points x1="" ...>label</points>``
_MOLMO_POINT = re.compile(r'<point\s+x="([^"]+)"\s+y="([^"]+)"')
_MOLMO_POINTS = re.compile(r"<points\s+")
_MOLMO_COORD = re.compile(r'\b([xy])(\d+)="([^"]+)"')


class _Next:
    """The first ``needle`` at or after an offset, for offsets that only grow: each stretch of
    text is searched once, however many tags share it (linear, not one search per tag)."""

    def __init__(self, text: str, needle: str):
        self.text, self.needle = text, needle
        self.since, self.at = 0, text.find(needle)  # the first needle at or after ``since`` (-1: none)

    def __call__(self, pos: int) -> int:
        if pos < self.since or (self.at >= 0 and pos > self.at):
            self.since, self.at = pos, self.text.find(self.needle, pos)
        return self.at


def _molmo_tags(text: str, head: re.Pattern[str], closing: str) -> list[tuple[re.Match[str], int, int]]:
    """(head, end of its opening tag, start of its closing tag) of every ``head ... > label
    closing``, as ``head[^>]*>(.*?)closing`` finds them left to right, in linear time."""
    gt, close = _Next(text, ">"), _Next(text, closing)
    found, pos = [], 0
    while (m := head.search(text, pos)) is not None:
        tag_end = gt(m.end())
        end = close(tag_end + 1) if tag_end >= 0 else -1
        if end < 0:  # no later tag can close either
            break
        found.append((m, tag_end, end))
        pos = end + len(closing)
    return found


@dataclass(frozen=True)
class MolmoPoints:
    """Molmo: ``<point x="X" y="Y" alt="p">p</point>`` and ``<points x1="" y1="" x2="" y2="" ...>``,
    coordinates in percent of the image."""

    def write(self, values: Sequence[Number], label: str | None = None) -> str:
        x, y = values
        text = label or ""
        return f'<point x="{x}" y="{y}" alt="{text}">{text}</point>'

    def find(self, text: str) -> list[Found]:
        found = [Found(m.start(), end + len("</point>"), [float(m[1]), float(m[2])], text[tag_end + 1:end].strip() or None)
                 for m, tag_end, end in _molmo_tags(text, _MOLMO_POINT, "</point>")]
        for m, tag_end, end in _molmo_tags(text, _MOLMO_POINTS, "</points>"):
            coords: dict[str, dict[str, float]] = {}
            for axis, k, v in _MOLMO_COORD.findall(text, m.end(), tag_end):
                coords.setdefault(k, {})[axis] = float(v)
            label = text[tag_end + 1:end].strip() or None
            found += [Found(m.start(), end + len("</points>"), [c["x"], c["y"]], label)
                      for k, c in sorted(coords.items(), key=lambda kv: int(kv[0])) if {"x", "y"} <= c.keys()]
        return sorted(found, key=lambda f: f.pos)


_RADGROUNDER = re.compile(r"<p bbox=<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})>\s*(?:id=<seg\d+>)?>(.*?)</p>",
                          re.DOTALL)


@dataclass(frozen=True)
class RadGrounderTags:
    """RadGrounder: ``<p bbox=<locX1><locY1><locX2><locY2> id=<segNNN>>keyword</p>``, x first."""

    def write(self, values: Sequence[Number], label: str | None = None, class_id: int | None = None) -> str:
        """The tag; with ``class_id`` its ``id=<segNNN>`` (``add_detection_tokens``' f"<seg{class_id:03d}>")."""
        locs = "".join(f"<loc{int(v):04d}>" for v in values)
        ident = "" if class_id is None else f" id=<seg{class_id:03d}>"
        return f"<p bbox={locs}{ident}>{label or ''}</p>"

    def find(self, text: str) -> list[Found]:
        return [Found(m.start(), m.end(), [int(g) for g in m.groups()[:4]], m[5].strip() or None)
                for m in _RADGROUNDER.finditer(text, 0, text.rfind("</p>") + len("</p>"))]


# Tokens that belong to exactly one family's syntax (profile names): a reply containing
# another family's marker is refused, never read in the wrong space.
MARKERS: dict[str, re.Pattern[str]] = {
    "qwen2-vl": re.compile(r"<\|box_start\|>"),
    "internvl": re.compile(r"<box>\s*\[\["),
    "minicpm-v": re.compile(rf"<box>\s*{NUM}\s+{NUM}"),
    "deepseek-vl2": re.compile(r"<\|det\|>"),
    "florence-2": re.compile(r"<loc_\d+>"),
    "paligemma": re.compile(r"(?<!bbox=)(?<!\d>)<loc\d{4}>(?:<loc\d{4}>){3}"),
    "radgrounder": re.compile(r"<p bbox=<loc\d{4}>"),
    "kosmos-2": re.compile(r"<patch_index_\d+>"),
    "molmo": re.compile(r"<points?\s+x1?="),
    "gemini": re.compile(r'"box_2d"\s*:'),
}
