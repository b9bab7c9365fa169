"""Counting: distinct lesion instances of a finding, and distinct finding types.

Counts are of 3D instances (boxes linked across adjacent frames, see voxqa.boxes.instances), never
of boxes. Zero answers come from reviewed volumes without the finding; per (split, label)
there are as many zeros as the most frequent non-zero count, so "0" is never absent and at
best ties the most common count as a blind guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from voxqa.schema import Item
from voxqa.tasks.base import (
    BuildContext,
    StudyView,
    cite,
    frames_text,
    group_by,
    make_item,
    rng,
)

TASK = "counting"


def _number(n: int) -> dict:
    return {"type": "number", "value": n}


class Counting:
    name = TASK

    def generate(self, studies: Sequence[StudyView], ctx: BuildContext) -> list[Item]:
        out: list[Item] = []
        for (split, anatomy), views in group_by(
            studies, lambda s: (s.split, s.study.anatomy)
        ).items():
            for label in ctx.boxed_vocab.get(str(anatomy), []):
                out += self._instances(views, ctx, label, split)
            for v in views:
                if ctx.shows(v, v.pathology_evidence):
                    out.append(self._types(v, ctx))
                else:
                    ctx.skip(f"{TASK}/finding_types/volume")
        return out

    def _instances(
        self, views: list[StudyView], ctx: BuildContext, label: str, split: object
    ) -> list[Item]:
        with_label = [v for v in views if label in v.boxed_labels]
        for v in [v for v in with_label if not ctx.shows(v, v.evidence_for(label=label))]:
            ctx.skip(f"{TASK}/instances/volume")  # the rendered frames would miss a lesion
            with_label.remove(v)
        without = [v for v in views if label not in v.labels]
        if not with_label:
            return []
        mode = Counter(len(v.instances_of(label)) for v in with_label).most_common(1)[0][1]
        zeros = rng(ctx.seed, "count_zeros", split, label).sample(without, min(mode, len(without)))
        out = []
        for v in sorted(with_label + zeros, key=lambda v: v.id):
            inst = v.instances_of(label)
            ev = v.evidence_for(label=label)
            if inst:
                parts = [
                    f"instance {f.instance_id + 1} on frames {frames_text(f.frames)} "
                    f"({cite(e for e in ev if e.instance == f.instance_id)})"
                    for f in inst
                ]
                why = (
                    f"{len(ev)} box(es) of {label} link across adjacent frames into "
                    f"{len(inst)} separate lesion(s): " + "; ".join(parts) + f". Answer: {len(inst)}."
                )
            else:
                why = f"No {label} is annotated in this reviewed volume. Answer: 0."
            out.append(make_item(
                v, task=TASK, subtask="instances", frame=None, label=label,
                question=f"How many separate {label} lesions are in this volume?",
                answer=_number(len(inst)), answer_text=str(len(inst)), evidence=ev,
                reasoning=why, chance=None,
            ))
        return out

    def _types(self, v: StudyView, ctx: BuildContext) -> Item:
        labels = v.pathology
        ev = v.pathology_evidence
        if labels:
            per = []
            for lab in labels:
                boxes = [e for e in ev if e.label == lab]
                per.append(f"{lab} ({cite(boxes)})" if boxes else f"{lab} (study-level)")
            why = (
                f"{len(labels)} distinct abnormal finding type(s): "
                + "; ".join(per)
                + f". Answer: {len(labels)}."
            )
        else:
            why = "No abnormal finding is annotated in this reviewed volume. Answer: 0."
        return make_item(
            v, task=TASK, subtask="finding_types", frame=None, label=None,
            question="How many different types of abnormal findings are in this volume?",
            answer=_number(len(labels)), answer_text=str(len(labels)), evidence=ev,
            reasoning=why, chance=None,
        )
