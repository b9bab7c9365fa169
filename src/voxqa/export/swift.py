"""ms-swift: standard-format JSONL per split with grounding ``objects``.

Schema (ms-swift ``docs/source_en/Customization/Custom-dataset.md``, "Multimodal" and
"Grounding"; the template's ``normalize_bbox`` / ``_pre_tokenize``): ``{"messages": [...],
"images": [absolute paths], "objects": {"ref": [...], "bbox": [[...]], "bbox_type": ...,
"image_id": [...]}}``. One ``<image>`` per image in the user content; every ``<ref-object>``
is filled with the next ``ref`` and every ``<bbox>`` with the next ``bbox`` (two separate
counters, in text order over the whole conversation); ``image_id[i]`` is the index of the
image ``bbox[i]`` lies on. ``id`` names the item (ms-swift drops unknown columns).

ms-swift's ``bbox_type`` takes ``real`` (pixels of the image file) or ``norm1``; it then
converts boxes itself to the trained model's convention (0-1000 for Qwen2-VL, pixels of the
resized input for Qwen2.5-VL). So boxes are written ``real`` (canonical pixels of the PNG),
or ``norm1`` for the norm1 profile, and never pre-converted: a ``norm1000`` type would be
read as pixels. The profile still picks the prompt hint, so only profiles whose box scale
ms-swift's templates produce are accepted, and ``swift_args.json`` names those templates.

How a filled ``<bbox>`` is written depends on ``QWENVL_BBOX_FORMAT``: ms-swift 4.6 defaults
to ``legacy``, ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, which is not JSON (183 of 257
targets stopped parsing in a trial); ``new`` writes ``[x1, y1, x2, y2]``. The export requires
``new``: ``swift_args.json`` states it and ``swift_env.sh`` exports it. Labels of ``bboxes``
entries go in ``ref`` JSON-escaped, so the filled target stays valid JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import PROFILES, Profile
from voxqa.conversation import BoxRef, Sample, text_messages
from voxqa.errors import InputError
from voxqa.export.base import write_json, write_split_jsonl
from voxqa.fileio import write_text

BBOX = "<bbox>"
ENV = {"QWENVL_BBOX_FORMAT": "new"}
# profile -> ms-swift templates that write its box scale (0-1000, or pixels of the resized input)
TEMPLATES = {
    "pixel": "templates without grounding normalisation (boxes kept as pixels of the image file)",
    "norm1": "templates without grounding normalisation (boxes kept as 0-1 fractions)",
    "qwen2-vl": "qwen2_vl", "qwen3-vl": "qwen3_vl", "qwen2.5-vl": "qwen2_5_vl",
}
REF = "<ref-object>"


class SwiftObjects:
    """Collects one item's boxes and labels in text order behind ms-swift's placeholders."""

    def __init__(self, profile: Profile):
        if profile.name not in TEMPLATES:
            raise InputError(f"the swift export writes boxes ms-swift converts itself; profile {profile.name} "
                             f"has no ms-swift template with its box form (use one of {', '.join(TEMPLATES)})")
        self.bbox_type = "norm1" if profile.name == "norm1" else "real"
        self.ref: list[str] = []
        self.bbox: list[list[int | float]] = []
        self.image_id: list[int] = []

    def box(self, ref: BoxRef) -> str:
        written = PROFILES["norm1" if self.bbox_type == "norm1" else "pixel"]
        self.bbox.append(written.encode(ref.image_box, ref.width, ref.height))
        self.image_id.append(ref.image_index)
        return BBOX

    quote = box  # a box in running text is a placeholder too

    def label(self, label: str) -> str:
        self.ref.append(json.dumps(label, ensure_ascii=False)[1:-1])
        return REF

    def objects(self) -> dict[str, Any]:
        return {"ref": self.ref, "bbox": self.bbox, "bbox_type": self.bbox_type, "image_id": self.image_id}


def _objects(sample: Sample) -> dict[str, Any]:
    assert isinstance(sample.boxes, SwiftObjects), "swift samples are built with SwiftObjects"
    return sample.boxes.objects()


class SwiftFormat:
    name = "swift"

    def box_style(self, profile: Profile) -> SwiftObjects:
        return SwiftObjects(profile)

    def write(self, samples: dict[str, list[Sample]], out: Path, profile: Profile) -> list[str]:
        files = write_split_jsonl(samples, out, lambda s: {
            "id": s.item.id, "messages": text_messages(s), "images": s.images, "objects": _objects(s),
        })
        write_json(out / "swift_args.json", {"env": ENV, "template": TEMPLATES[profile.name], "profile": profile.spec})
        write_text(out / "swift_env.sh", "".join(f"export {k}={v}\n" for k, v in ENV.items()))
        return files + ["swift_args.json", "swift_env.sh"]
