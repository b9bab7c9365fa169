"""Hostile dataset and run folders, and broken input files.

Nothing voxqa writes follows a link planted in a dataset or run folder; render reads only the
volumes a dataset's build recorded; annotation values are range-checked before anything is
allocated per frame; a broken input file ends in one line naming it (exit 2), or is a counted
skip of its study in a batch; a full disk during eval keeps every answer written so far."""

from __future__ import annotations

import errno
import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import orjson
import pytest
from helpers import rendered_phantom
from typer.testing import CliRunner

from voxqa import fileio
from voxqa.cli import app

runner = CliRunner()
OUTSIDE = b"OUTSIDE: not voxqa's"  # no trailing newline: a torn-line cut would shorten it


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return rendered_phantom(tmp_path_factory.mktemp("hostile"), n=6, seed=2, size=48, context=4)


@pytest.fixture
def ds(clean: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean, tmp_path / "ds"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    f = tmp_path / "elsewhere" / "precious.txt"
    f.parent.mkdir()
    f.write_bytes(OUTSIDE)
    return f


def _one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    flat = " ".join(res.output.split())
    assert flat.startswith("error:") and flat.count("error:") == 1, res.output
    for needle in needles:
        assert needle in flat, (needle, res.output)


def _first_study(ds: Path) -> str:
    return json.loads((ds / "studies.jsonl").read_text().splitlines()[0])["id"]


def _edit_studies(ds: Path, edit) -> None:  # noqa: ANN001 - edit(dict) -> None, per JSON line
    rows = [json.loads(line) for line in (ds / "studies.jsonl").read_text().splitlines() if line.strip()]
    for row in rows:
        edit(row)
    (ds / "studies.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _eval(ds: Path, out: Path, *extra: str):
    return runner.invoke(app, ["eval", str(ds), "--model", "oracle", "--split", "all", "--out", str(out), *extra])


# ---------------------------------------------------------------- links in dataset folders


def test_links_at_every_name_render_and_audit_write_are_replaced_never_written_through(ds, outside) -> None:
    """A dataset shipping links at the names render and audit write (the old fixed temp names,
    the targets themselves): both commands succeed, the outside file is untouched, each
    target is a regular file again and the links at temp names are left alone."""
    study = _first_study(ds)
    shutil.rmtree(ds / "frames" / study)
    (ds / "frames" / study).mkdir()
    (ds / "render.json").unlink()
    temps = [f"frames/{study}/0000.png.part", f"frames/{study}/0000.png.tmp", "render.json.tmp",
             "render.json.part", "audit.json.tmp", "audit.json.part", "manifest.json.tmp", "items.jsonl.tmp",
             "items.jsonl.part", "render.progress.jsonl.tmp"]
    targets = ["audit.json"]
    for name in temps + targets:
        (ds / name).unlink(missing_ok=True)
        (ds / name).symlink_to(outside)
    res = runner.invoke(app, ["render", str(ds), "--size", "48", "--frames", "4"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["audit", str(ds)])
    assert res.exit_code == 0, res.output
    assert outside.read_bytes() == OUTSIDE
    assert all((ds / n).is_symlink() for n in temps)
    for name in ("audit.json", "render.json", "items.jsonl", "manifest.json"):
        data = (ds / name).read_bytes()
        assert not (ds / name).is_symlink() and orjson.loads(data.splitlines()[0] if name.endswith("l") else data)
    assert (ds / "frames" / study / "0000.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["render.json", "render.progress.jsonl"])
def test_render_refuses_a_link_at_its_own_state_files(ds, outside, name) -> None:
    """Defect: render read render.json through a link (a traceback when it was not JSON) and
    appended to render.progress.jsonl through one (a traceback when the link held a header)."""
    from voxqa.render import RenderSettings

    key = RenderSettings(size=48, context=4).key()
    outside.write_bytes(orjson.dumps({"settings_key": key}) + b"\n")
    kept = outside.read_bytes()
    (ds / name).unlink(missing_ok=True)
    (ds / name).symlink_to(outside)
    _one_line_error(runner.invoke(app, ["render", str(ds), "--size", "48", "--frames", "4"]),
                    name, "is a symbolic link")
    assert outside.read_bytes() == kept


def test_a_frame_planted_as_a_link_out_is_a_study_not_rendered(ds, outside) -> None:
    study = _first_study(ds)
    (ds / "render.json").unlink()
    (ds / "frames" / study / "0000.png").unlink()
    (ds / "frames" / study / "0000.png").symlink_to(outside)
    res = runner.invoke(app, ["render", str(ds), "--size", "48", "--frames", "4"])
    assert res.exit_code == 0, res.output
    assert outside.read_bytes() == OUTSIDE
    unreadable = orjson.loads((ds / "render.json").read_bytes())["not_rendered"]["unreadable"]
    assert list(unreadable) == [study] and "leaves" in unreadable[study]


# ---------------------------------------------------------------- links in run folders


def test_eval_resume_files_planted_as_links_are_refused(clean, tmp_path, outside) -> None:
    """Defect: a resumed eval cut the 'torn last line' off the file predictions.jsonl linked to
    (the outside file lost its last line), read run.json through a link, and appended the
    lines it set aside through one; score cut the same file."""
    run = tmp_path / "run"
    assert _eval(clean, run, "--limit", "3").exit_code == 0
    good = {n: (run / n).read_bytes() for n in ("run.json", "predictions.jsonl")}
    for name, also in (("predictions.jsonl", ["score", str(run)]), ("run.json", None)):
        (run / name).unlink()
        (run / name).symlink_to(outside)
        _one_line_error(_eval(clean, run, "--limit", "3"), str(run / name), "is a symbolic link")
        if also:
            _one_line_error(runner.invoke(app, also), str(run / name), "is a symbolic link")
        assert outside.read_bytes() == OUTSIDE
        (run / name).unlink()
        (run / name).write_bytes(good[name])
    (run / "predictions.jsonl").write_bytes(good["predictions.jsonl"] + b'{"garbage": tru\n')
    (run / "predictions.corrupt.jsonl").symlink_to(outside)
    _one_line_error(_eval(clean, run, "--limit", "3"), "predictions.corrupt.jsonl", "is a symbolic link")
    assert outside.read_bytes() == OUTSIDE


@pytest.mark.parametrize("control", ["blank", "mirrored"])
def test_control_images_stay_in_the_run_folder(clean, tmp_path, control) -> None:
    """Defect: a run folder's controls/ linked elsewhere received the control PNGs."""
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run.mkdir()
    (run / "controls").symlink_to(elsewhere)
    _one_line_error(_eval(clean, run, "--limit", "2", "--control", control), "leaves")
    assert not list(elsewhere.iterdir())


def test_jury_cache_planted_as_a_link_is_refused(tmp_path, outside) -> None:
    from voxqa.eval.jury import CACHE, Jury

    outside.write_bytes(b'{"key": "k", "verdict": true}\n')
    (tmp_path / CACHE).symlink_to(outside)
    with pytest.raises(fileio.LinkRefused, match="is a symbolic link"):
        Jury([object()], tmp_path)  # type: ignore[list-item]


# ---------------------------------------------------------------- what render reads


def test_render_reads_only_volumes_in_the_folders_the_build_recorded(ds, tmp_path) -> None:
    """Defect: studies.jsonl names the scan render reads, so an edited one rendered any scan on
    the machine into the frames. Now a volume must lie in the dataset folder or a folder the
    manifest records as the build's input (here: --volumes), or one given by --volumes-root."""
    study = _first_study(ds)
    own = json.loads((ds / "studies.jsonl").read_text().splitlines()[0])["volume"]["path"]
    private = tmp_path / "private" / "scan.h5"
    private.parent.mkdir()
    shutil.copy(own, private)
    (ds / "linked.h5").symlink_to(private)  # inside the dataset folder, pointing out
    escapes = [str(private), str(Path(own).parent / ".." / ".." / "private" / "scan.h5"), str(ds / "linked.h5")]
    for path in escapes:
        _edit_studies(ds, lambda r, p=path: r["id"] == study and r["volume"].update(path=p))
        shutil.rmtree(ds / "frames" / study, ignore_errors=True)
        for args in (["--size", "48", "--frames", "4"], ["--recipe", "medgemma-ct"]):
            _one_line_error(runner.invoke(app, ["render", str(ds), *args]), f"study '{study}'",
                            repr(path), "lies outside", "--volumes-root")
        assert not (ds / "frames" / study).exists()
    for path in (str(private), str(ds / "linked.h5")):
        _edit_studies(ds, lambda r, p=path: r["id"] == study and r["volume"].update(path=p))
        res = runner.invoke(app, ["render", str(ds), "--size", "48", "--frames", "4",
                                  "--volumes-root", str(private.parent)])
        assert res.exit_code == 0, res.output
        assert (ds / "frames" / study / "0000.png").is_file()


def test_render_refuses_a_frame_count_past_the_limit(ds, monkeypatch) -> None:
    """A studies.jsonl frame count is checked before render makes a list per frame."""
    monkeypatch.setenv("VOXQA_MAX_FRAMES", "8")
    _one_line_error(runner.invoke(app, ["render", str(ds), "--size", "48"]), "studies.jsonl",
                    "12 frames, more than the 8 voxqa accepts", "VOXQA_MAX_FRAMES")
    monkeypatch.setenv("VOXQA_MAX_FRAMES", "lots")
    _one_line_error(runner.invoke(app, ["render", str(ds), "--size", "48"]), "VOXQA_MAX_FRAMES='lots'")


def test_a_study_id_with_a_trailing_newline_is_refused_at_build_and_in_a_received_dataset(ds, tmp_path) -> None:
    """Defect: 'abc\\n' passed the study-id check (a regex '$' matches before a final newline)."""
    from voxqa.phantom import write_segmentation_phantom

    s = write_segmentation_phantom(tmp_path / "seg")
    res = runner.invoke(app, ["build", "segmentation", "--image", str(s["image"]), "--labels", str(s["labels"]),
                              "--study-id", "abc\n", "--out", str(tmp_path / "out")])
    _one_line_error(res, "'abc\\n' is not allowed")
    assert not (tmp_path / "out").exists()
    _edit_studies(ds, lambda r: r.update(id=r["id"] + "\n"))
    _one_line_error(runner.invoke(app, ["render", str(ds), "--size", "48"]), "studies.jsonl:1", "is not allowed")


# ---------------------------------------------------------------- range checks before allocation

HEADER = "file,slice,study_level,x,y,width,height,label\n"


def test_a_fastmri_row_claiming_a_billion_slices_is_a_counted_drop(tmp_path) -> None:
    """Defect: slice=1000000000 in a box-only row built a list per frame up to it (GBs, then
    MemoryError). Now: range-checked when the row is read, a counted drop with its example."""
    ann, lst = tmp_path / "ann.csv", tmp_path / "list.csv"
    ann.write_text(HEADER + "file1000001,1000000000,No,10,10,20,20,Meniscus Tear\n"
                   "file1000001,-3,No,10,10,20,20,Meniscus Tear\n"
                   "file1000001,4,No,1e12,10,20,20,Meniscus Tear\n"
                   "file1000001,5,No,10,10,20,99999999999,Meniscus Tear\n"
                   "file1000001,6,No,10,10,20,20,Meniscus Tear\n")
    lst.write_text("file1000001\n")
    args = ["build", "fastmri-plus", "--annotations", str(ann), "--file-list", str(lst)]
    t0 = time.monotonic()
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t0 < 20
    report = orjson.loads((tmp_path / "ds" / "build_report.json").read_bytes())
    dropped = {k: v["count"] for k, v in report["dropped"].items()}
    assert dropped == {"slice_out_of_range": 1, "malformed_row": 3}
    (example,) = report["dropped"]["slice_out_of_range"]["examples"]
    assert example["slice"] == 1000000000 and example["where"] == f"{ann}:2" and "VOXQA_MAX_FRAMES" in example["limit"]
    problems = [e["problem"] for e in report["dropped"]["malformed_row"]["examples"]]
    assert problems[0] == "negative slice -3" and all("beyond 100000 pixels" in p for p in problems[1:])
    assert report["totals"]["rows_accounted"] and report["totals"]["rows_kept_boxes"] == 1
    (study,) = [json.loads(line) for line in (tmp_path / "ds" / "studies.jsonl").read_text().splitlines()]
    assert study["frame_count"] == 7
    _one_line_error(runner.invoke(app, [*args, "--out", str(tmp_path / "strict"), "--strict"]),
                    f"{ann}:2", "slice_out_of_range", "slice 1000000000")


def test_a_knee_box_claiming_a_billion_frames_is_a_counted_skip(tmp_path) -> None:
    """The knee boxes CSV had the same weakness: a box-only study's frames came from its boxes."""
    (tmp_path / "studies.csv").write_text("study_id,image,labels,patient_id,knee_side\na,,,p1,RIGHT\n")
    (tmp_path / "boxes.csv").write_text(
        "study_id,region,start_frame,end_frame,x_min,x_max,y_min,y_max\n"
        "a,femur medial central,90,1000000000,100,180,150,210\n"
        "a,femur lateral central,20,50,100,180,150,210\n")
    (tmp_path / "grades.csv").write_text("study_id,region,feature,grade\na,femur medial central,cartilage_size,2\n")
    t0 = time.monotonic()
    res = runner.invoke(app, ["build", "knee-grading", "--studies", str(tmp_path / "studies.csv"), "--grades",
                              str(tmp_path / "grades.csv"), "--boxes", str(tmp_path / "boxes.csv"),
                              "--out", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t0 < 20
    skipped = orjson.loads((tmp_path / "ds" / "build_report.json").read_bytes())["skipped"]
    assert skipped["box_row_frame_out_of_range"]["count"] == 1
    assert skipped["box_row_frame_out_of_range"]["examples"][0]["where"] == f"{tmp_path / 'boxes.csv'}:2"


# ---------------------------------------------------------------- one line naming the file


@pytest.fixture(scope="module")
def seg(tmp_path_factory) -> dict:
    from voxqa.phantom import write_segmentation_phantom

    return write_segmentation_phantom(tmp_path_factory.mktemp("segsrc") / "seg")


def _singular(src: Path, dst: Path) -> Path:
    """``src`` with two voxel axes parallel (spacing still non-zero): no orientation exists."""
    img = nib.load(src)
    affine = img.affine.copy()
    affine[:3, 2] = affine[:3, 1]
    header = img.header.copy()
    header.set_sform(affine, code=1)
    header["qform_code"] = 0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), None, header=header), dst)
    return dst


def test_a_singular_affine_names_the_file_and_is_a_counted_skip_in_a_batch(seg, tmp_path) -> None:
    """Defect: nibabel's OrientationError ended the build in a traceback."""
    image, labels = _singular(seg["image"], tmp_path / "i.nii.gz"), _singular(seg["labels"], tmp_path / "l.nii.gz")
    res = runner.invoke(app, ["build", "segmentation", "--image", str(image), "--labels", str(labels),
                              "--out", str(tmp_path / "one")])
    _one_line_error(res, str(image), "singular affine", "span no volume")
    csv = tmp_path / "studies.csv"
    csv.write_text(f"study_id,image,labels\ngood,{seg['image']},{seg['labels']}\nbad,{image},{labels}\n")
    res = runner.invoke(app, ["build", "segmentation", "--studies", str(csv), "--out", str(tmp_path / "batch")])
    assert res.exit_code == 0, res.output
    assert "warning: partial build: 1 skipped (study_unreadable 1)" in " ".join(res.output.split())
    skipped = orjson.loads((tmp_path / "batch" / "build_report.json").read_bytes())["skipped"]
    assert "singular affine" in skipped["study_unreadable"]["examples"][0]["error"]
    _one_line_error(runner.invoke(app, ["build", "segmentation", "--studies", str(csv), "--strict",
                                        "--out", str(tmp_path / "strict")]), "study bad", "singular affine")


def test_a_200kb_csv_field_names_the_file_and_line(tmp_path) -> None:
    """Defect: csv's 'field larger than field limit (131072)' ended in a traceback."""
    ann, lst = tmp_path / "ann.csv", tmp_path / "list.csv"
    ann.write_text(HEADER + "file1000001,3,No,10,10,20,20,Meniscus Tear\n"
                   f"file1000001,4,No,10,10,20,20,{'x' * 200_000}\n")
    lst.write_text("file1000001\n")
    res = runner.invoke(app, ["build", "fastmri-plus", "--annotations", str(ann), "--file-list", str(lst),
                              "--out", str(tmp_path / "ds")])
    _one_line_error(res, f"{ann}:3", "field larger than field limit")
    assert not (tmp_path / "ds").exists()


def test_json_nested_100k_deep_names_the_file(seg, tmp_path) -> None:
    """Defect: RecursionError (a traceback) from json.loads in label names and the importers."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    res = runner.invoke(app, ["build", "segmentation", "--image", str(seg["image"]), "--labels",
                              str(seg["labels"]), "--label-names", str(deep), "--out", str(tmp_path / "a")])
    _one_line_error(res, str(deep), "nested too deeply")
    ann = tmp_path / "ann.csv"
    ann.write_text(HEADER)
    res = runner.invoke(app, ["import", "sgmri-vqa", "--qa", str(deep), "--annotations", str(ann),
                              "--out", str(tmp_path / "b")])
    _one_line_error(res, str(deep), "nested too deeply")
    lines = tmp_path / "qa.jsonl"
    lines.write_text("\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    res = runner.invoke(app, ["import", "ct-spatialvqa", "--qa", str(lines), "--out", str(tmp_path / "c")])
    _one_line_error(res, f"{lines}:2", "nested too deeply")


def test_text_that_is_not_utf8_names_the_file(seg, tmp_path) -> None:
    """Defect: a UnicodeDecodeError traceback that named no file."""
    ann, lst = tmp_path / "ann.csv", tmp_path / "list.csv"
    ann.write_bytes((HEADER + "file1000001,3,No,10,10,20,20,Ödem\n").encode("latin-1"))
    lst.write_text("file1000001\n")
    build = ["build", "fastmri-plus", "--out", str(tmp_path / "ds")]
    _one_line_error(runner.invoke(app, [*build, "--annotations", str(ann), "--file-list", str(lst)]),
                    str(ann), "not UTF-8 text (byte 0xd6", "save it as UTF-8")
    ann.write_text(HEADER)
    lst.write_bytes("file1000001\nfile_Müller\n".encode("latin-1"))
    _one_line_error(runner.invoke(app, [*build, "--annotations", str(ann), "--file-list", str(lst)]),
                    str(lst), "not UTF-8 text (byte 0xfc")
    csv = tmp_path / "studies.csv"
    csv.write_bytes(f"study_id,image,labels\nM\xfcller,{seg['image']},{seg['labels']}\n".encode("latin-1"))
    _one_line_error(runner.invoke(app, ["build", "segmentation", "--studies", str(csv), "--out", str(tmp_path / "s")]),
                    str(csv), "not UTF-8 text (byte 0xfc")


# ---------------------------------------------------------------- a full disk during eval


def test_a_full_disk_during_eval_is_one_line_and_the_run_resumes(clean, tmp_path, monkeypatch) -> None:
    """Defect: ENOSPC while appending a prediction ended eval in a traceback. Now one line names
    predictions.jsonl; the line cut short by the full disk is taken back, so the file holds
    only whole records and the same command resumes and asks every item exactly once."""
    run = tmp_path / "run"
    real = fileio._os_write
    lines = {"n": 0}

    def disk_fills(fd: int, data) -> int:  # noqa: ANN001 - bytes-like
        if bytes(data[:11]) == b'{"item_id":':
            lines["n"] += 1
            if lines["n"] == 3:  # half the third line fits, then the disk is full
                return real(fd, data[: len(data) // 2])
        if lines["n"] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(fileio, "_os_write", disk_fills)
    res = _eval(clean, run, "--concurrency", "1")
    _one_line_error(res, f"cannot write {run / 'predictions.jsonl'}: No space left on device",
                    "2 of", "run the same command to resume")
    recorded = (run / "predictions.jsonl").read_bytes()
    assert recorded.endswith(b"\n") and len(recorded.splitlines()) == 2
    assert all(orjson.loads(line)["status"] == "ok" for line in recorded.splitlines())
    monkeypatch.setattr(fileio, "_os_write", real)
    res = _eval(clean, run, "--concurrency", "1")
    assert res.exit_code == 0, res.output
    ids = [orjson.loads(line)["item_id"] for line in (run / "predictions.jsonl").read_bytes().splitlines()]
    assert len(ids) == len(set(ids)) and (run / "predictions.jsonl").read_bytes().startswith(recorded)
    assert runner.invoke(app, ["score", str(run)]).exit_code == 0


def test_a_full_disk_in_an_atomic_write_keeps_the_old_file_and_names_it(tmp_path, monkeypatch) -> None:
    target = tmp_path / "results.json"
    target.write_bytes(b"OLD")

    def full(fd: int, data) -> int:  # noqa: ANN001
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "_os_write", full)
    with pytest.raises(fileio.WriteFailed, match=f"cannot write {target}: No space left on device"):
        fileio.write_json(target, {"a": 1})
    assert target.read_bytes() == b"OLD" and list(tmp_path.iterdir()) == [target]
