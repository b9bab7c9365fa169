"""`voxqa eval`: run a model over a rendered dataset, with results that survive crashes.

Design (the run folder is the unit of truth):

* ``run.json`` holds the run's identity: dataset hash (items.jsonl sha256), model identity,
  prompt mode, control, box profile (and, for a profile measured on the padded square, how its
  images are padded: ``voxqa.padding``), split, task filter, limit, seed. A run folder whose
  identity differs is refused, so two configurations never mix in one file.
* ``predictions.jsonl`` gets one line per answered item, written as one ``write`` of a whole
  line and flushed to the OS at once, fsynced in batches. A kill -9 can lose only in-flight
  requests and at most a torn last line, which the next start cuts off. The last line of an item wins; a re-run
  skips items whose last line is ``ok`` and retries ``failed`` ones, so nothing is duplicated.
* Before the run folder is touched, every image of the selection is checked to lie inside
  the dataset and to be a PNG, and the model's ``preflight`` (if any) checks the server. A
  ``ServerConfigError`` during the run (key refused, model not found) stops it; a run folder
  this start created without a single answer is removed again.
* One eval at a time writes a run folder: it holds ``run.lock`` (``voxqa.fileio.held_lock``,
  released by the kernel however the process ends); a second start on the folder is refused
  (``RunInUse``), naming the holder.
* Error texts (and raw replies) are stored through ``voxqa.eval.redact``: no API key.
* Every answer, baselines included, is parsed by ``voxqa.eval.parse`` into the item's answer
  type (boxes in pixels of the rendered image) and stored next to the raw text. A reply the
  model stopped at its length cap (``TruncatedReply``) is stored with ``"truncated": true``
  and a parse error that says so, never read as its answer.
* Before run.json is written the model may size its reply cap from the selection's ideal
  replies (``ModelAdapter.size_replies``), so the identity states it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from PIL import Image

from voxqa import __version__
from voxqa.boxes.profiles import Profile, get_profile
from voxqa.padding import padding_record
from voxqa.dataset.folder import ITEMS, read_items, read_studies
from voxqa.dataset.paths import dataset_png, inside, resolve_once
from voxqa.errors import InputError, VoxqaError
from voxqa.eval.controls import CONTROLS, mirror_item, mirrored_png, shuffled_donors
from voxqa.eval.models.base import ModelAdapter, ServerConfigError, TruncatedReply
from voxqa.eval.redact import env_secrets, redact
from voxqa.eval.parse import parse_answer
from voxqa.eval.prompts import MODES, Prompt, RegionIsTheAnswer, build_prompt, check_mode, region_refusal
from voxqa.eval.selection import check_selection
from voxqa.fileio import (JsonlAppender, LockHeld, WriteFailed, append_bytes, atomic_write, held_lock,
                          read_own, truncate_own, write_bytes, write_json)
from voxqa.progress import SILENT, Progress, tracking
from voxqa.render import map_box
from voxqa.schema import Item, Study

log = logging.getLogger(__name__)

RUN = "run.json"
PREDICTIONS = "predictions.jsonl"
LOCK = "run.lock"  # held while an eval writes the folder
CONTROLS_DIR = "controls"  # the control images a run made (blank, mirrored)
FLUSH_EVERY = 16  # lines between fsyncs
FLUSH_SECONDS = 2.0
INLINE_PARSE_CHARS = 8192  # replies up to this long are parsed on the event loop (a few ms at most)


@dataclass(frozen=True)
class RunConfig:
    dataset: Path
    out: Path
    split: str | None = "test"
    mode: str = "minimal"
    control: str = "none"
    profile: str = "pixel"
    tasks: tuple[str, ...] | None = None
    limit: int | None = None
    concurrency: int = 4
    seed: int = 0


class RunMismatch(VoxqaError, ValueError):
    """The run folder belongs to another configuration."""


class RunInUse(VoxqaError):
    """Another eval is writing the run folder: two would ask every item twice."""


def dataset_hash(folder: Path) -> str:
    return hashlib.sha256((folder / ITEMS).read_bytes()).hexdigest()


def select(items: Sequence[Item], cfg: RunConfig) -> list[Item]:
    """Items of the split and tasks asked for, rendered, in file order, up to ``limit``; in
    ``oracle_region`` mode without the items whose answer is the region (``region_refusal``),
    so its items are the other modes' less those."""
    chosen = [
        it for it in items
        if (cfg.split is None or it.split == cfg.split)
        and (cfg.tasks is None or it.task in cfg.tasks)
        and it.images
    ]
    chosen = chosen[: cfg.limit] if cfg.limit is not None else chosen
    return [it for it in chosen if not region_refusal(it)] if cfg.mode == "oracle_region" else chosen


def oracle_region_refusals(items: Sequence[Item], cfg: RunConfig) -> dict[str, Any]:
    """The rendered items of the split and tasks that ``oracle_region`` mode leaves out (their
    answer is the region), counted per template with the reason; raises
    ``RegionIsTheAnswer`` when it leaves out every one of them."""
    asked = select(items, replace(cfg, mode="minimal"))
    refused = [it for it in asked if region_refusal(it)]
    if asked and len(refused) == len(asked):
        raise RegionIsTheAnswer(
            f"--mode oracle_region: every selected item's answer is the region ({', '.join(sorted({it.task for it in refused}))}); "
            "choose other --tasks, or another mode")
    templates: dict[str, int] = {}
    for it in refused:
        templates[it.template] = templates.get(it.template, 0) + 1
    return {"count": len(refused), "templates": dict(sorted(templates.items())),
            "reason": "the region is the answer (a location, or a text quoting the findings' boxes)"}


def identity(cfg: RunConfig, model: ModelAdapter) -> dict[str, Any]:
    return {
        "dataset": str(cfg.dataset.resolve()),
        "dataset_sha256": dataset_hash(cfg.dataset),
        "model": model.identity(),
        "mode": cfg.mode,
        "control": cfg.control,
        "profile": cfg.profile,
        **({"image_padding": pad} if (pad := padding_record(get_profile(cfg.profile))) else {}),
        "split": cfg.split,
        "tasks": list(cfg.tasks) if cfg.tasks else None,
        "limit": cfg.limit,
        "seed": cfg.seed,
    }


CORRUPT = "predictions.corrupt.jsonl"  # lines set aside by a resumed run (not records)


def read_predictions(path: Path, set_aside: bool = False) -> dict[str, dict[str, Any]]:
    """item_id -> last record; a torn last line (killed mid-write) is cut off the file.

    Any other line that is not a record is an error naming the file and line, or, with
    ``set_aside`` (a resumed run), moved to ``predictions.corrupt.jsonl`` so its item is asked
    again."""
    if not path.is_file():
        return {}
    raw = read_own(path)  # a link planted here is refused, never read or cut through
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        truncate_own(path, end)
    records: dict[str, dict[str, Any]] = {}
    kept: list[bytes] = []
    bad: list[bytes] = []
    for n, line in enumerate(raw[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
            item_id = rec["item_id"]
            if not isinstance(item_id, str):
                raise TypeError("item_id is not a string")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            if not set_aside:
                raise InputError(
                    f"{path}:{n}: not a prediction record ({type(exc).__name__}: {exc}); "
                    f"re-run `voxqa eval` with the same --out to set the line aside and ask its item again"
                ) from None
            bad.append(line)
            continue
        records[item_id] = rec
        kept.append(line)
    if bad:
        log.info("%s: %d lines that are not records set aside in %s", path, len(bad), CORRUPT)
        append_bytes(path.parent / CORRUPT, b"".join(b + b"\n" for b in bad))
        write_bytes(path, b"".join(k + b"\n" for k in kept))
    return records


def _control_images(cfg: RunConfig, item: Item, by_study: dict[str, list[str]], donors: Mapping[str, str],
                    folder: Path) -> list[str] | None:
    """PNG paths replacing the item's images under a control, or None for the real ones."""
    assert item.images
    if cfg.control == "none":
        return None
    if cfg.control == "mirrored":
        return [str(mirrored_png(inside(folder, im.path, f"item {item.id}"), cfg.out))
                for im in item.images]
    if cfg.control == "blank":
        inside(cfg.out, CONTROLS_DIR, "run folder").mkdir(exist_ok=True)
        paths = []
        for im in item.images:  # inside: a link planted in the run folder is not shown or written through
            p = inside(cfg.out, f"{CONTROLS_DIR}/blank_{im.width}x{im.height}.png", "blank control")
            if not p.is_file():
                with atomic_write(p) as fh:
                    Image.fromarray(np.zeros((im.height, im.width), np.uint8), mode="L").save(fh, format="PNG")
            paths.append(str(p))
        return paths
    # shuffled: the same number of frames from a study of another patient
    pool = by_study[donors[item.study_id]]
    return [str(inside(folder, pool[i % len(pool)], f"item {item.id} (shuffled control)"))
            for i in range(len(item.images))]


def check_expressible(profile: Profile, items: list[Item]) -> None:
    """Refuse a run whose items ask for answers the profile's family cannot write (Molmo has
    no 3D boxes, M3D no 2D ones): a clear error before any request, not a column of failures."""
    bad = Counter(it.template for it in items if it.answer.type in profile.cannot)
    if bad:
        kinds = ", ".join(sorted({it.answer.type for it in items if it.answer.type in profile.cannot}))
        raise InputError(f"profile {profile.name} cannot express {kinds} answers: {sum(bad.values())} selected "
                         f"items ({', '.join(sorted(bad))}); leave them out with --tasks")


def volume_box_reader(profile: Profile, study: Study, item: Item) -> Callable[[list], dict[str, Any]] | None:
    """For M3D-style profiles, the map from a 3D box in fractions of the model's input grid
    (``render --recipe m3d``) to frames and a box on the item's rendered image."""
    if profile.box3d != "m3d" or study.frame_count is None:
        return None
    from voxqa.model_inputs import from_m3d_normalized, study_transform

    shown = (item.images[0].width, item.images[0].height) if item.images else study.frame_size

    def read(values: list) -> dict[str, Any]:
        # the grid M3D was shown: with a volume, its foreground crop (read once per study)
        b = from_m3d_normalized(values, study_transform(study, "m3d"))
        return {"frame_start": b.frame_start, "frame_end": b.frame_end,
                "box": list(map_box(b.box, study.frame_size, shown))}

    return read


async def run_eval(cfg: RunConfig, model: ModelAdapter, progress: Progress = SILENT) -> dict[str, Any]:
    """Answer every selected item not yet answered ``ok``; returns counts. Each answered item
    advances ``progress``. Image paths are resolved once per run."""
    with resolve_once(), ExitStack() as held:
        return await _run_eval(cfg, model, progress, held)


async def _run_eval(cfg: RunConfig, model: ModelAdapter, progress: Progress, held: ExitStack) -> dict[str, Any]:
    if cfg.mode not in MODES:
        raise InputError(f"unknown mode {cfg.mode!r}; known: {', '.join(MODES)}")
    if cfg.control not in CONTROLS:
        raise InputError(f"unknown control {cfg.control!r}; known: {', '.join(CONTROLS)}")
    profile = get_profile(cfg.profile)
    folder = cfg.dataset.resolve()
    every = read_items(folder)
    items = select(every, cfg)
    if not items and cfg.mode == "oracle_region":
        oracle_region_refusals(every, cfg)  # explains a selection the mode refused wholly
    check_selection(folder, every, items, cfg.split, cfg.tasks)  # before anything is written
    check_expressible(profile, items)
    check_mode(items, cfg.mode)  # guided without guidance, GT region without regions: refused
    studies = {s.id: s for s in read_studies(folder)}
    frame_sizes = {sid: s.frame_size for sid, s in studies.items()}
    by_study = _frame_sets(every)
    donors = shuffled_donors({sid: studies[sid].patient_id for sid in by_study}) if cfg.control == "shuffled" else {}
    _check_images(folder, items, by_study if cfg.control == "shuffled" else {})
    await model.preflight()
    model.size_replies(build_prompt(it, folder, frame_sizes[it.study_id], profile, cfg.mode).target
                       for it in items)  # lazily: only an adapter with a reply cap reads them
    secrets = env_secrets(model.identity().get("api_key_env"))

    created = not cfg.out.exists()
    cfg.out.mkdir(parents=True, exist_ok=True)
    _lock_run(cfg.out, held)
    _claim_run(cfg, identity(cfg, model))
    done = read_predictions(cfg.out / PREDICTIONS, set_aside=True)
    todo = [it for it in items if done.get(it.id, {}).get("status") != "ok"]
    log.info("%s: %d of %d items to answer", cfg.out, len(todo), len(items))
    writer = JsonlAppender(cfg.out / PREDICTIONS, sync_every=FLUSH_EVERY, sync_seconds=FLUSH_SECONDS)
    gate = asyncio.Semaphore(max(1, cfg.concurrency))
    counts = {"items": len(items), "already_done": len(items) - len(todo), "ok": 0, "failed": 0}

    async def one(item: Item) -> None:
        shown = mirror_item(item, frame_sizes[item.study_id]) if cfg.control == "mirrored" else item
        prompt: Prompt = build_prompt(shown, folder, frame_sizes[item.study_id], profile, cfg.mode,
                                      _control_images(cfg, item, by_study, donors, folder), cfg.out)
        t0 = time.monotonic()
        cut: TruncatedReply | None = None
        async with gate:
            try:
                raw, error = await model.answer(prompt, shown), None
            except ServerConfigError:  # the server cannot serve this run at all: stop it
                raise
            except TruncatedReply as exc:  # hit the reply cap: kept, but not read as an answer
                raw, error, cut = exc.text, None, exc
            except Exception as exc:  # any other failure is this item's: recorded, asked again on resume
                raw, error = None, redact(f"{type(exc).__name__}: {exc}", secrets)
        if error is None and not isinstance(raw, str):  # e.g. a JSON number or list as the content
            raw, error = None, f"the reply is a {type(raw).__name__}, not text"
        if raw is not None:
            raw = redact(raw, secrets)
        record: dict[str, Any] = {"item_id": item.id, "status": "failed" if error else "ok",
                                  "raw": raw, "parsed": None, "parse_ok": False, "parse_error": None,
                                  "error": error, "seconds": round(time.monotonic() - t0, 3)}
        if cut is not None:
            record.update(truncated=True, parse_error=f"truncated: the reply was cut off at max_new_tokens="
                          f"{cut.limit} before it ended; not read as the model's answer")
        elif raw is not None:
            parse = partial(parse_answer, raw, shown, cfg.profile, frame_size=frame_sizes[item.study_id],
                            volume_box=volume_box_reader(profile, studies[item.study_id], item))
            # a long reply is read on a worker thread: the requests in flight go on meanwhile
            parsed = await asyncio.to_thread(parse) if len(raw) > INLINE_PARSE_CHARS else parse()
            record.update(parsed=parsed.value, parse_ok=parsed.ok, parse_error=parsed.error)
            if parsed.truncated:  # only the reply's first MAX_REPLY_CHARS were read
                record["parse_truncated"] = True
        writer.write(record)
        counts[record["status"]] += 1

    try:
        with tracking(progress, f"{model.spec} on {len(todo)} items", len(todo)) as advance:

            async def tracked(item: Item) -> None:
                await one(item)
                advance()

            await _all_or_first_error([tracked(it) for it in todo])
    except ServerConfigError:
        writer.close()
        if created and counts["ok"] == 0:  # nothing worth keeping: no half-written run folder
            _remove_run(cfg.out)
        raise
    except WriteFailed as exc:  # disk full: every line written so far is whole, so resume works
        answered = counts["already_done"] + counts["ok"] + counts["failed"]
        raise WriteFailed(f"{exc}; eval stopped with {answered} of {len(items)} items recorded in "
                          f"{cfg.out / PREDICTIONS}: free space and run the same command to resume") from exc
    finally:
        if not writer.closed:
            writer.close()
        await model.close()
    return counts


def _frame_sets(every: Sequence[Item]) -> dict[str, list[str]]:
    """Each study's frame set (a volume-level item's images, else the first item's), which the
    shuffled control shows for another study."""
    by_study: dict[str, list[str]] = {}
    for it in sorted(every, key=lambda it: it.level != "volume"):
        if it.images:
            by_study.setdefault(it.study_id, [im.path for im in it.images])
    return by_study


def _check_images(folder: Path, items: Sequence[Item], shown_for_others: Mapping[str, list[str]]) -> None:
    """Containment and PNG signature of every image a request may show (the items' own, and the
    frame sets the shuffled control shows instead), before anything is sent or written."""
    to_check = [(im.path, f"item {it.id}") for it in items for im in it.images or []]
    to_check += [(path, f"study {sid} (shuffled control)") for sid, paths in shown_for_others.items()
                 for path in paths]
    checked: set[str] = set()
    for path, what in to_check:
        if path not in checked:
            dataset_png(folder, path, what)
            checked.add(path)


def _lock_run(out: Path, held: ExitStack) -> None:
    """Hold the run folder's lock until ``held`` closes, or refuse: another eval writes it."""
    try:
        held.enter_context(held_lock(out / LOCK))
    except LockHeld as exc:
        raise RunInUse(f"{out} is in use by another voxqa eval ({exc.holder}); wait for it to end "
                       "or use another --out") from None
    except OSError as exc:  # e.g. a symlink planted at run.lock
        raise RunInUse(f"{out / LOCK}: cannot lock the run folder ({exc.strerror})") from None


def _claim_run(cfg: RunConfig, ident: dict[str, Any]) -> None:
    """Write run.json in a new run folder; a resumed run must have the same identity."""
    run_file = cfg.out / RUN
    if run_file.is_file():
        try:
            old = orjson.loads(read_own(run_file))
        except orjson.JSONDecodeError:
            raise RunMismatch(f"{run_file}: not JSON, so not a run this --out can resume; use a new --out") from None
        if not isinstance(old, dict) or old.get("identity") != ident:
            raise RunMismatch(f"{cfg.out} holds a different run ({RUN} identity differs); use a new --out")
    else:
        write_json(run_file, {"identity": ident, "voxqa_version": __version__,
                              "config": {k: str(v) for k, v in asdict(cfg).items()}}, newline=False)


async def _all_or_first_error(requests: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run every request; the first error (a ServerConfigError) cancels the others and is raised,
    and so does an interruption (Ctrl-C, SIGTERM): no request outlives the run's predictions file."""
    tasks = [asyncio.ensure_future(r) for r in requests]
    if not tasks:
        return
    try:
        finished, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [exc for t in finished if (exc := t.exception()) is not None]  # each one retrieved
    if errors:
        raise errors[0]


def _remove_run(out: Path) -> None:
    """Remove what one start of ``run_eval`` wrote to a fresh run folder, then the folder."""
    import shutil

    for name in (RUN, PREDICTIONS, LOCK):
        (out / name).unlink(missing_ok=True)
    if (out / CONTROLS_DIR).is_dir():
        shutil.rmtree(out / CONTROLS_DIR)
    try:
        out.rmdir()
    except OSError:
        pass


def check_one_dataset(runs: Sequence[Path]) -> None:
    """Refuse runs of different datasets side by side (run.json's ``dataset_sha256``); a missing
    or broken run.json is left for the caller's own reading of the run to report."""
    seen: dict[str, list[str]] = {}
    for run in runs:
        try:
            ident = orjson.loads((run / RUN).read_bytes())["identity"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        seen.setdefault(ident.get("dataset_sha256", "?"), []).append(str(run))
    if len(seen) > 1:
        groups = "; ".join(f"{', '.join(r)} (dataset {h[:12]})" for h, r in seen.items())
        raise InputError(f"these runs are of {len(seen)} different datasets: {groups}; compare runs of one dataset")
