"""fastMRI+ CSV parsing: conventions, repairs, drops and their accounting."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from voxqa.errors import BuildError
from voxqa.dataset.build_report import BuildReport
from voxqa.sources.fastmri_plus import infer_anatomy, load_studies, read_file_list

HEADER = "file,slice,study_level,x,y,width,height,label\n"


def _write(tmp: Path, rows: list[str], names: list[str]) -> tuple[Path, Path]:
    ann, lst = tmp / "ann.csv", tmp / "list.csv"
    ann.write_text(HEADER + "".join(r + "\n" for r in rows))
    lst.write_text("".join(n + "\n" for n in names))
    return ann, lst


def _load(tmp, rows, names, **kw):
    report = BuildReport(strict=kw.pop("strict", False))
    studies = load_studies([_write(tmp, rows, names)], report, **kw)
    return {s.id: s for s in studies}, report


def test_box_convention_and_label_whitespace(tmp_path):
    studies, report = _load(
        tmp_path,
        ["file1000002,9,No,86,51,169,99,Joint Effusion ", "file1000002,10,No,80,37,198,117,Joint Effusion "],
        ["file1000002"],
    )
    (f,) = studies["file1000002"].findings
    assert f.label == "Joint Effusion" and f.raw_label == "Joint Effusion "
    # x,y,w,h on the flipped image -> xyxy max exclusive, frame = the 0-based CSV slice
    assert [(b.frame, b.box) for b in f.boxes] == [(9, (86, 51, 255, 150)), (10, (80, 37, 278, 154))]
    assert f.instance_id == 0 and f.box3d.frame_start == 9 and f.box3d.frame_end == 10
    assert report.count("repaired", "label_whitespace") == 2


def test_repairs_and_drops_are_counted_and_accounted(tmp_path):
    rows = [
        "file1000001,3,No,10,-1,20,30,Meniscus Tear",  # clipped to y=0
        "file1000001,3,No,10,-1,20,30,Meniscus Tear",  # exact duplicate: dropped
        "file1000001,4,No,10,10,0,30,Meniscus Tear",  # zero width: dropped
        "file1000001,5,No,330,10,20,30,Meniscus Tear",  # entirely right of 320: dropped
        "file1000001,x,No,10,10,20,30,Meniscus Tear",  # malformed slice
        "file1000001,0,Yes,,,,,artifact",  # study level
        "file1000001,0,Yes,,,,,artifact",  # duplicate again
        "file1000001,2,Yes,,,,,artifact",  # repeated study label
        "file1000001,6,No,300,310,40,40,meniscus tear",  # clipped; case variant merged
    ]
    studies, report = _load(tmp_path, rows, ["file1000001", "file1000009", "Knee data"])
    s = studies["file1000001"]
    boxes = sorted((b.frame, b.box) for f in s.findings for b in f.boxes)
    assert boxes == [(3, (10, 0, 30, 29)), (6, (300, 310, 320, 320))]
    assert {f.label for f in s.findings} == {"Meniscus Tear", "artifact"}
    assert report.count("repaired", "box_clipped") == 2
    assert report.count("repaired", "label_case") == 1
    assert report.count("dropped", "duplicate_row") == 2
    assert report.count("dropped", "zero_area_box") == 1
    assert report.count("dropped", "box_outside_frame") == 1
    assert report.count("dropped", "malformed_row") == 1
    assert report.count("dropped", "repeated_study_label") == 1
    assert report.count("dropped", "file_list_invalid_name") == 1  # "Knee data" line
    t = report.totals
    assert sum(t["rows_read"].values()) == len(rows)
    assert t["rows_kept_boxes"] + t["rows_kept_study_level"] + t["rows_dropped"] == len(rows)
    assert t["rows_accounted"] is True
    # a reviewed volume without rows is a normal study
    assert studies["file1000009"].findings == []
    assert studies["file1000009"].frame_count_source == "unknown"
    examples = report.to_dict()["dropped"]["zero_area_box"]["examples"]
    assert examples[0]["where"].endswith("ann.csv:4")


def test_strict_stops_on_first_drop(tmp_path):
    with pytest.raises(BuildError, match="zero_area_box"):
        _load(tmp_path, ["file1000001,4,No,10,10,0,30,Meniscus Tear"], ["file1000001"], strict=True)


def test_missing_columns_is_a_clear_error(tmp_path):
    ann = tmp_path / "bad.csv"
    ann.write_text("file,slice,label\nfile1,1,x\n")
    lst = tmp_path / "l.csv"
    lst.write_text("file1\n")
    with pytest.raises(BuildError, match=r"bad\.csv.*missing columns"):
        load_studies([(ann, lst)], BuildReport())
    with pytest.raises(BuildError, match="not found"):
        load_studies([(tmp_path / "nope.csv", lst)], BuildReport())


def test_frame_size_and_count_from_hdf5(tmp_path):
    vols = tmp_path / "vols"
    vols.mkdir()
    with h5py.File(vols / "file1000001.h5", "w") as f:
        f.create_dataset("reconstruction_rss", data=np.zeros((8, 64, 48), np.float32))
    (vols / "file1000002.h5").write_bytes(b"not an hdf5 file")
    rows = [
        "file1000001,7,No,40,50,20,30,Meniscus Tear",  # clipped to 48 x 64
        "file1000001,8,No,1,1,5,5,Meniscus Tear",  # slice 8 of 8 slices: out of range
        "file1000002,3,No,1,1,5,5,Meniscus Tear",
    ]
    studies, report = _load(tmp_path, rows, ["file1000001", "file1000002", "file1000003"], volumes=vols)
    s1 = studies["file1000001"]
    assert s1.frame_size == (48, 64) and s1.frame_size_source == "volume"
    assert s1.frame_count == 8 and s1.volume.loader == "fastmri_h5"
    assert [b.box for f in s1.findings for b in f.boxes] == [(40, 50, 48, 64)]
    assert report.count("dropped", "slice_out_of_range") == 1
    s2 = studies["file1000002"]  # unreadable HDF5: box-only with the default frame, counted
    assert s2.volume is None and s2.frame_size == (320, 320) and s2.frame_size_source == "default"
    assert s2.frame_count == 4 and s2.frame_count_source == "annotations_lower_bound"
    assert report.count("skipped", "volume_unreadable_built_box_only") == 1
    assert report.count("info", "volume_file_missing_built_box_only") == 1


def test_anatomy_and_file_list(tmp_path):
    assert infer_anatomy("file_brain_AXFLAIR_200_6002425") == "brain"
    assert infer_anatomy("file1000000") == "knee"
    lst = tmp_path / "l.csv"
    lst.write_text("file1\n\nfile2.h5\nfile1\n")
    report = BuildReport()
    assert read_file_list(lst, report) == ["file1", "file2"]
    assert report.count("repaired", "file_list_duplicate_removed") == 1
