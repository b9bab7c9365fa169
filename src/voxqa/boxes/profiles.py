"""Model profiles: how each VLM family writes a box, and how voxqa reads it back.

A profile pairs one coordinate space (``voxqa.boxes.spaces``: scale, axis order, padding,
rounding) with one text syntax (``voxqa.boxes.syntax``) and the prompt sentence that asks for
exactly that form. Replies are read in the profile's form only: a box in another family's
syntax is refused, and numbers are never reinterpreted by their size. Facts come from each
family's own documentation and code; ``docs/profiles.md`` cites them.

A profile is named by a spec, ``name`` or ``name:key=value,...``; only profiles whose space
depends on processor settings take options (``qwen2.5-vl:max_pixels=1003520``). The spec is
what run.json and exports record, so a model served with non-default processor settings is
read on its real grid; ``check_processor`` compares a local ``preprocessor_config.json``
with the profile and refuses a mismatch.

``frame_base`` is the number the prompt gives the first frame: voxqa labels frames with
their 0-based index (``Frame 0:``, as fastMRI+'s 0-based ``slice``), SGMRI-VQA's records and
models count from 1 (``Frame 1:`` is ``reconstruction_rss[0]``). It is part of the
convention: the prompt's ``Frame k:`` labels, every frame number in its texts and targets,
and the frames read from a reply all use it (``voxqa.conversation``, ``voxqa.answers``).
Every profile takes the option ``frame_base=0|1`` (``qwen3-vl:frame_base=1``); ``sgmri``
counts from 1 by default. ``quote`` says how a box quoted in running text (question,
reasoning, a text answer) is written: its numbers as a JSON list, or in the family's own
syntax (``sgmri``: ``<bbx>[x,y,w,h]</bbx>``, as SGMRI's texts quote boxes).

``answer_form`` is ``boxes`` or ``points`` (Molmo: a box answer is read as points, scored as
"point inside the gold box"). ``box3d`` names how a bare 6-number 3D box is read:
3DReasonKnee's ``[start_frame, end_frame, x_min, x_max, y_min, y_max]`` (x, y in the
profile's 2D space), or M3D-LaMed's ``[d1, h1, w1, d2, h2, w2]`` in fractions of its
model grid (converted with a ``voxqa render --recipe`` transform).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from voxqa.boxes.spaces import (
    QWEN25_MAX_PIXELS,
    QWEN25_MIN_PIXELS,
    QWEN_FACTOR,
    Bins,
    Box,
    Number,
    Patches,
    Pixels,
    Resized,
    ResizedBins,
    Scaled,
    Space,
    encode_point,
)
from voxqa.boxes.syntax import (
    MARKERS,
    BbxTags,
    Brackets,
    FlorenceLocs,
    Found,
    JsonBox,
    KosmosPatches,
    MolmoPoints,
    PaliGemmaLocs,
    QwenBoxTokens,
    RadGrounderTags,
    SpacedBox,
    Syntax,
    TaggedList,
)
from voxqa.errors import InputError

@dataclass(frozen=True)
class Profile:
    """One model family's box convention: space + syntax + the prompt sentence asking for it."""

    name: str
    space: Space
    syntax: Syntax
    description: str  # the coordinate space and rounding, one line
    hint: str  # the prompt sentence: exactly how to write a box
    example: str  # an answer written as the family's documentation shows it
    answer_form: Literal["boxes", "points"] = "boxes"
    box3d: Literal["reasonknee", "m3d"] = "reasonknee"
    family: str = ""  # whose markers are this profile's own (profiles sharing one syntax)
    cannot: tuple[str, ...] = ()  # answer types this family cannot express (refused before a run)
    options: dict[str, int] = field(default_factory=dict)
    frame_base: int = 0  # the number of the first frame in prompts, targets and replies
    quote: Literal["json", "syntax"] = "json"  # a box quoted in running text: JSON list or the syntax
    pad_fill: tuple[int, int, int] = (0, 0, 0)  # RGB of the padding, for spaces measured on a padded square
    target: Literal["json", "native"] = "json"  # answer boxes in the target: JSON numbers or the syntax

    @property
    def pads_square(self) -> bool:
        """Boxes are fractions of the image padded to a centred square: the model must be shown
        that square (``voxqa.padding``)."""
        return getattr(self.space, "pad", "none") == "center"

    @property
    def spec(self) -> str:
        """``name`` or ``name:key=value,...``: what run.json and exports record."""
        opts = ",".join([*(f"{k}={v}" for k, v in sorted(self.options.items())),
                         *([f"{TARGET}=native"] if self.target == "native" else [])])
        return f"{self.name}:{opts}" if opts else self.name

    @property
    def native(self) -> bool:
        """Whether the family writes boxes in a text form of its own (not JSON numbers), which
        ``target=native`` puts in training targets."""
        return not isinstance(self.syntax, JsonBox)

    @property
    def markers(self) -> str:
        return self.family or self.name

    def encode(self, box: Sequence[int], width: int, height: int) -> list[Number]:
        """The canonical box as this family's numbers (JSON targets, quoted boxes)."""
        if self.answer_form == "points":
            return encode_point(box, width, height)
        return self.space.encode(box, width, height)

    def decode(self, values: Sequence[Number], width: int, height: int) -> Box:
        return self.space.decode(values, width, height)

    def write(self, box: Sequence[int], width: int, height: int, label: str | None = None) -> str:
        """The canonical box written in the family's own text form."""
        return self.syntax.write(self.encode(box, width, height), label)

    def quoted(self, box: Sequence[int], width: int, height: int) -> str:
        """The canonical box as running text quotes it (``quote``)."""
        if self.quote == "syntax":
            return self.write(box, width, height)
        return json.dumps(self.encode(box, width, height))

    def find(self, text: str) -> list[Found]:
        return self.syntax.find(text)

    def foreign(self, text: str) -> str | None:
        """The family whose box syntax ``text`` uses, when it is not this profile's."""
        for family, marker in MARKERS.items():
            if family != self.markers and marker.search(text):
                return family
        return None


_N1000 = "scaled to 0-1000 on each axis (x times 1000/width, y times 1000/height), origin top-left"
_JSON_SAME = "; in JSON, \"bbox\" is the list {order} of the same numbers"
_XYXY = "[x_min, y_min, x_max, y_max]"
_YXYX = "[y_min, x_min, y_max, x_max]"


def _qwen25(min_pixels: int = QWEN25_MIN_PIXELS, max_pixels: int = QWEN25_MAX_PIXELS) -> Profile:
    options = {} if (min_pixels, max_pixels) == (QWEN25_MIN_PIXELS, QWEN25_MAX_PIXELS) else {
        "min_pixels": min_pixels, "max_pixels": max_pixels}
    return Profile(
        "qwen2.5-vl", Resized(min_pixels, max_pixels), JsonBox("bbox_2d"),
        f"absolute pixels of the smart_resize'd input (factor {QWEN_FACTOR}, min_pixels {min_pixels}, "
        f"max_pixels {max_pixels}), rounded half up",
        'Give each box as {"bbox_2d": [x_min, y_min, x_max, y_max], "label": "<finding>"} in absolute '
        "pixel coordinates of the image as you see it, origin top-left.",
        '[{"bbox_2d": [453, 162, 728, 389], "label": "meniscus tear"}]',
        options=options,
    )


def _gemini(name: str, pad: Literal["none", "center"], example: str) -> Profile:
    where = "the image padded to a square (centred)" if pad == "center" else "the image"
    return Profile(
        name, Scaled(f"norm1000-yx{'-square' if pad == 'center' else ''}", 1000, order="yx", pad=pad),
        JsonBox("box_2d"),
        f"[y_min, x_min, y_max, x_max] ints on 0-1000 of {where}, y first, rounded half up",
        'Give each box as {"box_2d": [y_min, x_min, y_max, x_max], "label": "<finding>"} with '
        f"coordinates normalized to 0-1000 of {where} (y times 1000/height, x times 1000/width), "
        "y before x, origin top-left.",
        example, family="gemini",
    )


_TABLE: tuple[Profile, ...] = (
    Profile("pixel", Pixels(), JsonBox(),
            "xyxy pixels of the shown image, max exclusive (GPT-4o and other generic chat models)",
            "Give boxes as [x_min, y_min, x_max, y_max] in pixels of the image, origin top-left, "
            "x_max and y_max exclusive.",
            "Frame 3: [448, 160, 720, 384]"),
    Profile("norm1", Scaled("norm1", 1, 4), JsonBox(),
            "xyxy fractions 0-1 of the shown image, 4 decimals",
            "Give boxes as [x_min, y_min, x_max, y_max] as fractions of the image width (x) and "
            "height (y), numbers from 0 to 1, origin top-left.",
            "Frame 3: [0.4375, 0.1563, 0.7031, 0.375]"),
    Profile("qwen2-vl", Scaled("norm1000", 1000), QwenBoxTokens(),
            "xyxy ints on 0-1000, rounded half up; box tokens or the decoded '(x1,y1),(x2,y2)'",
            "Give each box as <|box_start|>(x_min,y_min),(x_max,y_max)<|box_end|> with coordinates "
            f"{_N1000}" + _JSON_SAME.format(order=_XYXY) + ".",
            "<|object_ref_start|>meniscus tear<|object_ref_end|><|box_start|>(438,156),(703,375)<|box_end|>"),
    _qwen25(),
    Profile("qwen3-vl", Scaled("norm1000", 1000), JsonBox("bbox_2d"),
            "xyxy ints on 0-1000, rounded half up",
            'Give each box as {"bbox_2d": [x_min, y_min, x_max, y_max], "label": "<finding>"} with '
            f"coordinates {_N1000}.",
            '[{"bbox_2d": [438, 156, 703, 375], "label": "meniscus tear"}]'),
    # InternVL's data format: round((x1 / image_width) * 1000) (InternVL-doc chat_data_format.md L152-163)
    Profile("internvl", Scaled("norm1000", 1000, rounding="python"), TaggedList(("<ref>", "</ref>"), ("<box>", "</box>")),
            "xyxy ints on 0-1000, round(x / width * 1000) as InternVL's data format, in <box>[[...]]</box>",
            "Give each box as <ref>finding</ref><box>[[x_min, y_min, x_max, y_max]]</box> with "
            f"coordinates {_N1000}" + _JSON_SAME.format(order=_XYXY) + ".",
            "<ref>meniscus tear</ref><box>[[438, 156, 703, 375]]</box>"),
    Profile("minicpm-v", Scaled("norm1000", 1000), SpacedBox(),
            "xyxy ints on 0-1000, space separated in <box>x1 y1 x2 y2</box>",
            "Give each box as <ref>finding</ref><box>x_min y_min x_max y_max</box> (numbers "
            f"separated by spaces) with coordinates {_N1000}" + _JSON_SAME.format(order=_XYXY) + ".",
            "<ref>meniscus tear</ref><box>438 156 703 375</box>"),
    Profile("deepseek-vl2", Scaled("norm999", 999), TaggedList(("<|ref|>", "<|/ref|>"), ("<|det|>", "<|/det|>")),
            "xyxy ints on 0-999 (x times 999/width), rounded half up",
            "Give each box as <|ref|>finding<|/ref|><|det|>[[x_min, y_min, x_max, y_max]]<|/det|> with "
            "coordinates scaled to 0-999 on each axis (x times 999/width, y times 999/height), origin "
            "top-left" + _JSON_SAME.format(order=_XYXY) + ".",
            "<|ref|>meniscus tear<|/ref|><|det|>[[437, 156, 702, 375]]<|/det|>"),
    Profile("florence-2", Bins("bins1000", 1000), FlorenceLocs(),
            "xyxy as 1000 bins (floor(x * 1000 / width)), read as bin centres; label first",
            "Give each box as finding<loc_X_MIN><loc_Y_MIN><loc_X_MAX><loc_Y_MAX>, each coordinate "
            "as its bin number 0-999 (floor of x times 1000/width, y times 1000/height)"
            + _JSON_SAME.format(order=_XYXY) + ".",
            "meniscus tear<loc_437><loc_156><loc_703><loc_375>"),
    # big_vision: round(fraction * 1023) (pp/proj/paligemma/segmentation.py L72-73), read back as
    # loc / 1023 (evaluators/proj/paligemma/transfers/segmentation.py L102): the far edge is 1023
    Profile("paligemma", Scaled("loc1023-yx", 1023, order="yx", rounding="float32"), PaliGemmaLocs(),
            "[y_min, x_min, y_max, x_max] as round(coordinate * 1023 / side), 0-1023, y first (big_vision)",
            "Give each box as <locY_MIN><locX_MIN><locY_MAX><locX_MAX> finding, with four-digit "
            "location numbers (y times 1023/height, x times 1023/width, rounded, 0 to 1023), y before x; "
            "join several objects with ' ; '" + _JSON_SAME.format(order=_YXYX) + ".",
            "<loc0160><loc0448><loc0384><loc0719> meniscus tear ; <loc0600><loc0100><loc0700><loc0200> effusion"),
    _gemini("gemini", "none", '[{"box_2d": [156, 438, 375, 703], "label": "meniscus tear"}]'),
    _gemini("medgemma", "center",
            '<unused94>thought\nThe tear is in the posterior horn.<unused95>'
            '[{"box_2d": [156, 438, 375, 703], "label": "meniscus tear"}]'),
    Profile("kosmos-2", Patches(32), KosmosPatches(),
            "upper-left and lower-right patch indices on a 32x32 grid (Kosmos-2 processor rules)",
            "Give each box as <phrase>finding</phrase><object><patch_index_UL><patch_index_LR></object>, "
            "the four-digit indices (row * 32 + column) of the cells holding the upper-left and "
            "lower-right corners on a 32 x 32 grid; in JSON, \"bbox\" is [UL, LR].",
            "<phrase>meniscus tear</phrase><object><patch_index_0174><patch_index_0374></object>"),
    Profile("cogvlm", Scaled("norm1000", 1000), Brackets(double=True, pad=3),
            "xyxy ints on 0-1000 in [[...]], zero-padded to 3 digits, boxes ';'-joined",
            f"Give each box as finding[[x_min,y_min,x_max,y_max]] with coordinates {_N1000}, "
            "three digits each (e.g. 086); several boxes as [[x1,y1,x2,y2;x1,y1,x2,y2]].",
            "meniscus tear[[438,156,703,375;086,540,400,760]]"),
    Profile("shikra", Scaled("norm1-square", 1, 3, pad="center"), Brackets(decimals=3),
            "xyxy fractions 0-1 of the image padded to a square (centred), 3 decimals, ';'-joined",
            "Give each box as [x_min,y_min,x_max,y_max], fractions 0-1 with three decimals of the "
            "image padded to a square (centred), origin top-left; several boxes as [a,b,c,d;e,f,g,h].",
            "meniscus tear[0.438,0.156,0.703,0.375]", pad_fill=(255, 255, 255)),  # Expand2square's default
    Profile("llava", Scaled("norm1-square", 1, 2, pad="center"), Brackets(),
            "xyxy fractions 0-1 of the image padded to a square (centred), 2 decimals",
            "Give each box as [x_min, y_min, x_max, y_max], fractions 0-1 of the image padded to a "
            "square (centred), origin top-left.",
            "[0.44, 0.16, 0.70, 0.38]", family="shikra",
            pad_fill=(122, 116, 104)),  # expand2square with int(x * 255) of CLIP's image_mean
    Profile("ferret", Scaled("norm1000", 1000), Brackets(),
            "xyxy ints on 0-1000 after the phrase",
            f"Give each box after its phrase as [x_min, y_min, x_max, y_max] with coordinates {_N1000}.",
            "There is a meniscus tear [438, 156, 703, 375] in the posterior horn."),
    Profile("molmo", Scaled("percent", 100, 1), MolmoPoints(),
            "points x, y in percent of the image (a box answer is read as points)",
            'Point at each finding as <point x="X" y="Y" alt="finding">finding</point>, x and y in '
            "percent of the image width and height (0-100), origin top-left; several as "
            '<points x1="" y1="" x2="" y2="" ...>.',
            '<point x="57.0" y="26.6" alt="meniscus tear">meniscus tear</point>',
            answer_form="points", cannot=("box3d",)),
    Profile("radgrounder", ResizedBins(), RadGrounderTags(),
            "xyxy on 512 bins of the 224x224 resize (aspect not kept), the box truncated to the resize "
            "first (float32), bin 512 at the far edge: RadGrounder's add_detection_tokens",
            "Mark each keyword as <p bbox=<locX_MIN><locY_MIN><locX_MAX><locY_MAX>>keyword</p>, "
            "four-digit numbers 0-512 (x times 512/width, y times 512/height, rounded down), x first"
            + _JSON_SAME.format(order=_XYXY) + ".",
            "<p bbox=<loc0224><loc0080><loc0358><loc0192> id=<seg042>>meniscus</p>"),
    Profile("reasonknee", Pixels(), JsonBox(),
            "3D boxes [start_frame, end_frame, x_min, x_max, y_min, y_max] (3DReasonKnee's layout): frames "
            "inclusive, x/y pixels of the shown image, max exclusive (3D boxes only, as 3DReasonKnee)",
            "Give a 3D box as [start_frame, end_frame, x_min, x_max, y_min, y_max]: the first and last "
            "frame it is on (both included, as labelled), then x and y in pixels of the image, origin "
            "top-left, x_max and y_max exclusive.",
            "[3, 5, 448, 720, 160, 384]", cannot=("boxes",)),
    Profile("m3d", Scaled("norm1", 1, 4), JsonBox(),
            "3D boxes [d1, h1, w1, d2, h2, w2] in fractions of M3D-LaMed's 32x256x256 input (render --recipe m3d)",
            "Give the 3D box as [d1, h1, w1, d2, h2, w2]: fractions 0-1 of the volume's depth, "
            "height and width (minimum corner first).",
            "[0.25, 0.156, 0.438, 0.5, 0.375, 0.703]", box3d="m3d", cannot=("boxes",)),
    Profile("sgmri", Pixels(xywh=True), BbxTags(),
            "SGMRI-VQA: <bbx>[x, y, width, height]</bbx> in pixels of the shown image, frames numbered from 1",
            "Give each box as Frame N: <bbx>[x, y, width, height]</bbx>, N the frame's number as labelled "
            "(frames are numbered from 1), x and y the box's top-left corner and width and height its "
            "size, all in pixels of the image, origin top-left; do not write [x1, y1, x2, y2]"
            + _JSON_SAME.format(order="[x, y, width, height]") + ".",
            "Meniscus Tear: Frame 4: <bbx>[448,160,272,224]</bbx>",
            cannot=("box3d",), frame_base=1, quote="syntax"),
)

PROFILES: dict[str, Profile] = {p.name: p for p in _TABLE}
# profiles whose space depends on processor settings: their options and builders
OPTIONS: dict[str, tuple[str, ...]] = {"qwen2.5-vl": ("min_pixels", "max_pixels")}
#: the option every profile takes: the number of the first frame (0 or 1)
FRAME_BASE = "frame_base"
#: the option of every family with a text form of its own: targets write answer boxes in it
TARGET = "target"
TARGET_STYLES = ("json", "native")


def get_profile(spec: str) -> Profile:
    """The profile a spec names (``name`` or ``name:key=value,...``); a one-line error listing
    the known names or options otherwise."""
    name, _, opts = spec.partition(":")
    if name not in PROFILES:
        raise InputError(f"unknown box profile {name!r}; known: {', '.join(PROFILES)}")
    if not opts:
        return PROFILES[name]
    known = (*OPTIONS.get(name, ()), FRAME_BASE)
    values: dict[str, int] = {}
    target: Literal["json", "native"] = "json"
    for pair in opts.split(","):
        key, eq, value = pair.partition("=")
        if key == TARGET:
            if value not in TARGET_STYLES:
                raise InputError(f"bad option {pair!r} for box profile {name}: {TARGET}=json|native")
            if value == "native" and not PROFILES[name].native:
                raise InputError(f"box profile {name}: its own form is JSON already; {TARGET}=native is for "
                                 f"families with box tokens or tags ({', '.join(p.name for p in _TABLE if p.native)})")
            target = "native" if value == "native" else "json"
            continue
        if name not in OPTIONS and key != FRAME_BASE:
            raise InputError(f"box profile {name!r} takes no options but {FRAME_BASE}=0|1, got {opts!r}")
        if key not in known or not eq or not value.strip().isdigit() or (key != FRAME_BASE and int(value) <= 0):
            raise InputError(f"bad option {pair!r} for box profile {name}: use "
                             + ", ".join([*(f"{k}=<positive int>" for k in OPTIONS.get(name, ())), f"{FRAME_BASE}=0|1"]))
        values[key] = int(value)
    base = values.pop(FRAME_BASE, PROFILES[name].frame_base)
    if base not in (0, 1):
        raise InputError(f"box profile {spec}: {FRAME_BASE} is 0 (frames numbered from 0) or 1, got {base}")
    profile = PROFILES[name]
    if values:
        merged = {"min_pixels": QWEN25_MIN_PIXELS, "max_pixels": QWEN25_MAX_PIXELS} | values
        if merged["min_pixels"] > merged["max_pixels"]:
            raise InputError(f"box profile {spec}: min_pixels {merged['min_pixels']} > max_pixels {merged['max_pixels']}")
        profile = _qwen25(**merged)
    if base != profile.frame_base:
        profile = dataclasses.replace(profile, frame_base=base, options={**profile.options, FRAME_BASE: base})
    return profile if target == profile.target else dataclasses.replace(profile, target=target)


def with_target_style(spec: str, style: str | None) -> str:
    """``spec`` with the target style ``style`` (``--target-style``; None keeps the spec's)."""
    if style is None:
        return get_profile(spec).spec
    if style not in TARGET_STYLES:
        raise InputError(f"--target-style {style!r}; known: {', '.join(TARGET_STYLES)}")
    name, _, opts = spec.partition(":")
    kept = [o for o in opts.split(",") if o and o.partition("=")[0] != TARGET]
    return get_profile(f"{name}:{','.join([*kept, f'{TARGET}={style}'])}").spec


def _processor_limits(config: dict[str, Any]) -> dict[str, int]:
    """min/max pixels and patch factor of a Qwen-VL preprocessor_config.json (old and new keys)."""
    size = config.get("size") or {}
    limits = {
        "min_pixels": config.get("min_pixels", size.get("shortest_edge")),
        "max_pixels": config.get("max_pixels", size.get("longest_edge")),
    }
    patch, merge = config.get("patch_size"), config.get("merge_size")
    if patch and merge:
        limits["factor"] = int(patch) * int(merge)
    return {k: int(v) for k, v in limits.items() if v is not None}


def check_processor(profile: Profile, path: Path) -> list[str]:
    """Where a local processor config disagrees with the profile's grid (empty: it agrees).

    ``path`` is a model folder (its ``preprocessor_config.json``, or the
    ``processor_config.json`` transformers 5 writes) or one of those files. Only profiles
    whose space is pixels of a resized input depend on the processor; for the others the
    processor does not change how boxes are read, which the result says.
    """
    names = ("preprocessor_config.json", "processor_config.json")
    file = next((path / n for n in names if (path / n).is_file()), path / names[0]) if path.is_dir() else path
    try:
        config = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{file}: cannot read a preprocessor config ({exc})") from None
    config = config.get("image_processor", config)  # processor_config.json nests it
    if not isinstance(profile.space, Resized):
        return []
    found = _processor_limits(config)
    want = {"min_pixels": profile.space.min_pixels, "max_pixels": profile.space.max_pixels,
            "factor": profile.space.factor}
    return [f"{key}: processor {found[key]}, profile {want[key]}"
            for key in want if key in found and found[key] != want[key]]
