"""Captioning: a grounded summary listing each finding with its frames and boxes.

The reference caption is generated from the findings, so it is exactly as complete as the
annotations: one sentence per label with its instance count, frame ranges and boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxqa.schema import Item
from voxqa.tasks.base import BuildContext, StudyView, cite, frames_text, make_item

TASK = "captioning"


class Captioning:
    name = TASK

    def generate(self, studies: Sequence[StudyView], ctx: BuildContext) -> list[Item]:
        out = []
        for v in studies:
            if ctx.shows(v, v.evidence):
                out.append(self._summary(v))
            else:  # the rendered frame set would miss boxes the caption names
                ctx.skip(f"{TASK}/grounded_summary/volume")
        return out

    def _summary(self, v: StudyView) -> Item:
        sentences = []
        for label in v.boxed_labels:
            inst = v.instances_of(label)
            ev = v.evidence_for(label=label)
            frames = frames_text(sorted({e.frame for e in ev}))
            sentences.append(
                f"{label}: {len(inst)} lesion(s) on frames {frames}, boxes {cite(ev)}."
            )
        for label in v.study_labels:
            sentences.append(f"{label}: study-level finding (no box).")
        caption = " ".join(sentences) if sentences else "No findings annotated."
        return make_item(
            v, task=TASK, subtask="grounded_summary", frame=None, label=None,
            question="Describe all findings in this volume, giving the frames and bounding "
            "boxes of each.",
            answer={"type": "text", "value": caption}, answer_text=caption,
            evidence=v.evidence,
            reasoning=f"The volume has {len(v.evidence)} annotated box(es) of "
            f"{len(v.boxed_labels)} finding type(s) and {len(v.study_labels)} study-level "
            f"label(s). {caption}",
            chance=None,
        )
