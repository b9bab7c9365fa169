"""Single-frame DICOM image series (a folder or a list of files) via pydicom.

Compressed transfer syntaxes (JPEG 2000, JPEG lossless, RLE, ...) are decoded
by pydicom's pixel backends; pylibjpeg and its openjpeg/libjpeg plugins are
project dependencies for that.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from .volume import (
    LPS_TO_RAS,
    Header,
    PathLike,
    Volume,
    VolumeError,
    check_array,
    check_shape,
    reading,
    require_exists,
)

log = logging.getLogger(__name__)

#: Objects that carry no image slices of their own (SEG frames are masks, not a series to show).
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "PR", "KO", "REG", "DOC"})
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: Root of the UIDs the DICOM standard defines (every standard SOP class starts with it).
DICOM_ROOT = "1.2.840.10008."
#: The length of a value whose end is marked in the data (encapsulated pixel data).
UNDEFINED_LENGTH = 0xFFFFFFFF
#: Allowed relative deviation of slice gaps from their mean.
SPACING_TOLERANCE = 0.01
#: Geometry values are written as decimal strings; allow their rounding.
GEOMETRY_ATOL = 1e-4
#: Every slice is decoded to rescaled float32 (``_pixels``), whatever its stored bits.
DECODED_DTYPE = np.dtype(np.float32)


@dataclass
class _Scan:
    """What survives the first pass over the input files."""

    images: list[tuple[Path, Dataset]]
    not_dicom: int = 0
    no_pixels: int = 0

    def skipped(self) -> str:
        return f"skipped {self.not_dicom} non-DICOM file(s) and {self.no_pixels} without image pixel data"


def _input_files(source: PathLike | Sequence[PathLike]) -> tuple[Path, list[Path]]:
    """Return (path to report, files to read) for a folder, one file or a list of files."""
    if isinstance(source, (str, os.PathLike)):
        p = require_exists(source)
        return p, (sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p])
    files = [require_exists(f) for f in source]
    if not files:
        raise VolumeError("<empty file list>", "no DICOM files given")
    label = Path(os.path.commonpath(files)) if len(files) > 1 else files[0]
    return label, files


@contextmanager
def _dicom_file(f: Path) -> Iterator[None]:
    """Any failure to parse or decode ``f`` is a VolumeError saying the file is broken."""
    try:
        with reading(f):
            yield
    except VolumeError as exc:
        if exc.path != str(f) or not exc.problem.startswith("cannot read"):
            raise
        raise VolumeError(f, "truncated or unreadable DICOM file" + exc.problem[len("cannot read"):]) from exc


def _cut_short(ds: Dataset) -> str | None:
    """Why a DICOM object without pixel data looks truncated, or None if it need have none.

    pydicom reads a file cut short without complaint up to where it ends: an image object
    missing its pixels, or one whose SOP class is absent or cut mid-UID, was truncated.
    """
    uid = ds.get("SOPClassUID") or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
    if not uid:
        return "no SOP class"
    uid = UID(str(uid))
    standard = (DICOM_ROOT.startswith(uid) or uid.startswith(DICOM_ROOT)) and uid.name == str(uid)
    if not uid.is_valid or standard:  # a standard class not in the registry: a UID cut short
        return f"SOP class UID {str(uid)!r} cut short"
    return f"{uid.name} without pixel data" if "Image Storage" in uid.name else None


def _scan(files: list[Path]) -> _Scan:
    scan = _Scan(images=[])
    for f in files:
        with _dicom_file(f):
            try:
                ds = pydicom.dcmread(f, defer_size="64 KB")  # pixels are loaded only for the chosen series
            except InvalidDicomError:
                if f.suffix.lower() == ".dcm":  # named DICOM but without even a header: cut short
                    raise VolumeError(f, "truncated or unreadable DICOM file (no DICOM header)") from None
                scan.not_dicom += 1
                continue
        if ds.get("Modality") in NON_IMAGE_MODALITIES:
            scan.no_pixels += 1
        elif not any(t in ds for t in PIXEL_TAGS):
            why = _cut_short(ds)
            if why:
                raise VolumeError(f, f"truncated or unreadable DICOM file ({why})")
            scan.no_pixels += 1
        else:
            scan.images.append((f, ds))
    return scan


def _pick_series(path: Path, scan: _Scan, series_uid: str | None) -> list[tuple[Path, Dataset]]:
    series: dict[str, list[tuple[Path, Dataset]]] = {}
    for f, ds in scan.images:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
    if not series:
        raise VolumeError(path, f"no DICOM image files ({scan.skipped()})")

    def describe() -> str:
        return "; ".join(
            f"{uid or '<no SeriesInstanceUID>'} ({len(items)} files, "
            f"{items[0][1].get('Modality', '?')} {str(items[0][1].get('SeriesDescription', '')).strip()!r})"
            for uid, items in series.items()
        )

    if series_uid is not None:
        if series_uid not in series:
            raise VolumeError(path, f"series {series_uid} not found; series present: {describe()}")
        return series[series_uid]
    if len(series) > 1:
        raise VolumeError(path, f"the folder holds {len(series)} image series ({describe()}): "
                                "move each series into a folder of its own and give one series folder")
    return next(iter(series.values()))


def _geometry_value(f: Path, ds: Dataset, keyword: str, size: int) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or len(value) != size:
        raise VolumeError(f, f"missing or malformed {keyword}")
    return np.asarray([float(v) for v in value])


def _check_consistent(slices: list[tuple[Path, Dataset]]) -> tuple[np.ndarray, np.ndarray]:
    """Check all slices share one grid; return (ImageOrientationPatient, PixelSpacing) of the first."""
    f0, ds0 = slices[0]
    iop0 = _geometry_value(f0, ds0, "ImageOrientationPatient", 6)
    spacing0 = _geometry_value(f0, ds0, "PixelSpacing", 2)
    for f, ds in slices:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise VolumeError(f, "multi-frame DICOM images are not supported")
        if (ds.get("Rows"), ds.get("Columns")) != (ds0.get("Rows"), ds0.get("Columns")):
            raise VolumeError(f, f"Rows/Columns {ds.get('Rows')}x{ds.get('Columns')} differ from "
                                 f"{ds0.get('Rows')}x{ds0.get('Columns')} in {f0.name}")
        if not np.allclose(_geometry_value(f, ds, "ImageOrientationPatient", 6), iop0, atol=GEOMETRY_ATOL):
            raise VolumeError(f, f"ImageOrientationPatient differs from {f0.name}")
        if not np.allclose(_geometry_value(f, ds, "PixelSpacing", 2), spacing0, atol=GEOMETRY_ATOL):
            raise VolumeError(f, f"PixelSpacing differs from {f0.name}")
    return iop0, spacing0


def _sort_by_position(path: Path, slices: list[tuple[Path, Dataset]], normal: np.ndarray
                      ) -> tuple[list[tuple[Path, Dataset]], np.ndarray]:
    """Order slices along the slice normal; file names and InstanceNumber are not reliable."""
    positions = np.array([_geometry_value(f, ds, "ImagePositionPatient", 3) for f, ds in slices])
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    ordered = [slices[i] for i in order]
    gaps = np.diff(positions @ normal)
    if np.any(gaps < GEOMETRY_ATOL):
        i = int(np.argmin(gaps))
        raise VolumeError(path, f"duplicate slice position in {ordered[i][0].name} and {ordered[i + 1][0].name}")
    if gaps.size and np.max(np.abs(gaps - gaps.mean())) > SPACING_TOLERANCE * gaps.mean():
        raise VolumeError(path, f"non-uniform slice spacing (gaps {gaps.min():.4g}..{gaps.max():.4g} mm); "
                                "missing slices?")
    return ordered, positions


def _slice_step(ds: Dataset, positions: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """World step between slices; a lone slice uses its nominal thickness along the normal."""
    if len(positions) > 1:
        return (positions[-1] - positions[0]) / (len(positions) - 1)
    thickness = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
    return normal * float(thickness)


def _check_pixel_bytes(f: Path, ds: Dataset) -> None:
    """A file cut short in its pixel data reads without complaint until decoded: compare the
    bytes the file holds with the length its header declares, so that a grid read from the
    headers alone is not taken from a broken series. Encapsulated (compressed) pixel data has
    no declared length; it is checked when decoded."""
    tag = next(t for t in PIXEL_TAGS if t in ds)
    raw = ds.get_item(tag, keep_deferred=True)  # a deferred value stays on disk
    if not isinstance(raw, RawDataElement) or raw.length == UNDEFINED_LENGTH:
        return
    held = len(raw.value) if raw.value is not None else max(f.stat().st_size - raw.value_tell, 0)
    if held < raw.length:
        raise VolumeError(f, f"truncated or unreadable DICOM file ({tag} holds {held} of {raw.length} bytes)")


def _pixels(f: Path, ds: Dataset) -> np.ndarray:
    """Decoded slice (rows, cols) in rescaled units (e.g. HU) as float32."""
    with _dicom_file(f):
        arr = ds.pixel_array
    if arr.shape != (ds.Rows, ds.Columns):
        raise VolumeError(f, f"pixel array of shape {arr.shape}, expected one {ds.Rows}x{ds.Columns} grey frame")
    slope = float(ds.get("RescaleSlope") or 1.0)
    intercept = float(ds.get("RescaleIntercept") or 0.0)
    return arr.astype(DECODED_DTYPE) * np.float32(slope) + np.float32(intercept)


def _series(source: PathLike | Sequence[PathLike], series_uid: str | None
            ) -> tuple[Path, list[tuple[Path, Dataset]], Header]:
    """(path to report, the series' slices in position order, its grid) from the files'
    attributes; pixel data of more than 64 KB per file is not read here, and none is
    decoded (the grid's decoded size, Rows x Columns x slices in float32, is checked first)."""
    path, files = _input_files(source)
    scan = _scan(files)
    if scan.not_dicom or scan.no_pixels:
        log.info("%s: %s", path, scan.skipped())
    slices = _pick_series(path, scan, series_uid)
    for f, ds in slices:
        _check_pixel_bytes(f, ds)
    iop, pixel_spacing = _check_consistent(slices)
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    slices, positions = _sort_by_position(path, slices, normal)

    lps = np.eye(4)
    lps[:3, 0] = row_cos * pixel_spacing[1]
    lps[:3, 1] = col_cos * pixel_spacing[0]
    lps[:3, 2] = _slice_step(slices[0][1], positions, normal)
    lps[:3, 3] = positions[0]
    ds0 = slices[0][1]
    shape = check_shape((int(ds0.Columns), int(ds0.Rows), len(slices)), path)
    return path, slices, Header(path=str(path), shape=shape, affine=LPS_TO_RAS @ lps, world_known=True,
                                dtype=DECODED_DTYPE)


def read_dicom_header(source: PathLike | Sequence[PathLike], *, series_uid: str | None = None) -> Header:
    """The grid of one image series (see ``read_dicom_series``) without decoding its pixels."""
    return _series(source, series_uid)[2]


def read_dicom_series(source: PathLike | Sequence[PathLike], *, series_uid: str | None = None) -> Volume:
    """Read one image series from a folder (not recursive), a file, or a list of files.

    Non-DICOM files and objects without image pixels (e.g. SEG, RTSTRUCT) are
    skipped. Data is (columns, rows, slices) so that index (i, j, k) maps to
    LPS ``IPP0 + i*dc*row_cos + j*dr*col_cos + k*step``; the stored affine is RAS+.
    The slices are stacked along the first axis, so that transposed the array is
    Fortran-contiguous (no second copy).
    """
    path, slices, header = _series(source, series_uid)
    stack = np.stack([_pixels(f, ds) for f, ds in slices])  # (slices, rows, columns)
    data = check_array(stack.transpose(2, 1, 0), path)
    return Volume(data=data, affine=header.affine, path=str(path), format="dicom", frame_axis=2)
