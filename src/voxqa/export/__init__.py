"""Export a rendered voxqa dataset for training: one module per format, one shared target.

``FORMATS`` maps a name to an ``ExportFormat`` (``export/base.py``); ``export_dataset``
picks the items that have rendered images, builds each item's prompt and JSON target once
(``voxqa.conversation.build_sample``) with boxes in the chosen profile's convention (``voxqa.boxes.profiles``),
and hands them to the format grouped by split. Items without images are skipped and counted.
Every export also writes ``voxqa_export.json``, the summary this function returns. For a
profile measured on the image padded to a square (``medgemma``, ``shikra``, ``llava``) the rows
name padded copies under ``OUT/square/`` and the summary records the padding (``voxqa.padding``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import get_profile
from voxqa.dataset.folder import read_items, read_studies
from voxqa.dataset.paths import check_png, resolve_once
from voxqa.conversation import InlineBoxes, Sample, build_sample
from voxqa.errors import InputError
from voxqa.export.base import ExportFormat, TunerConfigFormat, write_json
from voxqa.export.hf import HfFormat
from voxqa.export.llamafactory import LlamaFactoryFormat
from voxqa.export.sgmri_vqa import SgmriVqaFormat
from voxqa.export.swift import SwiftFormat
from voxqa.export.trl import TrlFormat
from voxqa.export.tuners import TunerSetup
from voxqa.padding import padding_record, shown_images

FORMATS: dict[str, ExportFormat] = {
    "hf": HfFormat(),
    "llamafactory": LlamaFactoryFormat(),
    "sgmri-vqa": SgmriVqaFormat(),
    "swift": SwiftFormat(),
    "trl": TrlFormat(),
}
SUMMARY = "voxqa_export.json"


def export_dataset(
    folder: Path, fmt: str, out: Path, convention: str | None = None, split: str | None = None,
    setup: TunerSetup | None = None,
) -> dict[str, Any]:
    """Export ``folder`` (after `voxqa render`) as ``fmt`` into ``out``; returns the summary.

    ``convention`` is a box profile spec (``voxqa.boxes.profiles``: ``pixel``, ``qwen3-vl``,
    ``qwen2.5-vl:max_pixels=1003520``, ...); None: the format's own (``sgmri-vqa``: ``sgmri``),
    else ``pixel``. ``split`` keeps one split (train/val/test), None keeps all. A tuner format
    (``llamafactory``, ``swift``: ``TunerConfigFormat``) also writes its runnable config, for
    ``setup``'s base model, measured with its processor (``voxqa.export.tuners``); the summary's
    ``tuner`` records it.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if split not in (None, "train", "val", "test"):
        raise InputError(f"split must be train, val or test, got {split!r}")
    exporter = FORMATS[fmt]
    # a format written in one benchmark's convention names its profile (sgmri-vqa: sgmri)
    profile = get_profile(convention or str(getattr(exporter, "profile", "pixel")))
    if profile.target == "native" and not isinstance(exporter.box_style(profile), InlineBoxes):
        raise InputError(f"--format {fmt} writes boxes its own way; the native target style "
                         f"({profile.spec}) is for hf, llamafactory and trl")
    folder, out = Path(folder).resolve(), Path(out)
    frame_sizes = {s.id: s.frame_size for s in read_studies(folder)}

    samples: dict[str, list[Sample]] = {}
    skipped = 0
    checked: set[str] = set()
    with resolve_once():  # the items of a study share their frames
        for item in read_items(folder):
            if split is not None and item.split != split:
                continue
            if not item.images:
                skipped += 1
                continue
            sample = build_sample(item, folder, frame_sizes[item.study_id], profile, exporter.box_style(profile))
            for path in sample.images:  # inside the dataset (build_sample) and a PNG
                if path not in checked:
                    check_png(path, f"item {item.id}")
                    checked.add(path)
            samples.setdefault(item.split, []).append(sample)
    if not samples:  # nothing to train on: an error, not an empty export
        where = f" of split {split}" if split else ""
        raise InputError(f"{folder}: no item{where} has rendered images: run `voxqa render {folder}` first"
                         if skipped else f"{folder}: no item{where} to export")

    out.mkdir(parents=True, exist_ok=True)
    if profile.pads_square:  # the model is shown the padded square its boxes are measured on
        samples = {split: [replace(s, images=shown_images(s.images, profile, out)) for s in rows]
                   for split, rows in samples.items()}
    files = exporter.write(samples, out, profile)
    tuner = None
    if isinstance(exporter, TunerConfigFormat):
        written, tuner = exporter.tuner_config(samples, out, profile, setup or TunerSetup())
        files = files + written
    summary = {
        "format": fmt,
        "profile": profile.spec,
        "space": profile.space.name,
        "profile_options": profile.options,
        "prompt_hint": profile.hint,
        "split": split,
        "exported": sum(len(rows) for rows in samples.values()),
        "skipped_no_images": skipped,
        "by_split": {k: len(v) for k, v in sorted(samples.items())},
        "by_answer_type": dict(sorted(Counter(
            s.item.answer.type for rows in samples.values() for s in rows).items())),
        **({"image_padding": pad} if (pad := padding_record(profile)) else {}),
        "image_paths": "absolute",
        "files": files,
        **({"tuner": tuner} if tuner is not None else {}),
    }
    write_json(out / SUMMARY, summary)
    return summary
