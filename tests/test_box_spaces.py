"""Coordinate spaces: hand-computed values, qwen-vl-utils' smart_resize, round trips."""

from __future__ import annotations

import random

import numpy as np
import pytest

from voxqa.boxes.profiles import PROFILES
from voxqa.boxes.spaces import QWEN25_MAX_PIXELS, QWEN25_MIN_PIXELS, Pixels, smart_resize

SPACES = {
    "pixel": Pixels(), "pixel_xywh": Pixels(xywh=True), "norm1": PROFILES["norm1"].space,
    "norm1000": PROFILES["qwen3-vl"].space, "qwen25_abs": PROFILES["qwen2.5-vl"].space,
}
CONVENTIONS = tuple(SPACES)
SCALED = ("norm1", "norm1000", "qwen25_abs")


def to_convention(box, convention: str, width: int, height: int) -> list:
    return SPACES[convention].encode(box, width, height)


def from_convention(values, convention: str, width: int, height: int) -> tuple:
    return SPACES[convention].decode(values, width, height)


def max_roundtrip_error(convention: str, width: int, height: int) -> int:
    return SPACES[convention].max_error(width, height)


@pytest.mark.parametrize("hw,expected", [
    ((200, 200), (196, 196)),  # 200/28 = 7.14 -> 7 * 28
    ((128, 128), (140, 140)),  # 4.57 -> 5 * 28
    ((60, 90), (56, 84)),  # non-square, both rounded down
    ((10, 10), (56, 56)),  # 28 x 28 < min_pixels: scaled up by sqrt(3136 / 100) = 5.6
    ((2000, 3000), (1988, 2996)),  # under the released max_pixels 16384 * 28 * 28: rounded
    ((5000, 5000), (3556, 3556)),  # > max_pixels: 5000 / sqrt(25e6 / 12845056) = 3583.9 -> floor to 127 * 28
    ((10, 2000), (28, 1988)),  # ratio exactly 200 is allowed; short side clamps to one factor
])
def test_smart_resize_hand_values(hw, expected) -> None:
    assert smart_resize(*hw) == expected


def test_smart_resize_rejects_extreme_aspect_ratio() -> None:
    with pytest.raises(ValueError, match="absolute aspect ratio must be smaller than 200, got 200.1"):
        smart_resize(10, 2001)


def test_smart_resize_properties() -> None:
    r = random.Random(0)
    for _ in range(500):
        h, w = r.randint(1, 4000), r.randint(1, 4000)
        if max(h, w) / min(h, w) > 200:
            continue
        rh, rw = smart_resize(h, w)
        assert rh % 28 == 0 and rw % 28 == 0 and rh >= 28 and rw >= 28
        assert QWEN25_MIN_PIXELS <= rh * rw <= QWEN25_MAX_PIXELS


def test_hand_computed_conversions() -> None:
    box = (10, 20, 30, 40)
    assert to_convention(box, "pixel", 200, 100) == [10, 20, 30, 40]
    assert to_convention(box, "pixel_xywh", 200, 100) == [10, 20, 20, 20]
    assert to_convention(box, "norm1", 200, 100) == [0.05, 0.2, 0.15, 0.4]
    assert to_convention(box, "norm1000", 200, 100) == [50, 200, 150, 400]
    # 200 x 100 -> smart_resize (112, 196): x * 196 / 200, y * 112 / 100, half up
    assert to_convention(box, "qwen25_abs", 200, 100) == [10, 22, 29, 45]
    # ties round half up on exact fractions: 1 * 1000 / 16 = 62.5 -> 63, 3 * 1000 / 16 = 187.5 -> 188
    assert to_convention((1, 0, 3, 1), "norm1000", 16, 1) == [63, 0, 188, 1000]
    assert from_convention([63, 0, 188, 1000], "norm1000", 16, 1) == (1, 0, 3, 1)
    assert from_convention([10, 20, 20, 20], "pixel_xywh", 200, 100) == box


def test_numbers_mean_what_the_convention_says() -> None:
    """Nothing is inferred: the same numbers are different boxes in different conventions."""
    assert from_convention([0, 0, 1, 1], "pixel", 500, 400) == (0, 0, 1, 1)
    assert from_convention([0, 0, 1, 1], "norm1", 500, 400) == (0, 0, 500, 400)
    assert from_convention([0, 0, 1, 1], "norm1000", 500, 400) == (0, 0, 1, 0)


def _random_box(r: random.Random, w: int, h: int) -> tuple[int, int, int, int]:
    x0, x1 = sorted(r.sample(range(w + 1), 2))
    y0, y1 = sorted(r.sample(range(h + 1), 2))
    return x0, y0, x1, y1


def _sizes(r: random.Random, n: int) -> list[tuple[int, int]]:
    fixed = [(1, 1), (1, 7), (7, 1), (2, 3), (60, 50), (96, 80), (200, 200), (320, 640),
             (999, 1000), (1000, 1000), (1001, 999), (2999, 1500), (4000, 3000)]
    rand = [(r.randint(1, 3000), r.randint(1, 3000)) for _ in range(n)]
    return fixed + [(w, h) for w, h in rand if max(w, h) / min(w, h) <= 200]


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_random_round_trips_within_stated_rounding(convention) -> None:
    r = random.Random(CONVENTIONS.index(convention))
    for w, h in _sizes(r, 150):
        bound = max_roundtrip_error(convention, w, h)
        for _ in range(40):
            box = _random_box(r, w, h)
            values = to_convention(box, convention, w, h)
            back = from_convention(values, convention, w, h)
            assert max(abs(a - b) for a, b in zip(back, box, strict=False)) <= bound, (convention, w, h, box, values)
            if convention in ("pixel", "pixel_xywh"):
                assert back == box
            if convention == "norm1":
                assert all(0 <= v <= 1 for v in values)
            if convention == "norm1000":
                assert all(isinstance(v, int) and 0 <= v <= 1000 for v in values)
                assert bound == 0 if max(w, h) <= 1000 else bound <= 1 or max(w, h) > 1500
            if convention == "qwen25_abs":
                rh, rw = smart_resize(h, w)
                assert 0 <= values[0] <= values[2] <= rw and 0 <= values[1] <= values[3] <= rh
                if rw >= w and rh >= h:
                    assert back == box  # an enlarging resize is exactly invertible


@pytest.mark.parametrize("convention", SCALED)
def test_every_coordinate_round_trips_on_small_images(convention) -> None:
    """Exhaustive per coordinate for every side up to 300 px (coordinates convert independently).

    Exact except where qwen25_abs shrinks the image (e.g. 200 -> 196 px): there +-1 px.
    """
    for side in range(1, 301):
        bound = max_roundtrip_error(convention, side, side)
        shrinks = convention == "qwen25_abs" and smart_resize(side, side)[0] < side
        assert bound == (1 if shrinks else 0)
        for v in range(side):
            for box in ((v, v, v + 1, v + 1), (0, 0, v + 1, v + 1)):
                back = from_convention(to_convention(box, convention, side, side), convention, side, side)
                assert max(abs(a - b) for a, b in zip(back, box, strict=False)) <= bound


def test_stated_bounds() -> None:
    assert max_roundtrip_error("pixel", 5000, 5000) == 0
    assert max_roundtrip_error("norm1000", 1000, 1000) == 0
    # any box (sub-cell boxes are widened to whole cells): ceil(s - 1/2)
    assert max_roundtrip_error("norm1000", 1500, 10) == 1
    assert max_roundtrip_error("norm1000", 1501, 10) == 2
    assert max_roundtrip_error("norm1000", 2999, 10) == 3
    assert max_roundtrip_error("norm1000", 3000, 10) == 3
    assert max_roundtrip_error("norm1", 9999, 9999) == 0
    assert max_roundtrip_error("qwen25_abs", 200, 200) == 1  # 200 -> 196: slightly shrunk
    assert max_roundtrip_error("qwen25_abs", 128, 128) == 0  # 128 -> 140: enlarged


@pytest.mark.parametrize("box,message", [
    ((0, 0, 0, 5), "not a canonical box"),  # no area
    ((5, 0, 2, 5), "not a canonical box"),  # reversed
    ((0, 0, 11, 5), "not a canonical box"),  # past the right edge
    ((-1, 0, 2, 5), "not a canonical box"),
    ((0, 0, 2), "4 ints"),
    ((0.5, 0, 2, 5), "4 ints"),
])
def test_invalid_canonical_boxes(box, message) -> None:
    with pytest.raises(ValueError, match=message):
        to_convention(box, "pixel", 10, 10)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="image size must be positive"):
        to_convention((0, 0, 1, 1), "pixel", 0, 10)
    with pytest.raises(ValueError, match="integers"):
        from_convention([0.5, 0, 1, 1], "norm1000", 10, 10)
    # integral floats (as JSON may give) are accepted; nothing is clipped or reordered
    assert from_convention([2.0, 1.0, 0.0, 3.0], "pixel", 10, 10) == (2, 1, 0, 3)
    assert from_convention([-5, 0, 20, 3], "pixel", 10, 10) == (-5, 0, 20, 3)
    # numpy-style integers count as ints
    assert to_convention(tuple(np.array([1, 2, 3, 4])), "norm1000", 10, 10) == [100, 200, 300, 400]


def test_tiny_boxes_never_degenerate_on_coarser_grids() -> None:
    """A 1x1 px box on a 1000+ px image: rounding half up would give x_max == x_min."""
    # hand-computed: 1 px at x=2 of 3000 px: 2000/3000 -> 0.667 and 3000/3000 -> 1.0 round
    # to 1 and 1 (collapsed); floor(0.667) = 0, ceil(1.0) = 1
    assert to_convention((2, 2, 3, 3), "norm1000", 3000, 3000) == [0, 0, 1, 1]
    # 1 px at 1001 of 2000 px: 500.5 and 501.0 both round to 501 -> floor 500, ceil 501
    assert to_convention((1001, 0, 1002, 1), "norm1000", 2000, 1000) == [500, 0, 501, 1]
    # 2 px boxes at norm1 on 30000 px: 1.5e-4 step... 3/30000 = 1e-4, 4/30000 = 1.33e-4 -> both
    # round to 0.0001; widened to [0.0001, 0.0002]
    assert to_convention((3, 0, 4, 1), "norm1", 30000, 1) == [0.0001, 0.0, 0.0002, 1.0]
    for convention in SCALED:
        for w, h in ((1001, 1001), (1500, 1200), (2999, 3000), (4000, 3000), (3000, 60)):
            bound = max_roundtrip_error(convention, w, h)
            for x in (0, 1, w // 3, w // 2, w - 2, w - 1):
                for y in (0, h // 2, h - 1):
                    box = (x, y, x + 1, y + 1)
                    v = to_convention(box, convention, w, h)
                    assert v[2] > v[0] and v[3] > v[1], (convention, w, h, box, v)
                    back = from_convention(v, convention, w, h)
                    assert back[2] > back[0] and back[3] > back[1]
                    assert max(abs(a - b) for a, b in zip(back, box, strict=False)) <= bound, (convention, w, h, box)


def test_any_box_bound_holds_and_is_reached() -> None:
    """Exhaustive 1-D sweep (axes convert independently) for norm1000 on coarse grids."""
    worsts = {}
    for side in (1001, 1499, 1501, 2000, 2999, 3000):
        bound = max_roundtrip_error("norm1000", side, 1)
        worst = 0
        for lo in range(side):
            for hi in {min(side, lo + d) for d in (1, 2, 5)}:
                v = to_convention((lo, 0, hi, 1), "norm1000", side, 1)
                assert v[2] > v[0]
                back = from_convention(v, "norm1000", side, 1)
                worst = max(worst, abs(back[0] - lo), abs(back[2] - hi))
        assert worst <= bound, (side, worst, bound)
        worsts[side] = worst
    assert worsts[2999] == 3  # reached: the stated bound is tight there
    assert worsts[1001] == 1


def test_paligemma_locs_as_big_vision_writes_and_reads_them() -> None:
    """big_vision: ``round(fraction * 1023)`` clipped to 0..1023 (pp/proj/paligemma/segmentation.py
    L72-73), read back as ``loc / 1023`` (evaluators/.../segmentation.py L102), y first."""
    space = PROFILES["paligemma"].space
    # 320 x 320: x 0 -> 0; x 100 -> 319.6875 -> 320; y 33 -> 105.497 -> 105;
    # the far edge 320 -> 1023 (on a 1024 grid it was clamped from 1024 to 1023)
    assert space.encode([0, 33, 100, 320], 320, 320) == [105, 0, 1023, 320]
    assert space.encode([448, 160, 720, 384], 1024, 1024) == [160, 448, 384, 719]  # 719.3, not 720
    # read back: 1023 is the far edge, 320 * 320 / 1023 = 100.1 -> 100, 105 * 320 / 1023 = 32.8 -> 33
    assert space.decode([105, 0, 1023, 320], 320, 320) == (0, 33, 100, 320)
    assert space.decode([0, 0, 1023, 1023], 640, 480) == (0, 0, 640, 480)
    assert space.max_error(1024, 1024) == 1 and space.max_error(320, 320) == 0
    # tf.round on the float32 fraction: ties to even. 372 px: x 6 -> 16.5 -> 16, y 2 -> 5.5 -> 6,
    # y 10 -> 27.5 -> 28
    assert space.encode([6, 2, 372, 10], 372, 372) == [6, 16, 28, 1023]
    for side in (5, 320, 1023, 2046):
        err = max(abs(a - b) for v in range(side + 1)
                  for a, b in zip(space.decode(space.encode([0, 0, max(v, 1), side], side, side), side, side),
                                  (0, 0, max(v, 1), side), strict=True))
        assert err <= space.max_error(side, side), side


def test_internvl_rounds_as_its_data_format_documents() -> None:
    """InternVL's chat data format: ``round(x1 / image_width * 1000)`` (InternVL-doc
    docs/en/get_started/chat_data_format.md L152-163), read back as ``v / 1000 * w``
    (internvl_chat/eval/refcoco/evaluate_grounding.py L197-200)."""
    space = PROFILES["internvl"].space
    assert space.encode([2, 0, 3, 3], 3, 3) == [667, 0, 1000, 1000]  # 666.67 rounds to 667 (a floor gives 666)
    assert space.decode([667, 0, 1000, 1000], 3, 3) == (2, 0, 3, 3)
    # Python's round on the float: ties to even. On a 320 px fastMRI frame 4 -> 12.5 -> 12,
    # 12 -> 37.5 -> 38, 20 -> 62.5 -> 62, 36 -> 112.5 -> 112 (half up wrote 13, 38, 63, 113)
    assert space.encode([4, 12, 20, 36], 320, 320) == [12, 38, 62, 112]
    assert space.decode([12, 38, 62, 112], 320, 320) == (4, 12, 20, 36)


def test_cogvlm_right_edge_is_1000() -> None:
    """CogVLM: "relative coordinates multiplied by 1000 (prefixed with zeros to three digits)"
    (README.md L589-591) and read back as ``int(v) / 1000`` (utils/utils/grounding_parser.py
    L43): nothing clamps to 999, so the far edge is written ``1000`` and read back as the edge."""
    p = PROFILES["cogvlm"]
    assert p.write([0, 27, 320, 320], 320, 320) == "[[000,084,1000,1000]]"
    assert [f.values for f in p.find("tear[[000,084,1000,1000]]")] == [[0, 84, 1000, 1000]]
    assert p.decode([0, 84, 1000, 1000], 320, 320) == (0, 27, 320, 320)
