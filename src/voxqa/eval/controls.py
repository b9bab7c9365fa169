"""Image controls: how much does a model use the image at all?

* ``blank``: black frames of the same size;
* ``shuffled``: the frame set of another study;
* ``mirrored``: every frame flipped left-right, with the answers that depend on it flipped
  too: laterality options ("left"/"right") swap, and every box is mirrored in the image
  (x -> width - x). Items whose question quotes world coordinates (point containment) have
  no mirrored answer and are left out of mirrored runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from voxqa.schema import Item

CONTROLS = ("none", "blank", "shuffled", "mirrored")
SIDES = ["left", "right"]


def mirrorable(item: Item) -> bool:
    return not item.id.endswith(":point")


def mirror_box(box, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (width - x1, y0, width - x0, y1)


def mirror_item(item: Item) -> Item:
    """The item as it reads on left-right mirrored images (image boxes and sides flipped)."""
    width = item.images[0].width if item.images else 0
    evidence = [e.model_copy(update={"image_box": mirror_box(e.image_box, width)})
                if e.image_box is not None else e for e in item.evidence]
    update: dict = {"evidence": evidence}
    if item.options == SIDES and item.answer.type == "choice":
        update["answer"] = item.answer.model_copy(update={"value": 1 - item.answer.value})
    return item.model_copy(update=update)


def mirrored_png(src: Path, controls: Path) -> Path:
    """A left-right flipped copy of ``src`` under ``controls`` (made once)."""
    tag = hashlib.sha1(str(src).encode()).hexdigest()[:12]
    dst = controls / "mirrored" / f"{tag}_{src.name}"
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(Image.open(src))[:, ::-1].copy()).save(dst)
    return dst
