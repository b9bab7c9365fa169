"""Bad inputs end in one line naming the file and the problem, never a traceback or a quietly
wrong dataset; a build that leaves something out says so in one warning line."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import orjson
import pytest
from test_readers import _ct_slice, _write_series
from typer.testing import CliRunner

from voxqa.cli import app
from voxqa.phantom import segmentation_phantom, write_phantom, write_segmentation_phantom

runner = CliRunner()


def _one_line_error(res, *needles: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and "{'" not in res.output, res.output
    flat = " ".join(res.output.split())
    assert flat.startswith("error:") and flat.count("error:") == 1, res.output
    for needle in needles:
        assert needle in flat, (needle, res.output)
    return flat


def _warning_line(res) -> str:
    assert res.exit_code == 0, res.output
    lines = [" ".join(part.split()) for part in res.output.split("warning:")[1:]]
    assert len(lines) == 1, res.output  # one warning line, not one per problem
    assert "Traceback" not in res.output
    return lines[0]


def _seg(out: Path, image: Path, labels: Path, *extra: str):
    return runner.invoke(app, ["build", "segmentation", "--image", str(image), "--labels", str(labels),
                               "--out", str(out), *extra])


@pytest.fixture(scope="module")
def seg_src(tmp_path_factory) -> dict[str, Path]:
    return write_segmentation_phantom(tmp_path_factory.mktemp("seg"))


# 1. label maps holding negative or fractional values


@pytest.mark.parametrize(("dtype", "value", "needle"), [
    (np.float32, -1.0, "negative value -1.0"),  # was cast to uint8: label_255 of ~3000 mL
    (np.int16, -1, "negative value -1"),
    (np.float32, 1.5, "non-integer value 1.5"),
])
def test_label_map_with_negative_or_fractional_values_names_the_file(seg_src, tmp_path, dtype, value, needle) -> None:
    """Defect: a float label map holding -1 was cast to uint8 before the check, so -1 became a
    structure `label_255`; an int16 -1 ended in a Python dict ("no study could be read: {...}")."""
    _, labels, affine, _ = segmentation_phantom()
    bad = labels.astype(dtype)
    bad[labels == 1] = value
    path = tmp_path / "bad_labels.nii.gz"
    nib.save(nib.Nifti1Image(bad, affine), path)
    out = tmp_path / "ds"
    _one_line_error(_seg(out, seg_src["image"], path), str(path), "not a label map", needle)
    assert not out.exists()


# 2. fastMRI volumes that would fail at render


def _fastmri(tmp_path: Path) -> dict:
    return write_phantom(tmp_path / "src", n=4, seed=1)


def _build_fastmri(p: dict, out: Path, *extra: str):
    return runner.invoke(app, ["build", "fastmri-plus", "--annotations", str(p["annotations"]), "--file-list",
                               str(p["file_list"]), "--volumes", str(p["volumes"]), "--out", str(out), *extra])


def _nan_volume(p: dict) -> Path:
    h5 = p["volumes"] / f"{p['names'][1]}.h5"
    with h5py.File(h5, "r+") as f:
        data = f["reconstruction_rss"][()]
        data[2, 10:12, 10:13] = np.nan
        f["reconstruction_rss"][...] = data
    return h5


def test_nan_voxels_in_a_fastmri_volume_fail_strict_build_naming_the_file(tmp_path) -> None:
    """Defect: NaN voxels passed `build --volumes` (only the shape was probed) and failed at render."""
    p = _fastmri(tmp_path)
    h5 = _nan_volume(p)
    clean = tmp_path / "file_list.csv"  # the phantom plants file-list quirks that --strict would stop on
    clean.write_text("\n".join(p["names"]) + "\n")
    ann = tmp_path / "ann.csv"
    ann.write_text((p["annotations"]).read_text().splitlines()[0] + "\n")
    out = tmp_path / "strict"
    res = runner.invoke(app, ["build", "fastmri-plus", "--annotations", str(ann), "--file-list", str(clean),
                              "--volumes", str(p["volumes"]), "--out", str(out), "--strict"])
    _one_line_error(res, "--strict:", str(h5), "6 non-finite voxel(s) (NaN/inf)")
    assert not out.exists()


@pytest.mark.parametrize("damage", ["nan", "not_hdf5"])
def test_unreadable_fastmri_volume_is_one_warning_line_not_a_silent_box_only_study(tmp_path, damage) -> None:
    """Defect: a volume that failed to read (or held NaN) silently became a box-only study at
    the default 320x320 frame size, with nothing said on the console."""
    p = _fastmri(tmp_path)
    if damage == "nan":
        h5 = _nan_volume(p)
    else:
        h5 = p["volumes"] / f"{p['names'][1]}.h5"
        h5.write_bytes(b"not an HDF5 file")
    out = tmp_path / "ds"
    line = _warning_line(_build_fastmri(p, out))
    assert "skipped (volume_unreadable_built_box_only 1)" in line, line
    assert f"details in {out / 'build_report.json'}" in line, line
    rep = orjson.loads((out / "build_report.json").read_bytes())
    entry = rep["skipped"]["volume_unreadable_built_box_only"]
    assert entry["count"] == 1 and entry["examples"][0]["file"] == str(h5)
    studies = [orjson.loads(s) for s in (out / "studies.jsonl").read_bytes().splitlines()]
    (box_only,) = [s for s in studies if s["id"] == p["names"][1]]
    assert box_only["volume"] is None and box_only["frame_size_source"] == "default"


# 3. partial success says so in one line


def test_skipped_study_from_studies_csv_is_one_warning_line(seg_src, tmp_path) -> None:
    """Defect: an unreadable study in studies.csv was skipped with nothing said on the console."""
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b truncated")
    csv = tmp_path / "studies.csv"
    csv.write_text("study_id,image,labels,label_names\n"
                   f"good,{seg_src['image']},{seg_src['labels']},{seg_src['label_names']}\n"
                   f"bad,{broken},{seg_src['labels']},\n")
    out = tmp_path / "ds"
    res = runner.invoke(app, ["build", "segmentation", "--studies", str(csv), "--out", str(out)])
    line = _warning_line(res)
    assert "1 skipped (study_unreadable 1)" in line and f"details in {out / 'build_report.json'}" in line
    rep = orjson.loads((out / "build_report.json").read_bytes())
    assert rep["skipped"]["study_unreadable"]["examples"][0]["study"] == "bad"


def test_empty_label_map_is_one_warning_line(seg_src, tmp_path) -> None:
    """Defect: an all-zero label map built 0 items with exit 0 and no word of warning."""
    _, labels, affine, _ = segmentation_phantom()
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros_like(labels), affine), empty)
    out = tmp_path / "ds"
    line = _warning_line(_seg(out, seg_src["image"], empty, "--label-names", str(seg_src["label_names"])))
    assert "labels_empty_no_questions 1" in line and "0 items" in line, line
    rep = orjson.loads((out / "build_report.json").read_bytes())
    assert rep["warning"]["labels_empty_no_questions"]["examples"][0]["labels"] == str(empty)


def test_empty_file_list_is_one_warning_line(tmp_path) -> None:
    """Defect: an empty --file-list (no volume reviewed) built with nothing said."""
    p = _fastmri(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out = tmp_path / "ds"
    res = runner.invoke(app, ["build", "fastmri-plus", "--annotations", str(p["annotations"]), "--file-list",
                              str(empty), "--volumes", str(p["volumes"]), "--out", str(out)])
    line = _warning_line(res)
    assert "file_list_has_no_volumes 1" in line, line
    rep = orjson.loads((out / "build_report.json").read_bytes())
    assert rep["warning"]["file_list_has_no_volumes"]["examples"][0]["file"] == str(empty)


def test_studies_csv_without_rows_names_the_file(tmp_path) -> None:
    """Defect: a studies.csv with only its header ended in "no study could be read: None"."""
    csv = tmp_path / "studies.csv"
    csv.write_text("study_id,image,labels\n")
    out = tmp_path / "ds"
    _one_line_error(runner.invoke(app, ["build", "segmentation", "--studies", str(csv), "--out", str(out)]),
                    str(csv), "no study rows")
    assert not out.exists()


# 4. two label ids, one structure


def test_two_label_ids_with_one_name_name_the_file_and_both_ids(seg_src, tmp_path) -> None:
    """Defect: {"1": "liver", "2": "Liver"} ended in "internal error: duplicate item ids"."""
    names = json.loads(seg_src["label_names"].read_text())
    names["2"] = "Liver"
    path = tmp_path / "names.json"
    path.write_text(json.dumps(names))
    out = tmp_path / "ds"
    _one_line_error(_seg(out, seg_src["image"], seg_src["labels"], "--label-names", str(path)),
                    str(path), "label ids 1 ('liver') and 2 ('Liver')", "structure 'liver'")
    assert not out.exists()


# 5. a truncated DICOM file in a series


@pytest.mark.parametrize("keep", [400, 600, -100])  # cut in the header, in the attributes, in the pixels
def test_truncated_dicom_file_is_named_as_truncated(seg_src, tmp_path, keep) -> None:
    """Defect: a cut-short slice was taken for a non-DICOM file and skipped, so the error blamed
    the series ("non-uniform slice spacing", "duplicate slice position"), or the volume silently
    lost a slice; cut in the pixels it said only "cannot read"."""
    series = _write_series(tmp_path / "series")
    victim = series / "a_5.dcm"  # k = 1, inside the series
    data = victim.read_bytes()
    victim.write_bytes(data[:keep])
    out = tmp_path / "ds"
    _one_line_error(_seg(out, series, seg_src["labels"]), str(victim), "truncated or unreadable DICOM file")
    assert not out.exists()


def test_truncated_end_slice_is_not_silently_dropped(tmp_path) -> None:
    """Defect: the last slice cut short in its header was skipped and the volume read with one
    slice fewer, without a word."""
    from voxqa.io import VolumeError, open_volume

    series = _write_series(tmp_path / "series")
    end = series / "d_5.dcm"  # k = 3, the last slice
    end.write_bytes(end.read_bytes()[:500])
    with pytest.raises(VolumeError, match="truncated or unreadable DICOM file") as err:
        open_volume(series)
    assert err.value.path == str(end)


# 6. hints name what the CLI user can do


def test_two_series_hint_names_a_cli_action(seg_src, tmp_path) -> None:
    """Defect: the hint said "pass series_uid= to choose", a Python parameter the CLI lacks."""
    folder = _write_series(tmp_path / "mixed", series_uid="1.2.3.4.5")
    _write_series(folder, series_uid="1.2.3.4.6")
    _ct_slice("1.2.3.4.6", 9, 9, modality="SEG").save_as(folder / "seg.dcm", enforce_file_format=True)
    out = tmp_path / "ds"
    flat = _one_line_error(_seg(out, folder, seg_src["labels"]), "holds 2 image series", "1.2.3.4.5",
                           "1.2.3.4.6", "give one series folder")
    assert "series_uid=" not in flat


def test_unknown_suffix_hint_names_a_cli_action(seg_src, tmp_path) -> None:
    """Defect: the hint said "pass format=", a Python parameter the CLI lacks."""
    odd = tmp_path / "scan.img"
    odd.write_bytes(b"\0" * 16)
    flat = _one_line_error(_seg(tmp_path / "ds", odd, seg_src["labels"]), "unrecognised file type",
                           "rename the file")
    assert "format=" not in flat


# 7. exporting nothing is an error


def test_export_of_an_unrendered_dataset_says_render_first(tmp_path) -> None:
    """Defect: exporting a dataset without rendered images wrote empty files and exited 0."""
    p = _fastmri(tmp_path)
    ds = tmp_path / "ds"
    assert _build_fastmri(p, ds).exit_code == 0
    out = tmp_path / "export"
    _one_line_error(runner.invoke(app, ["export", str(ds), "--format", "trl", "--out", str(out)]),
                    "no item has rendered images: run `voxqa render", str(ds.resolve()))
    assert not out.exists()
