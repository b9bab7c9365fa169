"""Volume readers: every format becomes a validated :class:`Volume` in RAS+ world mm."""

from __future__ import annotations

from collections.abc import Callable

from .dicom import read_dicom_series
from .fastmri import probe_fastmri_h5, read_fastmri_h5
from .nifti import read_nifti
from .nrrd import read_nrrd
from .volume import (
    PathLike,
    Volume,
    VolumeError,
    assume_orientation,
    canonicalize,
    check_array,
    require_exists,
)

__all__ = [
    "FORMATS",
    "Volume",
    "VolumeError",
    "canonicalize",
    "check_array",
    "detect_format",
    "open_volume",
    "read_dicom_series",
    "probe_fastmri_h5",
    "read_fastmri_h5",
    "read_nifti",
    "read_nrrd",
]

FORMATS: dict[str, Callable[[PathLike], Volume]] = {
    "fastmri_h5": read_fastmri_h5,
    "nifti": read_nifti,
    "dicom": read_dicom_series,
    "nrrd": read_nrrd,
}

_SUFFIXES = {
    ".h5": "fastmri_h5",
    ".hdf5": "fastmri_h5",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".dcm": "dicom",
}


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


def open_volume(path: PathLike, *, canonical: bool = True, format: str | None = None,
                assume: str | None = None) -> Volume:
    """Read any supported volume; by default reorient it to RAS+ axis order (if it has geometry).

    ``assume`` (axis codes such as "LPS") orients a file that states no orientation; it is
    ignored for files that do.
    """
    p = require_exists(path)
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise VolumeError(p, f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    vol = FORMATS[fmt](p)
    if assume is not None and not vol.world_known and fmt != "fastmri_h5":
        vol = assume_orientation(vol, assume)
    return canonicalize(vol) if canonical and vol.world_known else vol
