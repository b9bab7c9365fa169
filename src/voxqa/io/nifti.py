"""NIfTI-1/2 volumes via nibabel."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from .volume import PathLike, Volume, check_array, reading, require_exists, voxel_dtype


def read_nifti(path: PathLike) -> Volume:
    """Read a NIfTI file with nibabel's best affine (sform, else qform, else fallback).

    With qform_code = sform_code = 0 the file states no patient orientation: nibabel's
    fallback affine is nominal, so ``world_known`` is False (no sides can be derived).

    Scaled data (scl_slope/inter) and float data become float32; unscaled
    integer data such as label maps keep their integer dtype. ``mmap=False``
    so no file handle outlives the call.
    """
    p = require_exists(path)
    with reading(p):
        img = nib.load(p, mmap=False)
        arr = np.asanyarray(img.dataobj)
        affine = img.affine
        header = img.header
        oriented = int(header["sform_code"]) > 0 or int(header["qform_code"]) > 0
    data = voxel_dtype(check_array(arr, p))
    return Volume(data=data, affine=affine, path=str(p), format="nifti", frame_axis=2,
                  world_known=oriented)
