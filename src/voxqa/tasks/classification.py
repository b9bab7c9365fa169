"""Classification: which finding is in a box / on a frame (single choice) and which findings
are present in the volume (select all).

Distractors are labels of the same anatomy's vocabulary that cannot be right: for frame
questions, labels without a box on the frame or its two neighbours (and not study-level);
for the volume question, labels absent from the whole study. Two blind tells are removed:

* position: single-choice answers are placed round-robin over option positions per
  (split, template); multi-choice answer subsets are spread evenly (see ``_multi_split``);
* label frequency: answers follow how common each finding is, so distractors are chosen by
  ``ExposureBalancer`` to show every label as a wrong option ``ratio`` times as often as it
  is right; single-choice items whose label stays over-exposed are then dropped. "Pick the
  most common finding" is then no better than chance.
"""

from __future__ import annotations

import random
from collections import Counter
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


# Single choice: a label may be right at most this much more often than 1 / n_options
# when it is shown (plus one item's worth, 1 / times shown); items beyond that are dropped.
MAX_EXCESS = 0.01


def _near_labels(spec: _Single) -> set[str]:
    """Labels that could be right for a frame question: boxed on frames k-1..k+1, or
    study-level (those apply to every frame). Distractors come from outside this set."""
    v, k = spec.view, spec.frame
    near = {e.label for f in (k - 1, k, k + 1) for e in v.evidence_for(frame=f)}
    return near | set(v.study_labels)


class ExposureBalancer:
    """Chooses distractors so that how often a label is shown says nothing about the answer.

    A text-only guesser can learn how often each label is the right answer. If every label
    is shown as a wrong option ``ratio`` times as often as it is right, then
    P(right | shown) is the same for all labels. Distractors are taken greedily by largest
    remaining deficit ``ratio * right[L] - wrong[L]`` (seeded tie-break).
    """

    def __init__(self, ratio: float, r: random.Random, right: Counter[str] | None = None):
        self.ratio = ratio
        self.r = r
        self.right: Counter[str] = right if right is not None else Counter()
        self.wrong: Counter[str] = Counter()

    def pick(self, eligible: Sequence[str], n: int) -> list[str]:
        ranked = sorted(
            eligible,
            key=lambda lab: (self.wrong[lab] - self.ratio * self.right[lab], self.r.random()),
        )
        chosen = ranked[:n]
        self.wrong.update(chosen)
        return chosen

    def excess(self, label: str) -> float:
        """P(right | shown) above the balanced 1 / (1 + ratio), less one item's worth."""
        shown = self.right[label] + self.wrong[label]
        if not shown:
            return 0.0
        return (self.right[label] - 1) / shown - 1 / (1 + self.ratio)


def _nonempty_subsets(n: int) -> list[tuple[int, ...]]:
    return [tuple(i for i in range(n) if mask >> i & 1) for mask in range(1, 2**n)]


class Classification:
    name = TASK

    def generate(self, studies: Sequence[StudyView], ctx: Context) -> list[Item]:
        singles = [s for v in studies for s in self._box_specs(v)]
        singles += [s for v in studies for s in self._frame_specs(v)]
        out: list[Item] = []
        for subtask, specs in group_by(singles, lambda s: s.subtask).items():
            out += self._singles(specs, ctx, str(subtask))
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

    def _singles(self, specs: list[_Single], ctx: Context, subtask: str) -> list[Item]:
        """Exposure-balanced distractors with over-exposed labels trimmed (over all splits,
        as the splits are samples of one population), then positions round-robin per split."""
        n = ctx.n_options
        r = rng(ctx.seed, "choice", subtask)
        ready = []
        for spec in sorted(specs, key=lambda s: s.id):
            vocab = ctx.boxed_vocab.get(spec.view.study.anatomy, [])
            near = _near_labels(spec)
            eligible = [lab for lab in vocab if lab not in near]
            if len(eligible) >= n - 1:  # too small a vocabulary: no item, not a 2-option one
                ready.append((spec, eligible))
        r.shuffle(ready)
        balancer = ExposureBalancer(n - 1, r, Counter(spec.label for spec, _ in ready))
        picked = [(spec, balancer.pick(eligible, n - 1)) for spec, eligible in ready]
        by_label: dict[str, list[int]] = {}
        for i, (spec, _) in enumerate(picked):
            by_label.setdefault(spec.label, []).append(i)
        dropped: set[int] = set()
        while True:  # drop the last items of labels that are still right too often
            worst = max(balancer.right, key=lambda lab: (balancer.excess(lab), lab), default=None)
            if worst is None or balancer.excess(worst) <= MAX_EXCESS:
                break
            i = by_label[worst].pop()
            dropped.add(i)
            balancer.right[worst] -= 1
            balancer.wrong.subtract(picked[i][1])
        picked = [p for i, p in enumerate(picked) if i not in dropped]
        out = []
        for group in group_by(picked, lambda p: p[0].view.split).values():
            out += [self._single(spec, d, i % n) for i, (spec, d) in enumerate(group)]
        return out

    def _single(self, spec: _Single, distractors: list[str], position: int) -> Item:
        options = distractors[:position] + [spec.label] + distractors[position:]
        letter = LETTERS[position]
        return make_item(
            spec.view, task=TASK, subtask=spec.subtask, frame=spec.frame, label=spec.label,
            question=spec.question, options=options,
            answer={"type": "choice", "value": position},
            answer_text=f"({letter}) {spec.label}", evidence=spec.evidence,
            reasoning=f"{spec.why} The other options have no box on frames "
            f"{max(spec.frame - 1, 0)}-{spec.frame + 1}. Answer: ({letter}) {spec.label}.",
            chance=1 / len(options), instance=spec.instance,
        )

    def _multi_split(self, views: list[StudyView], ctx: Context, split: object) -> list[Item]:
        """Answer subsets spread as evenly as the studies allow; exposure-balanced options.

        Options are abnormal findings only (labels like "Normal for age" are not findings).
        Most constrained studies first (a study with one finding can only have a one-option
        answer); each takes the feasible subset used least so far, so no subset (and no
        position) becomes a good blind guess. Subsets that only constrained studies can fill
        (one-option answers) are then capped at the median subset count.
        """
        n = ctx.n_options
        subsets = _nonempty_subsets(n)
        plans = []
        for v in views:
            absent = [
                lab for lab in ctx.pathology_vocab.get(v.study.anatomy, [])
                if lab not in v.labels
            ]
            feasible = [
                s for s in subsets if len(s) <= len(v.pathology) and n - len(s) <= len(absent)
            ]
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
        final = []
        for v, absent, positions in chosen:
            if kept[positions] < cap:
                kept[positions] += 1
                final.append((v, absent, positions))
        n_true = sum(len(p) for _, _, p in final)
        balancer = ExposureBalancer((n * len(final) - n_true) / max(n_true, 1), order)
        return [self._multi(v, p, absent, balancer, ctx) for v, absent, p in final]

    def _multi(
        self,
        v: StudyView,
        positions: tuple[int, ...],
        absent: list[str],
        balancer: ExposureBalancer,
        ctx: Context,
    ) -> Item:
        r = rng(ctx.seed, "multi_choice", v.id)
        n = ctx.n_options
        true_labels = r.sample(v.pathology, len(positions))
        balancer.right.update(true_labels)
        false_labels = balancer.pick(absent, n - len(positions))
        r.shuffle(false_labels)
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
            question="Which of the following abnormal findings are present in this volume? "
            "Select all that apply.",
            options=options, answer={"type": "multi_choice", "value": answer},
            answer_text=letters, evidence=ev,
            reasoning="Present: " + "; ".join(parts) + ". The other options are not annotated "
            f"in this volume. Answer: {letters}.",
            chance=1 / (2 ** len(options) - 1),
        )
