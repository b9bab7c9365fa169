"""Detection: is there an abnormality / a given finding, in the volume or on one frame?

Positives come from annotated boxes (and study-level labels for volume questions);
negatives from reviewed volumes without the finding, so "no" is as grounded as "yes".
Answers are balanced 50/50 per (split, template, label) by subsampling the larger side.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxqa.schema import Item
from voxqa.tasks.base import (
    Context,
    StudyView,
    balance,
    cite,
    group_by,
    key_frame,
    make_item,
    rng,
    sample_frames,
    yes_no,
)

TASK = "detection"


class Detection:
    name = TASK

    def generate(self, studies: Sequence[StudyView], ctx: Context) -> list[Item]:
        items: list[Item] = []
        for split, group in group_by(studies, lambda s: s.split).items():
            items += self._any_volume(group, ctx, split)
            items += self._any_frame(group, ctx, split)
            for anatomy, views in group_by(group, lambda s: s.study.anatomy).items():
                for label in ctx.pathology_vocab.get(str(anatomy), []):
                    items += self._finding_volume(views, ctx, split, label)
                    items += self._finding_frame(views, ctx, split, label)
        return items

    def _any_volume(self, views: list[StudyView], ctx: Context, split: object) -> list[Item]:
        pos, neg = balance(
            [v for v in views if v.pathology],
            [v for v in views if not v.pathology],
            ctx.seed, "any_volume", split,
        )
        out = []
        for v, yes in [(v, True) for v in pos] + [(v, False) for v in neg]:
            ev = [e for e in v.evidence if ctx.is_pathology(e.label)]
            if yes:
                parts = [cite(ev)] if ev else []
                if v.study_level_pathology:
                    parts.append("study-level: " + ", ".join(v.study_level_pathology))
                why = "Annotated abnormalities: " + "; ".join(parts) + ". Answer: yes."
            else:
                other = f" (non-pathological labels only: {', '.join(v.labels)})" if v.labels else ""
                why = f"This reviewed volume has no annotated abnormality{other}. Answer: no."
            answer, text = yes_no(yes)
            out.append(make_item(
                v, task=TASK, subtask="any_abnormality", frame=None, label=None,
                question="Is there any abnormality in this volume?",
                answer=answer, answer_text=text, evidence=ev, reasoning=why, chance=0.5,
            ))
        return out

    def _any_frame(self, views: list[StudyView], ctx: Context, split: object) -> list[Item]:
        r = rng(ctx.seed, "any_frame", split)
        per = ctx.max_frame_items_per_study
        positives = sample_frames(
            views, len(views) * per, lambda v: sorted(v.pathology_frames), r, per
        )
        negatives = sample_frames(
            [v for v in views if not v.study_level_pathology],
            len(positives),
            lambda v: [f for f in v.known_frames() if f not in v.frames_with_boxes],
            r,
            per,
        )
        pos, neg = balance(positives, negatives, ctx.seed, "any_frame_balance", split)
        out = []
        for (v, k), yes in [(p, True) for p in pos] + [(n, False) for n in neg]:
            ev = [e for e in v.evidence_for(frame=k) if ctx.is_pathology(e.label)]
            why = (
                f"Abnormal boxes on frame {k}: {cite(ev)}. Answer: yes."
                if yes
                else f"No box is annotated on frame {k} and the volume has no study-level "
                "abnormality. Answer: no."
            )
            answer, text = yes_no(yes)
            out.append(make_item(
                v, task=TASK, subtask="any_abnormality", frame=k, label=None,
                question=f"Is there any abnormality on frame {k}?",
                answer=answer, answer_text=text, evidence=ev, reasoning=why, chance=0.5,
            ))
        return out

    def _finding_volume(
        self, views: list[StudyView], ctx: Context, split: object, label: str
    ) -> list[Item]:
        pos, neg = balance(
            [v for v in views if label in v.labels],
            [v for v in views if label not in v.labels],
            ctx.seed, "finding_volume", split, label,
        )
        out = []
        for v, yes in [(v, True) for v in pos] + [(v, False) for v in neg]:
            ev = v.evidence_for(label=label)
            if not yes:
                why = f"No {label} is annotated anywhere in this reviewed volume. Answer: no."
            elif ev:
                why = f"{label} is annotated: {cite(ev)}. Answer: yes."
            else:
                why = f"{label} is a study-level label of this volume. Answer: yes."
            answer, text = yes_no(yes)
            out.append(make_item(
                v, task=TASK, subtask="finding_presence", frame=None, label=label,
                question=f"Is there {label} in this volume?",
                answer=answer, answer_text=text, evidence=ev, reasoning=why, chance=0.5,
            ))
        return out

    def _finding_frame(
        self, views: list[StudyView], ctx: Context, split: object, label: str
    ) -> list[Item]:
        positives = sorted(
            {(v, key_frame(f)) for v in views for f in v.instances_of(label)},
            key=lambda p: (p[0].id, p[1]),
        )
        r = rng(ctx.seed, "finding_frame", split, label)
        negatives = sample_frames(
            [v for v in views if label not in v.labels],
            len(positives),
            lambda v: v.known_frames(),
            r,
            ctx.max_frame_items_per_study,
        )
        pos, neg = balance(positives, negatives, ctx.seed, "finding_frame_balance", split, label)
        out = []
        for (v, k), yes in [(p, True) for p in pos] + [(n, False) for n in neg]:
            ev = v.evidence_for(label=label, frame=k)
            why = (
                f"{label} on frame {k}: {cite(ev)}. Answer: yes."
                if yes
                else f"{label} is not annotated anywhere in this reviewed volume, so frame {k} "
                "shows none. Answer: no."
            )
            answer, text = yes_no(yes)
            out.append(make_item(
                v, task=TASK, subtask="finding_presence", frame=k, label=label,
                question=f"Is there {label} on frame {k}?",
                answer=answer, answer_text=text, evidence=ev, reasoning=why, chance=0.5,
            ))
        return out
