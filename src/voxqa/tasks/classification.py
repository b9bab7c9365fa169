"""Classification: which finding is in a box / on a frame (single choice) and which findings
are present in the volume (select all).

Distractors are labels of the same anatomy's vocabulary that are absent from the whole
study, so exactly the intended options are right. Single-choice answers are placed
round-robin over option positions per (split, template), so each position is correct
equally often; multi-choice options are shuffled with a seeded stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voxqa.schema import Evidence, Item
from voxqa.tasks.base import (
    Context,
    StudyView,
    cite,
    fmt_box,
    group_by,
    key_frame,
    make_item,
    rng,
)

TASK = "classification"
LETTERS = "ABCDEFGHIJ"


@dataclass
class _Single:
    view: StudyView
    subtask: str
    frame: int
    label: str
    question: str
    evidence: list[Evidence]
    why: str
    instance: int | None = None

    @property
    def id(self) -> str:
        return f"{self.view.id}:{self.subtask}:{self.frame}:{self.label}:{self.instance}"


def _distractors(v: StudyView, ctx: Context, r, n: int) -> list[str]:
    pool = [lab for lab in ctx.boxed_vocab.get(v.study.anatomy, []) if lab not in v.labels]
    return r.sample(pool, n) if len(pool) >= n else []


def _nonempty_subsets(n: int) -> list[tuple[int, ...]]:
    return [tuple(i for i in range(n) if mask >> i & 1) for mask in range(1, 2**n)]


class Classification:
    name = TASK

    def generate(self, studies: Sequence[StudyView], ctx: Context) -> list[Item]:
        singles = [s for v in studies for s in self._box_specs(v)]
        singles += [s for v in studies for s in self._frame_specs(v)]
        out: list[Item] = []
        for (split, subtask), specs in group_by(
            singles, lambda s: (s.view.split, s.subtask)
        ).items():
            r = rng(ctx.seed, "choice_positions", split, subtask)
            ready = []
            for spec in sorted(specs, key=lambda s: s.id):
                pick = rng(ctx.seed, "distractors", spec.id)
                distractors = _distractors(spec.view, ctx, pick, ctx.n_options - 1)
                if distractors:  # too small a vocabulary: no item rather than a 2-option one
                    ready.append((spec, distractors))
            r.shuffle(ready)
            for i, (spec, distractors) in enumerate(ready):
                out.append(self._single(spec, distractors, i % ctx.n_options))
        for split, views in group_by(studies, lambda s: s.split).items():
            out += self._multi_split(views, ctx, split)
        return out

    def _box_specs(self, v: StudyView) -> list[_Single]:
        specs = []
        for f in v.instances:
            k = key_frame(f)
            box = max((b for b in f.boxes if b.frame == k), key=lambda b: b.box)
            ev = [Evidence(label=f.label, frame=k, box=box.box, instance=f.instance_id)]
            specs.append(_Single(
                v, "finding_in_box", k, f.label,
                f"Which finding is inside the box {fmt_box(box.box)} on frame {k}?",
                ev, f"The box is annotated as {f.label}: {cite(ev)}.", f.instance_id,
            ))
        return specs

    def _frame_specs(self, v: StudyView) -> list[_Single]:
        specs = []
        for k in sorted({key_frame(f) for f in v.instances}):
            ev = v.evidence_for(frame=k)
            labels = {e.label for e in ev}
            if len(labels) == 1:
                (label,) = labels
                specs.append(_Single(
                    v, "finding_on_frame", k, label,
                    f"Which finding is visible on frame {k}?",
                    ev, f"Frame {k} has boxes of one finding only: {cite(ev)}.",
                ))
        return specs

    def _single(self, spec: _Single, distractors: list[str], position: int) -> Item:
        options = distractors[:position] + [spec.label] + distractors[position:]
        letter = LETTERS[position]
        return make_item(
            spec.view, task=TASK, subtask=spec.subtask, frame=spec.frame, label=spec.label,
            question=spec.question, options=options,
            answer={"type": "choice", "value": position},
            answer_text=f"({letter}) {spec.label}", evidence=spec.evidence,
            reasoning=f"{spec.why} The other options are not annotated in this volume. "
            f"Answer: ({letter}) {spec.label}.",
            chance=1 / len(options), instance=spec.instance,
        )

    def _multi_split(self, views: list[StudyView], ctx: Context, split: object) -> list[Item]:
        """Answer subsets spread as evenly as the studies allow.

        Most constrained studies first (a study with one label can only have a one-option
        answer); each takes the feasible subset used least so far, so no subset (and no
        position) becomes a good blind guess. Subsets that only constrained studies can fill
        (one-label answers) are then capped at the median subset count.
        """
        n = ctx.n_options
        subsets = _nonempty_subsets(n)
        plans = []
        for v in views:
            if not v.labels:
                continue
            absent = [
                lab for lab in sorted(set(ctx.boxed_vocab.get(v.study.anatomy, []))
                                      | set(ctx.pathology_vocab.get(v.study.anatomy, [])))
                if lab not in v.labels
            ]
            feasible = [s for s in subsets if len(s) <= len(v.labels) and n - len(s) <= len(absent)]
            if feasible:
                plans.append((v, absent, feasible))
        order = rng(ctx.seed, "multi_choice_order", split)
        order.shuffle(plans)
        plans.sort(key=lambda p: len(p[2]))
        used = {s: 0 for s in subsets}
        chosen = []
        for v, absent, feasible in plans:
            least = min(used[s] for s in feasible)
            positions = order.choice([s for s in feasible if used[s] == least])
            used[positions] += 1
            chosen.append((v, absent, positions))
        cap = max(1, sorted(used.values())[len(used) // 2])
        kept = {s: 0 for s in subsets}
        out = []
        for v, absent, positions in chosen:
            if kept[positions] < cap:
                kept[positions] += 1
                out.append(self._multi(v, positions, absent, ctx))
        return out

    def _multi(
        self, v: StudyView, positions: tuple[int, ...], absent: list[str], ctx: Context
    ) -> Item:
        r = rng(ctx.seed, "multi_choice", v.id)
        n = ctx.n_options
        true_labels = r.sample(v.labels, len(positions))
        false_labels = r.sample(absent, n - len(positions))
        options = []
        for i in range(n):
            options.append(true_labels.pop() if i in positions else false_labels.pop())
        true = [options[i] for i in positions]
        answer = sorted(positions)
        ev = [e for e in v.evidence if e.label in true]
        parts = [
            f"{lab} ({cite(e for e in ev if e.label == lab)})"
            if any(e.label == lab for e in ev)
            else f"{lab} (study-level)"
            for lab in sorted(true)
        ]
        letters = ", ".join(f"({LETTERS[i]})" for i in answer)
        return make_item(
            v, task=TASK, subtask="findings_present", frame=None, label=None,
            question="Which of the following findings are present in this volume? "
            "Select all that apply.",
            options=options, answer={"type": "multi_choice", "value": answer},
            answer_text=letters, evidence=ev,
            reasoning="Present: " + "; ".join(parts) + ". The other options are not annotated "
            f"in this volume. Answer: {letters}.",
            chance=1 / (2 ** len(options) - 1),
        )
