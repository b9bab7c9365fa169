"""fastMRI HDF5 reconstructions (no patient geometry)."""

from __future__ import annotations

import h5py
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

DEFAULT_DATASET = "reconstruction_rss"


def _dataset_names(f: h5py.File) -> list[str]:
    names: list[str] = []

    def collect(name: str, obj: h5py.HLObject) -> None:  # returning non-None would stop the visit
        if isinstance(obj, h5py.Dataset):
            names.append(name)

    f.visititems(collect)
    return names


def _dataset(f: h5py.File, dataset: str, path: PathLike) -> h5py.Dataset:
    """The reconstruction, or a VolumeError that names the datasets the file has."""
    if not isinstance(f.get(dataset), h5py.Dataset):
        present = ", ".join(_dataset_names(f)) or "none"
        raise VolumeError(path, f"no dataset {dataset!r} (datasets present: {present})")
    return f[dataset]


def _header(data: h5py.Dataset, path: PathLike) -> Header:
    """The reconstruction's grid from the HDF5 metadata (no pixel read); its declared size
    is checked here, before any caller reads pixels."""
    return Header(path=str(path), shape=check_shape(data.shape, path), affine=np.eye(4), world_known=False,
                  dtype=decoded_dtype(data.dtype), frame_axis=0)


def read_fastmri_header(path: PathLike, *, dataset: str = DEFAULT_DATASET) -> Header:
    """The grid of a reconstruction (as ``read_fastmri_h5`` returns it) without reading pixels."""
    p = require_exists(path)
    with reading(p), h5py.File(p, "r") as f:
        return _header(_dataset(f, dataset, p), p)


def read_fastmri_h5(path: PathLike, *, dataset: str = DEFAULT_DATASET) -> Volume:
    """Read a (slices, height, width) reconstruction, flipped up/down.

    fastMRI+ boxes were drawn on images flipped up/down during DICOM conversion,
    so the flip makes box (x, y) index the returned array as ``data[slice, y, x]``.
    The affine is the identity in nominal pixel units and ``world_known`` is False.
    """
    p = require_exists(path)
    with reading(p), h5py.File(p, "r") as f:
        data = _dataset(f, dataset, p)
        _header(data, p)  # the declared size, checked before the read
        arr = data[()]
    arr = check_array(np.asarray(arr), p)
    data = np.ascontiguousarray(voxel_dtype(arr)[:, ::-1, :])
    return Volume(data=data, affine=np.eye(4), path=str(p), format="fastmri_h5",
                  frame_axis=0, world_known=False)


def probe_fastmri_h5(path: PathLike, *, dataset: str = DEFAULT_DATASET) -> tuple[int, int, int]:
    """(slices, height, width) of the reconstruction, checked to be readable and finite.

    Pixels are read one slice at a time (memory stays one slice) and not kept: a volume that
    would fail at render (NaN/inf voxels, a cut-short file, a declared size over the limit)
    fails at build instead.
    """
    p = require_exists(path)
    with reading(p), h5py.File(p, "r") as f:
        data = _dataset(f, dataset, p)
        shape = data.shape
        if len(shape) != 3 or min(shape) <= 0:
            raise VolumeError(p, f"{dataset!r} has shape {shape}, expected (slices, height, width)")
        if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_) or np.issubdtype(
                data.dtype, np.complexfloating):
            raise VolumeError(p, f"unsupported voxel type {data.dtype}")
        _header(data, p)  # a volume render could not read fails here
        if np.issubdtype(data.dtype, np.floating):
            bad = sum(int(np.count_nonzero(~np.isfinite(data[k]))) for k in range(shape[0]))
            if bad:
                raise VolumeError(p, f"{bad} non-finite voxel(s) (NaN/inf) in {dataset!r}")
    return int(shape[0]), int(shape[1]), int(shape[2])
