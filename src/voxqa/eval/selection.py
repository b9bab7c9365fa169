"""Checks on what `voxqa eval` is asked to answer, before anything is written.

``--split`` and ``--tasks`` are checked against what the dataset has (listing the valid
values), and an empty selection is explained (nothing rendered; the one study in another
split; no item of those tasks in that split) instead of starting a run of zero items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from voxqa.dataset.splits import SPLITS
from voxqa.errors import VoxqaError
from voxqa.schema import Item


class SelectionError(VoxqaError, ValueError):
    """The split / task filter selects nothing, or names what the dataset does not have."""


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))


def check_selection(folder: Path, every: Sequence[Item], chosen: Sequence[Item],
                    split: str | None, tasks: Sequence[str] | None) -> None:
    """Raise SelectionError (one line, with what to do) unless the selection is valid and
    non-empty."""
    if split is not None and split not in SPLITS:
        raise SelectionError(f"--split {split!r} is not a split; use one of {', '.join(SPLITS)} or all")
    have_tasks = sorted({it.task for it in every})
    if tasks:
        unknown = [t for t in tasks if t not in have_tasks]
        if unknown:
            raise SelectionError(
                f"--tasks {','.join(unknown)}: not a task of {folder}; its tasks are "
                f"{', '.join(have_tasks) or '(none: the dataset has no items)'}")
    if chosen:
        return
    if not every:
        raise SelectionError(f"{folder} has no items; nothing to evaluate")
    if not any(it.images for it in every):
        raise SelectionError(f"no item of {folder} has images: run `voxqa render {folder}` first")
    in_split = [it for it in every if split is None or it.split == split]
    if not in_split:
        studies = sorted({(it.study_id, it.split) for it in every})
        by_split = Counter(sp for _, sp in studies)
        if len(by_split) == 1:
            names = ", ".join(sid for sid, _ in studies) if len(studies) <= 3 else f"{len(studies)} studies"
            why = f"its studies ({names}) are all in split {studies[0][1]}"
        else:
            why = f"its studies are in splits {_counts(by_split)}"
        raise SelectionError(f"no item of {folder} is in split {split}: {why}; use "
                             + " or ".join(f"--split {s}" for s in [*sorted(by_split), "all"]))
    in_tasks = [it for it in in_split if not tasks or it.task in tasks]
    where = "the dataset" if split is None else f"split {split}"
    if not in_tasks:
        raise SelectionError(f"no item of tasks {','.join(tasks or [])} in {where}; its tasks there: "
                             f"{_counts(Counter(it.task for it in in_split))}")
    raise SelectionError(f"none of the {len(in_tasks)} selected items in {where} has images: "
                         f"run `voxqa render {folder}` (again)")
