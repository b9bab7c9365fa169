"""Image + segmentation inputs for segmentation-grounded questions: loading, measuring and
relating the structures (``SegGeometry``), and the ``voxqa build segmentation`` source.

Both are reoriented to RAS+ and must share one voxel grid: a question's box is drawn on the
image's frames, so labels on another grid would point at the wrong anatomy. Only the labels'
voxels are read here; the image's grid comes from its header (``voxqa.io.open_header``), as a
build uses no intensity (render reads them). Labels are a multi-label map (NIfTI/NRRD) or a
folder of binary masks, one file per structure named after it (TotalSegmentator's output
without ``--ml``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from voxqa.anatomy.frames import FRAME_CONVENTION, frame_size
from voxqa.anatomy.labelnames import canonical_name, header_label_names, is_lesion, midline, read_json_names
from voxqa.anatomy.margins import MARGINS
from voxqa.anatomy.relations import (
    SegGeometry,
    contacts,
    containers,
    estimate_midline,
    interior_point,
    label_masks,
    mask_folder,
    owners,
    side_conflicts,
)
from voxqa.anatomy.structures import Structure, measure, measure_masks
from voxqa.boxes.geometry import union_box
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.frame_policy import DEFAULT_FRAMES, FramePolicy
from voxqa.dataset.manifest import WORLD_CONVENTION
from voxqa.dataset.paths import check_study_id
from voxqa.errors import BuildError
from voxqa.executors import Executor, LocalExecutor
from voxqa.io import LazyVolume, Volume, VolumeError, mirror_x, open_header, open_volume
from voxqa.io.dicom import NON_IMAGE_MODALITIES
from voxqa.progress import SILENT, Progress, tracking
from voxqa.schema import Box, Box3D, Finding, Item, Study, VolumeRef
from voxqa.sources.csvinput import csv_path, study_rows
from voxqa.tasks import FAMILIES
from voxqa.tasks.base import BuildContext, StudyView, TaskFamily
from voxqa.tasks.spatial import mirrored_id


NAME = "segmentation"

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


# --------------------------------------------------------------------------- geometry


def relate(seg: SegmentationInput, mirrored: bool = False) -> tuple[list[Structure], SegGeometry]:
    """All structures measured, and the geometry questions are asked from (tiny ones out)."""
    shape = seg.image.shape
    measured = seg.measure(components_for=[n for n in seg.names.values() if is_lesion(n)])
    mask_in = label_masks(seg.labels) if seg.labels is not None else mask_folder(seg.masks or {})
    absent = sorted(set(seg.names.values()) - {s.name for s in measured})
    tiny = [s.name for s in measured if s.voxels < MARGINS.min_structure_voxels]
    structures = [s for s in measured if s.voxels >= MARGINS.min_structure_voxels]
    midline_x, midline_src = estimate_midline(structures, midline, shape, seg.affine)
    touching, near = contacts(mask_in, shape, structures, seg.spacing)
    interior = {s.name: interior_point(mask_in, s) for s in structures}
    geometry = SegGeometry(
        structures=structures, shape=shape, midline_x=midline_x,
        midline_source=midline_src, touching=touching, near_not_touching=near,
        interior_points=interior,
        point_owners=owners(mask_in, structures, interior),
        containers=containers(mask_in, shape, structures, [s.name for s in structures if is_lesion(s.name)]),
        absent=absent,
        tiny=tiny,
        orientation_known=seg.orientation_known,
        # a mirrored twin contradicts every sided name by construction
        side_conflicts=[] if mirrored or not seg.orientation_known else side_conflicts(
            structures, midline_x, MARGINS.min_centroid_separation_mm),
        mirrored=mirrored,
    )
    return measured, geometry


def _structure_finding(s: Structure, raw_name: str) -> Finding:
    """A segmented structure as a Finding: its axial frame boxes and 3D box, plus geometry."""
    boxes = [Box(frame=k, box=b) for k, b in sorted(s.frame_boxes.items())]
    union = union_box([b.box for b in boxes])
    return Finding(
        label=s.name,
        raw_label=raw_name,
        boxes=boxes,
        box3d=Box3D(frame_start=boxes[0].frame, frame_end=boxes[-1].frame, box=union),
        attributes={
            "label_id": s.label_id,
            "voxels": s.voxels,
            "volume_ml": round(s.volume_ml, 3),
            "centroid_x_mm": round(s.centroid_ras[0], 2),
            "centroid_y_mm": round(s.centroid_ras[1], 2),
            "centroid_z_mm": round(s.centroid_ras[2], 2),
            "components": -1 if s.components is None else len(s.components),
            "truncated": s.truncated,
        },
    )


def segmentation_study(spec: SegSpec, seg: SegmentationInput, study_id: str,
                       mirrored: bool) -> tuple[Study, SegGeometry]:
    """One study and its geometry (``mirrored``: the counterfactual twin of ``seg``)."""
    shape = seg.image.shape
    measured, geometry = relate(seg, mirrored)
    study = Study(
        id=study_id,
        patient_id=spec.patient_id or spec.study_id,
        source=NAME,
        modality=spec.modality or seg.modality_hint or "unknown",
        anatomy=spec.anatomy or "unknown",
        volume=VolumeRef(path=str(spec.image), loader=seg.image.format, mirrored=mirrored,
                         assumed_orientation=spec.assume_orientation if seg.orientation_known else None),
        shape=tuple(int(n) for n in shape),
        spacing=tuple(float(x) for x in seg.spacing),
        affine=[[float(v) for v in row] for row in seg.affine],
        view_axis=2,
        frame_count=int(shape[2]),
        frame_count_source="volume",
        frame_size=frame_size(shape),
        frame_size_source="volume",
        findings=[_structure_finding(s, seg.raw_names.get(s.label_id, s.name)) for s in measured],
    )
    return study, geometry


def study_with_twin(spec: SegSpec, seg: SegmentationInput) -> list[tuple[Study, SegGeometry]]:
    """The study measured and related (world coordinates, RAS+); with a patient orientation,
    also its mirrored twin (for the counterfactual side questions)."""

    out = [segmentation_study(spec, seg, spec.study_id, mirrored=False)]
    if seg.orientation_known:
        out.append(segmentation_study(spec, seg.mirrored(), mirrored_id(spec.study_id), mirrored=True))
    return out


def load_segmentation_study(spec: SegSpec) -> list[tuple[Study, SegGeometry]]:
    """Read one study's files, then ``study_with_twin`` (run on the build's executor)."""
    seg = load_segmentation(spec.image, spec.labels, spec.label_names, spec.assume_orientation)
    return study_with_twin(spec, seg)


def seg_views(pairs: Sequence[tuple[Study, SegGeometry]], frames: FramePolicy) -> list[StudyView]:
    """Views of segmentation studies; their volume-level questions cite and ask only what
    render will show (``SegGeometry.shown_frames``)."""

    views = []
    for study, g in pairs:
        g.shown_frames = set(frames.frames(study.frame_count))
        views.append(StudyView(study, _any_label, g))
    return views


def _any_label(label: str) -> bool:
    return True


def seg_source_files(specs: Sequence[SegSpec], roles: Sequence[str] = ("image", "labels", "label_names")
                     ) -> list[dict[str, Any]]:
    """The manifest's ``source_files``: each study's files of the given roles (SegSpec fields)."""
    return [{"study_id": sp.study_id, "path": str(p), "role": role}
            for sp in specs for role in roles if (p := getattr(sp, role)) is not None]


@dataclass
class SegmentationSource:
    """``voxqa build segmentation``: image + segmentation pairs, read and measured on
    ``executor`` (default: this process); only their compact geometry comes back."""

    specs: Sequence[SegSpec]
    executor: Executor | None = None
    name = NAME
    command = "segmentation"
    split_unit = "patient_id"
    frames = DEFAULT_FRAMES

    def is_pathology(self, label: str) -> bool:
        return True

    def load(self, report: BuildReport, progress: Progress = SILENT) -> list[StudyView]:
        for spec in self.specs:  # ids name folders under frames/: refused before anything is read
            check_study_id(spec.study_id, f"study of {spec.image}")
        pairs: list[tuple[Study, SegGeometry]] = []
        with tracking(progress, "measuring structures", len(self.specs)) as advance:
            errors: list[str] = []
            pool = self.executor or LocalExecutor()
            outcomes = {}
            try:
                for i, outcome in pool.run(load_segmentation_study, self.specs):
                    outcomes[i] = outcome
                    advance()
            except BaseException:
                pool.stop()
                raise
            for i, spec in enumerate(self.specs):  # in the order given, whatever order they finished in
                try:
                    for study, g in outcomes[i].result():
                        pairs.append((study, g))
                        if not study.findings and not g.mirrored:
                            report.add("warning", "labels_empty_no_questions", study=spec.study_id,
                                       labels=str(spec.labels))
                except (BuildError, VolumeError) as exc:
                    report.add("skipped", "study_unreadable", study=spec.study_id, error=str(exc))
                    errors.append(str(exc))
        if not pairs:
            raise BuildError("no study given" if not errors else errors[0] if len(errors) == 1
                             else f"none of the {len(errors)} studies could be read; the first: {errors[0]}")
        for study, g in pairs:
            if g.mirrored:
                continue
            for name in g.tiny:
                report.add("info", "structure_too_small_not_asked", study=study.id, structure=name)
            if not g.orientation_known:
                report.add("warning", "no_patient_orientation_no_side_questions", study=study.id,
                           hint="pass --assume-orientation (e.g. RAS or LPS) if you know it")
            for name in g.side_conflicts:
                report.add("warning", "side_in_name_contradicts_geometry_no_side_questions",
                           study=study.id, structure=name)
        report.totals["studies"] = len(pairs)
        report.totals["structures"] = sum(len(s.findings) for s, _ in pairs)
        return seg_views(pairs, self.frames)

    def families(self) -> list[TaskFamily]:

        return [FAMILIES["spatial"]]

    def manifest(self, ctx: BuildContext, studies: Sequence[Study], items: Sequence[Item]) -> dict[str, Any]:
        return {
            "source_files": seg_source_files(self.specs),
            "box_convention": {"frame_orientation": FRAME_CONVENTION},
            "world_convention": WORLD_CONVENTION,
            "spatial_margins": MARGINS.manifest(),
            "counterfactual_pairs": "side questions are also asked of each study mirrored along "
            "patient x (study id + '.mirrored', same patient and split, same question text, the "
            "other answer); both items share a pair_id",
        }

    def write_extra(self, out: Path, studies: Sequence[Study], items: Sequence[Item]) -> None:
        pass
