"""The in-memory volume every reader returns, plus shared validation.

World convention: nibabel's RAS+ ("scanner RAS"). nibabel's coordinate-systems
guide defines the axes as, in terms of the subject, "left to Right; posterior to
Anterior; and inferior to Superior", with "right" always meaning the *subject's*
right. So world x grows towards the patient's right (the patient's right side
has the larger x), y towards the front, z towards the head. DICOM and NRRD
files in LPS are converted by negating the first two world axes.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from voxqa.errors import InputError, VoxqaError

PathLike = str | os.PathLike[str]

#: Negating x and y turns an LPS affine into an RAS one (and back).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Largest volume a header may declare, in bytes of decoded voxels (voxel count times the
#: bytes per voxel of the array voxqa reads them into, ``Header.dtype``): a file of a few KB
#: can declare a grid that takes gigabytes once decoded, so the header is checked before any
#: voxel is read. 2 GiB holds a 512x512x2000 int16 CT twice over.
MAX_VOLUME_BYTES = 2 * 2**30
#: The environment variable that replaces ``MAX_VOLUME_BYTES`` (bytes, or e.g. "8GiB");
#: read where volumes are read, so worker processes started from the command see it too.
MAX_VOLUME_BYTES_ENV = "VOXQA_MAX_VOLUME_BYTES"
_BYTE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class VolumeError(VoxqaError, ValueError):
    """A volume could not be read or is unusable; the message names file and problem."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VolumeTooLarge(VolumeError):
    """A header declares more decoded voxel bytes than the limit (``max_volume_bytes``);
    raised before any voxel is read. A VolumeError, so a batch counts it as one bad study."""


def max_volume_bytes() -> int:
    """The limit on a volume's decoded voxel bytes: ``VOXQA_MAX_VOLUME_BYTES`` when set
    (a byte count, optionally with a binary unit: "4GiB", "512M"), else MAX_VOLUME_BYTES."""
    raw = os.environ.get(MAX_VOLUME_BYTES_ENV, "").strip()
    if not raw:
        return MAX_VOLUME_BYTES
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)(?:i?b)?", raw.lower())
    if m is None or int(m[1]) == 0:
        raise InputError(f"{MAX_VOLUME_BYTES_ENV}={raw!r} is not a positive byte count "
                         "(e.g. 4294967296, 4GiB or 4096MiB)")
    return int(m[1]) * _BYTE_UNITS[m[2]]


def _size(n: int) -> str:
    """Bytes in the largest binary unit they fill, to 3 significant digits ("2.34 GiB")."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def check_declared_size(path: PathLike, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a grid whose decoded voxels would exceed ``max_volume_bytes()`` (VolumeTooLarge)."""
    declared = math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize
    limit = max_volume_bytes()
    if declared > limit:
        raise VolumeTooLarge(path, f"declares {'x'.join(map(str, shape))} voxels of {np.dtype(dtype)} "
                                   f"({_size(declared)} decoded), over the limit of {_size(limit)} per "
                                   f"volume (raise it with {MAX_VOLUME_BYTES_ENV}=BYTES)")


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scalar volume with its voxel-index -> RAS+ mm affine.

    ``eq=False`` keeps identity equality/hashing: comparing arrays field-wise
    would be ambiguous.
    """

    data: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float] = field(init=False)
    path: str
    format: str
    frame_axis: int
    #: False when the file has no patient geometry (the affine is nominal pixel units).
    world_known: bool = True

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise VolumeError(self.path, f"expected 3D data, got shape {self.data.shape}")
        affine, spacing = check_affine(self.affine, self.path)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "spacing", spacing)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Direction each array axis increases towards, e.g. ('R','A','S'); nominal if not world_known."""
        return nib.aff2axcodes(self.affine)


#: |det| of the affine's 3x3 part over the product of its column lengths (1 for orthogonal axes,
#: 0 for parallel ones) below which the voxel axes span no volume.
SINGULAR_TOLERANCE = 1e-6


def check_affine(affine: np.ndarray, path: PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(float64 4x4 affine, voxel spacing), refusing affines that map voxels onto nothing."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise VolumeError(path, f"expected a 4x4 affine, got shape {affine.shape}")
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise VolumeError(path, f"degenerate voxel spacing {spacing}")
    # voxel axes that span no volume (two parallel): no orientation exists to reorder them to
    if not abs(np.linalg.det(affine[:3, :3])) > SINGULAR_TOLERANCE * float(np.prod(spacing)):
        raise VolumeError(path, f"singular affine: its voxel axes {np.round(affine[:3, :3], 4).tolist()} "
                                "span no volume, so the scan has no orientation")
    return affine, spacing  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Header:
    """A file's voxel grid as stored (before any reorientation), read without its voxels.

    Every reader makes one before it reads a voxel, and making one checks the declared size
    (``check_declared_size``): the one check of every format, in ``open_volume`` and
    ``open_header`` alike.
    """

    path: str
    shape: tuple[int, int, int]
    affine: np.ndarray
    #: False when the file has no patient geometry (the affine is nominal pixel units).
    world_known: bool
    #: The type of the array the reader decodes the voxels into (``decoded_dtype``).
    dtype: np.dtype
    frame_axis: int = 2

    def __post_init__(self) -> None:
        check_declared_size(self.path, self.shape, self.dtype)


def canonical_grid(shape: tuple[int, int, int], affine: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    """(nibabel orientation transform, shape, affine) of a grid reordered to RAS+ axis order.

    The same recipe as nibabel's ``as_closest_canonical``; ``apply_orientation`` with the
    returned transform moves an array of ``shape`` onto the returned grid.
    """
    ornt = io_orientation(affine)
    new_shape = tuple(int(shape[i]) for i in np.argsort(ornt[:, 0]))
    return ornt, new_shape, affine @ inv_ornt_aff(ornt, shape)  # type: ignore[return-value]


def contiguous(data: np.ndarray) -> np.ndarray:
    """``data`` itself when it is C- or Fortran-contiguous, else one copy in whichever of the
    two orders is closer to its memory order (Fortran when axis 0 varies fastest).

    Readers hand over arrays in the file's order (nibabel and pynrrd: Fortran order), so
    flipping axes, as canonicalising or mirroring does, leaves a reversed-stride view whose
    Fortran copy streams through memory; a C-order copy would transpose every voxel through
    the cache (seconds on a CT). Consumers need no more than C or Fortran contiguity: cc3d
    takes either (and copies anything else to C order itself, slowly).
    """
    if data.flags.c_contiguous or data.flags.f_contiguous:
        return data
    strides = [abs(s) for s in data.strides]
    return data.copy(order="F" if strides[0] <= strides[-1] else "C")


def mirror_x(data: np.ndarray) -> np.ndarray:
    """``data`` flipped along array axis 0 (patient x of a RAS+ array), contiguous."""
    return contiguous(data[::-1])


def canonicalize(vol: Volume) -> Volume:
    """Reorder/flip axes to the closest RAS+ order without moving any voxel in world space.

    Afterwards axis 0 increases to the patient's Right, 1 to Anterior, 2 to
    Superior, so frames along axis 2 are axial. The data is a view of the stored array
    where that is contiguous, else one copy (see ``contiguous``): callers get C- or
    Fortran-contiguous data.
    """
    if not vol.world_known:
        raise VolumeError(vol.path, "cannot canonicalise: the file carries no patient geometry")
    ornt, _, affine = canonical_grid(vol.shape, vol.affine)
    return replace(vol, data=contiguous(apply_orientation(vol.data, ornt)), affine=affine, frame_axis=2)


#: World axis and sign each axis code points to (RAS+).
_AXIS_CODES = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def parse_orientation(codes: str) -> str:
    """'ras', 'LPS', ... -> 'RAS' / 'LPS'; one code per axis, each world axis once."""
    c = codes.strip().upper()
    if len(c) != 3 or any(ch not in _AXIS_CODES for ch in c) or len({_AXIS_CODES[ch][0] for ch in c}) != 3:
        raise InputError(f"orientation {codes!r} is not three axis codes naming each of R/L, A/P, "
                         "S/I once (e.g. RAS, LPS)")
    return c


def assume_orientation(vol: Volume, codes: str) -> Volume:
    """A volume without patient geometry, read as if its array axes pointed along ``codes``
    (e.g. "LPS": axis 0 towards the patient's left), keeping its voxel spacing.

    Only the user can know this: a file whose header carries no orientation (NIfTI qform
    and sform codes 0, an NRRD without space directions) has no sides.
    """
    return replace(vol, affine=assumed_affine(vol.spacing, codes), world_known=True)


def assumed_affine(spacing: tuple[float, float, float], codes: str) -> np.ndarray:
    """The affine of a grid with this voxel ``spacing`` whose axes point along ``codes``."""
    affine = np.eye(4)
    for axis, code in enumerate(parse_orientation(codes)):
        world, sign = _AXIS_CODES[code]
        affine[:3, axis] = 0.0
        affine[world, axis] = sign * spacing[axis]
    return affine


def check_array(data: np.ndarray, path: PathLike) -> np.ndarray:
    """Return ``data`` as a validated 3D real array; trailing singleton dims are squeezed.

    Downstream code assumes one scalar per voxel and finite values, so anything
    else is rejected here rather than failing obscurely later.
    """
    grid = check_shape(data.shape, path)
    data = data.reshape(grid)  # drops trailing singleton axes: a view, never a copy
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_) or np.iscomplexobj(data):
        raise VolumeError(path, f"unsupported voxel type {data.dtype}")
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise VolumeError(path, f"{bad} non-finite voxel(s) (NaN/inf)")
    return data


def check_shape(shape: tuple[int, ...], path: PathLike) -> tuple[int, int, int]:
    """The 3D grid of a stored array shape (trailing singleton dims dropped), as
    ``check_array`` accepts it; header readers check a grid with it before any voxel is read."""
    stored = tuple(int(n) for n in shape)
    grid = stored
    while len(grid) > 3 and grid[-1] == 1:
        grid = grid[:-1]
    if len(grid) != 3:
        raise VolumeError(path, f"{len(grid)}D data not supported, expected 3D (got shape {stored})")
    if 0 in grid:
        raise VolumeError(path, f"empty volume (shape {stored})")
    return grid  # type: ignore[return-value]


def decoded_dtype(stored: np.dtype) -> np.dtype:
    """The type ``voxel_dtype`` gives voxels stored as ``stored``: integer (label) types kept,
    bool as uint8, everything else float32, in native byte order."""
    stored = np.dtype(stored)
    if stored == np.bool_:
        return np.dtype(np.uint8)
    if np.issubdtype(stored, np.integer):
        return stored.newbyteorder("=")
    return np.dtype(np.float32)


def voxel_dtype(data: np.ndarray) -> np.ndarray:
    """Keep integer (label) arrays integer, make everything else float32, in native byte order."""
    return data.astype(decoded_dtype(data.dtype), copy=False)


def require_exists(path: PathLike) -> Path:
    """Fail early with a clear message instead of a library-specific one."""
    p = Path(path)
    if not p.exists():
        raise VolumeError(p, "no such file or directory")
    return p


@contextmanager
def reading(path: PathLike) -> Iterator[None]:
    """Turn any library exception raised while reading ``path`` into a VolumeError (voxqa's
    own errors pass as they are)."""
    try:
        yield
    except VoxqaError:
        raise
    except Exception as exc:  # noqa: BLE001 - readers promise VolumeError for bad files
        cause = str(exc).strip() or "no details"
        raise VolumeError(path, f"cannot read ({type(exc).__name__}: {cause})") from exc
