"""TRL: conversational vision JSONL per split, as SFTTrainer's vision examples expect.

Schema (TRL ``docs/source/dataset_formats.md``, "Vision datasets"): a ``messages`` column
whose ``content`` is a list of ``{"type": "image"}`` and ``{"type": "text", "text": ...}``
parts, and an ``images`` column in the same order. The assistant content is a one-part
list too, so the column has one Arrow type; ``id`` names the item. ``images`` holds absolute PNG paths; cast it
with ``dataset.cast_column("images", Sequence(Image()))`` to get PIL images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import Profile
from voxqa.conversation import BoxStyle, InlineBoxes, Sample
from voxqa.export.base import write_split_jsonl


def content_parts(sample: Sample) -> list[dict[str, Any]]:
    return [{"type": "image"} if p is None else {"type": "text", "text": p} for p in sample.user]


class TrlFormat:
    name = "trl"

    def box_style(self, profile: Profile) -> BoxStyle:
        return InlineBoxes(profile)

    def write(self, samples: dict[str, list[Sample]], out: Path, profile: Profile) -> list[str]:
        return write_split_jsonl(samples, out, lambda s: {
            "id": s.item.id,
            "messages": [{"role": "user", "content": content_parts(s)},
                         {"role": "assistant", "content": [{"type": "text", "text": s.target}]}],
            "images": s.images,
        })
