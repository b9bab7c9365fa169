"""LLaMA-Factory: a ShareGPT/OpenAI-style JSON list per split plus its dataset_info.json entry.

Schema (LLaMA-Factory ``data/README.md``, "OpenAI Format" and multimodal datasets): each
record is ``{"messages": [{"role": "user", "content": "...<image>..."}, {"role":
"assistant", "content": "..."}], "images": [paths]}``, one ``<image>`` token per image in
order, plus the item ``id`` (not a mapped column, so LLaMA-Factory ignores it).
``dataset_info.json`` registers each file with ``formatting: sharegpt``, columns
``messages``/``images`` and tags ``role``/``content``/``user``/``assistant``. Entries are
named ``voxqa_<split>`` and merged into an existing ``dataset_info.json``, so ``out`` can be
LLaMA-Factory's own data folder.

LLaMA-Factory resizes every image outside [``image_min_pixels``, ``image_max_pixels``]
(default max 768 * 768) *before* the model's processor, which would move every box the
profile wrote for the rendered image (at ``render --size 800`` a Qwen2.5-VL model saw 756 px
while the boxes assumed 812). ``llamafactory_args.yaml`` sets both limits to the exported
images' own areas, so images reach the processor as rendered, and states the profile's
processor limits (for ``qwen2.5-vl``: the ``min_pixels`` / ``max_pixels`` its boxes assume).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import Profile
from voxqa.boxes.spaces import Resized
from voxqa.conversation import BoxStyle, InlineBoxes, Sample, text_messages
from voxqa.export.base import write_json
from voxqa.fileio import write_text

DATASET_INFO = "dataset_info.json"
ARGS = "llamafactory_args.yaml"


def dataset_info_entry(file_name: str) -> dict[str, Any]:
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant"},
    }


class LlamaFactoryFormat:
    name = "llamafactory"

    def box_style(self, profile: Profile) -> BoxStyle:
        return InlineBoxes(profile)

    def write(self, samples: dict[str, list[Sample]], out: Path, profile: Profile) -> list[str]:
        info_path = out / DATASET_INFO
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        written = []
        for split, rows in samples.items():
            file_name = f"voxqa_{split}.json"
            write_json(out / file_name, [
                {"id": s.item.id, "messages": text_messages(s), "images": s.images} for s in rows
            ])
            info[f"voxqa_{split}"] = dataset_info_entry(file_name)
            written.append(file_name)
        write_json(info_path, info)
        areas = [im.width * im.height for rows in samples.values() for s in rows for im in s.item.images or []]
        lines = [
            f"# voxqa export, profile {profile.spec}: keep images as rendered (LLaMA-Factory would",
            "# resize outside these limits before the processor and move every box)",
            f"image_max_pixels: {max(areas)}",
            f"image_min_pixels: {min(areas)}",
        ]
        if isinstance(profile.space, Resized):
            lines.append(f"# the processor must use min_pixels {profile.space.min_pixels}, max_pixels "
                         f"{profile.space.max_pixels} (check: voxqa profiles --check-processor MODEL "
                         f"--profile {profile.spec})")
        write_text(out / ARGS, "\n".join(lines) + "\n")
        return written + [DATASET_INFO, ARGS]
