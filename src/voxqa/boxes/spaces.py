"""Coordinate spaces: canonical pixel boxes <-> the numbers a model family reads and writes.

voxqa stores every box one way: pixel ``[x_min, y_min, x_max, y_max]``, origin top-left, max
exclusive, on the rendered image of size ``(width, height)``. Model families write other
numbers: fractions, 0-1000 grids, quantisation bins, pixels of a resized or square-padded
input, patch indices, y before x. A ``Space`` converts in one explicit place, always from the
stated space and image size; nothing is ever inferred from the numbers (``[0, 0, 1, 1]`` is
whatever its space says it is).

Spaces (``encode`` output, ``decode`` input):

* ``Pixels``: the canonical box itself (or x, y, width, height).
* ``Scaled(steps)``: each coordinate times ``steps / side``: 1 with decimals (fractions), 1000
  (Qwen2-VL, Qwen3-VL, InternVL, Gemini, ...), 999 (DeepSeek-VL2), 1023 (PaliGemma:
  big_vision's ``round(v * 1023)``, its far edge 1023), 512 (RadGrounder). ``order="yx"``
  writes y first; ``pad="center"`` measures on the image padded to a square (LLaVA's ``expand2square``: the image centred, offset ``(side - w) // 2``);
  ``clamp`` keeps the last grid value at ``steps - 1`` (token vocabularies end there).
* ``Resized``: pixels of the input Qwen2.5-VL actually sees after qwen-vl-utils'
  ``smart_resize`` (factor 28, ``min_pixels`` / ``max_pixels`` as given).
* ``Bins(n)``: Florence-2's quantiser: ``floor(x * n / side)`` clamped to ``n - 1``, read
  back as the bin centre ``(b + 1/2) * side / n``.
* ``ResizedBins(n, size)``: RadGrounder's tokens: the box scaled to the ``size`` x ``size``
  resize in float32 and truncated, then ``int(v / size * n)``; the far edge is bin ``n``.
* ``Patches(n)``: Kosmos-2's ``<patch_index_k>`` pairs on an n x n grid, with HF transformers'
  ``coordinate_to_patch_index`` / ``patch_index_to_coordinate`` rules.

Rounding: every rounding to an integer is round-half-up on exact fractions, so results never
depend on float ties; except where a family's own code rounds floats (``Scaled.rounding``:
InternVL's ``round(x / w * 1000)``, big_vision's float32 ``tf.round``), which is then re-enacted. Never degenerate: an encoded box keeps ``max > min`` on each axis (a
box narrower than one grid cell is widened to whole cells), and so does a decoded one; except
that ``ResizedBins`` writes exactly what RadGrounder's code writes, equal bins included.
``decode`` neither clips nor reorders a model's box, so an invalid box stays visibly invalid
for the metric to judge. ``max_error`` bounds ``|decode(encode(b)) - b|`` per coordinate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real
from typing import Literal, Protocol

import numpy as np

Box = tuple[int, int, int, int]
Number = int | float

# qwen-vl-utils / the released Qwen2.5-VL preprocessor_config.json: patch 14 x merge 2 = 28,
# min_pixels 4 * 28 * 28, max_pixels 16384 * 28 * 28.
QWEN_FACTOR = 28
QWEN25_MIN_PIXELS = 4 * 28 * 28
QWEN25_MAX_PIXELS = 16384 * 28 * 28
QWEN_MAX_RATIO = 200


# --- qwen-vl-utils smart_resize, reimplemented exactly (vision_process.py) -----------------


def round_by_factor(number: float, factor: int) -> int:
    """The multiple of ``factor`` closest to ``number`` (Python round: ties to even)."""
    return round(number / factor) * factor


def ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def smart_resize(height: int, width: int, factor: int = QWEN_FACTOR,
                 min_pixels: int = QWEN25_MIN_PIXELS, max_pixels: int = QWEN25_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) Qwen2.5-VL resizes an image to: multiples of ``factor``, area in
    [min_pixels, max_pixels], aspect kept as closely as possible.

    Same statements and float operations as qwen-vl-utils, so sizes agree bit for bit,
    including its error for aspect ratios above 200.
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


# --- shared checks and rounding ----------------------------------------------------------------


def _is_int(v: object) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got width={width}, height={height}")


def check_box(box: Sequence[int], width: int, height: int) -> Box:
    """``box`` as a canonical box on a ``width`` x ``height`` image, or a ValueError saying why."""
    check_size(width, height)
    if len(box) != 4 or not all(_is_int(v) for v in box):
        raise ValueError(f"a canonical box is 4 ints [x_min, y_min, x_max, y_max], got {list(box)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"box {list(box)} is not a canonical box on a {width}x{height} image "
            "(need 0 <= x_min < x_max <= width and 0 <= y_min < y_max <= height)"
        )
    return x0, y0, x1, y1


def _half_up(v: Fraction) -> int:
    return math.floor(v + Fraction(1, 2))


def _div_half_up(num: int, den: int) -> int:
    """num / den rounded half up, in integers (den > 0): the hot path, no Fraction."""
    return (2 * num + den) // (2 * den)


def _numbers(values: Sequence[Number], n: int, what: str, integers: bool) -> list[Number]:
    if len(values) != n or not all(_is_number(v) for v in values):
        raise ValueError(f"{what} needs {n} numbers, got {list(values)}")
    if integers and not all(_is_int(v) or float(v).is_integer() for v in values):
        raise ValueError(f"{what} coordinates are integers, got {list(values)}")
    return [int(v) if integers else v for v in values]


def _xy(values: Sequence[Number], order: str) -> list[Number]:
    """Numbers written in ``order`` -> x_min, y_min, x_max, y_max (and back: the swap is its own inverse)."""
    return [values[1], values[0], values[3], values[2]] if order == "yx" else list(values)


class Space(Protocol):
    """How one family's box numbers relate to canonical pixels of the shown image."""

    @property
    def name(self) -> str:
        """The space's name (read-only: frozen dataclasses and properties provide it)."""
        ...

    @property
    def arity(self) -> int:
        """Numbers per box."""
        ...

    def encode(self, box: Sequence[int], width: int, height: int) -> list[Number]:
        """The canonical ``box`` written as this space's numbers."""
        ...

    def decode(self, values: Sequence[Number], width: int, height: int) -> Box:
        """Canonical pixels of numbers written in this space (no clipping, no reordering)."""
        ...

    def max_error(self, width: int, height: int) -> int:
        """Largest |pixel error| per coordinate of ``decode(encode(box))`` for any box."""
        ...


@dataclass(frozen=True)
class Pixels:
    """Pixels of the shown image: xyxy (the canonical box) or x, y, width, height."""

    xywh: bool = False
    arity: int = 4

    @property
    def name(self) -> str:
        return "pixel_xywh" if self.xywh else "pixel"

    def encode(self, box: Sequence[int], width: int, height: int) -> list[Number]:
        x0, y0, x1, y1 = check_box(box, width, height)
        return [x0, y0, x1 - x0, y1 - y0] if self.xywh else [x0, y0, x1, y1]

    def decode(self, values: Sequence[Number], width: int, height: int) -> Box:
        check_size(width, height)
        v = _numbers(values, 4, self.name, integers=True)
        return (v[0], v[1], v[0] + v[2], v[1] + v[3]) if self.xywh else tuple(v)  # type: ignore[return-value]

    def max_error(self, width: int, height: int) -> int:
        return 0


Rounding = Literal["half_up", "python", "float32"]


def _to_grid(v: int, side: int, steps: int, rounding: Rounding) -> int:
    """``v * steps / side`` to an integer: exactly, half up (voxqa's rule); or as a family's code
    computes it: ``round((v / side) * steps)`` in Python floats (InternVL), or
    ``tf.round(float32(v / side) * steps)`` (big_vision's float32 fraction, ties to even)."""
    if rounding == "python":
        return round((v / side) * steps)
    if rounding == "float32":
        return int(np.round(np.float32(v / side) * np.float32(steps)))
    return _div_half_up(v * steps, side)


def _grid_axis(lo: int, hi: int, off: int, side: int, steps: int,
               clamp: int | None, rounding: Rounding = "half_up") -> tuple[int, int]:
    """``[lo, hi)`` (pixels, shifted by ``off`` on a ``side``-long axis) on a ``steps`` grid:
    rounded, clamped, and widened to whole cells where that would collapse it."""
    a, b = _to_grid(lo + off, side, steps, rounding), _to_grid(hi + off, side, steps, rounding)
    if clamp is not None:
        a, b = min(a, clamp), min(b, clamp)
    if b <= a:
        a, b = (lo + off) * steps // side, -(-(hi + off) * steps // side)
        if clamp is not None and b > clamp:
            a, b = clamp - 1, clamp
    return a, b


@dataclass(frozen=True)
class Scaled:
    """Coordinates times ``steps / side``: ints on a grid, or floats with ``decimals``.

    ``side`` is the image side, or with ``pad="center"`` the side of the image padded to a
    square (centred, offset ``(side - w) // 2``). ``clamp`` keeps values <= ``steps - 1``.
    ``rounding`` (integer grids): half up on the exact value, or as the family's own code
    rounds in floating point (``_to_grid``), so fine-tuning targets equal the family's own.
    """

    name: str
    steps: int
    decimals: int | None = None  # None: integers
    order: Literal["xy", "yx"] = "xy"
    pad: Literal["none", "center"] = "none"
    clamp: bool = False
    arity: int = 4
    rounding: Rounding = "half_up"

    def _frame(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x offset, y offset, x side, y side) the numbers are measured on."""
        if self.pad == "center":
            side = max(width, height)
            return (side - width) // 2, (side - height) // 2, side, side
        return 0, 0, width, height

    def encode(self, box: Sequence[int], width: int, height: int) -> list[Number]:
        x0, y0, x1, y1 = check_box(box, width, height)
        ox, oy, sx, sy = self._frame(width, height)
        if self.decimals is None:
            clamp = self.steps - 1 if self.clamp else None
            ax0, ax1 = _grid_axis(x0, x1, ox, sx, self.steps, clamp, self.rounding)
            ay0, ay1 = _grid_axis(y0, y1, oy, sy, self.steps, clamp, self.rounding)
            return _xy([ax0, ay0, ax1, ay1], self.order)
        grid = 10**self.decimals  # floats: a grid of steps * 10**decimals cells, written / 10**decimals
        ax0, ax1 = _grid_axis(x0, x1, ox, sx, self.steps * grid, None)
        ay0, ay1 = _grid_axis(y0, y1, oy, sy, self.steps * grid, None)
        return _xy([round(v / grid, self.decimals) for v in (ax0, ay0, ax1, ay1)], self.order)

    def decode(self, values: Sequence[Number], width: int, height: int) -> Box:
        check_size(width, height)
        v = _xy(_numbers(values, 4, self.name, integers=self.decimals is None), self.order)
        ox, oy, sx, sy = self._frame(width, height)
        out = []
        for value, off, side in zip(v, (ox, oy) * 2, (sx, sy) * 2, strict=False):
            if self.decimals is None:
                out.append(_div_half_up(value * side, self.steps) - off)
                continue
            grid = 10**self.decimals
            cells = round(value * grid)
            if abs(cells - value * grid) < 1e-6:  # written with at most ``decimals`` digits
                out.append(_div_half_up(cells * side, self.steps * grid) - off)
            else:  # more digits: the decimal as written, exactly
                out.append(_half_up(Fraction(str(float(value))) * side / self.steps) - off)
        return tuple(out)  # type: ignore[return-value]

    def max_error(self, width: int, height: int) -> int:
        _, _, sx, sy = self._frame(width, height)
        cells = self.steps * (10**self.decimals if self.decimals is not None else 1)
        # rounding to the grid, plus one cell where clamping moves the image's far edge
        return max((0 if cells >= side else math.ceil(Fraction(side, cells) - Fraction(1, 2)))
                   + (math.ceil(Fraction(side, self.steps)) if self.clamp else 0)
                   for side in (sx, sy))


@dataclass(frozen=True)
class Resized:
    """Pixels of the image Qwen2.5-VL actually sees: ``smart_resize`` with these limits."""

    min_pixels: int = QWEN25_MIN_PIXELS
    max_pixels: int = QWEN25_MAX_PIXELS
    factor: int = QWEN_FACTOR
    name: str = "qwen25_abs"
    arity: int = 4

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the resized input."""
        h, w = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return w, h

    def encode(self, box: Sequence[int], width: int, height: int) -> list[Number]:
        x0, y0, x1, y1 = check_box(box, width, height)
        w, h = self.size(width, height)
        ax0, ax1 = _grid_axis(x0, x1, 0, width, w, None)
        ay0, ay1 = _grid_axis(y0, y1, 0, height, h, None)
        return [ax0, ay0, ax1, ay1]

    def decode(self, values: Sequence[Number], width: int, height: int) -> Box:
        check_size(width, height)
        v = _numbers(values, 4, self.name, integers=True)
        w, h = self.size(width, height)
        return tuple(_div_half_up(val * side, grid)  # type: ignore[return-value]
                     for val, side, grid in zip(v, (width, height) * 2, (w, h) * 2, strict=False))

    def max_error(self, width: int, height: int) -> int:
        w, h = self.size(width, height)
        return max(0 if grid >= side else math.ceil(Fraction(side, grid) - Fraction(1, 2))
                   for side, grid in ((width, w), (height, h)))


@dataclass(frozen=True)
class Bins:
    """Florence-2's BoxQuantizer ('floor' mode): bin ``floor(x * n / side)`` clamped to
    ``n - 1``, read back as the bin centre. A box inside one bin is written as two bins
    (never empty) and a one-bin answer is read as that whole bin."""

    name: str
    n: int
    arity: int = 4

    def encode(self, box: Sequence[int], width: int, height: int) -> list[Number]:
        x0, y0, x1, y1 = check_box(box, width, height)
        out = []
        for lo, hi, side in ((x0, x1, width), (y0, y1, height)):
            a = min(lo * self.n // side, self.n - 1)
            b = min(hi * self.n // side, self.n - 1)
            if b <= a:
                a, b = (a, a + 1) if a + 1 < self.n else (a - 1, a)
            out.append((a, b))
        (ax0, ax1), (ay0, ay1) = out
        return [ax0, ay0, ax1, ay1]

    def decode(self, values: Sequence[Number], width: int, height: int) -> Box:
        check_size(width, height)
        v = _numbers(values, 4, self.name, integers=True)
        out: list[int] = [0, 0, 0, 0]
        for i, side in ((0, width), (1, height)):
            lo, hi = v[i], v[i + 2]
            if lo == hi:  # one bin: its edges
                out[i], out[i + 2] = _half_up(Fraction(lo * side, self.n)), _half_up(Fraction((hi + 1) * side, self.n))
            else:
                out[i], out[i + 2] = (_half_up(Fraction((2 * b + 1) * side, 2 * self.n)) for b in (lo, hi))
        return tuple(out)  # type: ignore[return-value]

    def max_error(self, width: int, height: int) -> int:
        return max(math.ceil(Fraction(side, self.n)) for side in (width, height))


@dataclass(frozen=True)
class ResizedBins:
    """RadGrounder's ``<locNNNN>`` numbers (``refrad2d_detect.py`` @ a8f332b: ``load_image``
    L246-251 scales the pixel box to the 224 x 224 resize in float32 and truncates it with
    ``astype(int)``; ``add_detection_tokens`` L328-345 divides by 224, clips to [0, 1], and
    truncates ``* 512``). A box touching the right or bottom edge gets bin 512
    (``<loc0512>``); a box narrower than a bin gets two equal bins, as the reference writes
    it. Read back as ``v * side / n`` rounded half up (the reference's evaluator reads
    ``v / 512`` of the image), equal bins as that one bin."""

    name: str = "loc512-224"
    n: int = 512
    size: int = 224
    arity: int = 4

    def encode(self, box: Sequence[int], width: int, height: int) -> list[Number]:
        x0, y0, x1, y1 = check_box(box, width, height)
        sx, sy = np.float32(self.size / width), np.float32(self.size / height)
        out: list[Number] = []
        for v, scale in ((x0, sx), (y0, sy), (x1, sx), (y1, sy)):
            resized = int(np.float32(v) * scale)  # float32 x float32, truncated, as the reference
            out.append(int(min(max(resized / self.size, 0.0), 1.0) * self.n))
        return out

    def decode(self, values: Sequence[Number], width: int, height: int) -> Box:
        check_size(width, height)
        v = [int(x) for x in _numbers(values, 4, self.name, integers=True)]
        out: list[int] = [0, 0, 0, 0]
        for i, side in ((0, width), (1, height)):
            lo, hi = v[i], v[i + 2]
            out[i], out[i + 2] = _div_half_up(lo * side, self.n), _div_half_up((hi + (hi == lo)) * side, self.n)
            if out[i + 2] <= out[i]:
                out[i + 2] = out[i] + 1
        return tuple(out)  # type: ignore[return-value]

    def max_error(self, width: int, height: int) -> int:
        # truncation at the resize (< side / size px) and at the bin (< side / n px), then half a pixel
        return max(math.ceil(Fraction(side, self.size) + Fraction(side, self.n) + Fraction(1, 2))
                   for side in (width, height))


@dataclass(frozen=True)
class Patches:
    """Kosmos-2: a box as the patch indices of its upper-left and lower-right cells on an
    ``n`` x ``n`` grid (index = row * n + col), by HF transformers' Kosmos-2 processor rules:
    corners are cell edges when both patches share a row or column, else cell centres."""

    n: int = 32
    name: str = "patch32"
    arity: int = 2

    def encode(self, box: Sequence[int], width: int, height: int) -> list[Number]:
        x0, y0, x1, y1 = check_box(box, width, height)
        n = self.n
        ul_x, ul_y = x0 * n // width, y0 * n // height  # floor(x1 * n)
        lr_x = max(ul_x, -(-x1 * n // width) - 1)  # ceil(x2 * n - 1)
        lr_y = max(ul_y, -(-y1 * n // height) - 1)
        return [ul_y * n + ul_x, lr_y * n + lr_x]

    def decode(self, values: Sequence[Number], width: int, height: int) -> Box:
        check_size(width, height)
        ul, lr = _numbers(values, 2, self.name, integers=True)
        n = self.n
        (ul_y, ul_x), (lr_y, lr_x) = divmod(ul, n), divmod(lr, n)
        if ul == lr or ul_x == lr_x or ul_y == lr_y:
            edges = (Fraction(ul_x, n), Fraction(ul_y, n), Fraction(lr_x + 1, n), Fraction(lr_y + 1, n))
        else:
            half = Fraction(1, 2 * n)
            edges = (Fraction(ul_x, n) + half, Fraction(ul_y, n) + half,
                     Fraction(lr_x, n) + half, Fraction(lr_y, n) + half)
        return tuple(_half_up(e * s) for e, s in zip(edges, (width, height) * 2, strict=False))  # type: ignore[return-value]

    def max_error(self, width: int, height: int) -> int:
        return max(math.ceil(Fraction(side, self.n)) for side in (width, height))


# points (Molmo): x, y in percent of the shown image; a box's point is its centre.


def encode_point(box: Sequence[int], width: int, height: int, decimals: int = 1) -> list[float]:
    """The centre of a canonical box as Molmo writes points: x, y in percent of the image."""
    x0, y0, x1, y1 = check_box(box, width, height)
    return [round((x0 + x1) * 50 / width, decimals), round((y0 + y1) * 50 / height, decimals)]


def decode_point(values: Sequence[Number], width: int, height: int) -> tuple[float, float]:
    """Pixel position (continuous, origin top-left) of a point written in percent."""
    check_size(width, height)
    x, y = _numbers(values, 2, "point", integers=False)
    return float(x) * width / 100, float(y) * height / 100
