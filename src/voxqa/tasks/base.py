"""The task-family protocol and the helpers every family shares.

A family turns all studies of a build into items at once (``generate``), because balancing
needs the whole population: yes/no answers are balanced per (split, template, label) and
choice answers are placed round-robin over option positions, so a blind text-only guesser
cannot beat chance on any template. Every random choice goes through ``rng(seed, *key)``,
seeded by a hash of its purpose, so the same inputs and seed give the same items.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, TypeVar

from voxqa.dataset.frame_policy import DEFAULT_FRAMES, FramePolicy
from voxqa.dataset.splits import unit_interval
from voxqa.schema import Evidence, Finding, Item, Study

T = TypeVar("T")


class TaskFamily(Protocol):
    """One family of questions (detection, localization, ...)."""

    name: str

    def generate(self, studies: Sequence[StudyView], ctx: BuildContext) -> list[Item]: ...


@dataclass
class BuildContext:
    """Build-wide facts a family may need."""

    seed: int
    is_pathology: Callable[[str], bool]
    pathology_vocab: dict[str, list[str]] = field(default_factory=dict)  # anatomy -> labels
    boxed_vocab: dict[str, list[str]] = field(default_factory=dict)  # anatomy -> boxed labels
    n_options: int = 4
    max_frame_items_per_study: int = 2
    skipped: Counter[str] = field(default_factory=Counter)  # questions not asked, and why
    # the frames volume-level items show (render them with the same cap)
    frames: FramePolicy = DEFAULT_FRAMES

    def shows(self, view: StudyView, evidence: Iterable[Evidence]) -> bool:
        """Whether every evidence frame is among the frames a volume-level item of this
        study shows (always true where the volume is not known: nothing is rendered)."""
        shown = self.frames.shown(view.study)
        return shown is None or {e.frame for e in evidence} <= shown

    def skip(self, template: str, reason: str = "evidence_frames_not_shown", count: int = 1) -> None:
        """Count ``count`` questions of ``template`` not asked, and why (build_report)."""
        self.skipped[f"{template}: {reason}"] += count


def rng(seed: int, *key: object) -> random.Random:
    """A private random stream for one purpose, independent of call order elsewhere."""
    return random.Random(int(unit_interval(seed, *key) * 2**53))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def item_id(
    study_id: str, subtask: str, frame: int | None, label: str | None, instance: int | None = None
) -> str:
    """Stable, readable id: study:subtask:(v|f<frame>):label-slug[:i<instance>]."""
    where = "v" if frame is None else f"f{frame}"
    tail = f":i{instance}" if instance is not None else ""
    return f"{study_id}:{subtask}:{where}:{slug(label) if label else 'all'}{tail}"


def fmt_box(box: Sequence[int]) -> str:
    return f"[{box[0]}, {box[1]}, {box[2]}, {box[3]}]"


def cite(evidence: Iterable[Evidence]) -> str:
    """'Frame 14: [108, 168, 123, 178] Meniscus Tear', one per box, in the given order
    (StudyView hands out evidence sorted by frame)."""
    return "; ".join(f"Frame {e.frame}: {fmt_box(e.box)} {e.label}" for e in evidence)


def frames_text(frames: Sequence[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9' (0-based frame indices)."""
    runs: list[list[int]] = []
    for f in sorted(set(frames)):
        if runs and f == runs[-1][-1] + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


class StudyView:
    """Read-only indexes over one study's findings, shared by all families."""

    def __init__(self, study: Study, is_pathology: Callable[[str], bool], geometry: Any = None,
                 radreport: Any = None):
        self.study = study
        self.id = study.id
        self._is_pathology = is_pathology
        self.geometry = geometry  # relations.SegGeometry for segmentation studies
        self.radreport = radreport  # radreports.items.ReportStudy for studies with a radiology report

    @property
    def split(self) -> str:
        assert self.study.split is not None, "splits are assigned before items are generated"
        return self.study.split

    @cached_property
    def instances(self) -> list[Finding]:
        return [f for f in self.study.findings if not f.study_level]

    @cached_property
    def study_labels(self) -> list[str]:
        return sorted({f.label for f in self.study.findings if f.study_level})

    @cached_property
    def boxed_labels(self) -> list[str]:
        return sorted({f.label for f in self.instances})

    @cached_property
    def labels(self) -> list[str]:
        """Every label of the study, boxed or study-level."""
        return sorted(set(self.boxed_labels) | set(self.study_labels))

    @cached_property
    def pathology(self) -> list[str]:
        return [lab for lab in self.labels if self._is_pathology(lab)]

    @cached_property
    def study_level_pathology(self) -> list[str]:
        return [lab for lab in self.study_labels if self._is_pathology(lab)]

    @cached_property
    def evidence(self) -> list[Evidence]:
        """All boxes of the study as evidence, sorted by frame."""
        ev = [
            Evidence(label=f.label, frame=b.frame, box=b.box, instance=f.instance_id)
            for f in self.instances
            for b in f.boxes
        ]
        return sorted(ev, key=lambda e: (e.frame, e.box, e.label))

    @cached_property
    def _evidence_index(self) -> dict[tuple[str | None, int | None], list[Evidence]]:
        index: dict[tuple[str | None, int | None], list[Evidence]] = defaultdict(list)
        for e in self.evidence:
            for key in ((e.label, None), (None, e.frame), (e.label, e.frame)):
                index[key].append(e)
        return index

    def evidence_for(self, label: str | None = None, frame: int | None = None) -> list[Evidence]:
        """Boxes of a label and/or on a frame, sorted by frame (a new list each call)."""
        if label is None and frame is None:
            return list(self.evidence)
        return list(self._evidence_index.get((label, frame), ()))

    @cached_property
    def frames_with_boxes(self) -> set[int]:
        return {e.frame for e in self.evidence}

    @property
    def pathology_evidence(self) -> list[Evidence]:
        """Boxes of pathology labels, sorted by frame (a new list each call)."""
        return [e for e in self.evidence if self._is_pathology(e.label)]

    @cached_property
    def pathology_frames(self) -> set[int]:
        return {e.frame for e in self.pathology_evidence}

    def instances_of(self, label: str) -> list[Finding]:
        return [f for f in self.instances if f.label == label]

    def known_frames(self) -> range:
        return self.study.known_frames()


def key_frame(finding: Finding) -> int:
    """The frame where an instance's box is largest (ties: earliest)."""
    best = max(finding.boxes, key=lambda b: ((b.box[2] - b.box[0]) * (b.box[3] - b.box[1]), -b.frame))
    return best.frame


def balance(
    positives: Sequence[T], negatives: Sequence[T], seed: int, *key: Hashable
) -> tuple[list[T], list[T]]:
    """Equal numbers of positives and negatives, sampled deterministically."""
    n = min(len(positives), len(negatives))
    r = rng(seed, "balance", *key)
    pos = r.sample(list(positives), n)
    neg = r.sample(list(negatives), n)
    return pos, neg


def balance_candidates(candidates: Iterable[tuple[Hashable, bool | None, Item]], ctx: BuildContext,
                       purpose: str, reason: str) -> list[Item]:
    """Items from ``(key, side, item)`` candidates: per (split, template, language, key) as many
    ``True`` as ``False`` sides, drawn with the seed (``purpose`` names the stream), ``None``
    sides kept as they are; what balancing drops is counted under ``reason``. The language is
    part of the question's text, so it is balanced too (else "Ist das Rückenmark ..." could
    always be answered "no")."""
    out: list[Item] = []
    for (split, template, key), group in group_by(
            candidates, lambda c: (c[2].split, c[2].template, c[0] if c[2].language is None else (c[2].language, c[0]))
    ).items():
        yes = [item for _, side, item in group if side is True]
        no = [item for _, side, item in group if side is False]
        out += [item for _, side, item in group if side is None]
        if yes or no:
            pos, neg = balance(yes, no, ctx.seed, purpose, split, template, key)
            out += pos + neg
            if len(yes) != len(no):
                ctx.skip(template, reason, len(yes) + len(no) - 2 * len(pos))
    return out


def group_by(items: Iterable[T], key: Callable[[T], Hashable]) -> dict[Hashable, list[T]]:
    groups: dict[Hashable, list[T]] = defaultdict(list)
    for it in items:
        groups[key(it)].append(it)
    return dict(sorted(groups.items(), key=lambda kv: str(kv[0])))


def sample_frames(
    studies: Sequence[StudyView],
    n: int,
    frames_of: Callable[[StudyView], Sequence[int]],
    r: random.Random,
    per_study: int,
) -> list[tuple[StudyView, int]]:
    """Up to ``n`` distinct (study, frame) pairs spread over studies, at most ``per_study`` each.

    ``frames_of`` gives a study's eligible frames (only frames that certainly exist).
    Studies are visited in a shuffled round-robin so negatives come from many volumes
    rather than many frames of a few.
    """
    pools: list[tuple[StudyView, list[int]]] = []
    for s in studies:
        frames = frames_of(s)
        if len(frames):
            pools.append((s, r.sample(frames, min(per_study, len(frames)))))
    r.shuffle(pools)
    picked: list[tuple[StudyView, int]] = []
    for depth in range(per_study):
        for s, frames in pools:
            if len(picked) == n:
                return picked
            if depth < len(frames):
                picked.append((s, frames[depth]))
    return picked


class FrameIndex:
    """Which studies certainly have frame k, for drawing frame-matched negatives."""

    def __init__(self, studies: Sequence[StudyView]):
        self._by_frame: dict[int, list[StudyView]] = defaultdict(list)
        for v in studies:
            for f in v.known_frames():
                self._by_frame[f].append(v)

    def matched_negatives(
        self,
        positives: Sequence[tuple[StudyView, int]],
        eligible: Callable[[StudyView, int], bool],
        r: random.Random,
        per_study: int,
    ) -> tuple[list[tuple[StudyView, int]], list[tuple[StudyView, int]]]:
        """Pair each positive (study, k) with a negative (other study, same k).

        The frame index is in the question text, so negatives drawn from other frames than
        the positives would let a blind guesser answer from the index alone. Positives
        without an eligible partner are dropped; a study gives at most ``per_study``
        negatives.
        """
        used: dict[str, int] = defaultdict(int)
        taken: set[tuple[str, int]] = set()
        pos_out, neg_out = [], []
        for v, k in positives:
            candidates = self._by_frame.get(k, [])
            start = r.randrange(len(candidates)) if candidates else 0
            for j in range(len(candidates)):
                c = candidates[(start + j) % len(candidates)]
                if used[c.id] < per_study and (c.id, k) not in taken and eligible(c, k):
                    used[c.id] += 1
                    taken.add((c.id, k))
                    pos_out.append((v, k))
                    neg_out.append((c, k))
                    break
        return pos_out, neg_out


def make_item(
    view: StudyView,
    *,
    task: str,
    subtask: str,
    frame: int | None,
    label: str | None,
    question: str,
    answer: dict,
    answer_text: str,
    evidence: list[Evidence],
    reasoning: str,
    chance: float | None,
    options: list[str] | None = None,
    instance: int | None = None,
    category: str | None = None,
    variant: str | None = None,
    kind: str | None = None,
) -> Item:
    """One item; ``frame`` set means a frame-level question about that frame.

    ``kind`` splits a subtask's template when it asks several kinds of question.
    Volume-level items have ``frames == []``: the question is about the whole volume, and
    listing the evidence frames there would hand the answer to whoever picks the images.
    """
    level = "volume" if frame is None else "frame"
    return Item(
        id=item_id(view.id, subtask, frame, label, instance)
        + (f":{slug(variant)}" if variant else ""),
        study_id=view.id,
        split=view.split,  # type: ignore[arg-type]
        source=view.study.source,
        task=task,  # type: ignore[arg-type]
        subtask=subtask,
        level=level,
        frames=[frame] if frame is not None else [],
        question=question,
        options=options,
        answer=answer,  # type: ignore[arg-type]
        answer_text=answer_text,
        evidence=evidence,
        reasoning=reasoning,
        chance=chance,
        label=label,
        template=f"{task}/{subtask}/{level}" + (f"/{kind}" if kind and kind != subtask else ""),
        category=category,
    )


def yes_no(yes: bool) -> tuple[dict, str]:
    value = "yes" if yes else "no"
    return {"type": "yes_no", "value": value}, value
