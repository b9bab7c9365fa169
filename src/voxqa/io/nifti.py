"""NIfTI-1/2 volumes via nibabel."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np

from .volume import (
    Header,
    PathLike,
    Volume,
    check_array,
    check_shape,
    decoded_dtype,
    reading,
    require_exists,
    voxel_dtype,
)


def _load(p: Path) -> tuple[nib.spatialimages.SpatialImage, Header]:
    """The image object (its voxels not yet read) and its grid.

    nibabel's best affine (sform, else qform, else fallback). With qform_code = sform_code = 0
    the file states no patient orientation: the fallback affine is nominal, so
    ``world_known`` is False (no sides can be derived). ``mmap=False`` so no file handle
    outlives the read. Scaled data (scl_slope/inter) decodes to float32.
    """
    with reading(p):
        img = cast(nib.Nifti1Image, nib.load(p, mmap=False))  # Nifti2Image is one too
        header = img.header
        oriented = int(header["sform_code"]) > 0 or int(header["qform_code"]) > 0
        proxy = img.dataobj
        scaled = getattr(proxy, "slope", 1.0) != 1.0 or getattr(proxy, "inter", 0.0) != 0.0
        dtype = np.dtype(np.float32) if scaled else decoded_dtype(img.get_data_dtype())
        return img, Header(path=str(p), shape=check_shape(img.shape, p), affine=img.affine,
                           world_known=oriented, dtype=dtype)


def read_nifti_header(path: PathLike) -> Header:
    """The grid of a NIfTI file from its header alone (a .nii.gz is not decompressed past it)."""
    return _load(require_exists(path))[1]


def read_nifti(path: PathLike) -> Volume:
    """Read a NIfTI file: its grid (``read_nifti_header``) and voxels.

    Scaled data (scl_slope/inter) and float data become float32; unscaled
    integer data such as label maps keep their integer dtype.
    """
    p = require_exists(path)
    img, header = _load(p)
    with reading(p):
        arr = np.asanyarray(img.dataobj)
    data = voxel_dtype(check_array(arr, p))
    return Volume(data=data, affine=header.affine, path=str(p), format="nifti", frame_axis=2,
                  world_known=header.world_known)
