"""Training examples: the same user turn and JSON target that evaluation uses, checked before training.

Examples come from a rendered dataset folder or from a ``voxqa export --format trl`` folder.
From a dataset folder each item's user turn is ``voxqa.eval.prompts.build_prompt`` in the
chosen mode (by default ``structured``, whose answer is the JSON target), so the frames,
their ``Frame k:`` labels and every box are exactly what ``voxqa eval --mode MODE`` shows the
trained model. A trl export is used as written (its profile comes from its summary).

Examples are TRL prompt-completion rows (``prompt`` = the user turn, ``completion`` = the
assistant turn, ``images`` = PNG paths in prompt order): TRL's vision collator then masks
everything but the assistant turn (assistant-only loss) with any chat template.

Before training, ``check_examples`` runs every example through the collator the trainer
uses (so the lengths are the processor's real image-token counts plus text) and refuses:
an unreadable image (naming item and path), a sequence longer than the limit (naming the
longest example; nothing is ever truncated), and, for a profile whose boxes are written in
the pixels of the resized image (qwen2.5-vl), a processor whose pixel limits differ from the
profile's (``voxqa.boxes.profiles.check_processor``) or that resizes a frame differently from
what the boxes assume.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import Profile, check_processor, get_profile
from voxqa.boxes.spaces import Resized
from voxqa.dataset.folder import read_items, read_studies
from voxqa.errors import VoxqaError
from voxqa.eval.prompts import build_prompt
from voxqa.padding import padding_record

EXPORT_SUMMARY = "voxqa_export.json"


class TrainDataError(VoxqaError, ValueError):
    """The data cannot be trained on as asked (the message says which example and why)."""


@dataclass(frozen=True)
class Examples:
    """Rows for the trainer, the box profile they are written in, and items left out."""

    rows: list[dict[str, Any]]
    profile: Profile
    skipped_too_many_frames: list[str]


def _row(item_id: str, user: list[dict[str, Any]], target: str, images: list[str]) -> dict[str, Any]:
    return {"id": item_id, "prompt": [{"role": "user", "content": user}],
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": target}]}],
            "images": images}


def _from_dataset(folder: Path, profile: Profile, split: str, mode: str, padded: Path | None) -> list[dict[str, Any]]:
    sizes = {s.id: s.frame_size for s in read_studies(folder)}
    rows = []
    for item in read_items(folder):
        if item.split != split or not item.images:
            continue
        prompt = build_prompt(item, folder, sizes[item.study_id], profile, mode=mode, padded=padded)
        user = [{"type": "image"} if kind == "image" else {"type": "text", "text": value}
                for kind, value in prompt.parts]
        rows.append(_row(item.id, user, prompt.target,
                         [value for kind, value in prompt.parts if kind == "image"]))
    return rows


def _from_trl_export(folder: Path, split: str) -> list[dict[str, Any]]:
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        raise TrainDataError(f"{folder}: the export has no {split} split ({path.name} missing)")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        # prompt-completion rows; a `messages` row (a trl export of an earlier voxqa) is read alike
        user, assistant = (rec["prompt"][0], rec["completion"][0]) if "prompt" in rec else rec["messages"]
        rows.append(_row(rec["id"], user["content"], assistant["content"][0]["text"], rec["images"]))
    return rows


def load_examples(source: Path, *, profile: str | None = None, split: str = "train",
                  mode: str = "structured", max_frames: int | None = None, padded: Path | None = None) -> Examples:
    """The training rows of ``source`` (a rendered dataset folder or a trl export).

    A profile measured on the image padded to a square trains on padded copies kept under
    ``padded/square/`` (the training folder), as eval shows them; a trl export must have been
    written padded (its summary's ``image_padding``).

    ``max_frames`` leaves out (and lists) items with more images: cutting frames would show
    the model a different study than evaluation does.
    """
    source = Path(source).resolve()
    summary_path = source / EXPORT_SUMMARY
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if summary["format"] != "trl":
            raise TrainDataError(f"{source}: a {summary['format']} export; voxqa train reads a dataset "
                                 f"folder or a trl export (voxqa export --format trl)")
        if profile is not None and get_profile(profile).spec != summary["profile"]:
            raise TrainDataError(f"{source}: exported with profile {summary['profile']!r}, "
                                 f"not {profile!r}; export again or drop --profile")
        prof, rows = get_profile(summary["profile"]), _from_trl_export(source, split)
        if summary.get("image_padding") != padding_record(prof):
            raise TrainDataError(f"{source}: profile {prof.spec} measures boxes on the image padded to a square, "
                                 "but this export shows the frames unpadded; export again")
    else:
        prof = get_profile(profile or "pixel")
        rows = _from_dataset(source, prof, split, mode, padded)
    skipped = []
    if max_frames is not None:
        skipped = [r["id"] for r in rows if len(r["images"]) > max_frames]
        rows = [r for r in rows if len(r["images"]) <= max_frames]
    if not rows:
        raise TrainDataError(f"{source}: no {split} item with rendered images to train on"
                             + (f" (all {len(skipped)} have more than {max_frames} frames)" if skipped else ""))
    return Examples(rows, prof, skipped)


def to_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` whose ``images`` decode lazily to RGB PIL images, as eval feeds them."""
    from datasets import Dataset, Image, List

    return Dataset.from_list(list(rows)).cast_column("images", List(Image(mode="RGB")))


# --- checks before training -------------------------------------------------------------------


def check_pixel_limits(profile: Profile, model: Path) -> None:
    """Refuse a model folder whose processor config disagrees with the profile's grid (only
    resized spaces depend on it; a folder without the file is left to ``check_resize``)."""
    config = Path(model) / "preprocessor_config.json"
    if not isinstance(profile.space, Resized) or not config.is_file():
        return
    problems = check_processor(profile, config)
    if problems:
        raise TrainDataError(f"{model}: the processor does not resize as profile {profile.spec} assumes "
                             f"({'; '.join(problems)}): pass the matching profile options, e.g. "
                             f"--profile qwen2.5-vl:min_pixels=N,max_pixels=M, or export again")


def check_resize(processor: Any, profile: Profile, image_sizes: Sequence[tuple[int, int]],
                 grids: Sequence[Sequence[int]]) -> None:
    """Refuse a processor that resized a frame to another size than the profile's boxes assume.

    ``image_sizes`` are (width, height) of the images fed, ``grids`` the processor's
    ``image_grid_thw`` rows for them (in patches of ``patch_size``).
    """
    if not isinstance(profile.space, Resized):
        return
    patch = getattr(processor.image_processor, "patch_size", None)
    if patch is None or len(grids) != len(image_sizes):
        raise TrainDataError(f"profile {profile.spec} writes boxes in the pixels Qwen2.5-VL resizes to, but "
                             f"this processor ({type(processor.image_processor).__name__}) reports no resize grid")
    for (w, h), (_, gh, gw) in zip(image_sizes, grids, strict=False):
        seen, assumed = (int(gw) * patch, int(gh) * patch), profile.space.size(w, h)
        if seen != assumed:
            raise TrainDataError(f"the processor resizes a {w}x{h} frame to {seen[0]}x{seen[1]}, but profile "
                                 f"{profile.spec} writes its boxes for {assumed[0]}x{assumed[1]}")


@dataclass(frozen=True)
class Lengths:
    """Per row: its item id, its tokens (processor's image tokens plus text), tokens trained on."""

    ids: list[str]
    total: list[int]
    trained: list[int]

    def longest(self) -> tuple[str, int]:
        i = max(range(len(self.total)), key=self.total.__getitem__)
        return self.ids[i], self.total[i]


def check_examples(dataset: Any, collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
                   processor: Any, profile: Profile, max_length: int | None) -> Lengths:
    """Run every row through ``collate`` alone; refuse corrupt images, mismatched resizes and
    sequences over ``max_length`` (the error names the longest example)."""
    ids, total, trained = list(dataset["id"]), [], []
    for i, item_id in enumerate(ids):
        try:
            row = dataset[i]  # decodes the images
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a broken file
            paths = dataset.cast_column("images", _paths_feature())[i]["images"]
            raise TrainDataError(f"item {item_id}: an image cannot be read ({type(exc).__name__}: {exc}); "
                                 f"images: {', '.join(p['path'] for p in paths)}") from exc
        sizes = [im.size for im in row["images"]]
        batch = collate([copy.deepcopy(row)])
        total.append(int(batch["input_ids"].shape[1]))
        trained.append(int((batch["labels"] != -100).sum()))
        if trained[-1] == 0:
            raise TrainDataError(f"item {item_id}: no token of the assistant turn is trained on")
        check_resize(processor, profile, sizes, batch["image_grid_thw"].tolist() if "image_grid_thw" in batch else [])
    lengths = Lengths(ids, total, trained)
    item_id, longest = lengths.longest()
    if max_length is not None and longest > max_length:
        over = sum(n > max_length for n in total)
        raise TrainDataError(
            f"{over} example(s) exceed the sequence limit of {max_length} tokens; the longest is item "
            f"{item_id} with {longest} tokens (image tokens from the processor plus text). voxqa never "
            f"truncates: raise --max-length, lower the render size or --max-frames")
    return lengths


def _paths_feature() -> Any:
    from datasets import Image, List

    return List(Image(decode=False))
