"""Box conventions: canonical pixel boxes <-> the numbers a model reads and writes.

voxqa stores every box one way (pixel ``[x_min, y_min, x_max, y_max]``, origin top-left, max
exclusive, on the rendered image of size ``(width, height)``); models disagree on what box
numbers mean. Converting in one explicit place, always from the stated convention and image
size, keeps exports and scoring consistent. Nothing is ever inferred from the numbers: a
box of ``[0, 0, 1, 1]`` is whatever its convention says it is.

Conventions (``to_convention`` output, ``from_convention`` input):

* ``pixel``: ``[x_min, y_min, x_max, y_max]`` ints, the canonical box itself.
* ``pixel_xywh``: ``[x_min, y_min, width, height]`` ints.
* ``norm1``: xyxy floats in 0-1 (x / width, y / height), rounded to 4 decimals.
* ``norm1000``: xyxy ints in 0-1000 (Qwen2-VL, Qwen3-VL): ``x * 1000 / width`` rounded.
* ``qwen25_abs``: xyxy ints in pixels of the image Qwen2.5-VL actually sees, i.e. after
  qwen-vl-utils' ``smart_resize`` with this module's defaults (``QWEN25_*``).
* ``box3d``: ``[start_frame, end_frame, x_min, x_max, y_min, y_max]`` (3DReasonKnee order),
  frames inclusive, pixels as canonical. Its canonical side is the 6-tuple
  ``(frame_start, frame_end, x_min, y_min, x_max, y_max)`` (schema.Box3D's fields in order).

Rounding rule: every rounding to an integer is round-half-up on exact integer arithmetic
(``x * 1000 / width`` as a fraction, not a float), so results never depend on float ties.
Never degenerate: a box converted to a coarser grid keeps ``x_max > x_min`` and
``y_max > y_min``. When rounding half up would collapse an axis (a box narrower than one grid
cell), that axis is written with its min rounded down and its max rounded up instead.

Round trips (``from_convention(to_convention(b))``) are exact for pixel, pixel_xywh and box3d;
for the scaled ones the error per coordinate is at most ``max_roundtrip_error``: 0 when the
target grid is at least as fine as the image (norm1000 with sides <= 1000 px, qwen25_abs
when the resize enlarges, norm1 with sides <= 10000 px). For a grid ``s > 1`` image pixels
coarse it is ``floor(s / 2 + 1/2)`` px for boxes at least one grid cell wide and high
(``cell_wide=True``; e.g. <= 1 px for norm1000 up to 2999 px) and ``ceil(s - 1/2)`` px for any
box, since a sub-cell box is widened to whole cells (e.g. 1 px for norm1000 up to 1500 px,
3 px at 3000 px).

``from_convention`` converts without clipping or reordering, so a model's invalid box stays
visibly invalid for the caller to judge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Literal

Convention = Literal["pixel", "pixel_xywh", "norm1", "norm1000", "qwen25_abs", "box3d"]
CONVENTIONS: tuple[Convention, ...] = (
    "pixel", "pixel_xywh", "norm1", "norm1000", "qwen25_abs", "box3d",
)

NORM1_DECIMALS = 4
NORM1000 = 1000
# qwen-vl-utils smart_resize defaults as used for Qwen2.5-VL (patch 14, 2x2 merge -> 28).
QWEN_FACTOR = 28
QWEN25_MIN_PIXELS = 56 * 56
QWEN25_MAX_PIXELS = 14 * 14 * 4 * 1280
QWEN_MAX_RATIO = 200


# --- qwen-vl-utils smart_resize, reimplemented exactly (vision_process.py) -----------------


def round_by_factor(number: float, factor: int) -> int:
    """The multiple of ``factor`` closest to ``number`` (Python round: ties to even)."""
    return round(number / factor) * factor


def ceil_by_factor(number: float, factor: int) -> int:
    """The smallest multiple of ``factor`` >= ``number``."""
    return math.ceil(number / factor) * factor


def floor_by_factor(number: float, factor: int) -> int:
    """The largest multiple of ``factor`` <= ``number``."""
    return math.floor(number / factor) * factor


def smart_resize(
    height: int,
    width: int,
    factor: int = QWEN_FACTOR,
    min_pixels: int = QWEN25_MIN_PIXELS,
    max_pixels: int = QWEN25_MAX_PIXELS,
) -> tuple[int, int]:
    """(height, width) Qwen2.5-VL resizes an image to: both multiples of ``factor``, area in
    [min_pixels, max_pixels], aspect ratio kept as closely as possible.

    Same statements, same float operations and same order as qwen-vl-utils, so sizes agree
    bit for bit, including its error for aspect ratios above 200.
    """
    if max(height, width) / min(height, width) > QWEN_MAX_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {QWEN_MAX_RATIO}, "
            f"got {max(height, width) / min(height, width)}"
        )
    h_bar = max(factor, round_by_factor(height, factor))
    w_bar = max(factor, round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = floor_by_factor(height / beta, factor)
        w_bar = floor_by_factor(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ceil_by_factor(height * beta, factor)
        w_bar = ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


# --- conversions ------------------------------------------------------------------------------


def _round_half_up(num: int, den: int) -> int:
    """num / den rounded half up, exactly (den > 0)."""
    return (2 * num + den) // (2 * den)


def _scale(v: int, src: int, dst: int) -> int:
    """A coordinate on a ``src``-wide axis moved to a ``dst``-wide axis, rounded half up."""
    return _round_half_up(v * dst, src)


def _scale_axis(lo: int, hi: int, src: int, dst: int) -> tuple[int, int]:
    """``[lo, hi)`` on a ``src``-wide axis moved to a ``dst``-wide grid: rounded half up, or,
    where that would collapse it (narrower than a grid cell), min rounded down and max up."""
    a, b = _scale(lo, src, dst), _scale(hi, src, dst)
    if b <= a:
        a, b = lo * dst // src, -(-hi * dst // src)
    return a, b


def _check(convention: str, width: int, height: int) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown box convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got width={width}, height={height}")


def _is_int(v: object) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _check_box(box: Sequence[int], width: int, height: int) -> tuple[int, int, int, int]:
    if len(box) != 4 or not all(_is_int(v) for v in box):
        raise ValueError(f"a canonical box is 4 ints [x_min, y_min, x_max, y_max], got {list(box)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"box {list(box)} is not a canonical box on a {width}x{height} image "
            "(need 0 <= x_min < x_max <= width and 0 <= y_min < y_max <= height)"
        )
    return x0, y0, x1, y1


def _qwen25_size(width: int, height: int) -> tuple[int, int]:
    h, w = smart_resize(height, width)
    return w, h


def to_convention(box: Sequence[int], convention: Convention, width: int, height: int) -> list:
    """The canonical ``box`` on a ``width`` x ``height`` image, written in ``convention``.

    ``box`` is pixel xyxy (max exclusive); for ``box3d`` it is
    ``(frame_start, frame_end, x_min, y_min, x_max, y_max)`` with frames inclusive.
    """
    _check(convention, width, height)
    if convention == "box3d":
        if len(box) != 6:
            raise ValueError(f"box3d needs (frame_start, frame_end, x0, y0, x1, y1), got {list(box)}")
        f0, f1 = box[0], box[1]
        if not (_is_int(f0) and _is_int(f1) and 0 <= f0 <= f1):
            raise ValueError(f"box3d frames must be ints with 0 <= start <= end, got {f0}, {f1}")
        f0, f1 = int(f0), int(f1)
        x0, y0, x1, y1 = _check_box(box[2:], width, height)
        return [f0, f1, x0, x1, y0, y1]
    x0, y0, x1, y1 = _check_box(box, width, height)
    if convention == "pixel":
        return [x0, y0, x1, y1]
    if convention == "pixel_xywh":
        return [x0, y0, x1 - x0, y1 - y0]
    if convention == "norm1":
        out = [round(x0 / width, NORM1_DECIMALS), round(y0 / height, NORM1_DECIMALS),
               round(x1 / width, NORM1_DECIMALS), round(y1 / height, NORM1_DECIMALS)]
        grid = 10**NORM1_DECIMALS
        for i, (lo, hi, side) in enumerate(((x0, x1, width), (y0, y1, height))):
            if out[i + 2] <= out[i]:  # collapsed: whole 1e-4 steps, min down and max up
                out[i], out[i + 2] = lo * grid // side / grid, -(-hi * grid // side) / grid
        return out
    w, h = (NORM1000, NORM1000) if convention == "norm1000" else _qwen25_size(width, height)
    ax0, ax1 = _scale_axis(x0, x1, width, w)
    ay0, ay1 = _scale_axis(y0, y1, height, h)
    return [ax0, ay0, ax1, ay1]


def from_convention(
    values: Sequence[int | float], convention: Convention, width: int, height: int
) -> tuple[int, ...]:
    """Canonical pixels of a box given in ``convention`` on a ``width`` x ``height`` image.

    Returns ``(x_min, y_min, x_max, y_max)``; for ``box3d``
    ``(frame_start, frame_end, x_min, y_min, x_max, y_max)``. No clipping, no reordering.
    """
    _check(convention, width, height)
    n = 6 if convention == "box3d" else 4
    if len(values) != n or not all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{convention} needs {n} numbers, got {list(values)}")
    if convention != "norm1" and not all(_is_int(v) or float(v).is_integer() for v in values):
        raise ValueError(f"{convention} coordinates are integers, got {list(values)}")
    if convention == "norm1":
        return tuple(math.floor(v * size + 0.5) for v, size in zip(values, (width, height) * 2))
    v = [int(x) for x in values]
    if convention == "pixel":
        return tuple(v)
    if convention == "pixel_xywh":
        return v[0], v[1], v[0] + v[2], v[1] + v[3]
    if convention == "box3d":
        return v[0], v[1], v[2], v[4], v[3], v[5]
    if convention == "norm1000":
        return (_scale(v[0], NORM1000, width), _scale(v[1], NORM1000, height),
                _scale(v[2], NORM1000, width), _scale(v[3], NORM1000, height))
    w, h = _qwen25_size(width, height)  # qwen25_abs
    return _scale(v[0], w, width), _scale(v[1], h, height), _scale(v[2], w, width), _scale(v[3], h, height)


def max_roundtrip_error(convention: Convention, width: int, height: int, *,
                        cell_wide: bool = False) -> int:
    """Largest |pixel error| per coordinate of ``from_convention(to_convention(box))``.

    A grid cell of ``s`` image pixels (s = width / 1000 for norm1000, width / resized width
    for qwen25_abs, width / 10**4 for norm1) gives 0 when s <= 1. Else, for any box,
    ``ceil(s - 1/2)`` (a box narrower than a cell is widened to whole cells); with
    ``cell_wide=True``, for boxes at least one cell wide and high, ``floor(s / 2 + 1/2)``.
    """
    _check(convention, width, height)
    if convention in ("pixel", "pixel_xywh", "box3d"):
        return 0
    if convention == "norm1":
        steps = (10**NORM1_DECIMALS,) * 2
    elif convention == "norm1000":
        steps = (NORM1000,) * 2
    else:  # qwen25_abs
        steps = _qwen25_size(width, height)
    if cell_wide:
        return max(0 if step >= side else (side + step) // (2 * step)
                   for side, step in zip((width, height), steps))
    return max(0 if step >= side else (2 * side + step - 1) // (2 * step)
               for side, step in zip((width, height), steps))


# --- model profiles -------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A model family's box convention and the sentence that tells the model about it."""

    name: str
    convention: Convention
    description: str
    prompt_hint: str


_NORM1000_HINT = (
    "Give boxes as [x_min, y_min, x_max, y_max] scaled to 0-1000 on each axis (x times "
    "1000/width, y times 1000/height, whatever the image size), origin top-left."
)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("pixel", "pixel", "canonical pixels of the rendered image, max exclusive",
                "Give boxes as [x_min, y_min, x_max, y_max] in pixels of the image, origin "
                "top-left, x_max and y_max exclusive."),
        Profile("norm1", "norm1", "xyxy divided by image width/height, floats 0-1",
                "Give boxes as [x_min, y_min, x_max, y_max] as fractions of the image width "
                "(x) and height (y), numbers from 0 to 1, origin top-left."),
        Profile("qwen2-vl", "norm1000", "Qwen2-VL grounding: xyxy ints on a 0-1000 grid",
                _NORM1000_HINT),
        Profile("qwen3-vl", "norm1000", "Qwen3-VL grounding: xyxy ints on a 0-1000 grid",
                _NORM1000_HINT),
        Profile("qwen2.5-vl", "qwen25_abs",
                f"Qwen2.5-VL grounding: absolute pixels of the smart_resize'd input (factor "
                f"{QWEN_FACTOR}, min_pixels {QWEN25_MIN_PIXELS}, max_pixels {QWEN25_MAX_PIXELS})",
                "Give boxes as [x_min, y_min, x_max, y_max] in absolute pixel coordinates of "
                "the image as you see it, origin top-left."),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; an error listing every known name otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown box profile {name!r}; known: {', '.join(PROFILES)}") from None
