"""What the LLaMA-Factory and ms-swift configs share: the family's base model and templates, the
longest example, and the sequence limit that keeps every example whole.

A tuner cuts (LLaMA-Factory ``cutoff_len``, default 2048) or drops (ms-swift ``max_length`` with
``truncation_strategy: delete``) examples longer than its limit, and a cut through Qwen2.5-VL's
image tokens crashes ("shape mismatch [3, 8310] vs [3, 8192]"). So each export measures its
longest example, image tokens included, and writes a limit above it:

* with a processor (``voxqa export --processor MODEL_DIR``: a local folder ``AutoProcessor``
  loads, nothing downloaded): every exported row in its final text, the chat template applied,
  through the processor with its images, as ``voxqa train`` counts (``measured``);
* without one, a stated upper bound (``estimated``): the UTF-8 bytes of the texts (a byte-level
  BPE or byte-fallback SentencePiece tokenizer never makes more tokens than bytes), plus
  ``TEMPLATE_TOKENS`` for the chat template, plus per image the tokens the family's processor
  makes for it (``image_tokens``: Qwen grids from ``smart_resize`` with the profile's limits;
  fixed counts for Gemma 3, LLaVA-1.5, PaliGemma, InternVL, MiniCPM-V; 4096 for a profile that
  names no family).

The limit is the longest example plus ``MARGIN`` tokens: a tuner's own template (LLaMA-Factory's
``data/template.py``, ms-swift's templates) may differ from the model's chat template by a few
tokens (a default system prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import Profile, check_processor
from voxqa.boxes.spaces import QWEN25_MAX_PIXELS, QWEN25_MIN_PIXELS, Resized, smart_resize
from voxqa.errors import InputError, needs_extra

MARGIN = 128  # tokens above the longest example
TEMPLATE_TOKENS = 64  # chat-template tokens of one two-turn conversation (role markers, default system prompt)
UNKNOWN_FAMILY_IMAGE_TOKENS = 4096  # per image, for a profile that names no model family


@dataclass(frozen=True)
class Family:
    """A box profile's model family as the tuners name it."""

    model: str  # the released base model a config trains from unless ``--base-model`` says otherwise
    llamafactory: str  # LLaMA-Factory template (src/llamafactory/data/template.py)
    swift: str | None = None  # ms-swift template (None: the swift export does not write this family)


# LLaMA-Factory v0.9.5 templates: data/template.py (qwen2_vl L2073, qwen3_vl L2091, gemma3 L999,
# llava L1505, paligemma L1862, intern_vl L1295, minicpm_v L1697)
FAMILIES: dict[str, Family] = {
    "qwen2-vl": Family("Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", "qwen2_vl"),
    "qwen2.5-vl": Family("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_vl", "qwen2_5_vl"),
    "qwen3-vl": Family("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", "qwen3_vl"),
    "medgemma": Family("google/medgemma-4b-it", "gemma3"),
    "llava": Family("llava-hf/llava-1.5-7b-hf", "llava"),
    "paligemma": Family("google/paligemma2-3b-pt-448", "paligemma"),
    "internvl": Family("OpenGVLab/InternVL3-8B-hf", "intern_vl"),
    "minicpm-v": Family("openbmb/MiniCPM-V-2_6", "minicpm_v"),
}

# image tokens per image (the image placeholders and their start/end markers included)
_FIXED_IMAGE_TOKENS = {
    "medgemma": 256 + 8,  # Gemma 3: 256 soft tokens between "\n\n<start_of_image>" and "<end_of_image>\n\n"
    "llava": 577 + 2,  # LLaVA-1.5: (336 / 14)^2 patches (+1 with the CLS feature)
    "paligemma": 1024 + 2,  # PaliGemma 2 at 448 px: (448 / 14)^2
    "internvl": 13 * 256 + 16,  # InternVL: up to 12 dynamic tiles and a thumbnail, 256 tokens each, tags
    "minicpm-v": 10 * 64 + 64,  # MiniCPM-V 2.6: up to 9 slices and the source image, 64 queries each, tags
}


def image_tokens(profile: Profile, width: int, height: int) -> int:
    """An upper bound on the tokens ``profile``'s family makes for one ``width`` x ``height`` image."""
    if isinstance(profile.space, Resized):  # the grid the boxes are written on
        w, h = profile.space.size(width, height)
        return (w // 28) * (h // 28) + 2
    if profile.name == "qwen2-vl":  # Qwen2-VL's released processor: factor 28, the default limits
        h, w = smart_resize(height, width, 28, QWEN25_MIN_PIXELS, QWEN25_MAX_PIXELS)
        return (w // 28) * (h // 28) + 2
    if profile.name == "qwen3-vl":  # Qwen3-VL: patch 16 x merge 2, shortest/longest edge 65536/16777216
        h, w = smart_resize(height, width, 32, 65536, 16777216)
        return (w // 32) * (h // 32) + 2
    return _FIXED_IMAGE_TOKENS.get(profile.name, UNKNOWN_FAMILY_IMAGE_TOKENS)


@dataclass(frozen=True)
class Row:
    """One exported example in its final text: user parts (None: an image), target, image paths."""

    id: str
    user: Sequence[str | None]
    target: str
    images: Sequence[str]


@dataclass(frozen=True)
class Longest:
    """The longest exported example and how its length was found."""

    id: str
    tokens: int
    how: str  # "measured" or "estimated"
    detail: str

    @property
    def limit(self) -> int:
        """The sequence limit a tuner config gets: the longest example plus ``MARGIN``."""
        return self.tokens + MARGIN

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "tokens": self.tokens, "how": self.how, "detail": self.detail,
                "margin": MARGIN, "limit": self.limit}


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def estimate(rows: Sequence[Row], profile: Profile) -> Longest:
    """The stated upper bound on every row's length (no processor)."""
    sizes: dict[str, tuple[int, int]] = {}
    best: tuple[int, str] = (-1, "")
    for r in rows:
        text = sum(len(p.encode("utf-8")) for p in r.user if p is not None) + len(r.target.encode("utf-8"))
        pics = sum(image_tokens(profile, *sizes.setdefault(p, _image_size(p))) for p in r.images)
        best = max(best, (text + TEMPLATE_TOKENS + pics, r.id))
    return Longest(best[1], best[0], "estimated",
                   f"upper bound: UTF-8 bytes of the texts + {TEMPLATE_TOKENS} template tokens + the image "
                   f"tokens {profile.spec}'s family makes per image (voxqa.export.tuners.image_tokens); "
                   "pass --processor MODEL_DIR to measure")


def _chat(processor: Any, user: Sequence[str | None], target: str | None) -> str:
    turns = [{"role": "user", "content": [{"type": "image"} if p is None else {"type": "text", "text": p}
                                          for p in user]}]
    if target is not None:
        turns.append({"role": "assistant", "content": [{"type": "text", "text": target}]})
    return str(processor.apply_chat_template(turns, tokenize=False))


def _rgb(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def processor_length(processor: Any, row: Row) -> int:
    """The tokens ``processor`` makes of ``row`` (chat template applied, images fed): one call."""
    enc = processor(text=[_chat(processor, row.user, row.target)],
                    images=[_rgb(p) for p in row.images] or None, return_tensors="np")
    return int(enc["input_ids"].shape[1])


def measure(rows: Sequence[Row], profile: Profile, processor_dir: Path) -> Longest:
    """Every row's length as the local processor of ``processor_dir`` makes it (chat template
    applied, images fed), as ``voxqa train`` counts; a processor whose grid differs from the
    profile's is refused. A processor that expands one image placeholder into that image's tokens
    is asked once per image (its count) and the texts are tokenized alone, which gives the same
    lengths as one call per row without processing a frame again for every item that shows it."""
    problems = check_processor(profile, processor_dir)
    if problems:
        raise InputError(f"{processor_dir}: the processor does not resize as profile {profile.spec} assumes "
                         f"({'; '.join(problems)}): export with the matching profile options")
    with needs_extra("train"):
        from transformers import AutoProcessor
    processor = AutoProcessor.from_pretrained(processor_dir, local_files_only=True)
    token = getattr(processor, "image_token_id", None)
    per_image: dict[str, int] = {}

    def length(r: Row) -> int:
        if token is None:
            return processor_length(processor, r)
        ids = processor.tokenizer(_chat(processor, r.user, r.target))["input_ids"]
        for p in r.images:
            if p not in per_image:
                enc = processor(text=[_chat(processor, [None], None)], images=[_rgb(p)], return_tensors="np")
                per_image[p] = int((enc["input_ids"] == token).sum())
        return len(ids) - ids.count(token) + sum(per_image[p] for p in r.images)

    best = max((length(r), r.id) for r in rows)
    return Longest(best[1], best[0], "measured", f"processor of {Path(processor_dir).resolve()}, chat template applied")


def longest_example(rows: Sequence[Row], profile: Profile, processor_dir: Path | None) -> Longest:
    return measure(rows, profile, processor_dir) if processor_dir is not None else estimate(rows, profile)


def pixel_limits(profile: Profile) -> dict[str, int] | None:
    """The processor's min/max pixels the profile's boxes assume (resized spaces), else None."""
    if isinstance(profile.space, Resized):
        return {"min_pixels": profile.space.min_pixels, "max_pixels": profile.space.max_pixels}
    return None


def base_model(profile: Profile, given: str | None) -> str | None:
    """The model a tuner config trains: ``given``, else the family's released model."""
    if given:
        return given
    family = FAMILIES.get(profile.name)
    return family.model if family else None


@dataclass(frozen=True)
class TunerSetup:
    """What ``voxqa export`` is told about the model to train: its name or folder
    (``--base-model``) and a local processor to measure with (``--processor``)."""

    base_model: str | None = None
    processor: Path | None = None
