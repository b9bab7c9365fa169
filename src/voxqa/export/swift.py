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

``swift_sft.yaml`` is a complete ``swift sft swift_sft.yaml`` config (ms-swift reads a YAML or
JSON file given as the first argument: its ``ENV`` mapping sets environment variables, every
other key is ``--key value``; ``swift/cli/main.py`` ``parse_yaml_args``): the family's model
(``--base-model`` overrides) and template, this folder's splits, a LoRA recipe, and:

* ``max_length`` above the longest example (``voxqa.export.tuners``: measured with
  ``--processor``, else a stated upper bound): ms-swift's default is the model's own length,
  and with ``truncation_strategy: delete`` (its default) a longer example is silently dropped
  (a 4096 limit fell below an 18,082-token row);
* for ``qwen2.5-vl``, ``MAX_PIXELS`` / ``MIN_PIXELS`` set to the profile's limits: ms-swift
  hands them to qwen-vl-utils' ``smart_resize`` (``swift/model/models/qwen.py``
  ``patch_qwen_vl_utils``), so they decide the grid its boxes are written on, and the eval
  profile must name the same limits (``qwen2.5-vl:max_pixels=602112``).

``swift_args.json`` records what voxqa chose: the environment, template, profile, the eval
profile spec, the measured or estimated longest example and the limit, the config and command.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import PROFILES, Profile
from voxqa.conversation import BoxRef, Sample, text_messages
from voxqa.errors import InputError
from voxqa.export.base import write_json, write_split_jsonl
from voxqa.export.tuners import FAMILIES, MARGIN, Row, TunerSetup, base_model, longest_example, pixel_limits
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
CONFIG = "swift_sft.yaml"


class SwiftObjects:
    """Collects one item's boxes and labels in text order behind ms-swift's placeholders."""

    def __init__(self, profile: Profile):
        self.profile = profile
        if profile.name not in TEMPLATES:
            raise InputError(f"the swift export writes boxes ms-swift converts itself; profile {profile.name} "
                             f"has no ms-swift template with its box form (use one of {', '.join(TEMPLATES)})")
        self.bbox_type = "norm1" if profile.name == "norm1" else "real"
        self.ref: list[str] = []
        self.bbox: list[list[int | float]] = []
        self.image_id: list[int] = []
        self.trained: list[list[int | float]] = []  # each box as ms-swift writes it for the model: the profile's numbers

    def box(self, ref: BoxRef) -> str:
        written = PROFILES["norm1" if self.bbox_type == "norm1" else "pixel"]
        self.bbox.append(written.encode(ref.image_box, ref.width, ref.height))
        self.image_id.append(ref.image_index)
        self.trained.append(self.profile.encode(ref.image_box, ref.width, ref.height))
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
        return files

    def tuner_config(self, samples: dict[str, list[Sample]], out: Path, profile: Profile,
                     setup: TunerSetup) -> tuple[list[str], dict[str, Any]]:
        """``swift_sft.yaml`` (runnable), ``swift_args.json`` (the record) and ``swift_env.sh``."""
        longest = longest_example([_filled(s) for split in samples.values() for s in split], profile, setup.processor)
        env = dict(ENV)
        limits = pixel_limits(profile)
        if limits:  # qwen-vl-utils' smart_resize limits: the grid the boxes are written on
            env |= {"MAX_PIXELS": str(limits["max_pixels"]), "MIN_PIXELS": str(limits["min_pixels"])}
        model = base_model(profile, setup.base_model)
        folder = Path(out).resolve()
        command = f"swift sft {folder / CONFIG}"
        splits = {split: str(folder / f"{split}.jsonl") for split in samples}
        train = splits.get("train") or next(iter(splits.values()))
        head = [
            "# voxqa export for ms-swift (argument names of ms-swift 4.6). Train with:",
            f"#   {command}",
            f"# Boxes are written in profile {profile.spec}: evaluate the trained (merged) model with",
            f"#   voxqa eval DATASET --model hf:MERGED_MODEL --profile {profile.spec} --mode structured",
            f"# Longest example: {longest.tokens} tokens (item {longest.id}), {longest.how}: {longest.detail};",
            f"# max_length is that plus {MARGIN}, so truncation_strategy 'delete' drops nothing.",
        ]
        if limits:
            head.append(f"# MAX_PIXELS / MIN_PIXELS are profile {profile.spec}'s limits: change them only together with "
                        "the profile (export again with qwen2.5-vl:max_pixels=N and evaluate with that spec).")
        body = ["ENV:", *(f"  {k}: {json.dumps(v)}" for k, v in env.items()),
                f"model: {json.dumps(model)}" if model else
                f"# model: set it (profile {profile.name} names no model family; voxqa export --base-model)"]
        if profile.name in FAMILIES and FAMILIES[profile.name].swift:
            body.append(f"template: {FAMILIES[profile.name].swift}")
        body += [f"dataset: [{json.dumps(train)}]"]
        if "val" in splits and splits["val"] != train:
            body.append(f"val_dataset: [{json.dumps(splits['val'])}]")
        body += [f"max_length: {longest.limit}", "truncation_strategy: delete", "tuner_type: lora",
                 "torch_dtype: bfloat16", "num_train_epochs: 3", "per_device_train_batch_size: 1",
                 "gradient_accumulation_steps: 16", "learning_rate: 1.0e-4", "lora_rank: 8", "lora_alpha: 32",
                 "target_modules: all-linear", "freeze_vit: true", "logging_steps: 5",
                 "save_steps: 100", "dataset_num_proc: 4", f"output_dir: {json.dumps(str(folder / 'swift_output'))}"]
        write_text(out / CONFIG, "\n".join(head + body) + "\n")
        record = {"env": env, "template": TEMPLATES[profile.name], "profile": profile.spec,
                  "eval_profile": profile.spec, "model": model, "max_length": longest.limit,
                  "longest_example": longest.record(), "config": CONFIG, "command": command}
        write_json(out / "swift_args.json", record)
        write_text(out / "swift_env.sh", "".join(f"export {k}={v}\n" for k, v in env.items()))
        return [CONFIG, "swift_args.json", "swift_env.sh"], {"tuner": "swift", **record}


def _filled(sample: Sample) -> Row:
    """The row as ms-swift fills it: each ``<ref-object>`` and ``<bbox>`` in text order over the
    whole conversation, boxes in the numbers the model is trained on."""
    boxes = sample.boxes
    assert isinstance(boxes, SwiftObjects)
    refs, nums = iter(boxes.ref), iter(boxes.trained)

    def fill(text: str) -> str:
        return re.sub(f"{re.escape(REF)}|{re.escape(BBOX)}",
                      lambda m: next(refs) if m.group(0) == REF else str(next(nums)), text)

    user = [None if p is None else fill(p) for p in sample.user]
    return Row(sample.item.id, user, fill(sample.target), sample.images)
