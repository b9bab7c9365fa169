"""Build orchestration shared by every source: studies -> splits -> items -> dataset folder."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from voxqa import __version__
from voxqa.dataset import sha256_file, write_dataset
from voxqa.errors import BuildError
from voxqa.instances import LINK_RULE
from voxqa.report import BuildReport
from voxqa.schema import Item, Study
from voxqa.sources import fastmri_plus
from voxqa.splits import assign_splits
from voxqa.tasks import FAMILIES, Context, StudyView

BOX_CONVENTION = {
    "format": "pixel_xyxy",
    "max_exclusive": True,
    "origin": "top-left pixel corner of the stored frame",
    "frames": "0-based indices along the study's view_axis",
}


@contextmanager
def no_gc() -> Iterator[None]:
    """Builds allocate many small acyclic objects; cyclic GC passes only cost time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def generate_items(
    studies: Sequence[Study], ctx: Context, families: Sequence[str] | None = None
) -> list[Item]:
    """Run the task families in registry order; ids must come out unique."""
    views = [StudyView(s, ctx.is_pathology) for s in studies]
    items: list[Item] = []
    names = list(families or FAMILIES)
    with Progress(transient=True, disable=not Console(stderr=True).is_terminal) as progress:
        task = progress.add_task("generating items", total=len(names))
        for name in names:
            items += FAMILIES[name].generate(views, ctx)
            progress.advance(task)
    items.sort(key=lambda it: (it.study_id, it.task, it.subtask, it.level, it.id))
    dupes = [i for i, n in Counter(it.id for it in items).items() if n > 1]
    if dupes:
        raise BuildError(f"internal error: duplicate item ids, e.g. {dupes[:3]}")
    return items


def vocabularies(studies: Sequence[Study], is_pathology) -> tuple[dict, dict]:
    """Per anatomy: labels that are abnormalities, and labels that have boxes."""
    pathology: dict[str, set[str]] = {}
    boxed: dict[str, set[str]] = {}
    for s in studies:
        for f in s.findings:
            if is_pathology(f.label):
                pathology.setdefault(s.anatomy, set()).add(f.label)
            if not f.study_level:
                boxed.setdefault(s.anatomy, set()).add(f.label)
    return (
        {a: sorted(v) for a, v in sorted(pathology.items())},
        {a: sorted(v) for a, v in sorted(boxed.items())},
    )


def counts(studies: Sequence[Study], items: Sequence[Item]) -> dict[str, Any]:
    def tally(key) -> dict[str, int]:
        return dict(sorted(Counter(key(x) for x in items).items()))

    return {
        "studies": len(studies),
        "studies_by_split": dict(sorted(Counter(str(s.split) for s in studies).items())),
        "studies_by_anatomy": dict(sorted(Counter(s.anatomy for s in studies).items())),
        "items": len(items),
        "items_by_split": tally(lambda it: it.split),
        "items_by_task": tally(lambda it: it.task),
        "items_by_template": tally(lambda it: it.template),
    }


def build_fastmri_plus(
    pairs: list[tuple[Path, Path]],
    out: Path,
    *,
    volumes: Path | None = None,
    anatomy: str | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    strict: bool = False,
    name: str = "fastmri-plus",
) -> dict[str, Any]:
    """Build a dataset folder from fastMRI+ CSVs; returns the manifest."""
    with no_gc():
        return _build_fastmri_plus(pairs, out, volumes, anatomy, seed, fractions, strict, name)


def _build_fastmri_plus(
    pairs: list[tuple[Path, Path]],
    out: Path,
    volumes: Path | None,
    anatomy: str | None,
    seed: int,
    fractions: tuple[float, float, float],
    strict: bool,
    name: str,
) -> dict[str, Any]:
    report = BuildReport(strict=strict)
    studies = fastmri_plus.load_studies(pairs, report, volumes=volumes, anatomy=anatomy)
    assign_splits(studies, seed, fractions)
    pathology_vocab, boxed_vocab = vocabularies(studies, fastmri_plus.is_pathology)
    ctx = Context(
        seed=seed,
        is_pathology=fastmri_plus.is_pathology,
        pathology_vocab=pathology_vocab,
        boxed_vocab=boxed_vocab,
    )
    items = generate_items(studies, ctx)
    sizes = Counter((s.anatomy, s.frame_size, s.frame_size_source) for s in studies)
    manifest = {
        "name": name,
        "voxqa_version": __version__,
        "command": "voxqa build fastmri-plus",
        "options": {
            "annotations": [str(a) for a, _ in pairs],
            "file_lists": [str(f) for _, f in pairs],
            "volumes": str(volumes) if volumes else None,
            "anatomy": anatomy,
            "seed": seed,
            "split_fractions": list(fractions),
            "strict": strict,
        },
        "seed": seed,
        "source": fastmri_plus.NAME,
        "source_files": [
            {"path": str(p), "role": role, "sha256": sha256_file(p)}
            for a, f in pairs
            for p, role in ((a, "annotations"), (f, "file_list"))
        ],
        "box_convention": BOX_CONVENTION
        | {"frame_orientation": "reconstruction_rss flipped up/down (img[:, ::-1, :]), as fastMRI+"},
        "frame_sizes": [
            {"anatomy": a, "width": w, "height": h, "source": src, "studies": n}
            for (a, (w, h), src), n in sorted(sizes.items())
        ],
        "default_frame_size": {a: list(s) for a, s in fastmri_plus.DEFAULT_FRAME_SIZE.items()},
        "instance_linking": LINK_RULE,
        "splits": {
            "unit": "patient_id (fastMRI+: the volume)",
            "fractions": dict(zip(("train", "val", "test"), fractions)),
            "rule": "sha256('split', seed, patient_id) -> [0,1) against cumulative fractions",
        },
        "vocabulary": {"pathology": pathology_vocab, "boxed": boxed_vocab},
        "non_pathology_labels": sorted(fastmri_plus.NON_PATHOLOGY),
        "counts": counts(studies, items),
        "item_id_format": "study_id:subtask:(v|f<frame>):label-slug",
    }
    write_dataset(out, manifest, studies, items, report.to_dict())
    return manifest
