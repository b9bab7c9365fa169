"""The source protocol: what ``voxqa.build.run_build`` needs from one kind of input.

A source is one build's inputs (file paths, options): it loads its studies as views (with
any per-study geometry or facts its families read), names the question families asked of
them, and adds its own keys to the manifest. Everything else (splits, context, items,
the common manifest, the audit, the staged write) is ``run_build``'s, the same for every
source.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.frame_policy import FramePolicy
from voxqa.progress import SILENT, Progress
from voxqa.schema import Item, Study
from voxqa.tasks.base import BuildContext, StudyView, TaskFamily


class Source(Protocol):
    """One kind of input a dataset is built from (registered in ``voxqa.sources.SOURCES``)."""

    #: the manifest's ``source`` (also ``Study.source``)
    name: str
    #: ``voxqa build COMMAND`` (the registry key; the manifest's ``command``)
    command: str
    #: what a split keeps together (the manifest's ``splits.unit``)
    split_unit: str
    #: the frames volume-level items show
    frames: FramePolicy

    def is_pathology(self, label: str) -> bool:
        """Whether a label is an abnormality (detection and classification ask about those)."""
        ...

    def load(self, report: BuildReport, progress: Progress = SILENT) -> list[StudyView]:
        """Every usable study, as a view; repairs and drops are counted in ``report``, long loads
        advance ``progress``. Raises BuildError when no study can be built."""
        ...

    def families(self) -> Sequence[TaskFamily]:
        """The question families asked of this source's studies."""
        ...

    def manifest(self, ctx: BuildContext, studies: Sequence[Study], items: Sequence[Item]) -> dict[str, Any]:
        """This source's manifest keys. ``options`` and ``box_convention`` add to the common
        ones."""
        ...

    def write_extra(self, out: Path, studies: Sequence[Study], items: Sequence[Item]) -> None:
        """Files beside the dataset's own (written after it is in place); most write none."""
        ...
