"""Which frames a volume-level item shows: one rule for build, render, audit and eval.

The set depends on the volume's frame count only, never on its annotations: the ``Frame k:``
labels are prompt text, so adding evidence frames would tell a normal volume from an
abnormal one. The build asks volume-level questions only when their evidence frames are in
the set; render draws the set; the audit reads the set as prompt text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

from voxqa.errors import InputError
from voxqa.schema import Study

#: Frames (slices) per study accepted from annotations and dataset files: a CSV slice index or
#: box frame at or past it is a counted drop, a studies.jsonl frame count past it is refused.
#: Checked before anything is allocated per frame (one CSV row claiming slice 1,000,000,000 made
#: a build allocate gigabytes). The environment variable of the same name raises it.
MAX_FRAMES = 10_000
MAX_FRAMES_ENV = "VOXQA_MAX_FRAMES"


def max_frames() -> int:
    """``MAX_FRAMES``, or ``VOXQA_MAX_FRAMES`` when set (a positive whole number)."""
    raw = os.environ.get(MAX_FRAMES_ENV)
    if raw is None:
        return MAX_FRAMES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{MAX_FRAMES_ENV}={raw!r}: must be a positive whole number")
    return value

#: Frames a volume-level item shows by default (``voxqa build`` and ``voxqa render``).
DEFAULT_VOLUME_FRAMES = 16
VOLUME_FRAMES_RULE = (
    "a volume-level item shows every frame of its volume if it has at most `cap` frames (`cap` "
    "null: always every frame), else "
    "`cap` evenly spaced frames round(i * (n - 1) / (cap - 1)), i = 0..cap-1; the set depends "
    "only on the volume's frame count n, never on its annotations. Volume-level questions whose "
    "evidence frames are not all shown are not asked (build_report: question_not_asked). "
    "Box-only studies (no volume; frame count only a lower bound from the annotations) are not "
    "rendered and not filtered."
)


@dataclass(frozen=True)
class FramePolicy:
    """The volume frame set: all frames up to ``cap`` (None: no cap), else ``cap`` evenly
    spaced ones."""

    cap: int | None = DEFAULT_VOLUME_FRAMES

    def frames(self, frame_count: int | None) -> list[int]:
        """The frames every volume-level item of a volume with ``frame_count`` frames shows."""
        n = frame_count or 0
        if self.cap is None or n <= self.cap:
            return list(range(n))
        return sorted({round(i * (n - 1) / max(self.cap - 1, 1)) for i in range(self.cap)})

    def shown(self, study: Study) -> set[int] | None:
        """``frames`` of a study whose frame count comes from its volume; None for box-only
        studies, whose frame count is a lower bound derived from the annotations themselves
        (so no rule may use it) and which have no volume to render."""
        if study.frame_count_source != "volume":
            return None
        return set(self.frames(study.frame_count))

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``volume_frames`` entry."""
        return {"cap": self.cap, "rule": VOLUME_FRAMES_RULE}


#: The policy of a default build and render.
DEFAULT_FRAMES = FramePolicy()
#: Every frame: fastMRI+ builds (knee slabs of ~36 slices whose boxes span a few slices, so no
#: sparser set shows the evidence of most annotated volumes; SGMRI-VQA shows every slice too).
ALL_FRAMES = FramePolicy(None)


def recorded_policy(manifest: Mapping[str, Any]) -> FramePolicy:
    """The policy a dataset was built with (its manifest's ``volume_frames``), which render and
    the audit of unrendered items follow; datasets that record none use the default."""
    entry = manifest.get("volume_frames")
    return FramePolicy(entry["cap"]) if isinstance(entry, Mapping) and "cap" in entry else DEFAULT_FRAMES
