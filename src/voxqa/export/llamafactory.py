"""LLaMA-Factory: a ShareGPT/OpenAI-style JSON list per split plus its dataset_info.json entry.

Schema (LLaMA-Factory ``data/README.md``, "OpenAI Format" and multimodal datasets): each
record is ``{"messages": [{"role": "user", "content": "...<image>..."}, {"role":
"assistant", "content": "..."}], "images": [paths]}``, one ``<image>`` token per image in
order, plus the item ``id`` (not a mapped column, so LLaMA-Factory ignores it).
``dataset_info.json`` registers each file with ``formatting: sharegpt``, columns
``messages``/``images`` and tags ``role``/``content``/``user``/``assistant``. Entries are
named ``voxqa_<split>`` and merged into an existing ``dataset_info.json``, so ``out`` can be
LLaMA-Factory's own data folder.

``llamafactory_args.yaml`` is a complete ``llamafactory-cli train`` config (argument names of
LLaMA-Factory v0.9.5, ``src/llamafactory/hparams``; docs/training.md cites each): the family's
model (``--base-model`` overrides) and template, this folder's datasets, a LoRA SFT recipe, and
the two settings a user otherwise has to guess:

* ``cutoff_len`` above the longest example (``voxqa.export.tuners``: measured with
  ``--processor``, else a stated upper bound); LLaMA-Factory's default 2048 cuts into image
  tokens (8192 crashed a Qwen2.5-VL run: "shape mismatch [3, 8310] vs [3, 8192]");
* ``image_max_pixels`` / ``image_min_pixels`` set to the exported images' own largest and
  smallest areas: LLaMA-Factory resizes every image outside them (default max 768 * 768) *before*
  the model's processor (``mm_plugin.py`` ``_preprocess_image``), which would move every box the
  profile wrote for the rendered image (Qwen2.5-VL boxes 19% off on frames above 768 x 768).

Its comments name the eval profile spec that reads the trained model's boxes and, for a profile
whose boxes are pixels of the processor's resize (``qwen2.5-vl``), the processor limits the
model folder must have (LLaMA-Factory has no argument for them; ``voxqa profiles
--check-processor`` checks a folder, ``--processor`` refuses a mismatch at export).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import Profile
from voxqa.conversation import BoxStyle, InlineBoxes, Sample, text_messages
from voxqa.export.base import write_json
from voxqa.export.tuners import FAMILIES, MARGIN, Row, TunerSetup, base_model, longest_example, pixel_limits
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
        return written + [DATASET_INFO]

    def tuner_config(self, samples: dict[str, list[Sample]], out: Path, profile: Profile,
                     setup: TunerSetup) -> tuple[list[str], dict[str, Any]]:
        """``llamafactory_args.yaml``, and what the export summary records of it."""
        rows = [Row(s.item.id, s.user, s.target, s.images) for split in samples.values() for s in split]
        longest = longest_example(rows, profile, setup.processor)
        areas = [_area(p) for p in {p for r in rows for p in r.images}]
        model = base_model(profile, setup.base_model)
        family = FAMILIES.get(profile.name)
        limits = pixel_limits(profile)
        folder = Path(out).resolve()
        train = "voxqa_train" if "train" in samples else f"voxqa_{next(iter(samples))}"
        head = [
            "# voxqa export for LLaMA-Factory (v0.9.5 argument names). Train with:",
            f"#   llamafactory-cli train {folder / ARGS}",
            f"# Boxes are written in profile {profile.spec}: evaluate the trained (merged) model with",
            f"#   voxqa eval DATASET --model hf:MERGED_MODEL --profile {profile.spec} --mode structured",
            f"# Longest example: {longest.tokens} tokens (item {longest.id}), {longest.how}: {longest.detail};",
            f"# cutoff_len is that plus {MARGIN} (nothing is cut: a cut through image tokens crashes).",
            "# image_max/min_pixels are the exported images' own largest and smallest areas, so LLaMA-Factory",
            "# does not resize them before the processor (a resize would move every box).",
        ]
        if limits:
            head.append(f"# The model's processor must use min_pixels {limits['min_pixels']}, max_pixels {limits['max_pixels']}: "
                        f"voxqa profiles --check-processor MODEL --profile {profile.spec}")
        if profile.pads_square:
            head.append("# Images are the padded squares under square/ (the profile measures boxes on them).")
        model_line = (f"model_name_or_path: {json.dumps(model)}" if model else
                      f"# model_name_or_path: set it (profile {profile.name} names no model family; voxqa export --base-model)")
        template_line = (f"template: {family.llamafactory}" if family else
                         "# template: set the model's LLaMA-Factory template (src/llamafactory/data/template.py)")
        body = [
            "### model", model_line, "trust_remote_code: true",
            f"image_max_pixels: {max(areas)}", f"image_min_pixels: {min(areas)}",
            "### method", "stage: sft", "do_train: true", "finetuning_type: lora", "lora_rank: 8", "lora_target: all",
            "### dataset", f"dataset_dir: {json.dumps(str(folder))}", f"dataset: {train}", template_line,
            f"cutoff_len: {longest.limit}", "preprocessing_num_workers: 4",
            "### output", f"output_dir: {json.dumps(str(folder / 'llamafactory_output'))}", "logging_steps: 10",
            "save_steps: 500", "plot_loss: true", "report_to: none",
            "### train", "per_device_train_batch_size: 1", "gradient_accumulation_steps: 8", "learning_rate: 1.0e-4",
            "num_train_epochs: 3.0", "lr_scheduler_type: cosine", "bf16: true",
        ]
        write_text(out / ARGS, "\n".join(head + body) + "\n")
        return [ARGS], {"tuner": "llamafactory", "config": ARGS, "command": f"llamafactory-cli train {folder / ARGS}",
                        "eval_profile": profile.spec, "base_model": model, "cutoff_len": longest.limit,
                        "longest_example": longest.record(), "image_max_pixels": max(areas),
                        "image_min_pixels": min(areas), "processor_pixel_limits": limits}


def _area(path: str) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return im.width * im.height
