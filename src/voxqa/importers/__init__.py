"""Importers: published benchmarks in their released formats -> voxqa dataset folders.

One module per benchmark (``sgmri_vqa``, ``ct_spatialvqa``, ``reasonknee``), each exposing
``NAME`` and an ``import_<name>(...)`` entry point, listed in ``IMPORTERS`` under its
``voxqa import`` command name. The published records are read field by field: a record of a shape the
importer does not know is refused with an error naming the file, the record and the field,
because a guessed reading is how the benchmarks' own scripts went wrong
(../shared/reference/source-benchmarks.md). What an importer repairs or drops is counted in
the build report like any build; the blind audit runs at the end as for every dataset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from voxqa.build import ordered_items, write_built
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.folder import sha256_file
from voxqa.dataset.manifest import common_manifest
from voxqa.dataset.paths import UnsafePath, inside
from voxqa.errors import BuildError
from voxqa.schema import Item, Study


def load_json(path: Path, what: str) -> Any:
    """A released JSON file, or a BuildError naming it (missing, or not JSON)."""
    if not path.is_file():
        raise BuildError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BuildError(f"{path}: {what} is not JSON ({exc})") from None
    except RecursionError:  # json recurses per level: [[[[... 100,000 deep
        raise BuildError(f"{path}: {what} is not JSON voxqa reads (nested too deeply)") from None


def field(record: Any, name: str, where: str, kinds: type | tuple[type, ...]) -> Any:
    """``record[name]`` of the expected type, or an error naming the field and the record."""
    if not isinstance(record, Mapping):
        raise BuildError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if name not in record:
        raise BuildError(f"{where}: missing field {name!r} (fields: {', '.join(sorted(record)) or 'none'})")
    value = record[name]
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in _as_tuple(kinds):
        expected = " or ".join(k.__name__ for k in _as_tuple(kinds))
        raise BuildError(f"{where}: field {name!r} must be {expected}, got {type(value).__name__} {value!r:.60}")
    return value


def one_of(record: Mapping[str, Any], name: str, where: str, known: Sequence[str]) -> str:
    """A string field whose value must be one of ``known`` (an unknown value is an unknown shape)."""
    value = field(record, name, where, str)
    if value not in known:
        raise BuildError(f"{where}: field {name!r} has unknown value {value!r} (known: {', '.join(known)})")
    return value


def ras_shape(path: Path) -> tuple[int, int, int]:
    """The shape of a NIfTI's RAS+ canonical array, from its header alone: importing a
    benchmark's questions must not read every volume."""
    import nibabel as nib

    img = nib.load(str(path))
    ras = [0, 0, 0]
    for axis, (to, _) in enumerate(nib.io_orientation(img.affine)[:3]):
        ras[int(to)] = int(img.shape[axis])
    return ras[0], ras[1], ras[2]


def volume_file(root: Path, names: Sequence[str], report: BuildReport) -> Path | None:
    """The first of ``names`` (paths from a released file) that is a file inside ``root``; a
    name leaving ``root`` is refused and counted, a missing file counted (the study is then
    built box-only)."""
    for name in names:
        try:
            path = inside(root, name, "volume path")
        except UnsafePath as exc:
            report.add("skipped", "volume_path_leaves_volumes_root", error=str(exc))
            return None
        if path.is_file():
            return path
    report.add("info", "volume_file_missing_built_box_only", file=names[0])
    return None


def _as_tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def write_imported(out: Path, *, name: str, source: str, command: str, options: dict[str, Any],
                   files: Sequence[tuple[Path, str]], studies: list[Study], items: list[Item],
                   report: BuildReport, extra: dict[str, Any]) -> dict[str, Any]:
    """Write an imported dataset like a build (``voxqa.build.write_built``): the common
    manifest with the source files' sha256 and the importer's ``extra`` keys, the blind
    audit, and the build report; returns the manifest."""
    items = ordered_items(items)
    manifest = common_manifest(name=name, source=source, command=command, options=options,
                               studies=studies, items=items) | {
        "source_files": [{"path": str(p), "role": role, "sha256": sha256_file(p)} for p, role in files],
        **extra,
    }
    write_built(out, manifest, studies, items, report)
    return manifest


#: ``voxqa import NAME`` -> the module implementing it (each documented in docs/importers.md).
IMPORTERS = {
    "sgmri-vqa": "voxqa.importers.sgmri_vqa",
    "ct-spatialvqa": "voxqa.importers.ct_spatialvqa",
    "ct-spatialvqa-run": "voxqa.importers.ct_spatialvqa",
    "reasonknee": "voxqa.importers.reasonknee",
}
