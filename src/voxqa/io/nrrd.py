"""NRRD volumes via pynrrd.

Geometry comes from ``space directions`` (one world vector per array axis,
'none' for non-spatial axes) and ``space origin``, in the frame named by
``space``. LPS/LAS/RAS are converted to RAS+ by flipping signs. A file with
space directions but ``scanner-xyz``/``3D-right-handed``/no ``space`` field is
*assumed* to be RAS+: NRRD gives no patient frame there, and RAS+ is what
nibabel/Slicer would show, so we take it silently rather than warn on every read.
A file without any space directions has only nominal geometry (``spacings``).
"""

from __future__ import annotations

import nrrd
import numpy as np

from .volume import (
    Header,
    PathLike,
    Volume,
    VolumeError,
    check_array,
    check_shape,
    decoded_dtype,
    reading,
    require_exists,
    voxel_dtype,
)

_RAS_SIGNS: dict[str, tuple[float, float, float]] = {
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
    "las": (-1.0, 1.0, 1.0),
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
    "scanner-xyz": (1.0, 1.0, 1.0),
    "3d-right-handed": (1.0, 1.0, 1.0),
}


#: NRRD ``type`` spellings (the format's specification) and the numpy type of each.
_TYPES = {name: np.dtype(code) for code, names in (
    ("i1", ("signed char", "int8", "int8_t")),
    ("u1", ("uchar", "unsigned char", "uint8", "uint8_t")),
    ("i2", ("short", "short int", "signed short", "signed short int", "int16", "int16_t")),
    ("u2", ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t")),
    ("i4", ("int", "signed int", "int32", "int32_t")),
    ("u4", ("uint", "unsigned int", "uint32", "uint32_t")),
    ("i8", ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
            "int64_t")),
    ("u8", ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t")),
    ("f4", ("float",)),
    ("f8", ("double",)),
) for name in names}


def _space_signs(header: dict, path: PathLike) -> np.ndarray:
    space = str(header.get("space", "scanner-xyz")).strip().lower()
    if space not in _RAS_SIGNS:
        raise VolumeError(path, f"unsupported NRRD space {header['space']!r}")
    return np.array([*_RAS_SIGNS[space], 1.0])


def _affine(header: dict, path: PathLike) -> tuple[np.ndarray, bool]:
    """Return (RAS+ affine, world_known) for the first three (spatial) array axes."""
    affine = np.eye(4)
    if "space directions" not in header:
        spacings = np.asarray(header.get("spacings", [1.0, 1.0, 1.0]), dtype=float)[:3]
        affine[:3, :3] = np.diag(np.where(np.isfinite(spacings), spacings, 1.0))
        return affine, False
    directions = np.asarray(header["space directions"], dtype=float)
    if directions.shape[0] < 3 or directions.shape[1] != 3:
        raise VolumeError(path, f"space directions of shape {directions.shape}, expected 3 spatial axes")
    if not np.all(np.isfinite(directions[:3])):
        raise VolumeError(path, "4D data not supported: a leading axis has space direction 'none'")
    affine[:3, :3] = directions[:3].T
    affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
    return np.diag(_space_signs(header, path)) @ affine, True


def _header(header: dict, path: PathLike) -> Header:
    shape = check_shape(tuple(header["sizes"]), path)
    stored = _TYPES.get(str(header.get("type")))
    if stored is None:
        raise VolumeError(path, f"unsupported NRRD type {header.get('type')!r}")
    affine, world_known = _affine(header, path)
    return Header(path=str(path), shape=shape, affine=affine, world_known=world_known,
                  dtype=decoded_dtype(stored))


def read_nrrd_header(path: PathLike) -> Header:
    """The grid of a NRRD/NHDR file from its header alone (the voxels are not read)."""
    p = require_exists(path)
    with reading(p):
        return _header(nrrd.read_header(str(p)), p)


def read_nrrd(path: PathLike) -> Volume:
    """Read a NRRD/NHDR file in pynrrd's default (i, j, k) index order ('F'); the header
    (``read_nrrd_header``'s checks) before the voxels."""
    p = require_exists(path)
    with reading(p), open(p, "rb") as fh:
        fields = nrrd.read_header(fh)
        header = _header(fields, p)
        arr = nrrd.read_data(fields, fh, str(p))
    data = voxel_dtype(check_array(arr, p))
    return Volume(data=data, affine=header.affine, path=str(p), format="nrrd", frame_axis=2,
                  world_known=header.world_known)
