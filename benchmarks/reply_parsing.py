"""Benchmark: reply parsing time on the replies that used to take quadratic time.

Each case is a reply built to the size asked for, parsed as its item's answer type under its
box profile (``voxqa.eval.parse.parse_answer``, the call every eval makes per reply). Printed:
seconds per parse at each size and the ratio per doubling of the size: about 2 is linear
time, about 4 quadratic. Sizes go past ``MAX_REPLY_CHARS`` only with
``VOXQA_MAX_REPLY_CHARS`` raised (this script raises it, so the growth itself is measured).

    python benchmarks/reply_parsing.py [--sizes 20000,40000,80000] [--repeat 3] [--case NAME ...]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from typing import Any

from voxqa.eval.parse import parse_answer
from voxqa.schema import Item

PROSE = "The posterior horn of the medial meniscus shows a small tear; the cartilage is intact. "


def _item(answer: dict[str, Any], options: list[str] | None = None) -> Item:
    """A minimal item showing one 160 x 160 image of frame 3."""
    return Item.model_validate({
        "id": "bench", "study_id": "s", "split": "test", "source": "phantom", "task": "detection",
        "subtask": "x", "level": "frame", "frames": [3], "question": "?", "options": options,
        "answer": answer, "answer_text": "", "reasoning": "", "template": "t",
        "images": [{"path": "f3.png", "frame": 3, "width": 160, "height": 160}],
    })


YES_NO = _item({"type": "yes_no", "value": "yes"})
FRAMES = _item({"type": "frames", "value": [3, 4, 5]})
BOXES = _item({"type": "boxes", "value": [{"frame": 3, "box": [10, 20, 30, 40]}]})
BOX3D = _item({"type": "box3d", "value": {"frame_start": 2, "frame_end": 5, "box": [10, 20, 30, 40]}})


def _repeat(unit: str, head: str = "") -> Callable[[int], str]:
    return lambda n: head + (unit * ((n - len(head)) // len(unit) + 1))[: max(0, n - len(head))]


#: name -> (what it is, item, profile, reply of n characters)
CASES: dict[str, tuple[str, Item, str, Callable[[int], str]]] = {
    "digits": ("one run of digits (a frame list gone wrong)", FRAMES, "pixel", _repeat("7")),
    "florence-prose": ("prose without a tag, florence-2 profile", BOXES, "florence-2", _repeat(PROSE)),
    "frame-boxes": ('"Frame 3: [x, y, x, y]" lines (a box per line)', BOXES, "pixel",
                    _repeat("Frame 3: [10, 20, 30, 40]\n")),
    "unclosed-json": ("900 open brackets, then numbers that never close", BOX3D, "pixel",
                      _repeat("1, ", "[" * 900)),
    "json-starts": ('{"a repeated: a JSON object starting every 3 characters, none valid', BOX3D, "pixel",
                    _repeat('{"a')),
    "open-think": ("<think> repeated, never closed", YES_NO, "pixel", _repeat("<think> x ")),
    "open-ref": ("<|object_ref_start|> repeated, never closed, qwen2-vl profile", BOXES, "qwen2-vl",
                 _repeat("<|object_ref_start|> x ")),
    "open-object": ("<object> repeated, never closed, kosmos-2 profile", BOXES, "kosmos-2", _repeat("<object> x ")),
    "open-of": ('"(of of of ..." never closed', FRAMES, "pixel", _repeat("of ", "(")),
}


def time_parse(item: Item, profile: str, reply: str, repeat: int) -> float:
    """The fastest of ``repeat`` parses, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        parse_answer(reply, item, profile)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,40000,80000", help="reply sizes in characters, comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="parses per size (the fastest counts)")
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="only these cases (repeatable)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    os.environ["VOXQA_MAX_REPLY_CHARS"] = str(max(sizes))  # measure the growth, not the cut
    print(f"{'case':16} " + " ".join(f"{n // 1000:>7} KB" for n in sizes) + "   ratio per doubling")
    for name in args.case or CASES:
        what, item, profile, build = CASES[name]
        times = [time_parse(item, profile, build(n), args.repeat) for n in sizes]
        ratios = [(b / a) ** (1 / math.log2(m / n))  # time ratio per doubling of the size
                  for a, b, n, m in zip(times, times[1:], sizes, sizes[1:], strict=False)]
        print(f"{name:16} " + " ".join(f"{t:9.4f} s" for t in times)
              + "   " + " ".join(f"{r:.2f}" for r in ratios) + f"   ({what}; {item.answer.type}, {profile})")


if __name__ == "__main__":
    main()
