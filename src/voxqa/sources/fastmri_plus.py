"""fastMRI+ (knee and brain box CSVs + reviewed-file lists) -> Studies.

Conventions of the source, all honoured here:

* ``slice`` is 0-based into ``reconstruction_rss`` (slices, height, width);
* ``x, y, width, height`` is a pixel box with (x, y) the top-left corner, on the image
  flipped up/down (``img[:, ::-1, :]``); stored canonically as [x, y, x + width, y + height];
* ``study_level == "Yes"`` rows are volume labels without a box (their slice is 0);
* a volume in the file list without rows was reviewed and is normal;
* labels may carry trailing spaces (``"Joint Effusion "``): whitespace is normalised and the
  original kept as ``raw_label``.

Every dropped or repaired row is counted in the BuildReport so that
rows read == rows kept + rows dropped, per CSV.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxqa.boxes.geometry import clip
from voxqa.boxes.instances import LINK_RULE, link_instances
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.folder import sha256_file
from voxqa.dataset.frame_policy import ALL_FRAMES, FramePolicy, max_frames
from voxqa.errors import BuildError, not_utf8
from voxqa.io import VolumeError, probe_fastmri_h5
from voxqa.progress import SILENT, Progress
from voxqa.schema import Box, Box3D, Finding, Item, Study, VolumeRef
from voxqa.sources.csvinput import csv_reader
from voxqa.tasks import FAMILIES, BuildContext, StudyView, TaskFamily

NAME = "fastmri_plus"
MODALITY = "MR"
COLUMNS = ("file", "slice", "study_level", "x", "y", "width", "height", "label")
#: The question families asked of fastMRI+ studies (``voxqa.tasks.FAMILIES``).
FAMILY_NAMES = ("detection", "localization", "counting", "classification", "captioning")
# fastMRI reconstruction_rss frames are 320 x 320 for knee and brain; used when no HDF5 is given.
DEFAULT_FRAME_SIZE = {"knee": (320, 320), "brain": (320, 320)}
# Labels that are not abnormalities: excluded from "any abnormality" questions, still localised.
VOLUME_NAME = re.compile(r"^file[A-Za-z0-9_]+$")  # file1000000, file_brain_AXFLAIR_200_6002425
#: Largest box coordinate or size (pixels) a row may state; fastMRI frames are 320-640 wide.
MAX_BOX_COORDINATE = 100_000
# Reasons a CSV row is dropped; rows read == rows kept + sum of these.
ROW_DROP_REASONS = (
    "duplicate_row",
    "malformed_row",
    "zero_area_box",
    "negative_box_size",
    "slice_out_of_range",
    "box_outside_frame",
    "repeated_study_label",
)
NON_PATHOLOGY = {
    "artifact",
    "possible artifact",
    "motion artifact",
    "normal for age",
    "normal variant",
}


@dataclass(frozen=True)
class Row:
    """One parsed CSV row; ``where`` is "path:line" for error messages and examples."""

    file: str
    slice: int
    study_level: bool
    box: tuple[int, int, int, int] | None
    raw_label: str
    where: str


def is_pathology(label: str) -> bool:
    return label.lower() not in NON_PATHOLOGY


def infer_anatomy(volume_name: str) -> str:
    """fastMRI brain files are named ``file_brain_*``; knee files ``file1000000``."""
    return "brain" if volume_name.startswith("file_brain") else "knee"


def normalise_label(raw: str) -> str:
    return " ".join(raw.split())


def read_file_list(path: Path, report: BuildReport) -> list[str]:
    """Reviewed volume names, one per line, no header; order kept, duplicates counted."""
    if not path.is_file():
        raise BuildError(f"{path}: file list not found")
    names: list[str] = []
    seen: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BuildError(f"{path}: {not_utf8(exc)}") from None
    for n, line in enumerate(text.splitlines(), start=1):
        name = line.strip().split(",")[0].strip()
        if not name:
            continue
        if n == 1 and name == "file":
            report.add("info", "file_list_header_skipped", where=f"{path}:{n}")
            continue
        if name.endswith(".h5"):
            name = name[: -len(".h5")]
        if not VOLUME_NAME.match(name):
            report.add("dropped", "file_list_invalid_name", where=f"{path}:{n}", line=line)
            continue
        if name in seen:
            report.add("repaired", "file_list_duplicate_removed", where=f"{path}:{n}", file=name)
            continue
        seen.add(name)
        names.append(name)
    if not names:  # no volume was reviewed: annotated volumes still come in, unreviewed
        report.add("warning", "file_list_has_no_volumes", file=str(path))
    return names


def _parse_row(rec: dict[str, str], where: str) -> Row | str:
    """A Row, or the reason the row is malformed."""
    file = (rec.get("file") or "").strip()
    raw_label = rec.get("label") or ""
    if not VOLUME_NAME.match(file):
        return f"not a fastMRI volume name: {file!r}"
    if not normalise_label(raw_label):
        return "missing label"
    level = (rec.get("study_level") or "").strip().lower()
    if level not in ("yes", "no"):
        return f"study_level must be Yes or No, got {rec.get('study_level')!r}"
    try:
        slice_ = int((rec.get("slice") or "0").strip() or 0)
    except ValueError:
        return f"slice is not an integer: {rec.get('slice')!r}"
    if slice_ < 0:
        return f"negative slice {slice_}"
    if level == "yes":
        return Row(file, slice_, True, None, raw_label, where)
    try:
        values = [float((rec.get(k) or "").strip()) for k in ("x", "y", "width", "height")]
    except ValueError:
        return "box coordinates are not numbers"
    if not all(math.isfinite(v) for v in values):
        return "box coordinates are not finite numbers"
    if any(abs(v) > MAX_BOX_COORDINATE for v in values):
        return f"box coordinates beyond {MAX_BOX_COORDINATE} pixels: {', '.join(f'{v:g}' for v in values)}"
    x, y, w, h = (round(v) for v in values)  # decimals: rounded, counted by read_annotations
    return Row(file, slice_, False, (x, y, x + w, y + h), raw_label, where)


def read_annotations(path: Path, report: BuildReport) -> list[Row]:
    """Parse one fastMRI+ CSV; malformed and exact-duplicate rows are dropped and counted."""
    limit = max_frames()
    with csv_reader(path, COLUMNS, "fastMRI+ annotation CSV") as reader:
        rows: list[Row] = []
        seen: set[tuple[str, ...]] = set()
        n_read = 0
        for rec in reader:
            n_read += 1
            where = f"{path}:{reader.line_num}"
            # duplicates compare whitespace-normalised fields ("Joint Effusion " == "Joint Effusion")
            key = tuple(normalise_label(rec.get(c) or "") for c in COLUMNS)
            if key in seen:
                report.add("dropped", "duplicate_row", where=where, row=",".join(key))
                continue
            seen.add(key)
            parsed = _parse_row(rec, where)
            if isinstance(parsed, str):
                report.add("dropped", "malformed_row", where=where, problem=parsed)
                continue
            if not parsed.study_level and parsed.slice >= limit:  # before any list per frame
                report.add("dropped", "slice_out_of_range", where=where, slice=parsed.slice,
                           limit=f"{limit} frames (VOXQA_MAX_FRAMES)")
                continue
            if not parsed.study_level:
                raw = {k: (rec.get(k) or "").strip() for k in ("x", "y", "width", "height")}
                if any(float(v) != round(float(v)) for v in raw.values()):
                    if report.strict:
                        raise BuildError(f"--strict: {where}: box coordinates are not whole pixels "
                                         f"({', '.join(f'{k}={v}' for k, v in raw.items())})")
                    report.add("repaired", "coordinates_rounded", where=where, raw=raw,
                               box=list(parsed.box or ()))
            rows.append(parsed)
    report.totals.setdefault("rows_read", {})[str(path)] = n_read
    return rows


def canonical_labels(rows: list[Row], report: BuildReport) -> dict[str, str]:
    """raw label -> canonical label: whitespace-normalised; case variants merged to the most
    frequent spelling (ties: alphabetical), so "Joint effusion" and "Joint Effusion " agree."""
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        norm = normalise_label(r.raw_label)
        spellings[norm.lower()][norm] += 1
    canon = {
        low: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for low, c in spellings.items()
    }
    mapping: dict[str, str] = {}
    for r in rows:
        norm = normalise_label(r.raw_label)
        label = mapping[r.raw_label] = canon[norm.lower()]
        if norm != r.raw_label:
            report.add("repaired", "label_whitespace", where=r.where, raw=r.raw_label, label=norm)
        if label != norm:
            report.add("repaired", "label_case", where=r.where, raw=r.raw_label, label=label)
    return mapping


def _findings(rows: list[Row], labels: dict[str, str], report: BuildReport) -> list[Finding]:
    """Study-level findings (one per label) and box instances linked across frames."""
    findings: list[Finding] = []
    study_level: dict[str, Row] = {}
    boxes: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        label = labels[r.raw_label]
        if r.study_level and label in study_level:
            report.add("dropped", "repeated_study_label", where=r.where, label=label)
        elif r.study_level:
            study_level[label] = r
        else:
            boxes[label].append(r)
    for label in sorted(study_level):
        raw = study_level[label].raw_label
        findings.append(Finding(label=label, raw_label=raw, study_level=True))
    for label in sorted(boxes):
        members = sorted(boxes[label], key=lambda r: (r.slice, r.box))
        ids = link_instances([(r.slice, r.box) for r in members])
        for inst in range(max(ids) + 1):
            mine = [r for r, i in zip(members, ids, strict=False) if i == inst]
            bxs = [Box(frame=r.slice, box=r.box) for r in mine]
            x0 = min(b.box[0] for b in bxs)
            y0 = min(b.box[1] for b in bxs)
            x1 = max(b.box[2] for b in bxs)
            y1 = max(b.box[3] for b in bxs)
            box3d = Box3D(
                frame_start=bxs[0].frame, frame_end=max(b.frame for b in bxs), box=(x0, y0, x1, y1)
            )
            findings.append(
                Finding(
                    label=label,
                    raw_label=mine[0].raw_label,
                    boxes=bxs,
                    box3d=box3d,
                    instance_id=inst,
                )
            )
    return findings


def _fit_boxes(
    rows: list[Row], size: tuple[int, int], n_frames: int | None, report: BuildReport
) -> list[Row]:
    """Clip boxes to the frame, dropping those left without area or on missing slices."""
    width, height = size
    kept: list[Row] = []
    for r in rows:
        if r.study_level:
            kept.append(r)
            continue
        assert r.box is not None
        x0, y0, x1, y1 = r.box
        if x1 < x0 or y1 < y0:
            report.add("dropped", "negative_box_size", where=r.where, box=list(r.box),
                       width=x1 - x0, height=y1 - y0)
            continue
        if x1 == x0 or y1 == y0:
            report.add("dropped", "zero_area_box", where=r.where, box=list(r.box))
            continue
        if n_frames is not None and r.slice >= n_frames:
            report.add("dropped", "slice_out_of_range", where=r.where, slice=r.slice, frames=n_frames)
            continue
        clipped = clip(r.box, width, height)
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            report.add("dropped", "box_outside_frame", where=r.where, box=list(r.box))
            continue
        if clipped != r.box:
            report.add("repaired", "box_clipped", where=r.where, box=list(r.box), to=list(clipped))
            r = Row(r.file, r.slice, False, clipped, r.raw_label, r.where)
        kept.append(r)
    return kept


def load_studies(
    pairs: list[tuple[Path, Path]],
    report: BuildReport,
    volumes: Path | None = None,
    anatomy: str | None = None,
) -> list[Study]:
    """Build one Study per reviewed (or annotated) volume of the given CSV / file-list pairs."""
    rows: list[Row] = []
    reviewed: list[str] = []
    for csv_path, list_path in pairs:
        reviewed.extend(read_file_list(list_path, report))
        rows.extend(read_annotations(csv_path, report))
    labels = canonical_labels(rows, report)
    by_file: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_file[r.file].append(r)
    listed = set(reviewed)
    names = sorted(listed | set(by_file))
    for name in sorted(set(by_file) - listed):
        report.add("info", "annotated_volume_not_in_file_list", file=name)

    studies: list[Study] = []
    for name in names:
        anat = anatomy or infer_anatomy(name)
        frame_size, size_src = DEFAULT_FRAME_SIZE.get(anat, (320, 320)), "default"
        n_frames: int | None = None
        ref: VolumeRef | None = None
        h5 = volumes / f"{name}.h5" if volumes else None
        if h5 is not None and h5.is_file():
            try:
                n_frames, height, width = probe_fastmri_h5(h5)
                frame_size, size_src = (width, height), "volume"
                ref = VolumeRef(path=str(h5), loader="fastmri_h5")
            except VolumeError as exc:
                report.add("skipped", "volume_unreadable_built_box_only", file=str(h5), error=str(exc))
        elif volumes is not None:
            report.add("info", "volume_file_missing_built_box_only", file=f"{name}.h5")
        mine = _fit_boxes(by_file.get(name, []), frame_size, n_frames, report)
        box_frames = [r.slice for r in mine if not r.study_level]
        if n_frames is not None:
            count, count_src = n_frames, "volume"
        elif box_frames:
            count, count_src = max(box_frames) + 1, "annotations_lower_bound"
        else:
            count, count_src = None, "unknown"
        studies.append(
            Study(
                id=name,
                patient_id=name,
                source=NAME,
                modality=MODALITY,
                anatomy=anat,
                volume=ref,
                shape=(n_frames, frame_size[1], frame_size[0]) if n_frames else None,
                view_axis=0,
                frame_count=count,
                frame_count_source=count_src,
                frame_size=frame_size,
                frame_size_source=size_src,
                findings=_findings(mine, labels, report),
            )
        )
    findings = [f for s in studies for f in s.findings]
    report.totals["rows_kept_boxes"] = sum(len(f.boxes) for f in findings)
    report.totals["rows_kept_study_level"] = sum(1 for f in findings if f.study_level)
    dropped = {r: report.count("dropped", r) for r in ROW_DROP_REASONS}
    report.totals["rows_dropped"] = sum(dropped.values())
    report.totals["rows_dropped_by_reason"] = dropped
    kept = report.totals["rows_kept_boxes"] + report.totals["rows_kept_study_level"]
    report.totals["rows_accounted"] = kept + sum(dropped.values()) == sum(
        report.totals["rows_read"].values()
    )
    report.totals["volumes"] = len(studies)
    report.totals["volumes_reviewed_without_rows"] = len(listed - set(by_file))
    return studies


@dataclass
class FastMRIPlus:
    """``voxqa build fastmri-plus``: annotation CSV / file-list pairs, volumes optional."""

    pairs: list[tuple[Path, Path]]
    volumes: Path | None = None
    anatomy: str | None = None
    #: every frame by default: knee boxes span a few of ~36 slices, so a capped set would leave
    #: the volume-level questions to the normal volumes (their evidence is never cut off)
    frames: FramePolicy = ALL_FRAMES
    name = NAME
    command = "fastmri-plus"
    split_unit = "patient_id (fastMRI+: the volume)"

    def is_pathology(self, label: str) -> bool:
        return is_pathology(label)

    def load(self, report: BuildReport, progress: Progress = SILENT) -> list[StudyView]:
        studies = load_studies(self.pairs, report, volumes=self.volumes, anatomy=self.anatomy)
        return [StudyView(s, is_pathology) for s in studies]

    def families(self) -> list[TaskFamily]:
        return [FAMILIES[name] for name in FAMILY_NAMES]

    def manifest(self, ctx: BuildContext, studies: Sequence[Study], items: Sequence[Item]) -> dict[str, Any]:
        sizes = Counter((s.anatomy, s.frame_size, s.frame_size_source) for s in studies)
        return {
            "options": {
                "annotations": [str(a) for a, _ in self.pairs],
                "file_lists": [str(f) for _, f in self.pairs],
                "volumes": str(self.volumes) if self.volumes else None,
                "anatomy": self.anatomy,
                "frames": self.frames.cap or "all",
            },
            "source_files": [
                {"path": str(p), "role": role, "sha256": sha256_file(p)}
                for a, f in self.pairs
                for p, role in ((a, "annotations"), (f, "file_list"))
            ],
            "box_convention": {"frame_orientation": "reconstruction_rss flipped up/down (img[:, ::-1, :]), "
                                                    "as fastMRI+"},
            "frame_sizes": [
                {"anatomy": a, "width": w, "height": h, "source": src, "studies": n}
                for (a, (w, h), src), n in sorted(sizes.items())
            ],
            "default_frame_size": {a: list(s) for a, s in DEFAULT_FRAME_SIZE.items()},
            "instance_linking": LINK_RULE,
            "vocabulary": {"pathology": ctx.pathology_vocab, "boxed": ctx.boxed_vocab},
            "non_pathology_labels": sorted(NON_PATHOLOGY),
            "item_id_format": "study_id:subtask:(v|f<frame>):label-slug",
        }

    def write_extra(self, out: Path, studies: Sequence[Study], items: Sequence[Item]) -> None:
        pass
