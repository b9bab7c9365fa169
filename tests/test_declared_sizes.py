"""Small files that declare huge grids: every volume format is refused from its header, before
a voxel is read, against one overridable limit (``voxqa.io.volume.MAX_VOLUME_BYTES``); in a
batch the study is a counted skip (an error under --strict), in render an unreadable study.

Each file here is a few KB on disk; decoded, each would take gigabytes (the defect: a 1.4 KB
HDF5 declaring 150x2048x2048 took 5 GB in render).
"""

from __future__ import annotations

import gzip
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import orjson
import pytest
from openjpeg import encode
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless
from test_input_validation import _build_fastmri, _fastmri, _one_line_error, _warning_line, runner
from test_readers import _ct_slice

from voxqa.cli import app
from voxqa.errors import InputError
from voxqa.io import FORMATS, open_header, open_volume, probe_fastmri_h5
from voxqa.io.volume import MAX_VOLUME_BYTES, MAX_VOLUME_BYTES_ENV, VolumeTooLarge, max_volume_bytes
from voxqa.phantom import write_segmentation_phantom
from voxqa.render import RenderSettings, render_dataset

#: Allocation a refusal may make: a header's worth, nowhere near one decoded slice.
REFUSAL_PEAK_BYTES = 16 * 2**20


@pytest.fixture(autouse=True)
def default_limit(monkeypatch) -> None:
    """The stated default, whatever the environment running the tests sets."""
    monkeypatch.delenv(MAX_VOLUME_BYTES_ENV, raising=False)


def _huge_h5(folder: Path) -> Path:
    """fastMRI-style: 150x2048x2048 float32 declared, no chunk written (1.4 KB)."""
    path = folder / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("reconstruction_rss", shape=(150, 2048, 2048), dtype=np.float32, chunks=(1, 64, 64))
    return path


def _huge_nifti(folder: Path) -> Path:
    """A .nii.gz whose header declares 1024^3 float32, followed by 1 MB of zeros (about 1 KB gzipped)."""
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.float32)
    header.set_qform(np.eye(4), code=1)
    header["vox_offset"] = 352
    path = folder / "huge.nii.gz"
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + bytes(4) + bytes(2**20))
    return path


def _huge_nrrd(folder: Path) -> Path:
    path = folder / "huge.nrrd"
    header = ("NRRD0004\ntype: float\ndimension: 3\nsizes: 1024 1024 1024\nencoding: gzip\nendian: little\n"
              "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
              "space origin: (0,0,0)\n\n")
    path.write_bytes(header.encode() + gzip.compress(bytes(2**20)))
    return path


def _huge_dicom(folder: Path) -> Path:
    """Ten JPEG 2000 slices of 8192x8192: a valid 342-byte codestream each, 8 KB in all."""
    frame = encode(np.zeros((8192, 8192), np.uint16), bits_stored=12)
    series = folder / "series"
    series.mkdir()
    for k in range(10):
        ds = _ct_slice("1.2.3.4.5", k, k + 1)
        ds.Rows = ds.Columns = 8192
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds.save_as(series / f"s{k}.dcm", enforce_file_format=True)
    return series


#: One maker per registered format (a new format fails ``test_every_format_has_a_huge_file``).
HUGE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "fastmri_h5": (_huge_h5, "150x2048x2048 voxels of float32 (2.34 GiB decoded)"),
    "nifti": (_huge_nifti, "1024x1024x1024 voxels of float32 (4 GiB decoded)"),
    "nrrd": (_huge_nrrd, "1024x1024x1024 voxels of float32 (4 GiB decoded)"),
    "dicom": (_huge_dicom, "8192x8192x10 voxels of float32 (2.5 GiB decoded)"),
}


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size


def test_every_format_has_a_huge_file() -> None:
    assert set(HUGE) == set(FORMATS)


@pytest.mark.parametrize("fmt", sorted(HUGE))
def test_a_small_file_declaring_a_huge_grid_is_refused_before_any_voxel_is_read(tmp_path, fmt) -> None:
    make, declared = HUGE[fmt]
    path = make(tmp_path)
    assert _disk_bytes(path) < 16 * 2**10
    reads = [open_header, open_volume] + ([probe_fastmri_h5] if fmt == "fastmri_h5" else [])
    for read in reads:
        tracemalloc.start()
        try:
            with pytest.raises(VolumeTooLarge) as err:
                read(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < REFUSAL_PEAK_BYTES, (read.__name__, peak)
        assert str(err.value) == (f"{path}: declares {declared}, over the limit of 2 GiB per volume "
                                  f"(raise it with {MAX_VOLUME_BYTES_ENV}=BYTES)")


def test_the_limit_is_a_stated_constant_overridable_by_the_environment(tmp_path, monkeypatch) -> None:
    path = tmp_path / "small.h5"
    with h5py.File(path, "w") as f:  # 4x8x8 float32: 1 KiB decoded
        f["reconstruction_rss"] = np.ones((4, 8, 8), np.float32)
    assert max_volume_bytes() == MAX_VOLUME_BYTES == 2 * 2**30
    assert open_volume(path).shape == (4, 8, 8)
    monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, "1023")
    with pytest.raises(VolumeTooLarge, match=r"declares 4x8x8 voxels of float32 \(1 KiB decoded\), over the limit of 1023 B per"):
        open_volume(path)
    for value, limit in [("1024", 1024), ("1KiB", 1024), ("1k", 1024), ("3 GiB", 3 * 2**30), ("8GB", 8 * 2**30)]:
        monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, value)
        assert max_volume_bytes() == limit
    assert open_volume(path).shape == (4, 8, 8)
    monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, "8GiB")
    huge = _huge_nifti(tmp_path)
    assert open_header(huge).shape == (1024, 1024, 1024)  # raised: the header passes, no voxel read
    for bad in ("lots", "-1", "0", "1.5G"):
        monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, bad)
        with pytest.raises(InputError, match=f"{MAX_VOLUME_BYTES_ENV}='{bad}' is not a positive byte count"):
            open_volume(path)


def test_integer_label_maps_count_their_own_width_and_scaled_data_float32(tmp_path, monkeypatch) -> None:
    """The decoded size is what the reader makes of the voxels: labels keep their integer
    type, intensities (scaled or float) become float32, DICOM slices float32."""
    labels = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), np.eye(4)), labels)
    scaled = nib.Nifti1Image(np.zeros((10, 10, 10), np.int16), np.eye(4))
    scaled.header.set_slope_inter(2.0, -1024.0)
    nib.save(scaled, tmp_path / "scaled.nii.gz")
    monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, "1000")
    assert open_volume(labels).data.dtype == np.uint8  # 1000 bytes: at the limit, read
    monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, "3999")
    with pytest.raises(VolumeTooLarge, match="voxels of float32 "):
        open_header(tmp_path / "scaled.nii.gz")
    monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, "4000")
    assert open_volume(tmp_path / "scaled.nii.gz").data.dtype == np.float32


def test_a_huge_study_in_a_batch_is_a_counted_skip_and_stops_a_strict_build(tmp_path) -> None:
    src = write_segmentation_phantom(tmp_path / "seg")
    huge = _huge_nifti(tmp_path)
    csv = tmp_path / "studies.csv"
    csv.write_text("study_id,image,labels,label_names\n"
                   f"good,{src['image']},{src['labels']},{src['label_names']}\n"
                   f"bad,{huge},{src['labels']},{src['label_names']}\n")
    out = tmp_path / "ds"
    line = _warning_line(runner.invoke(app, ["build", "segmentation", "--studies", str(csv), "--out", str(out)]))
    assert "1 skipped (study_unreadable 1)" in line, line
    (example,) = orjson.loads((out / "build_report.json").read_bytes())["skipped"]["study_unreadable"]["examples"]
    assert example["study"] == "bad" and example["error"].startswith(f"{huge}: declares 1024x1024x1024 voxels")
    strict = tmp_path / "strict"
    res = runner.invoke(app, ["build", "segmentation", "--studies", str(csv), "--out", str(strict), "--strict"])
    _one_line_error(res, "--strict:", str(huge), "declares 1024x1024x1024 voxels of float32", MAX_VOLUME_BYTES_ENV)
    assert not strict.exists()


def test_a_huge_fastmri_volume_builds_box_only_counted_and_render_refuses_it(tmp_path) -> None:
    """Build probes every volume: one declaring 150x2048x2048 is a counted skip (its study
    box-only); a volume swapped for such a file after the build is named by render, unread."""
    p = _fastmri(tmp_path)
    victim = p["volumes"] / f"{p['names'][1]}.h5"
    victim.unlink()
    _huge_h5(tmp_path).rename(victim)
    out = tmp_path / "ds"
    line = _warning_line(_build_fastmri(p, out))
    assert "skipped (volume_unreadable_built_box_only 1)" in line, line
    rep = orjson.loads((out / "build_report.json").read_bytes())
    (example,) = rep["skipped"]["volume_unreadable_built_box_only"]["examples"]
    assert example["file"] == str(victim) and "declares 150x2048x2048 voxels of float32" in example["error"]

    other = p["volumes"] / f"{p['names'][2]}.h5"
    other.unlink()
    _huge_h5(tmp_path).rename(other)
    summary = render_dataset(out, RenderSettings(size=64, context=1), workers=1)
    assert summary["not_rendered"]["unreadable"] == {
        p["names"][2]: f"{other}: declares 150x2048x2048 voxels of float32 (2.34 GiB decoded), over the "
                       f"limit of 2 GiB per volume (raise it with {MAX_VOLUME_BYTES_ENV}=BYTES)"}
