"""Square padding of the shown images, for box profiles measured on the image padded to a square.

LLaVA-1.5 (``image_aspect_ratio: pad``, ``expand2square`` in LLaVA's ``llava/mm_utils.py``),
Shikra (``Expand2square``) and MedGemma's localisation notebook (``pad_image_to_square``) pad
every image to a centred square before the model sees it, and their boxes are fractions of
that square (``Profile.pads_square``). A server's processor need not do so (Gemma 3's stretches
a non-square image to 896 x 896, transformers' LLaVA processor centre-crops it unless
``do_pad``), so a raw 320 x 640 frame's box came back 140 px off. voxqa therefore pads the PNG
itself wherever such a profile is used: eval requests, exports and ``voxqa train`` all show the
padded copy, the box numbers are fractions of exactly the image shown, and padding a square
again is a no-op in every processor. Copies are made once per source file (its path, size and
modification time name the copy) in a folder the caller owns: the run, export or training
folder, never the dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from voxqa.boxes.profiles import Profile
from voxqa.dataset.paths import check_png, inside
from voxqa.fileio import atomic_write

#: the subfolder of a run, export or training folder that keeps its padded copies
PADDED_DIR = "square"


def padding_record(profile: Profile) -> dict[str, Any] | None:
    """How ``profile``'s images are padded (run.json, export and training summaries), or None."""
    if not profile.pads_square:
        return None
    return {"to": "square", "offset": "((side - width) // 2, (side - height) // 2)",
            "fill": list(profile.pad_fill), "folder": PADDED_DIR}


def pad_to_square(image: Image.Image, fill: Sequence[int]) -> Image.Image:
    """``image`` as RGB, centred on a ``max(w, h)`` square of colour ``fill`` (``expand2square``)."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    if w == h:
        return rgb
    side = max(w, h)
    out = Image.new("RGB", (side, side), (int(fill[0]), int(fill[1]), int(fill[2])))
    out.paste(rgb, ((side - w) // 2, (side - h) // 2))
    return out


def square_png(src: Path, owner: Path, fill: Sequence[int]) -> Path:
    """The padded copy of PNG ``src`` under ``owner/square/`` (made once; a re-rendered source
    gets a new copy; resolved inside ``owner``, so a planted link is neither shown nor written
    through)."""
    check_png(src, "image")
    stat = src.stat()
    tag = hashlib.sha1(f"{src}|{stat.st_size}|{stat.st_mtime_ns}|{list(fill)}".encode()).hexdigest()[:16]
    dst = inside(owner, f"{PADDED_DIR}/{tag}_{src.name}", "square-padded image")
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im, atomic_write(dst) as fh:  # never a half PNG to reuse
            pad_to_square(im, fill).save(fh, format="PNG")
    return dst


def shown_images(paths: Sequence[str], profile: Profile, owner: Path | None) -> list[str]:
    """The images a model is shown for ``paths`` under ``profile``: padded copies under
    ``owner/square/`` (a run, export or training folder) for a square-padded profile, else the
    paths themselves."""
    if not profile.pads_square:
        return list(paths)
    if owner is None:
        raise ValueError(f"profile {profile.name} measures boxes on the image padded to a square: "
                         "give the folder that keeps the padded copies")
    owner.mkdir(parents=True, exist_ok=True)
    return [str(square_png(Path(p), owner, profile.pad_fill)) for p in paths]
