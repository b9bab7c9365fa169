"""`voxqa render DIR --recipe NAME`: per-study model-ready inputs for 3D medical VLMs.

Settings as the papers and CT-SpatialVQA ran them (reference: source-benchmarks.md §2.4), but
from the stored frames of the RAS+ canonical volume (the harness skipped re-orientation, which
decides every laterality answer) and padding with air in HU before normalisation (the harness
padded with a SimpleITK pixel *type code*). Writes ``DIR/recipes/<name>/<study>.npy`` and a
sidecar ``<study>.record.json`` (settings key + the study's record, the resume marker), then
``DIR/recipes/<name>/recipe.json`` with the settings and every study's transform
(``voxqa.model_inputs.base.Transform``), so boxes convert between stored frames and the model grid.
Deterministic, resumable (a study with an .npy and a sidecar of the same settings is kept),
parallel over studies; a refused or unreadable study is counted, and fatal only with ``strict``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from voxqa.anatomy.frames import FRAME_CONVENTION
from voxqa.dataset.folder import read_studies
from voxqa.dataset.paths import inside
from voxqa.errors import InputError
from voxqa.executors import Executor, LocalExecutor
from voxqa.fileio import TEMP_SUFFIX, atomic_write, read_own, write_json
from voxqa.io import VolumeError, open_volume
from voxqa.model_inputs.base import (
    Recipe,
    RecipeRefused,
    Transform,
    Window,
    box_from_model,
    box_to_model,
    check_study,
    frame_stack,
    from_m3d_normalized,
    m3d_normalized,
)
from voxqa.model_inputs.slices import SliceRecipe
from voxqa.model_inputs.volume import VolumeRecipe, foreground
from voxqa.progress import SILENT, Progress, tracking
from voxqa.schema import Study

__all__ = [
    "RECIPES",
    "Recipe",
    "RecipeRefused",
    "Transform",
    "box_from_model",
    "box_to_model",
    "from_m3d_normalized",
    "m3d_normalized",
    "render_recipe",
    "study_transform",
]

log = logging.getLogger(__name__)

RECIPES_DIR = "recipes"
SUMMARY = "recipe.json"
RECORD = ".record.json"  # per-study sidecar; never "recipe.json", whatever the study id
FORMAT = 2  # bump when an unchanged setting starts to produce other bytes
# MedGemma's R, G, B: its CT notebook's WINDOW_CLIPS (as CT-SpatialVQA copies it, "Windowing as in
# the official notebook", medgemma_ct_ourdata.ipynb, and as its Lingshu run uses them)
CT_WINDOWS = (Window(-1024.0, 1024.0), Window(-135.0, 215.0), Window(0.0, 80.0))

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    VolumeRecipe("m3d", "M3D-LaMed (M3D Data/process m3d_seg_data_prepare.py: min-max, CropForeground, Resize)",
                 ("channel", "frame", "y", "x"), (32, 256, 256), Window(), crop_foreground=True),
    VolumeRecipe("m3d-refseg", "M3D-LaMed's 3D grounding data (M3D Data/process m3d_refseg_data_prepare.py: "
                 "NIfTI axes k, i, j; percentiles 0.5-99.5; CropForeground; Resize)",
                 ("channel", "frame", "-x", "-y"), (32, 256, 256), Window(percentiles=(0.5, 99.5)),
                 crop_foreground=True),
    VolumeRecipe("med3dvlm", "Med3DVLM (src/utils/m3d_cap_data_prepare_128.py: min-max, CropForeground, Resize)",
                 ("frame", "y", "x"), (128, 256, 256), Window(), crop_foreground=True),
    VolumeRecipe("radfm", "RadFM (radiopaedia.py depth cap 64, multi_dataset_test.py depths 4-64; "
                 "CT-SpatialVQA preprocess_radfm window)", ("channel", "y", "x", "frame"),
                 (512, 512, 64), Window(-1024.0, 1024.0), channels=3, frame_step=4),
    VolumeRecipe("merlin", "Merlin's own MONAI pipeline (RAS, x y z)", ("-x", "-y", "frame"),
                 (224, 224, 160), Window(-1000.0, 1000.0), spacing=(1.5, 1.5, 3.0)),
    VolumeRecipe("ctchat", "CT-CLIP encoder of CT-CHAT (data_inference_nii.py: NIfTI axes k, i, j)", ("frame", "-x", "-y"),
                 (240, 480, 480), Window(-1000.0, 1000.0, out=(-1.0, 1.0)), spacing=(1.5, 0.75, 0.75)),
    SliceRecipe("medgemma-ct", "MedGemma-1.5-4B (CT-SpatialVQA run_medgemma)", 85, CT_WINDOWS,
                size=(896, 896)),
    SliceRecipe("lingshu", "Lingshu-7B via MedEvalKit (CT-SpatialVQA)", 32, CT_WINDOWS),
)}


def settings_key(recipe: Recipe) -> str:
    payload = {"format": FORMAT, "type": type(recipe).__name__, **asdict(recipe)}  # type: ignore[call-overload]
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _volume_id(study: Study) -> dict[str, Any]:
    assert study.volume is not None
    return study.volume.model_dump()


def _stored(study: Study) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """A study's stored frame stack and its spacing (mm per stored axis; None without geometry)."""
    assert study.volume is not None
    vol = open_volume(study.volume.path, assume=study.volume.assumed_orientation)
    data = vol.data[::-1] if study.volume.mirrored else vol.data  # a twin flipped along patient x
    spacing = (vol.spacing[2], vol.spacing[1], vol.spacing[0]) if vol.world_known else None
    return frame_stack(data, study), spacing


@functools.lru_cache(maxsize=16)
def _pixel_transform(name: str, volume_json: str, study_json: str) -> Transform:
    study = Study.model_validate_json(study_json)
    stack, spacing = _stored(study)
    recipe = RECIPES[name]
    if isinstance(recipe, VolumeRecipe) and recipe.crop_foreground:
        return recipe.plan(stack.shape, spacing, foreground(stack, recipe.window.bounds(stack)[0]))
    return recipe.plan(stack.shape, spacing)


def study_transform(study: Study, name: str) -> Transform:
    """The transform recipe ``name`` records for this study, computed without writing it. A
    foreground-cropping recipe (``m3d``, ``med3dvlm``) reads the volume, since its crop depends on
    the pixels; others, and a study without a volume, need only the stored geometry."""
    recipe = RECIPES[name]
    if study.volume is not None and isinstance(recipe, VolumeRecipe) and recipe.crop_foreground:
        return _pixel_transform(name, study.volume.model_dump_json(), study.model_dump_json())
    if study.frame_count is None or study.frame_size is None:
        raise ValueError(f"study {study.id!r} has no stored frame geometry")
    width, height = study.frame_size
    return recipe.plan((study.frame_count, height, width), None)


def _render_study(job: tuple[Study, str, Path, str]) -> dict[str, Any]:
    """Write one study's array and sidecar (in a worker process); returns its record."""
    study, name, folder, key = job
    recipe = RECIPES[name]
    stack, spacing = _stored(study)
    array, transform, extra = recipe.make(stack, spacing, study.modality)
    rel = f"{RECIPES_DIR}/{name}/{study.id}.npy"
    path = inside(folder, rel, f"study {study.id!r}")
    with atomic_write(path) as fh:
        np.save(fh, array, allow_pickle=False)
    record = {"file": rel, "shape": list(array.shape), "dtype": str(array.dtype),
              "transform": transform.to_json(), **extra}
    # written last: marks the study done
    write_json(path.with_name(study.id + RECORD), {"settings_key": key, "volume": _volume_id(study), "record": record})
    return record


def _finished(folder: Path, study: Study, name: str, key: str) -> dict[str, Any] | None:
    """The record of a study already written with these settings from this volume, else None."""
    path = inside(folder, f"{RECIPES_DIR}/{name}/{study.id}.npy", f"study {study.id!r}")
    try:
        done = orjson.loads(read_own(path.with_name(study.id + RECORD)))
    except (OSError, orjson.JSONDecodeError):  # a link planted there too: not a finished study
        return None
    if not isinstance(done, dict):
        return None
    if done.get("settings_key") != key or done.get("volume") != _volume_id(study) or not path.is_file():
        return None
    return done["record"]


def render_recipe(folder: Path, name: str, workers: int = 1, strict: bool = False,
                  executor: Executor | None = None, progress: Progress = SILENT,
                  volumes_root: Sequence[Path] = ()) -> dict[str, Any]:
    """Write recipe ``name``'s model inputs for every study with a volume; returns recipe.json's
    content. Each finished study advances ``progress``. Volumes are contained as render's are
    (``voxqa.render.check_renderable``)."""
    from voxqa.render import check_renderable

    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    recipe = RECIPES[name]
    key = settings_key(recipe)
    studies = read_studies(folder)
    check_renderable(folder, studies, volumes_root)
    out_dir = inside(folder, f"{RECIPES_DIR}/{name}", f"recipe {name!r}")
    out_dir.mkdir(parents=True, exist_ok=True)

    records: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    jobs = []
    for s in sorted((s for s in studies if s.volume is not None), key=lambda s: s.id):
        try:
            check_study(s, name, recipe.needs_spacing, recipe.needs_hu)
        except RecipeRefused as exc:
            if strict:
                raise
            log.info("study %s refused by recipe %s: %s", s.id, name, exc)
            refused[s.id] = str(exc)
            continue
        done = _finished(folder, s, name, key)
        if done is not None:
            records[s.id] = done
        else:
            jobs.append((s, name, folder, key))

    failed: dict[str, str] = {}
    with tracking(progress, f"recipe {name}", len(jobs)) as advance:
        pool = executor or LocalExecutor(workers)
        try:
            for i, outcome in pool.run(_render_study, jobs):
                sid = jobs[i][0].id
                try:
                    records[sid] = outcome.result()
                except (VolumeError, OSError, ValueError) as exc:
                    if strict:
                        raise
                    log.info("study %s failed in recipe %s: %s", sid, name, exc)
                    failed[sid] = str(exc)
                advance()
        except BaseException:  # Ctrl-C or strict: stop now; only complete files carry their names
            pool.stop()
            for part in out_dir.glob("*" + TEMP_SUFFIX):
                part.unlink(missing_ok=True)
            raise

    summary = {
        "recipe": name,
        "source": recipe.source,
        "settings": asdict(recipe),  # type: ignore[call-overload]
        "settings_key": key,
        "stored_frames": FRAME_CONVENTION,
        "transform": "per study: for each array axis, the stored axis (frame, y, x of the stored "
                     "frames) and model = scale * stored + offset in voxel-edge coordinates "
                     "(scale < 0: flipped); null axes are channels",
        "studies": dict(sorted(records.items())),
        "not_rendered": {
            "no_volume": sorted(s.id for s in studies if s.volume is None),
            "refused": dict(sorted(refused.items())),
            "failed": dict(sorted(failed.items())),
        },
        "counts": {"studies": len(records), "refused": len(refused), "failed": len(failed)},
    }
    write_json(out_dir / SUMMARY, summary)  # the same bytes whether studies were resumed or redone
    summary["counts"]["written"] = len(jobs) - len(failed)
    return summary
