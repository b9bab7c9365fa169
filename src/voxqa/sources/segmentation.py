"""Image + segmentation inputs for segmentation-grounded questions (loading only).

Both are reoriented to RAS+ and must share one voxel grid: a question's box is drawn on the
image's frames, so labels on another grid would point at the wrong anatomy. Only the labels'
voxels are read here; the image's grid comes from its header (``voxqa.io.open_header``), as a
build uses no intensity (render reads them). Labels are a multi-label map (NIfTI/NRRD) or a
folder of binary masks, one file per structure named after it (TotalSegmentator's output
without ``--ml``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from voxqa.sources.csvinput import csv_path, study_rows
from voxqa.errors import BuildError
from voxqa.io import LazyVolume, Volume, mirror_x, open_header, open_volume
from voxqa.io.dicom import NON_IMAGE_MODALITIES
from voxqa.anatomy.labelnames import canonical_name, header_label_names, read_json_names
from voxqa.anatomy.structures import Structure, measure, measure_masks

MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr")
#: Largest image/labels affine difference (mm) still taken as one grid: above the rounding of
#: float32 headers and decimal DICOM strings, far below any voxel size.
GRID_ATOL_MM = 1e-2


@dataclass(frozen=True, kw_only=True)
class SegSpec:
    """One study to build: its files plus metadata the files may not carry."""

    study_id: str
    image: Path
    labels: Path  # a label map file or a folder of mask files
    label_names: Path | None = None  # JSON table; default: the NIfTI header's label table
    patient_id: str | None = None  # default: study_id
    modality: str | None = None  # default: the DICOM Modality, if any
    anatomy: str | None = None
    #: Axis codes (e.g. "LPS") for files that state no orientation; None: no side questions.
    assume_orientation: str | None = None


@dataclass(frozen=True, eq=False)
class SegmentationInput:
    """A RAS+ image with its structures, either as one label map or as named masks.

    The image's voxels are read only if ``image.data`` is used.

    ``names`` are canonical (``voxqa.anatomy.labelnames.canonical_name``) and ``raw_names`` as
    written in the input; for masks the ids are 1-based positions in sorted name order,
    matching ``measure_masks``.
    """

    image: LazyVolume
    labels: np.ndarray | None
    masks: dict[str, np.ndarray] | None
    affine: np.ndarray
    names: dict[int, str]
    raw_names: dict[int, str]
    spacing: tuple[float, float, float]
    modality_hint: str | None
    labels_path: str
    #: False when the files state no patient orientation (and none was assumed).
    orientation_known: bool = True

    def measure(self, components_for: Collection[str] = ()) -> list[Structure]:
        """Geometry of every structure; ``components_for`` holds canonical names."""
        if self.masks is not None:
            return measure_masks(self.masks, self.affine, components_for)
        assert self.labels is not None
        wanted = set(components_for)
        return measure(self.labels, self.affine, self.names, [i for i, n in self.names.items() if n in wanted])

    def mirrored(self) -> SegmentationInput:
        """The study flipped along patient x (array axis 0 of the RAS+ arrays), affine kept:
        the counterfactual twin whose every side is the other one."""
        return replace(
            self,
            image=self.image.mirror(),
            labels=None if self.labels is None else mirror_x(self.labels),
            masks=None if self.masks is None else {n: mirror_x(m) for n, m in self.masks.items()},
        )


def load_segmentation(image: Path, labels: Path, label_names: Path | None = None,
                      assume_orientation: str | None = None) -> SegmentationInput:
    """Read the grid of the image (NIfTI, NRRD, DICOM folder) and the labels (label map file
    or mask folder); the image's voxels are left on disk until ``image.data`` is used.

    Label names come from ``label_names`` (JSON), else the NIfTI header's label table.
    Files that state no patient orientation are read as ``assume_orientation`` when given,
    else as stored with ``orientation_known`` False.
    Raises BuildError if the two are not on one grid, VolumeError for unreadable files (for
    the image: an unreadable header; broken pixel data surfaces where they are read).
    """
    image, labels = Path(image), Path(labels)
    img = open_header(image, assume=assume_orientation)
    if labels.is_dir():
        if label_names is not None:
            raise BuildError(f"{label_names}: label names need a label map, but {labels} is a mask "
                             "folder (masks are named by their file names)")
        masks, raw = _read_masks(labels, img, assume_orientation)
        label_map = None
    else:
        vol = _open(labels, assume_orientation)
        _check_grid(img, vol)
        label_map = _integer_labels(vol.data, vol.path)
        masks = None
        if label_names is not None:
            raw = read_json_names(Path(label_names))
        else:
            raw = header_label_names(labels) if vol.format == "nifti" else {}
    names = {i: canonical_name(n) for i, n in raw.items()}
    _check_one_id_per_name(names, raw, label_names if label_names is not None else labels)
    return SegmentationInput(
        image=img,
        labels=label_map,
        masks=masks,
        affine=img.affine,
        names=names,
        raw_names=raw,
        spacing=img.spacing,
        modality_hint=_dicom_modality(image) if img.format == "dicom" else None,
        labels_path=str(labels),
        orientation_known=img.world_known,
    )


def _open(path: Path, assume_orientation: str | None) -> Volume:
    return open_volume(path, assume=assume_orientation)


def _check_grid(image: LazyVolume, other: Volume) -> None:
    """Same shape and affine after reorientation to RAS+ (so axis order may differ on disk)."""
    if image.shape != other.shape or not np.allclose(image.affine, other.affine, rtol=0, atol=GRID_ATOL_MM):
        raise BuildError(
            f"{other.path} is not on the voxel grid of {image.path}: shape {other.shape} vs {image.shape}, "
            f"RAS+ affine {np.round(other.affine[:3], 4).tolist()} vs {np.round(image.affine[:3], 4).tolist()}"
        )


def _check_one_id_per_name(names: dict[int, str], raw: dict[int, str], source: str | Path) -> None:
    """Each structure has one label id: two ids whose names are one structure (e.g. "liver"
    and "Liver") would be asked about as one structure twice."""
    first: dict[str, int] = {}
    for i in sorted(names):
        j = first.setdefault(names[i], i)
        if j != i:
            raise BuildError(f"{source}: label ids {j} ({raw[j]!r}) and {i} ({raw[i]!r}) both name "
                             f"the structure {names[i]!r}; give each structure one id (merge them "
                             "in the label map, or rename one)")


def _integer_labels(data: np.ndarray, path: str | Path) -> np.ndarray:
    """Non-negative integer labels; float maps (common after resampling) must hold whole numbers.

    Checked before any cast: -1.0 cast to an unsigned type would become label 255.
    """
    low = data.min()
    if low < 0:
        raise BuildError(f"{path}: not a label map (negative value {low.item()!r} in "
                         f"{int(np.count_nonzero(data < 0))} voxel(s); labels are 0 = background, 1, 2, ...)")
    if not np.issubdtype(data.dtype, np.integer):
        fractional = data != np.round(data)
        if fractional.any():
            raise BuildError(f"{path}: not a label map (non-integer value {data[fractional][0].item()!r} in "
                             f"{int(np.count_nonzero(fractional))} voxel(s))")
        data = data.astype(np.min_scalar_type(int(data.max())))
    return data


def _read_masks(folder: Path, image: LazyVolume, assume_orientation: str | None
                ) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Binary masks keyed by canonical name, and the raw file-name stems by label id."""
    stems: dict[str, str] = {}
    masks: dict[str, np.ndarray] = {}
    for f in sorted(folder.iterdir()):
        stem = _mask_stem(f)
        if stem is None:
            continue
        name = canonical_name(stem)
        if name in masks:
            raise BuildError(f"{f}: structure {name!r} also given by {folder / stems[name]}.*")
        vol = _open(f, assume_orientation)
        _check_grid(image, vol)
        masks[name] = _binary(_integer_labels(vol.data, f), f)
        stems[name] = stem
    if not masks:
        raise BuildError(f"{folder}: no mask files ({', '.join('*' + s for s in MASK_SUFFIXES)})")
    order = sorted(masks)
    return {n: masks[n] for n in order}, {i: stems[n] for i, n in enumerate(order, 1)}


def _mask_stem(path: Path) -> str | None:
    """Structure name of a mask file (its name without the suffix); None for other files."""
    if not path.is_file():
        return None
    suffix = next((s for s in MASK_SUFFIXES if path.name.lower().endswith(s)), None)
    return path.name[: -len(suffix)] if suffix else None


def _binary(labels: np.ndarray, path: Path) -> np.ndarray:
    """Inside = non-zero; several non-zero values mean a label map was given as a mask."""
    inside = labels != 0
    if int(labels.max()) > 1:
        values = labels[inside]
        if values.min() != values.max():
            raise BuildError(f"{path}: a mask must hold one non-zero value, found {values.min()}..{values.max()} "
                             "(a multi-label map goes in as the labels file)")
    return inside


def _dicom_modality(path: Path) -> str | None:
    """Modality (e.g. "CT", "MR") of the first image object of a DICOM file or folder."""
    files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["Modality"])
        except (InvalidDicomError, OSError):
            continue
        modality = str(ds.get("Modality", "")).strip()
        if modality and modality not in NON_IMAGE_MODALITIES:
            return modality
    return None


STUDIES_COLUMNS = ("study_id", "image", "labels")


def read_studies_csv(path: Path) -> list[SegSpec]:
    """studies.csv (study_id, image, labels[, label_names, patient_id, modality, anatomy]);
    relative paths are taken relative to the CSV's folder."""
    specs = []
    for where, study_id, rec in study_rows(path, STUDIES_COLUMNS, "studies CSV"):
        image, labels = csv_path(path, rec["image"]), csv_path(path, rec["labels"])
        if image is None or labels is None:
            raise BuildError(f"{where}: image and labels are required")
        specs.append(SegSpec(
            study_id=study_id, image=image, labels=labels,
            label_names=csv_path(path, rec.get("label_names")),
            **{k: (rec.get(k) or "").strip() or None for k in ("patient_id", "modality", "anatomy")},
        ))
    return specs
