"""Volume readers: every format becomes a validated :class:`Volume` in RAS+ world mm.

``open_volume`` reads a file's voxels; ``open_header`` reads only its grid (shape, affine,
orientation), as a :class:`LazyVolume` whose voxels are read if and when they are used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import nibabel as nib
import numpy as np

from .dicom import read_dicom_header, read_dicom_series
from .fastmri import probe_fastmri_h5, read_fastmri_h5, read_fastmri_header
from .nifti import read_nifti, read_nifti_header
from .nrrd import read_nrrd, read_nrrd_header
from .volume import (
    Header,
    PathLike,
    Volume,
    VolumeError,
    assume_orientation,
    assumed_affine,
    canonical_grid,
    canonicalize,
    check_affine,
    check_array,
    mirror_x,
    require_exists,
)

__all__ = [
    "FORMATS",
    "Header",
    "LazyVolume",
    "Volume",
    "VolumeError",
    "canonicalize",
    "check_array",
    "detect_format",
    "mirror_x",
    "open_header",
    "open_volume",
    "read_dicom_series",
    "probe_fastmri_h5",
    "read_fastmri_h5",
    "read_nifti",
    "read_nrrd",
    "VolumeFormat",
]

@dataclass(frozen=True)
class VolumeFormat:
    """One file format: the suffixes that name it, its reader and its header reader (the
    same grid without the voxels). ``orientable``: an ``assume`` orientation applies to a
    file of this format that states none (fastMRI's pixel grid has none to give)."""

    name: str
    suffixes: tuple[str, ...]
    read: Callable[[PathLike], Volume]
    read_header: Callable[[PathLike], Header]
    orientable: bool = True


#: Every format ``open_volume`` reads, by name (``VolumeRef.loader``); a folder is a DICOM series.
FORMATS: dict[str, VolumeFormat] = {f.name: f for f in (
    VolumeFormat("fastmri_h5", (".h5", ".hdf5"), read_fastmri_h5, read_fastmri_header, orientable=False),
    VolumeFormat("nifti", (".nii", ".nii.gz"), read_nifti, read_nifti_header),
    VolumeFormat("dicom", (".dcm",), read_dicom_series, read_dicom_header),
    VolumeFormat("nrrd", (".nrrd", ".nhdr"), read_nrrd, read_nrrd_header),
)}
_SUFFIXES = {suffix: f.name for f in FORMATS.values() for suffix in f.suffixes}


def detect_format(path: PathLike) -> str:
    """Format name for ``path`` from its suffix; a directory is a DICOM series."""
    p = require_exists(path)
    if p.is_dir():
        return "dicom"
    name = p.name.lower()
    for suffix, fmt in sorted(_SUFFIXES.items(), key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return fmt
    known = ", ".join(sorted(_SUFFIXES))
    raise VolumeError(p, f"unrecognised file type (known suffixes: {known}, or a DICOM folder); rename the file to one of these suffixes")


def _resolve(path: PathLike, format: str | None) -> tuple[Path, str]:
    p = require_exists(path)
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise VolumeError(p, f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return p, fmt


def _takes_assumption(fmt: str, world_known: bool, assume: str | None) -> bool:
    """``assume`` orients files that state no orientation; fastMRI's pixel grid has none to give."""
    return assume is not None and not world_known and FORMATS[fmt].orientable


def open_volume(path: PathLike, *, canonical: bool = True, format: str | None = None,
                assume: str | None = None) -> Volume:
    """Read any supported volume; by default reorient it to RAS+ axis order (if it has geometry).

    ``assume`` (axis codes such as "LPS") orients a file that states no orientation; it is
    ignored for files that do.
    """
    p, fmt = _resolve(path, format)
    vol = FORMATS[fmt].read(p)
    if _takes_assumption(fmt, vol.world_known, assume):
        vol = assume_orientation(vol, assume)  # type: ignore[arg-type]
    return canonicalize(vol) if canonical and vol.world_known else vol


@dataclass(frozen=True, eq=False)
class LazyVolume:
    """The grid of the :class:`Volume` that ``open_volume`` would return, read from the
    file's header; the voxels are read on first use of ``data`` (and kept).

    Checking that a label map lies on an image's grid, or recording an image's geometry,
    needs no voxel, while decompressing and reorienting a CT costs seconds per study; so a
    segmentation build holds its images as this, and render reads the voxels.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    spacing: tuple[float, float, float] = field(init=False)
    path: str
    format: str
    frame_axis: int
    world_known: bool
    #: ``open_volume`` arguments that read the voxels onto this grid.
    canonical: bool
    assume: str | None
    #: Voxels flipped along array axis 0 (patient x): a mirrored twin (see ``mirror``).
    mirrored: bool = False

    def __post_init__(self) -> None:
        affine, spacing = check_affine(self.affine, self.path)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "spacing", spacing)

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Direction each array axis increases towards, e.g. ('R','A','S'); nominal if not world_known."""
        return nib.aff2axcodes(self.affine)

    @cached_property
    def data(self) -> np.ndarray:
        """The voxels as ``open_volume`` reads them (flipped if ``mirrored``); read once."""
        vol = open_volume(self.path, canonical=self.canonical, format=self.format, assume=self.assume)
        if vol.shape != self.shape:
            raise VolumeError(self.path, f"changed while in use: shape {vol.shape}, its header said {self.shape}")
        return mirror_x(vol.data) if self.mirrored else vol.data

    def mirror(self) -> LazyVolume:
        """The same grid with its voxels to be flipped along array axis 0 (none is read here)."""
        return replace(self, mirrored=not self.mirrored)


def open_header(path: PathLike, *, canonical: bool = True, format: str | None = None,
                assume: str | None = None) -> LazyVolume:
    """``open_volume``'s result without reading voxels: the same grid (shape, RAS+ affine,
    orientation), from the header; the same arguments."""
    p, fmt = _resolve(path, format)
    header = FORMATS[fmt].read_header(p)
    shape, world_known, frame_axis = header.shape, header.world_known, header.frame_axis
    affine, spacing = check_affine(header.affine, p)  # as Volume takes it: the same float64 numbers
    if _takes_assumption(fmt, world_known, assume):
        affine, world_known = assumed_affine(spacing, assume), True  # type: ignore[arg-type]
    if canonical and world_known:
        _, shape, affine = canonical_grid(shape, affine)
        frame_axis = 2
    return LazyVolume(shape=shape, affine=affine, path=str(p), format=fmt, frame_axis=frame_axis,
                      world_known=world_known, canonical=canonical, assume=assume)
