"""Tests for voxqa.io: synthetic files for every format, then the shared real data.

World convention (nibabel RAS+, see docs "Coordinate systems and affines"): x grows
towards the *patient's* right, y anterior, z superior.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from helpers import data_unavailable
from nibabel.affines import apply_affine
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from voxqa.io import (
    FORMATS,
    Volume,
    VolumeError,
    canonicalize,
    detect_format,
    mirror_x,
    open_header,
    open_volume,
    read_dicom_series,
    read_fastmri_h5,
)

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


# --------------------------------------------------------------------------- NIfTI / canonicalize

# Array axis 0 -> posterior, 1 -> superior, 2 -> left: nothing like RAS.
PSL_AFFINE = np.array([
    [0.0, 0.0, -2.0, 10.0],
    [-3.0, 0.0, 0.0, 20.0],
    [0.0, 1.5, 0.0, -5.0],
    [0.0, 0.0, 0.0, 1.0],
])


def test_nifti_canonicalize_keeps_world_position(tmp_path: Path) -> None:
    data = np.zeros((4, 5, 6), np.float32)
    data[1, 2, 3] = 100.0
    path = _save_nifti(tmp_path / "psl.nii.gz", data, PSL_AFFINE)

    raw = open_volume(path, canonical=False)
    assert raw.axcodes == ("P", "S", "L")
    assert raw.format == "nifti" and raw.frame_axis == 2 and raw.world_known
    np.testing.assert_allclose(raw.affine, PSL_AFFINE)
    assert raw.spacing == pytest.approx((3.0, 1.5, 2.0))

    can = open_volume(path)
    assert can.axcodes == ("R", "A", "S")
    assert can.shape == (6, 4, 5) and can.frame_axis == 2
    assert can.spacing == pytest.approx((2.0, 3.0, 1.5))
    marked = np.argwhere(can.data == 100.0)
    assert len(marked) == 1
    np.testing.assert_allclose(apply_affine(can.affine, marked[0]), apply_affine(PSL_AFFINE, [1, 2, 3]))


def test_permuted_flipped_copy_gives_same_canonical_volume(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 5, 6)).astype(np.float32)
    base_affine = np.diag([2.0, 3.0, 1.5, 1.0])
    base_affine[:3, 3] = [-7.0, 11.0, 13.0]
    # copy[a, b, c] = base[3 - b, c, a]  =>  base index = T @ (a, b, c, 1)
    copy = np.flip(base.transpose(2, 0, 1), axis=1)
    t = np.array([[0, -1, 0, 3], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    a = open_volume(_save_nifti(tmp_path / "base.nii", base, base_affine))
    b = open_volume(_save_nifti(tmp_path / "copy.nii", np.ascontiguousarray(copy), base_affine @ t))
    assert b.axcodes == ("R", "A", "S")
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.affine, b.affine)


def test_nifti_integer_labels_keep_dtype_and_trailing_singleton_is_squeezed(tmp_path: Path) -> None:
    labels = np.zeros((3, 4, 5, 1), np.uint8)
    labels[0, 1, 2, 0] = 7
    vol = open_volume(_save_nifti(tmp_path / "labels.nii.gz", labels, np.eye(4)))
    assert vol.data.dtype == np.uint8 and vol.shape == (3, 4, 5)


def test_truncated_nifti_gz_is_a_volume_error(tmp_path: Path) -> None:
    path = _save_nifti(tmp_path / "full.nii.gz", np.random.default_rng(1).normal(size=(20, 20, 20)), np.eye(4))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeError, match="full.nii.gz"):
        open_volume(path)


def test_4d_nifti_is_rejected(tmp_path: Path) -> None:
    path = _save_nifti(tmp_path / "func.nii.gz", np.zeros((4, 4, 4, 3), np.float32), np.eye(4))
    with pytest.raises(VolumeError, match="4D data not supported") as err:
        open_volume(path)
    assert str(path) in str(err.value)


def test_nan_voxel_is_rejected(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 4), np.float32)
    data[1, 1, 1] = np.nan
    with pytest.raises(VolumeError, match=r"1 non-finite voxel"):
        open_volume(_save_nifti(tmp_path / "nan.nii", data, np.eye(4)))


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="no such file"):
        open_volume(tmp_path / "absent.nii.gz")
    odd = tmp_path / "scan.xyz"
    odd.write_bytes(b"nothing")
    with pytest.raises(VolumeError, match="unrecognised file type"):
        open_volume(odd)


def test_detect_format_and_registry(tmp_path: Path) -> None:
    names = {"a.h5": "fastmri_h5", "b.HDF5": "fastmri_h5", "c.nii": "nifti", "d.nii.gz": "nifti",
             "e.nrrd": "nrrd", "f.nhdr": "nrrd", "g.dcm": "dicom"}
    for name, fmt in names.items():
        (tmp_path / name).touch()
        assert detect_format(tmp_path / name) == fmt
    assert detect_format(tmp_path) == "dicom"
    assert set(FORMATS) == {"fastmri_h5", "nifti", "dicom", "nrrd"}


def test_canonicalize_refuses_volumes_without_geometry() -> None:
    vol = Volume(data=np.zeros((2, 2, 2)), affine=np.eye(4), path="x.h5", format="fastmri_h5",
                 frame_axis=0, world_known=False)
    with pytest.raises(VolumeError, match="x.h5"):
        canonicalize(vol)


# --------------------------------------------------------------------------- fastMRI HDF5

def test_fastmri_h5_is_flipped_up_down(tmp_path: Path) -> None:
    rss = np.zeros((3, 8, 6), np.float32)
    rss[1, 2, 4] = 5.0  # slice 1, row 2, column 4
    path = tmp_path / "file1000001.h5"
    with h5py.File(path, "w") as f:
        f["reconstruction_rss"] = rss
        f["kspace"] = np.zeros((3, 2, 8, 6), np.complex64)

    vol = open_volume(path)  # canonical=True must leave geometry-free data alone
    assert vol.format == "fastmri_h5" and not vol.world_known and vol.frame_axis == 0
    assert vol.shape == (3, 8, 6)
    np.testing.assert_array_equal(np.argwhere(vol.data == 5.0), [[1, 8 - 1 - 2, 4]])
    np.testing.assert_array_equal(vol.affine, np.eye(4))


def test_fastmri_h5_without_rss_names_file_and_datasets(tmp_path: Path) -> None:
    path = tmp_path / "kspace_only.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = np.zeros((2, 4, 4), np.complex64)
        f["reconstruction_esc"] = np.ones((2, 4, 4), np.float32)
    with pytest.raises(VolumeError, match="reconstruction_rss") as err:
        open_volume(path)
    assert str(path) in str(err.value) and "kspace" in str(err.value)
    assert read_fastmri_h5(path, dataset="reconstruction_esc").shape == (2, 4, 4)


def test_non_hdf5_file_with_h5_suffix(tmp_path: Path) -> None:
    path = tmp_path / "broken.h5"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(VolumeError, match="broken.h5"):
        open_volume(path)


# --------------------------------------------------------------------------- DICOM

ROW_COS = np.array([0.0, 1.0, 0.0])  # sagittal: columns run anterior->posterior (LPS +y)
COL_COS = np.array([0.0, 0.0, -1.0])  # rows run head->feet
NORMAL = np.cross(ROW_COS, COL_COS)  # (-1, 0, 0): towards the patient's right
PIXEL_SPACING = (0.5, 0.7)  # (between rows, between columns)
ORIGIN_LPS = np.array([10.0, -20.0, 30.0])
ROWS, COLS = 48, 40  # >= 32 px: the JPEG 2000 encoder needs room for its 6 resolution levels


def _slice_pixels(k: int) -> np.ndarray:
    return (np.arange(ROWS * COLS).reshape(ROWS, COLS) + 100 * k).astype(np.uint16)


def _ct_slice(series_uid: str, k: int, instance: int, modality: str = "CT") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in ORIGIN_LPS + 2.5 * k * NORMAL]
    ds.ImageOrientationPatient = [float(v) for v in (*ROW_COS, *COL_COS)]
    ds.PixelSpacing = list(PIXEL_SPACING)
    ds.SliceThickness = 2.5
    ds.RescaleSlope = 2
    ds.RescaleIntercept = -1024
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = _slice_pixels(k).tobytes()
    return ds


def _write_series(folder: Path, *, compress: bool = False, series_uid: str = "1.2.3.4.5") -> Path:
    """Four slices k=0..3 whose file names and InstanceNumbers disagree with their position."""
    folder.mkdir(exist_ok=True)
    for k, (name, instance) in enumerate([("c", 3), ("a", 1), ("d", 4), ("b", 2)]):
        ds = _ct_slice(series_uid, k, instance)
        if compress:
            ds.compress(JPEG2000Lossless)
        ds.save_as(folder / f"{name}_{series_uid[-1]}.dcm", enforce_file_format=True)
    return folder


def test_dicom_series_sorted_by_position_with_ras_affine_and_rescale(tmp_path: Path) -> None:
    folder = _write_series(tmp_path / "series")
    (folder / "notes.txt").write_text("not DICOM")
    seg = _ct_slice("9.9.9", 0, 1, modality="SEG")
    seg.save_as(folder / "seg.dcm", enforce_file_format=True)

    vol = open_volume(folder, canonical=False)
    assert vol.format == "dicom" and vol.shape == (COLS, ROWS, 4) and vol.data.dtype == np.float32
    for k in range(4):  # slice k (position along the normal) regardless of file name / InstanceNumber
        np.testing.assert_array_equal(vol.data[:, :, k], 2.0 * _slice_pixels(k).T - 1024.0)
    assert vol.spacing == pytest.approx((0.7, 0.5, 2.5))
    for i, j, k in [(0, 0, 0), (4, 5, 3), (2, 1, 2)]:
        lps = ORIGIN_LPS + i * 0.7 * ROW_COS + j * 0.5 * COL_COS + k * 2.5 * NORMAL
        np.testing.assert_allclose(apply_affine(vol.affine, [i, j, k]), lps * LPS_TO_RAS, atol=1e-6)
    # LPS (10, -20, 30) is 10 mm to the patient's left, 20 mm anterior: RAS (-10, 20, 30).
    np.testing.assert_allclose(vol.affine[:3, 3], [-10.0, 20.0, 30.0])
    assert open_volume(folder).axcodes == ("R", "A", "S")


def test_dicom_file_list_and_single_file(tmp_path: Path) -> None:
    folder = _write_series(tmp_path / "series")
    files = sorted(folder.glob("*.dcm"))
    assert read_dicom_series(files).shape == (COLS, ROWS, 4)
    one = open_volume(files[0], canonical=False)
    assert one.shape == (COLS, ROWS, 1) and one.spacing[2] == pytest.approx(2.5)


def test_dicom_jpeg2000_lossless_reads_back_identical(tmp_path: Path) -> None:
    plain = open_volume(_write_series(tmp_path / "plain"), canonical=False)
    j2k_dir = _write_series(tmp_path / "j2k", compress=True)
    assert pydicom.dcmread(next(j2k_dir.glob("*.dcm"))).file_meta.TransferSyntaxUID == JPEG2000Lossless
    j2k = open_volume(j2k_dir, canonical=False)
    np.testing.assert_array_equal(j2k.data, plain.data)
    np.testing.assert_allclose(j2k.affine, plain.affine)


def test_dicom_two_series_needs_a_choice(tmp_path: Path) -> None:
    folder = _write_series(tmp_path / "mixed", series_uid="1.2.3.4.5")
    _write_series(folder, series_uid="1.2.3.4.6")
    with pytest.raises(VolumeError, match="2 image series") as err:
        open_volume(folder)
    assert "1.2.3.4.5" in str(err.value) and "1.2.3.4.6" in str(err.value)
    assert read_dicom_series(folder, series_uid="1.2.3.4.6").shape == (COLS, ROWS, 4)


@pytest.mark.parametrize(("drop", "duplicate", "message"), [
    (["a_5.dcm"], False, "non-uniform slice spacing"),  # k=1 missing
    ([], True, "duplicate slice position"),
])
def test_dicom_bad_slice_geometry(tmp_path: Path, drop: list[str], duplicate: bool, message: str) -> None:
    folder = _write_series(tmp_path / "series")
    for name in drop:
        (folder / name).unlink()
    if duplicate:
        _ct_slice("1.2.3.4.5", 2, 9).save_as(folder / "dup.dcm", enforce_file_format=True)
    with pytest.raises(VolumeError, match=message):
        open_volume(folder)


def test_dicom_inconsistent_rows(tmp_path: Path) -> None:
    folder = _write_series(tmp_path / "series")
    odd = _ct_slice("1.2.3.4.5", 4, 5)
    odd.Rows = ROWS - 1
    odd.PixelData = np.zeros((ROWS - 1, COLS), np.uint16).tobytes()
    odd.save_as(folder / "e_5.dcm", enforce_file_format=True)
    with pytest.raises(VolumeError, match="Rows/Columns"):
        open_volume(folder)


def test_folder_without_dicom_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(VolumeError, match="no DICOM image files"):
        open_volume(tmp_path)


# --------------------------------------------------------------------------- NRRD

def test_nrrd_lps_directions_become_ras(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    directions = np.array([[0.0, -0.8, 0.0], [0.9, 0.0, 0.0], [0.0, 0.0, 2.0]])  # row n = axis n in LPS
    origin = np.array([-50.0, 60.0, -70.0])
    path = tmp_path / "lps.nrrd"
    nrrd.write(str(path), data, {"space": "left-posterior-superior", "space directions": directions,
                                 "space origin": origin})

    vol = open_volume(path, canonical=False)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.data.dtype == np.int16 and vol.spacing == pytest.approx((0.8, 0.9, 2.0))
    for ijk in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        lps = origin + np.asarray(ijk) @ directions
        np.testing.assert_allclose(apply_affine(vol.affine, ijk), lps * LPS_TO_RAS)
    assert vol.axcodes == ("A", "L", "S")
    assert open_volume(path).axcodes == ("R", "A", "S")


def test_nrrd_ras_and_missing_space(tmp_path: Path) -> None:
    data = np.zeros((3, 3, 3), np.float64)
    header = {"space directions": np.diag([1.0, 2.0, 3.0]), "space origin": np.array([1.0, 2.0, 3.0])}
    nrrd.write(str(tmp_path / "ras.nrrd"), data, {**header, "space": "right-anterior-superior"})
    nrrd.write(str(tmp_path / "nospace.nrrd"), data, {**header, "space dimension": 3})
    for name in ("ras.nrrd", "nospace.nrrd"):
        vol = open_volume(tmp_path / name, canonical=False)
        assert vol.data.dtype == np.float32
        np.testing.assert_allclose(vol.affine[:3, 3], [1.0, 2.0, 3.0])
        assert vol.axcodes == ("R", "A", "S")


def test_nrrd_with_non_spatial_axis_is_4d(tmp_path: Path) -> None:
    path = tmp_path / "vectors.nrrd"
    directions = np.array([[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    nrrd.write(str(path), np.zeros((3, 4, 4, 4), np.float32),
               {"space": "left-posterior-superior", "space directions": directions,
                "kinds": ["vector", "domain", "domain", "domain"]})
    with pytest.raises(VolumeError, match="4D data not supported"):
        open_volume(path)


def test_truncated_nrrd_is_a_volume_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.nrrd"
    nrrd.write(str(path), np.random.default_rng(2).normal(size=(20, 20, 20)), {"encoding": "gzip"})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeError, match="cut.nrrd"):
        open_volume(path)


# --------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def data_root(shared_data: Path) -> Path:
    return shared_data


def _need(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.exists():
        data_unavailable(f"{path} is missing from the test data")
    return path


def _centroid_world(vol: Volume, label: int) -> np.ndarray:
    return apply_affine(vol.affine, np.argwhere(vol.data == label).mean(axis=0))


@pytest.mark.realdata
@pytest.mark.parametrize(("image", "raw_axcodes", "shape"), [
    ("example_ct_sm.nii.gz", ("R", "A", "S"), (122, 101, 30)),
    ("example_mr_sm.nii.gz", ("L", "P", "S"), (117, 91, 20)),
])
def test_totalsegmentator_images(data_root: Path, image: str, raw_axcodes: tuple, shape: tuple) -> None:
    path = _need(data_root, f"totalsegmentator/{image}")
    raw = open_volume(path, canonical=False)
    assert raw.axcodes == raw_axcodes and raw.shape == shape
    assert raw.spacing == pytest.approx((3.0, 3.0, 3.0))
    can = open_volume(path)
    assert can.axcodes == ("R", "A", "S") and can.shape == shape
    assert can.data.dtype == np.int16


# Labels: 1 spleen, 2 kidney_right, 3 kidney_left, 5 liver; spinal cord marks the midline.
@pytest.mark.realdata
@pytest.mark.parametrize(("seg", "image", "spinal_cord"), [
    ("example_seg.nii.gz", "example_ct_sm.nii.gz", 79),
    ("example_seg_mr.nii.gz", "example_mr_sm.nii.gz", 21),
])
def test_totalsegmentator_organs_on_the_correct_side(data_root: Path, seg: str, image: str,
                                                     spinal_cord: int) -> None:
    labels = open_volume(_need(data_root, f"totalsegmentator/{seg}"))
    img = open_volume(_need(data_root, f"totalsegmentator/{image}"))
    assert labels.axcodes == ("R", "A", "S") and labels.data.dtype == np.uint8
    np.testing.assert_allclose(labels.affine, img.affine)
    x = {lab: _centroid_world(labels, lab)[0] for lab in (1, 2, 3, 5, spinal_cord)}
    # RAS+: larger x = further to the patient's right.
    assert x[5] > x[spinal_cord] > x[1], "liver must be right of the cord, spleen left"
    assert x[2] > x[spinal_cord] > x[3], "kidney_right must be right of the cord, kidney_left left"


@pytest.mark.realdata
def test_pyradiomics_brain1(data_root: Path) -> None:
    image = _need(data_root, "pyradiomics/brain1_image.nrrd")
    label_path = _need(data_root, "pyradiomics/brain1_label.nrrd")
    img = open_volume(image, canonical=False)
    assert img.shape == (256, 256, 25) and img.data.dtype == np.int16
    assert img.spacing == pytest.approx((0.78125, 0.78125, 6.5))

    label = open_volume(label_path, canonical=False)
    voxels = np.argwhere(label.data == 1)
    assert len(voxels) == 4137 and set(np.unique(label.data)) == {0, 1}
    np.testing.assert_array_equal(voxels.min(axis=0), [162, 84, 11])
    np.testing.assert_array_equal(voxels.max(axis=0), [208, 153, 17])
    # The file's j axis points anterior (negative LPS y), so the raw order is LAS.
    assert label.axcodes == ("L", "A", "S")

    can = open_volume(label_path)
    assert can.axcodes == ("R", "A", "S")
    np.testing.assert_allclose(_centroid_world(can, 1), _centroid_world(label, 1))


@pytest.mark.realdata
def test_dcmqi_ct_matches_liver_label_map(data_root: Path) -> None:
    ct_dir = _need(data_root, "dcmqi_ct3slice/ct")
    raw = open_volume(ct_dir, canonical=False)
    assert raw.shape == (512, 512, 3)
    # The SEG that sits beside ct/ is skipped when handed in with the slices.
    with_seg = read_dicom_series([*sorted(ct_dir.glob("*.dcm")), _need(data_root, "dcmqi_ct3slice/liver.dcm")])
    np.testing.assert_array_equal(with_seg.data, raw.data)
    # k-th frame = k-th smallest z: 03.dcm (z=-128.69) first, whatever the file names say.
    first = pydicom.dcmread(ct_dir / "03.dcm")
    np.testing.assert_array_equal(raw.data[:, :, 0], first.pixel_array.T.astype(np.float32) - 1024)

    ct = open_volume(ct_dir)
    assert ct.axcodes == ("R", "A", "S") and ct.shape == (512, 512, 3)
    z = [apply_affine(ct.affine, [0, 0, k])[2] for k in range(3)]
    np.testing.assert_allclose(z, [-128.69, -127.69, -126.69], atol=1e-3)
    assert ct.spacing == pytest.approx((0.810547, 0.810547, 1.0), abs=1e-5)

    liver = open_volume(_need(data_root, "dcmqi_ct3slice/liver_seg.nrrd"))
    assert liver.shape == ct.shape
    np.testing.assert_allclose(liver.affine, ct.affine, atol=1e-3)
    inside = ct.data[liver.data == 1]
    assert inside.size == 107_098
    assert 0 < inside.mean() < 100
    assert ct.data.mean() < inside.mean() - 500


@pytest.mark.realdata
def test_mni152_template(data_root: Path) -> None:
    vol = open_volume(_need(data_root, "mni152_nilearn/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    assert vol.shape == (197, 233, 189) and vol.axcodes == ("R", "A", "S")
    assert vol.spacing == pytest.approx((1.0, 1.0, 1.0)) and vol.data.dtype == np.uint8


# --------------------------------------------------------------------------- headers without voxels


def _same_grid_files(tmp_path: Path) -> list[tuple[Path, str | None]]:
    """One small file per format and orientation case, with the ``assume`` each is opened with."""
    rng = np.random.default_rng(7)
    data = rng.normal(size=(4, 5, 6)).astype(np.float32)
    files: list[tuple[Path, str | None]] = [
        (_save_nifti(tmp_path / "psl.nii.gz", data, PSL_AFFINE), None),
        (_save_nifti(tmp_path / "ras.nii", data, np.diag([2.0, 3.0, 1.5, 1.0])), None),
        (_save_nifti(tmp_path / "singleton.nii.gz", data[..., None], PSL_AFFINE), None),
    ]
    unoriented = nib.Nifti1Image(data, np.diag([2.0, 3.0, 1.5, 1.0]))
    unoriented.set_qform(None, code=0)
    unoriented.set_sform(None, code=0)
    nib.save(unoriented, tmp_path / "unoriented.nii.gz")
    files += [(tmp_path / "unoriented.nii.gz", "LPS"), (tmp_path / "unoriented.nii.gz", None)]
    nrrd.write(str(tmp_path / "lps.nrrd"), data, {"space": "left-posterior-superior",
                                                  "space directions": np.diag([0.5, 0.7, 2.0]),
                                                  "space origin": np.array([1.0, 2.0, 3.0])})
    files.append((tmp_path / "lps.nrrd", None))
    with h5py.File(tmp_path / "knee.h5", "w") as f:
        f.create_dataset("reconstruction_rss", data=data)
    files += [(tmp_path / "knee.h5", "RAS"), (_write_series(tmp_path / "series"), None)]
    return files


def test_open_header_gives_open_volumes_grid_and_reads_the_same_voxels(tmp_path: Path) -> None:
    """A build checks grids on headers alone: every format, orientation and ``assume`` must
    give exactly the grid the full read gives, and ``data``, read late, the same voxels."""
    for path, assume in _same_grid_files(tmp_path):
        vol = open_volume(path, assume=assume)
        lazy = open_header(path, assume=assume)
        assert (lazy.shape, lazy.format, lazy.frame_axis, lazy.world_known, lazy.axcodes) == (
            vol.shape, vol.format, vol.frame_axis, vol.world_known, vol.axcodes), path
        assert np.array_equal(lazy.affine, vol.affine) and lazy.spacing == vol.spacing, path
        np.testing.assert_array_equal(lazy.data, vol.data)
        np.testing.assert_array_equal(lazy.mirror().data, vol.data[::-1])
        assert lazy.mirror().mirror().mirrored is False


def test_open_header_does_not_read_the_voxels(tmp_path: Path) -> None:
    """Pixel data cut off after an intact header: the grid is known, the voxels fail when read."""
    path = _save_nifti(tmp_path / "cut.nii", np.ones((8, 8, 8), np.float32), np.eye(4))
    path.write_bytes(path.read_bytes()[:-100])
    lazy = open_header(path)
    assert lazy.shape == (8, 8, 8)
    with pytest.raises(VolumeError, match="cannot read"):
        lazy.data  # noqa: B018 - reading is the point
    with pytest.raises(VolumeError, match="cannot read"):
        open_volume(path)


def test_canonical_data_is_contiguous_and_not_transposed(tmp_path: Path) -> None:
    """nibabel reads Fortran-order arrays: a RAS+ file is canonical as read (no copy), a
    flipped one gets one copy in the same memory order; cc3d gets C or Fortran order."""
    labels = np.random.default_rng(3).integers(0, 5, (6, 7, 8)).astype(np.uint8)
    ras = open_volume(_save_nifti(tmp_path / "ras.nii", labels, np.eye(4)))
    lps = open_volume(_save_nifti(tmp_path / "lps.nii", labels[::-1, ::-1], np.diag([-1.0, -1.0, 1.0, 1.0])))
    psl = open_volume(_save_nifti(tmp_path / "psl.nii", labels, PSL_AFFINE))
    for vol in (ras, lps):
        assert vol.data.flags.f_contiguous
        np.testing.assert_array_equal(vol.data, labels)
    assert psl.data.flags.f_contiguous or psl.data.flags.c_contiguous  # permuted: one copy
    mirrored = mirror_x(ras.data)
    assert mirrored.flags.f_contiguous and np.array_equal(mirrored, labels[::-1])
    assert mirror_x(np.ascontiguousarray(labels)).flags.c_contiguous


def test_dicom_header_refuses_a_slice_cut_in_deferred_pixel_data(tmp_path: Path) -> None:
    """Slices over 64 KB keep their pixels on disk while headers are read; one cut short is
    still named, before any pixel is decoded."""
    folder = tmp_path / "big"
    folder.mkdir()
    for k in range(3):
        ds = _ct_slice("1.2.3.4.5", k, k + 1)
        ds.Rows, ds.Columns = 200, 200  # 80 KB of uint16
        ds.PixelData = np.full((200, 200), k, np.uint16).tobytes()
        ds.save_as(folder / f"s{k}.dcm", enforce_file_format=True)
    assert open_header(folder, canonical=False).shape == (200, 200, 3)
    victim = folder / "s1.dcm"
    victim.write_bytes(victim.read_bytes()[:-1000])
    for read in (open_header, open_volume):
        with pytest.raises(VolumeError, match=r"truncated or unreadable DICOM file \(PixelData holds") as err:
            read(folder)
        assert err.value.path == str(victim)
