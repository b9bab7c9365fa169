"""Detection: is there an abnormality / a given finding, in the volume or on one frame?

Positives come from annotated boxes (and study-level labels for volume questions);
negatives from reviewed volumes without the finding, so "no" is as grounded as "yes".
Answers are balanced 50/50 per (split, anatomy, template, label), so neither the split nor
the anatomy named by the question's label (or guessed from anything else) predicts the answer;
frame-level negatives are taken on the same frame index as their positive (FrameIndex), so the
index in the question says nothing about the answer. Volume-level questions whose evidence
frames the rendered frame set would miss are not asked (``BuildContext.shows``), before balancing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from voxqa.schema import Evidence, Item
from voxqa.tasks.base import (
    BuildContext,
    FrameIndex,
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
Target = tuple[StudyView, int | None]  # (study, frame) or (study, None) for the whole volume
Explain = Callable[[StudyView, int | None, bool], tuple[list[Evidence], str]]


def _emit(
    pos: list[Target], neg: list[Target], subtask: str, label: str | None,
    question: Callable[[int | None], str], explain: Explain,
) -> list[Item]:
    out = []
    for (v, k), yes in [(p, True) for p in pos] + [(n, False) for n in neg]:
        evidence, why = explain(v, k, yes)
        answer, text = yes_no(yes)
        out.append(make_item(
            v, task=TASK, subtask=subtask, frame=k, label=label, question=question(k),
            answer=answer, answer_text=text, evidence=evidence,
            reasoning=f"{why} Answer: {text}.", chance=0.5,
        ))
    return out


class Detection:
    name = TASK

    def generate(self, studies: Sequence[StudyView], ctx: BuildContext) -> list[Item]:
        items: list[Item] = []
        for split, group in group_by(studies, lambda s: s.split).items():
            for anatomy, views in group_by(group, lambda s: s.study.anatomy).items():
                items += self._any_volume(views, ctx, (split, anatomy))
                index = FrameIndex(views)
                items += self._any_frame(views, index, ctx, (split, anatomy))
                for label in ctx.pathology_vocab.get(str(anatomy), []):
                    items += self._finding_volume(views, ctx, (split, anatomy), label)
                    items += self._finding_frame(views, index, ctx, (split, anatomy), label)
        return items

    def _any_volume(self, views: list[StudyView], ctx: BuildContext, group: tuple) -> list[Item]:
        template = f"{TASK}/any_abnormality/volume"
        positives = []
        for v in views:
            if v.pathology:
                if ctx.shows(v, v.pathology_evidence):
                    positives.append((v, None))
                else:
                    ctx.skip(template)
        pos, neg = balance(
            positives, [(v, None) for v in views if not v.pathology],
            ctx.seed, "any_volume", *group,
        )

        def explain(v: StudyView, k: int | None, yes: bool) -> tuple[list[Evidence], str]:
            ev = v.pathology_evidence
            if not yes:
                other = f" (non-pathological labels only: {', '.join(v.labels)})" if v.labels else ""
                return ev, f"This reviewed volume has no annotated abnormality{other}."
            parts = [cite(ev)] if ev else []
            if v.study_level_pathology:
                parts.append("study-level: " + ", ".join(v.study_level_pathology))
            return ev, "Annotated abnormalities: " + "; ".join(parts) + "."

        return _emit(pos, neg, "any_abnormality", None,
                     lambda k: "Is there any abnormality in this volume?", explain)

    def _any_frame(
        self, views: list[StudyView], index: FrameIndex, ctx: BuildContext, group: object
    ) -> list[Item]:
        r = rng(ctx.seed, "any_frame", group)
        per = ctx.max_frame_items_per_study
        positives = sample_frames(
            views, len(views) * per, lambda v: sorted(v.pathology_frames), r, per
        )
        pos, neg = index.matched_negatives(
            positives,
            lambda c, k: not c.study_level_pathology and k not in c.frames_with_boxes,
            r,
            per,
        )

        def explain(v: StudyView, k: int | None, yes: bool) -> tuple[list[Evidence], str]:
            ev = [e for e in v.evidence_for(frame=k) if ctx.is_pathology(e.label)]
            if yes:
                return ev, f"Abnormal boxes on frame {k}: {cite(ev)}."
            return ev, (f"No box is annotated on frame {k} and the volume has no study-level "
                        "abnormality.")

        return _emit(pos, neg, "any_abnormality", None,
                     lambda k: f"Is there any abnormality on frame {k}?", explain)

    def _finding_volume(
        self, views: list[StudyView], ctx: BuildContext, group: tuple, label: str
    ) -> list[Item]:
        positives = []
        for v in views:
            if label in v.labels:
                if ctx.shows(v, v.evidence_for(label=label)):
                    positives.append((v, None))
                else:
                    ctx.skip(f"{TASK}/finding_presence/volume")
        pos, neg = balance(
            positives, [(v, None) for v in views if label not in v.labels],
            ctx.seed, "finding_volume", *group, label,
        )

        def explain(v: StudyView, k: int | None, yes: bool) -> tuple[list[Evidence], str]:
            ev = v.evidence_for(label=label)
            if not yes:
                return ev, f"No {label} is annotated anywhere in this reviewed volume."
            if ev:
                return ev, f"{label} is annotated: {cite(ev)}."
            return ev, f"{label} is a study-level label of this volume."

        return _emit(pos, neg, "finding_presence", label,
                     lambda k: f"Is there {label} in this volume?", explain)

    def _finding_frame(
        self, views: list[StudyView], index: FrameIndex, ctx: BuildContext, group: tuple, label: str
    ) -> list[Item]:
        positives = sorted(
            {(v, key_frame(f)) for v in views for f in v.instances_of(label)},
            key=lambda p: (p[0].id, p[1]),
        )
        r = rng(ctx.seed, "finding_frame", *group, label)
        r.shuffle(positives)
        pos, neg = index.matched_negatives(
            positives, lambda c, k: label not in c.labels, r, ctx.max_frame_items_per_study
        )

        def explain(v: StudyView, k: int | None, yes: bool) -> tuple[list[Evidence], str]:
            ev = v.evidence_for(label=label, frame=k)
            if yes:
                return ev, f"{label} on frame {k}: {cite(ev)}."
            return ev, (f"{label} is not annotated anywhere in this reviewed volume, so frame {k} "
                        "shows none.")

        return _emit(pos, neg, "finding_presence", label,
                     lambda k: f"Is there {label} on frame {k}?", explain)
