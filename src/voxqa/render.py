"""`voxqa render`: model-ready 8-bit PNG frames, with every box mapped to its image.

Frames are drawn exactly as the boxes were stored (voxqa.anatomy.frames): axial, radiological (patient
right on the image left, anterior up) for volumes with patient geometry, or sagittal (superior up,
anterior left) for knee studies (``Study.view_axis`` 0); the up/down flipped
``reconstruction_rss`` slice for fastMRI, as fastMRI+ annotated it. The only transform after
that is an optional resize (longer side = ``size``), applied identically to pixels and boxes:
a box maps to the smallest pixel box of the resized image that covers it.

Which frames an item shows: a frame-level item its own frame; a volume-level item the study's
frame set, ``voxqa.dataset.frame_policy.FramePolicy``: all frames up to ``context``, else ``context``
evenly spaced ones. The set depends on the frame count only, never on the annotations (the
``Frame k:`` labels are prompt text, so adding evidence frames would tell a normal volume from an
abnormal one). The build records its policy in the manifest (render's default ``context``) and does
not ask volume-level questions whose evidence frames that set misses; rendering with another ``context`` is allowed, and the
volume-level items whose evidence is then not all shown are counted in ``render.json``
(``counts.volume_items_evidence_not_shown``).

Rendering is parallel over studies, resumable (a PNG that exists, opens and has the expected
size under the same settings is kept) and deterministic. Each finished study is appended to
``render.progress.jsonl`` at once, so a render interrupted (Ctrl-C, kill) resumes from the
studies not yet done; PNGs are written to a temporary name and renamed, and Ctrl-C stops the
worker processes at once, so only complete files are left. Settings and the intensity window of
every volume are recorded in ``render.json``; items.jsonl gains ``images`` and each evidence
entry ``image_box``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import orjson
from PIL import Image

from voxqa.errors import InputError, VoxqaError
from voxqa.executors import Executor, LocalExecutor
from voxqa.dataset.folder import ITEMS, MANIFEST, STUDIES, read_items, read_json, read_studies, write_jsonl
from voxqa.dataset.audit import audit_dataset
from voxqa.dataset.paths import VolumeRoots, inside
from voxqa.fileio import TEMP_SUFFIX, JsonlAppender, atomic_path, atomic_write, dumps_line, read_own, write_bytes, write_json
from voxqa.progress import SILENT, Progress, tracking
from voxqa.anatomy.frames import frame_image
from voxqa.io import VolumeError, open_volume
from voxqa.schema import ImageRef, Item, Study
from voxqa.dataset.frame_policy import (DEFAULT_VOLUME_FRAMES, MAX_FRAMES_ENV, VOLUME_FRAMES_RULE, FramePolicy,
                                        max_frames, recorded_policy)

log = logging.getLogger(__name__)

RENDER = "render.json"
PROGRESS = "render.progress.jsonl"  # one line per finished study while a render runs
FRAMES_DIR = "frames"
# CT windows (level, width) in HU, by the names radiologists use.
WINDOWS = {
    "abdomen": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "mediastinum": (50.0, 350.0),
}
DEFAULT_CT_WINDOW = "abdomen"
MR_PERCENTILES = (0.5, 99.5)  # robust per-volume scaling for MR and anything not CT
PERCENTILE_SAMPLE = 2**18  # voxels the percentiles are estimated from (regular grid)


@dataclass(frozen=True)
class RenderSettings:
    size: int | None = None  # longer side of the PNG in pixels; None keeps the native size
    window: str | None = None  # window name or "level,width"; None: by modality
    context: int | None = DEFAULT_VOLUME_FRAMES  # frames of a volume-level item; None: all
    video_fps: float | None = None  # also write one MP4 of all frames per study at this rate

    def key(self) -> str:
        return hashlib.sha256(orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def recorded_frames(folder: Path) -> int | None:
    """The frame cap ``folder`` was built for (its manifest's ``volume_frames``): render's
    default, so volume-level items show the frames the build asked its questions about."""
    manifest = folder / MANIFEST
    return recorded_policy(read_json(manifest) if manifest.is_file() else {}).cap


def parse_window(text: str) -> tuple[float, float]:
    """A window name or "level,width" -> (level, width)."""
    if text in WINDOWS:
        return WINDOWS[text]
    try:
        level, width = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(
            f"window must be one of {', '.join(WINDOWS)} or 'level,width', got {text!r}"
        ) from None
    if width <= 0:
        raise InputError(f"window width must be positive, got {width}")
    return level, width


def intensity_range(data: np.ndarray, modality: str, window: str | None) -> tuple[float, float, str]:
    """(low, high, how) mapped to 0..255: a CT window, or MR robust percentiles."""
    if window is None and modality.upper() == "CT":
        window = DEFAULT_CT_WINDOW
    if window is not None:
        level, width = parse_window(window)
        return level - width / 2, level + width / 2, f"window {window} (L {level:g}, W {width:g})"
    step = max(1, round((data.size / PERCENTILE_SAMPLE) ** (1 / 3)))  # a regular subsample
    lo, hi = (float(v) for v in np.percentile(data[::step, ::step, ::step], MR_PERCENTILES))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi, f"percentiles {MR_PERCENTILES[0]:g}-{MR_PERCENTILES[1]:g} of the volume"


def to_uint8(frame: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (frame.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def output_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """Resized (width, height) with the longer side = size, aspect kept."""
    if size is None:
        return width, height
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def map_box(box: Sequence[int], src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    """Smallest pixel box of the resized image covering ``box`` (all max exclusive)."""
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    return (
        max(0, math.floor(box[0] * sx + 1e-9)),
        max(0, math.floor(box[1] * sy + 1e-9)),
        min(dst[0], math.ceil(box[2] * sx - 1e-9)),
        min(dst[1], math.ceil(box[3] * sy - 1e-9)),
    )


def _frame_image(volume_data: np.ndarray, study: Study, k: int) -> np.ndarray:
    """Frame k as stored: the study's RAS+ convention (axial, or sagittal for knees, by
    ``view_axis``), or fastMRI's array slice."""
    if study.volume and study.volume.loader != "fastmri_h5":
        return frame_image(volume_data, study.view_axis, k)
    return volume_data[k]


def _valid_png(path: Path, size: tuple[int, int]) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            return im.size == size and im.mode == "L"
    except (OSError, SyntaxError):
        return False


def render_study(job: tuple[Study, list[int], Path, RenderSettings, bool]) -> dict[str, Any]:
    """Write the PNGs of one study (in a worker process); returns its render record."""
    study, frames, folder, settings, resume = job
    assert study.volume is not None
    vol = open_volume(study.volume.path, assume=study.volume.assumed_orientation)
    if study.volume.mirrored:  # a counterfactual twin: flipped along patient x (RAS+ axis 0)
        vol = replace(vol, data=vol.data[::-1])
    lo, hi, how = intensity_range(vol.data, study.modality, settings.window)
    width, height = study.frame_size
    out_size = output_size(width, height, settings.size)
    record: dict[str, Any] = {"window": [lo, hi], "intensity": how, "frame_size": [width, height],
                              "image_size": list(out_size), "frames": {}, "written": 0}
    study_dir = inside(folder, f"{FRAMES_DIR}/{study.id}", f"study {study.id!r}")
    study_dir.mkdir(parents=True, exist_ok=True)
    for k in frames:
        rel = f"{FRAMES_DIR}/{study.id}/{k:04d}.png"
        path = inside(folder, rel, f"study {study.id!r}")
        if not (resume and _valid_png(path, out_size)):
            img = Image.fromarray(to_uint8(_frame_image(vol.data, study, k), lo, hi), mode="L")
            if out_size != (width, height):
                img = img.resize(out_size, Image.Resampling.BILINEAR)
            with atomic_write(path) as fh:  # only complete PNGs ever carry the .png name
                img.save(fh, format="PNG")
            record["written"] += 1
        record["frames"][str(k)] = rel
    if settings.video_fps:
        record["video"] = _write_video(vol.data, study, folder, out_size, lo, hi, settings.video_fps)
    return record


def _write_video(data: np.ndarray, study: Study, folder: Path, size: tuple[int, int],
                 lo: float, hi: float, fps: float) -> dict[str, Any]:
    """All frames in order as H.264 MP4 (imageio-ffmpeg). Odd sizes are padded at the right
    and bottom, which leaves every pixel coordinate (and so every image_box) unchanged."""
    import imageio_ffmpeg

    n = study.frame_count or 0
    padded = (size[0] + size[0] % 2, size[1] + size[1] % 2)
    rel = f"{FRAMES_DIR}/{study.id}.mp4"
    with atomic_path(inside(folder, rel, f"study {study.id!r}")) as temp:  # ffmpeg writes a fresh temp file
        writer = imageio_ffmpeg.write_frames(
            str(temp), padded, pix_fmt_in="gray", fps=fps, macro_block_size=1,
            output_params=["-threads", "1", "-f", "mp4"],
        )
        writer.send(None)
        for k in range(n):
            img = Image.fromarray(to_uint8(_frame_image(data, study, k), lo, hi), mode="L")
            if img.size != size:
                img = img.resize(size, Image.Resampling.BILINEAR)
            canvas = np.zeros((padded[1], padded[0]), np.uint8)
            canvas[: size[1], : size[0]] = np.asarray(img)
            writer.send(canvas.tobytes())
        writer.close()
    return {"path": rel, "fps": fps, "frames": n, "width": padded[0], "height": padded[1],
            "frame_index": "video frame i = volume frame i"}


def render_dataset(folder: Path, settings: RenderSettings, workers: int = 1,
                   executor: Executor | None = None, progress: Progress = SILENT,
                   volumes_root: Sequence[Path] = ()) -> dict[str, Any]:
    """Render every frame the items need; rewrite items.jsonl with images and image boxes.
    Studies run on ``executor`` (default: a local pool of ``workers``); each finished study
    advances ``progress``. Volumes must lie in the dataset folder, a folder its manifest records
    as the build's input, or one of ``volumes_root`` (``check_renderable``)."""
    studies = {s.id: s for s in read_studies(folder)}
    items = read_items(folder)
    previous = _previous_render(folder / RENDER)
    resume = previous.get("settings_key") == settings.key()

    needed: dict[str, set[int]] = defaultdict(set)
    for it in items:
        needed[it.study_id] |= set(it.frames)
    renderable = {sid: s for sid, s in studies.items() if s.volume is not None and sid in needed}
    check_renderable(folder, renderable.values(), volumes_root)
    sets = {sid: FramePolicy(settings.context).frames(s.frame_count) for sid, s in renderable.items()}
    finished = _read_progress(folder / PROGRESS, settings.key())
    records: dict[str, dict[str, Any]] = {}
    jobs = []
    for sid, s in sorted(renderable.items()):
        inside(folder, f"{FRAMES_DIR}/{sid}", f"study {sid!r}")  # refused here, not as 'unreadable'
        frames = sorted(needed[sid] | set(sets[sid]))
        done = finished.get(sid)
        if _journaled(done, sid, frames):
            records[sid] = {**done, "written": 0}  # finished before an interruption: kept
        else:
            jobs.append((s, frames, folder, settings, resume or bool(finished)))
    if not finished:  # a fresh journal for this render's settings
        write_bytes(folder / PROGRESS, dumps_line({"settings_key": settings.key()}))
    elif records:
        log.info("resuming a render: %d studies already done", len(records))

    errors: dict[str, str] = {}
    with tracking(progress, "rendering studies", len(jobs)) as advance, JsonlAppender(folder / PROGRESS) as journal:
        pool = executor or LocalExecutor(workers)
        try:
            for i, outcome in pool.run(render_study, jobs):
                sid = jobs[i][0].id
                try:
                    records[sid] = outcome.result()
                    journal.write({"study": sid, "record": records[sid]})
                except (VolumeError, OSError, ValueError) as exc:
                    log.info("study %s not rendered: %s", sid, exc)
                    errors[sid] = str(exc)
                advance()
        except KeyboardInterrupt:
            pool.stop()
            for job in jobs:  # PNGs cut off mid-write never got their name: drop the temps
                for part in (folder / FRAMES_DIR / job[0].id).glob("*" + TEMP_SUFFIX):
                    part.unlink(missing_ok=True)
            done_now = sum(1 for sid in renderable if sid in records)
            raise RenderInterrupted(
                f"render interrupted: {done_now} of {len(renderable)} studies done, recorded in "
                f"{folder / PROGRESS}; run the same command again to resume") from None
        except BaseException:
            pool.stop()
            raise

    rendered = [_with_images(it, records.get(it.study_id), sets.get(it.study_id, [])) for it in items]
    write_jsonl(folder / ITEMS, rendered)
    summary = {
        "settings": asdict(settings),
        "settings_key": settings.key(),
        "frame_convention": "as stored: axial radiological (voxqa.anatomy.frames) or fastMRI+ flipped",
        "box_mapping": "smallest covering pixel box of the resized image, max exclusive",
        "studies": {sid: {k: v for k, v in r.items() if k != "written"} for sid, r in sorted(records.items())},
        "not_rendered": {
            "no_volume": sorted(sid for sid in needed if studies[sid].volume is None),
            "unreadable": dict(sorted(errors.items())),
        },
        "counts": {
            "studies_rendered": len(records),
            "frames": sum(len(r["frames"]) for r in records.values()),
            "frames_written": sum(r["written"] for r in records.values()),
            "items_with_images": sum(1 for it in rendered if it.images),
            "volume_items_evidence_not_shown": sum(
                1 for it in rendered if it.level == "volume" and it.images
                and not {e.frame for e in it.evidence} <= {im.frame for im in it.images}
            ),
        },
        "volume_frames_rule": VOLUME_FRAMES_RULE,
    }
    write_json(folder / RENDER, summary)
    (folder / PROGRESS).unlink(missing_ok=True)  # render.json now records every study
    audit_dataset(folder)  # the frames a prompt shows changed: audit.json and the manifest follow
    return summary


class RenderInterrupted(VoxqaError):
    """Ctrl-C during a render: finished studies are recorded, the rest resume next time."""


def check_renderable(folder: Path, studies: Iterable[Study], volumes_root: Sequence[Path] = ()) -> None:
    """Refuse, before anything is read or written, a study whose volume lies outside the
    dataset's folders (``voxqa.dataset.paths.VolumeRoots``) or whose frame count is past
    ``max_frames()`` (nothing is allocated for a billion frames a studies.jsonl claims)."""
    manifest = folder / MANIFEST
    roots = VolumeRoots.of(folder, read_json(manifest) if manifest.is_file() else {}, volumes_root)
    limit = max_frames()
    for s in studies:
        where = f"{folder / STUDIES}: study {s.id!r}"
        if s.volume is not None:
            roots.check(s.volume.path, where)
        if (s.frame_count or 0) > limit:
            raise InputError(f"{where}: {s.frame_count} frames, more than the {limit} voxqa accepts "
                             f"({MAX_FRAMES_ENV} raises it)")


def _previous_render(path: Path) -> dict[str, Any]:
    """The last render.json (its settings decide which PNGs are kept); a file that is not one
    (a planted link is refused) means no PNG is trusted: all are drawn again."""
    if not path.is_file():
        return {}
    try:
        previous = orjson.loads(read_own(path))
    except orjson.JSONDecodeError:
        log.info("%s is not JSON: every frame is drawn again", path)
        return {}
    return previous if isinstance(previous, dict) else {}


def _read_progress(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """study id -> record of the studies an interrupted render with these settings finished."""
    if not path.is_file():
        return {}
    lines = read_own(path).split(b"\n")
    try:
        header = orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        return {}
    if header.get("settings_key") != key:
        return {}
    done: dict[str, dict[str, Any]] = {}
    for line in lines[1:]:
        try:
            row = orjson.loads(line)
            done[row["study"]] = row["record"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # a torn last line (killed mid-write): that study is redone
    return done


def _journaled(record: Any, sid: str, frames: list[int]) -> TypeGuard[dict[str, Any]]:
    """Whether a journal record is the finished render of study ``sid``'s ``frames`` as
    ``render_study`` writes it; anything else (the journal came with the dataset) is redrawn."""
    return (isinstance(record, dict)
            and record.get("frames") == {str(k): f"{FRAMES_DIR}/{sid}/{k:04d}.png" for k in frames}
            and all(isinstance(size := record.get(key), list) and len(size) == 2
                    and all(type(v) is int and v > 0 for v in size) for key in ("frame_size", "image_size")))


def _with_images(item: Item, record: dict[str, Any] | None, volume_frames: list[int]) -> Item:
    """The item with its images and evidence image boxes (unchanged if not rendered)."""
    if record is None:
        return item
    src = tuple(record["frame_size"])
    dst = tuple(record["image_size"])
    shown = item.frames if item.level == "frame" else volume_frames
    images = [ImageRef(path=record["frames"][str(k)], frame=k, width=dst[0], height=dst[1]) for k in shown]
    evidence = [e.model_copy(update={"image_box": map_box(e.box, src, dst)}) for e in item.evidence]
    return item.model_copy(update={"images": images, "evidence": evidence})
