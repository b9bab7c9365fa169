"""The manifest keys every dataset shares, built and imported alike; sources add their own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from voxqa import __version__
from voxqa.schema import Item, Study

BOX_CONVENTION = {
    "format": "pixel_xyxy",
    "max_exclusive": True,
    "origin": "top-left pixel corner of the stored frame",
    "frames": "0-based indices along the study's view_axis",
}
WORLD_CONVENTION = "RAS+ mm: +x patient's right, +y anterior, +z superior"


def counts(studies: Sequence[Study], items: Sequence[Item]) -> dict[str, Any]:
    def tally(key) -> dict[str, int]:
        return dict(sorted(Counter(key(x) for x in items).items()))

    return {
        "studies": len(studies),
        "studies_by_split": dict(sorted(Counter(str(s.split) for s in studies).items())),
        "studies_by_anatomy": dict(sorted(Counter(s.anatomy for s in studies).items())),
        "items": len(items),
        "items_by_split": tally(lambda it: it.split),
        "items_by_task": tally(lambda it: it.task),
        "items_by_template": tally(lambda it: it.template),
    }


def split_manifest(fractions: Sequence[float], unit: str) -> dict[str, Any]:
    return {
        "unit": unit,
        "fractions": dict(zip(("train", "val", "test"), fractions, strict=False)),
        "rule": "sha256('split', seed, patient_id) -> [0,1) against cumulative fractions",
    }


def common_manifest(*, name: str, source: str, command: str, options: dict[str, Any],
                    studies: Sequence[Study], items: Sequence[Item]) -> dict[str, Any]:
    """The keys of every manifest (the audit's summary is added when the dataset is written)."""
    return {
        "name": name,
        "voxqa_version": __version__,
        "command": command,
        "options": options,
        "source": source,
        "box_convention": BOX_CONVENTION,
        "counts": counts(studies, items),
    }


def extend(manifest: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with a source's ``own`` keys: dict values add to the common ones (options,
    box_convention), anything else is set."""
    out = dict(manifest)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = out[key] | value
        else:
            out[key] = value
    return out
