"""Classification: which finding is in a box / on a frame (single choice) and which findings
are present in the volume (select all).

Distractors are labels of the same anatomy's vocabulary that cannot be right: for frame
questions, labels without a box on the frame or its two neighbours (and not study-level);
for the volume question, labels absent from the whole study. Blind tells removed:

* geometry and frame (hard distractors): single-choice items are binned by what
  the question quotes (anatomy, box size / position and frame; frame only for
  ``finding_on_frame``, see ``_context_bins``) and, per bin, every label is shown as a wrong
  option exactly ``n - 1`` times per time it is right, lent to items with the nearest boxes
  (``_balanced_distractors``). Bins are per split (a bin too small within its split is
  pooled upwards within that split): balance pooled over splits made a label's share in
  val + test the mirror image of its share in train, which "pick the label least often
  right in train" exploited in reverse. Labels above 1 / n of a bin's answers are
  trimmed; the items not asked are
  counted in ``ctx.skipped`` (build_report ``question_not_asked``);
* position: single-choice answers are placed round-robin over option positions per
  (split, template); multi-choice answer subsets are spread evenly per (split, anatomy),
  every non-empty subset equally often, so the answer size does not depend on the labels;
* label frequency (multi-select, ``_multi_group``): per (split, anatomy) every label is a
  wrong option in the same proportion to how often it is right (maximum flow), so
  P(option right | label shown) is the same for every label; studies that cannot be fitted
  into that balance are not asked and are counted in ``ctx.skipped``.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voxqa.answers.options import marked
from voxqa.schema import Evidence, Item
from voxqa.tasks.base import (
    BuildContext,
    StudyView,
    cite,
    fmt_box,
    group_by,
    key_frame,
    make_item,
    rng,
)

TASK = "classification"


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


def _near_labels(spec: _Single) -> set[str]:
    """Labels that could be right for a frame question: boxed on frames k-1..k+1, or
    study-level (those apply to every frame). Distractors come from outside this set."""
    v, k = spec.view, spec.frame
    near = {e.label for f in (k - 1, k, k + 1) for e in v.evidence_for(frame=f)}
    return near | set(v.study_labels)


# Context bins for single-choice items: quantile bins per feature (per anatomy), per split; a
# bin with fewer than MIN_BIN items of its split is pooled into the coarser bin above it.
BOX_BINS = (("area", 4), ("cy", 2), ("cx", 2), ("frame", 3))
FRAME_BINS = (("frame", 4),)
MIN_BIN = 24


def _context(spec: _Single) -> dict[str, float]:
    """What the question text says about the finding: the quoted box and the frame."""
    x0, y0, x1, y1 = spec.evidence[0].box
    w, h = spec.view.study.frame_size
    return {
        "area": (x1 - x0) * (y1 - y0) / (w * h),
        "cx": (x0 + x1) / 2 / w,
        "cy": (y0 + y1) / 2 / h,
        "frame": float(spec.frame),
    }


def _quantile_bin(values: Sequence[float], q: int) -> list[int]:
    """Each value's quantile bin (0..q-1) among ``values``; ties share a bin."""
    ranked = sorted(values)
    edges = [ranked[len(ranked) * i // q] for i in range(1, q)]
    return [sum(v >= e for e in edges) for v in values]


def _context_bins(specs: Sequence[_Single], subtask: str) -> dict[tuple, list[_Single]]:
    """Specs grouped by (split, anatomy, feature bins...): quantile edges over all splits,
    so a bin means the same in every split; a bin with fewer than ``MIN_BIN`` specs of its
    split is pooled upwards within that split."""
    dims = BOX_BINS if subtask == "finding_in_box" else FRAME_BINS
    keys: dict[str, tuple] = {}
    for anatomy, group in group_by(specs, lambda s: s.view.study.anatomy).items():
        group = sorted(group, key=lambda s: s.id)
        feats = [_context(s) for s in group]
        cols = [_quantile_bin([f[name] for f in feats], q) for name, q in dims]
        for i, s in enumerate(group):
            keys[s.id] = (str(anatomy),) + tuple(c[i] for c in cols)
    split = {s.id: s.view.split for s in specs}
    depth = 1 + len(dims)
    while depth > 1:  # pool bins too small within their split into their parent
        sizes = Counter((split[sid], k[:depth]) for sid, k in keys.items())
        small = {k for k, c in sizes.items() if c < MIN_BIN}
        for sid, k in keys.items():
            if len(k) == depth and (split[sid], k) in small:
                keys[sid] = k[: depth - 1]
        depth -= 1
    out: dict[tuple, list[_Single]] = defaultdict(list)
    for s in sorted(specs, key=lambda s: s.id):
        out[(s.view.split, *keys[s.id])].append(s)
    return dict(out)


def _balanced_distractors(
    specs: Sequence[_Single], n: int, r: random.Random
) -> tuple[list[tuple[_Single, list[str]]], Counter[str]]:
    """Distractors for one context bin so that every label is shown wrong exactly ``n - 1``
    times per time it is right, taken only from the bin's own answers.

    Each label keeps at most ``t`` items, the largest ``t`` with sum(min(count, t)) >=
    n * t (no label is the answer of more than 1 / n of the kept items), and at most
    1 / (n - 1) of the kept items that may show it as a wrong option (not near them); each
    kept item then takes the ``n - 1`` eligible labels with the least room to spare (items
    left that may take the label less its remaining quota), most constrained items first.
    If some item finds fewer than ``n - 1`` labels with quota left, it is dropped and the
    bin is balanced again without it, so the balance is exact.
    """
    dropped: Counter[str] = Counter()
    pool = sorted(specs, key=lambda s: s.id)
    r.shuffle(pool)
    near = {s.id: _near_labels(s) for s in pool}
    while True:
        kept, over = _cap_labels(pool, n, near)
        dropped["label_over_1/n_of_its_context_bin"] += len(over)
        pool = kept
        out, failed = _assign(pool, n, near, r)
        if not failed:
            return out, dropped
        dropped["no_balanced_distractors_in_context_bin"] += len(failed)
        pool = [s for s in pool if s.id not in failed]


def _cap_labels(
    pool: list[_Single], n: int, near: dict[str, set[str]]
) -> tuple[list[_Single], list[_Single]]:
    """The items kept so that no label is over 1 / n of the answers, nor over 1 / (n - 1) of
    the items that could show it as a wrong option (first items of each label kept)."""
    keep = list(pool)
    while True:
        counts = Counter(s.label for s in keep)
        t = 0
        while sum(min(c, t + 1) for c in counts.values()) >= n * (t + 1):
            t += 1
        cap = {}
        for lab in counts:
            room = sum(1 for s in keep if s.label != lab and lab not in near[s.id])
            cap[lab] = min(t, room // (n - 1))
        seen: Counter[str] = Counter()
        nxt = []
        for s in keep:
            seen[s.label] += 1
            if seen[s.label] <= cap[s.label]:
                nxt.append(s)
        if len(nxt) == len(keep):
            kept_ids = {s.id for s in keep}
            return keep, [s for s in pool if s.id not in kept_ids]
        keep = nxt


def _assign(
    pool: list[_Single], n: int, near: dict[str, set[str]], r: random.Random
) -> tuple[list[tuple[_Single, list[str]]], set[str]]:
    """Each item i of label L lends L as a wrong option to ``n - 1`` other items; each item
    takes the ``n - 1`` eligible labels whose lent copies lie nearest its own quoted box and
    frame (``_context``, standardised in the bin), so a label is shown wrong where it is
    right. Most constrained items first; items left short are returned as failed."""
    feats = [_context(s) for s in pool]
    names = sorted(feats[0]) if feats else []
    scale = {}
    for k in names:
        vals = [f[k] for f in feats]
        mean = sum(vals) / len(vals)
        scale[k] = (mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) or 1.0)
    vec = {s.id: [(f[k] - scale[k][0]) / scale[k][1] for k in names] for s, f in zip(pool, feats, strict=False)}
    labels = sorted({s.label for s in pool})
    # each label's lent copies as one array; a taken copy is masked (inf), so argmin keeps
    # picking the first nearest copy still free, as the list version did, in numpy
    rows: dict[str, list[list[float]]] = {lab: [] for lab in labels}
    for s in pool:
        rows[s.label] += [vec[s.id]] * (n - 1)
    tokens = {lab: np.array(v, dtype=float).reshape(len(v), len(names)) for lab, v in rows.items()}
    taken = {lab: np.zeros(len(v), dtype=bool) for lab, v in rows.items()}
    free = {lab: len(v) for lab, v in rows.items()}
    ready = [(s, [lab for lab in labels if lab != s.label and lab not in near[s.id]]) for s in pool]
    ready.sort(key=lambda p: len(p[1]))
    room = Counter(lab for _, eligible in ready for lab in eligible)  # items left that may take it
    out, failed = [], set()
    for s, eligible in ready:
        x = np.array(vec[s.id], dtype=float)
        best = []
        for lab in eligible:
            if free[lab]:
                d = ((tokens[lab] - x) ** 2).sum(axis=1)
                d[taken[lab]] = np.inf
                j = int(d.argmin())
                urgent = room[lab] - free[lab] <= 0  # every item left must take it
                best.append((not urgent, float(d[j]), r.random(), lab, j))
        room.subtract(eligible)
        if len(best) < n - 1:
            failed.add(s.id)
            continue
        best.sort()
        chosen = []
        for *_, lab, j in best[: n - 1]:
            taken[lab][j] = True
            free[lab] -= 1
            chosen.append(lab)
        out.append((s, chosen))
    return out, failed


def _nonempty_subsets(n: int) -> list[tuple[int, ...]]:
    return [tuple(i for i in range(n) if mask >> i & 1) for mask in range(1, 2**n)]


def _flow_pick(
    rows: Sequence[tuple[Sequence[str], int]], cap: dict[str, int], r: random.Random | None = None
) -> list[list[str] | None]:
    """For each row (allowed labels, how many), that many distinct allowed labels, with
    label ``L`` taken at most ``cap[L]`` times in all (no cap where absent), by maximum flow
    (scipy, deterministic); None for a row the flow cannot fill."""
    import numpy as np
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    labels = sorted({lab for allowed, _ in rows for lab in allowed})
    if r is not None:  # augmenting paths follow edge order: shuffled, so which labels a row
        r.shuffle(labels)  # gets does not follow from the labels it could take
        rows = [(r.sample(list(allowed), len(allowed)), k) for allowed, k in rows]
    m = len(rows)
    index = {lab: m + 1 + i for i, lab in enumerate(labels)}
    src, sink = 0, m + 1 + len(labels)
    edges: list[tuple[int, int, int]] = []
    for j, (allowed, k) in enumerate(rows):
        edges.append((src, 1 + j, k))
        edges += [(1 + j, index[lab], 1) for lab in allowed]
    edges += [(index[lab], sink, cap.get(lab, m)) for lab in labels]
    edges = [e for e in edges if e[2] > 0]
    if not edges:
        return [None if k else [] for _, k in rows]
    r_, c_, w_ = zip(*edges, strict=False)
    graph = csr_matrix((np.asarray(w_, dtype=np.int32), (r_, c_)), shape=(sink + 1, sink + 1))
    flow = maximum_flow(graph, src, sink, method="dinic").flow.tocoo()
    used = {(int(a), int(b)) for a, b, f in zip(flow.row, flow.col, flow.data, strict=False) if f > 0}
    out: list[list[str] | None] = []
    for j, (allowed, k) in enumerate(rows):
        got = [lab for lab in allowed if (1 + j, index[lab]) in used]
        out.append(got if len(got) == k else None)
    return out


def _balanced_wrong(
    chosen: Sequence[tuple[StudyView, list[str], tuple[int, ...]]], right: Counter[str], n: int,
    r: random.Random | None = None,
) -> tuple[list[list[str] | None], Counter[str]]:
    """Wrong options per study (``n - len(subset)`` labels of its ``absent`` list) so that
    every label is wrong ``slots / right-total`` times per time it is right (rounded per
    label: floors, then the largest remainders). Returns the options (None for a study not
    filled) and each label's shortfall (empty when every study is filled)."""
    slots, total_right = sum(n - len(sub) for _, _, sub in chosen), sum(right.values())
    labels = sorted({lab for _, absent, _ in chosen for lab in absent} | set(right))
    exact = {lab: slots * right[lab] / max(total_right, 1) for lab in labels}
    target = {lab: int(exact[lab]) for lab in labels}
    spare = slots - sum(target.values())
    for lab in sorted(labels, key=lambda lab: (-(exact[lab] - target[lab]), lab))[: max(spare, 0)]:
        target[lab] += 1
    out = _flow_pick([(absent, n - len(sub)) for _, absent, sub in chosen], target, r)
    got = Counter(lab for o in out if o is not None for lab in o)
    deficit = Counter({lab: target[lab] - got[lab] for lab in labels if got[lab] < target[lab]})
    if all(o is not None for o in out):
        deficit = Counter()
    return out, deficit


class Classification:
    name = TASK

    def generate(self, studies: Sequence[StudyView], ctx: BuildContext) -> list[Item]:
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

    def _singles(self, specs: list[_Single], ctx: BuildContext, subtask: str) -> list[Item]:
        """Hard distractors, balanced per context bin, then positions round-robin per split.

        A text-only model sees the quoted box and the frame index, and both say a lot about
        the label (effusions are large, meniscus tears small and low). So items are put in
        context bins (``_context_bins``: anatomy, then box size / position and frame for
        ``finding_in_box``, frame for ``finding_on_frame``), and within a bin every label is
        shown as a wrong option exactly ``n - 1`` times as often as it is right: the
        distractors are the other answers of the same bin, i.e. findings that occur with
        boxes like this one on frames like this one in this anatomy. Then P(right | label
        shown, bin) = 1 / n for every label. That needs every label to be the answer of at
        most 1 / n of its bin's items; the items of labels above that share are not asked
        (``ctx.skipped``), nor items that cannot get ``n - 1`` wrong options of the bin.
        Bins are per split, so the balance holds in every split on its own.
        """
        n = ctx.n_options
        r = rng(ctx.seed, "choice", subtask)
        template = f"{TASK}/{subtask}/frame"
        picked: list[tuple[_Single, list[str]]] = []
        for _, members in sorted(_context_bins(specs, subtask).items()):
            chosen, dropped = _balanced_distractors(members, n, r)
            picked += chosen
            for reason, count in sorted(dropped.items()):
                ctx.skip(template, reason, count)
        picked.sort(key=lambda p: p[0].id)
        r.shuffle(picked)
        out = []
        for group in group_by(picked, lambda p: p[0].view.split).values():
            for i, (spec, d) in enumerate(group):
                # the order distractors were picked in follows their labels: shuffled, so
                # option positions say nothing about which option was inserted
                d = list(d)
                rng(ctx.seed, "option_order", spec.id).shuffle(d)
                out.append(self._single(spec, d, i % n))
        return out

    def _single(self, spec: _Single, distractors: list[str], position: int) -> Item:
        options = distractors[:position] + [spec.label] + distractors[position:]
        letter = marked(position)
        return make_item(
            spec.view, task=TASK, subtask=spec.subtask, frame=spec.frame, label=spec.label,
            question=spec.question, options=options,
            answer={"type": "choice", "value": position},
            answer_text=f"{letter} {spec.label}", evidence=spec.evidence,
            reasoning=f"{spec.why} The other options have no box on frames "
            f"{max(spec.frame - 1, 0)}-{spec.frame + 1}. Answer: {letter} {spec.label}.",
            chance=1 / len(options), instance=spec.instance,
        )

    def _multi_split(self, views: list[StudyView], ctx: BuildContext, split: object) -> list[Item]:
        """Select-all items of one split, balanced per anatomy (``_multi_group``)."""
        out: list[Item] = []
        for anatomy, group in group_by(views, lambda v: v.study.anatomy).items():
            vocab = ctx.pathology_vocab.get(str(anatomy), [])
            out += self._multi_group(group, vocab, ctx, split, anatomy)
        return out

    def _multi_group(
        self, views: list[StudyView], vocab: list[str], ctx: BuildContext, split: object, anatomy: object
    ) -> list[Item]:
        """Select-all items of one (split, anatomy) that say nothing without the volume.

        Options are abnormal findings only (labels like "Normal for age" are not findings).
        1. Answer subsets: every non-empty subset of option positions equally often (so the
           answer size is 1, 2, 3, 4 in the ratio 4 : 6 : 4 : 1), in every split and anatomy
           alike; a study gets a size it has enough findings for. Studies beyond the largest
           count the studies allow are not asked (``answer_subsets_not_uniform``).
        2. True options: the study's findings, by maximum flow under per-label caps.
        3. Wrong options: labels absent from the study (never study-level, never boxed),
           by maximum flow so that every label is a wrong option ``R`` times per time it is
           right (``R`` = wrong slots / right slots of the group, rounded per label), i.e.
           P(option right | label shown) is the same for every label of the split.
        Where 3 falls short (a common label, e.g. a meniscus tear, is absent from too few
        studies to be wrong often enough), that label's cap on being right is lowered and
        all steps are redone; studies whose findings cannot fill their subset under the caps
        are not asked (``no_balanced_true_options``).
        """
        n = ctx.n_options
        template = f"{TASK}/findings_present/volume"
        r = rng(ctx.seed, "multi_choice_order", split, anatomy)
        cands = []
        for v in sorted(views, key=lambda v: v.id):
            absent = [lab for lab in vocab if lab not in v.labels]
            if v.pathology and len(absent) + min(len(v.pathology), n) >= n:
                cands.append((v, absent))
            elif v.pathology:
                ctx.skip(template, "too_few_absent_labels")
        r.shuffle(cands)
        subsets = _nonempty_subsets(n)
        r.shuffle(subsets)
        subsets.sort(key=len)  # the remainder goes to the smaller subsets (more studies fit)

        # Rounds: plan the subsets, pick true options by flow under per-label caps, pick
        # wrong options by flow; a study whose true options cannot be picked is left out,
        # and a label that cannot be wrong often enough gets a lower cap on being right.
        excluded: set[str] = set()
        cap_right: dict[str, int] = {}
        while True:
            pool = [c for c in cands if c[0].id not in excluded]
            chosen = self._plan_subsets(pool, subsets, n)
            trues = _flow_pick(
                [(v.pathology, len(sub)) for v, _, sub in chosen], cap_right,
                rng(ctx.seed, "multi_choice_true", split, anatomy),
            )
            short = [chosen[j][0].id for j, t in enumerate(trues) if t is None]
            if short:
                excluded.update(short)
                continue
            right = Counter(lab for t in trues for lab in t)  # type: ignore[union-attr]
            falses, deficit = _balanced_wrong(chosen, right, n, rng(ctx.seed, "multi_choice_wrong", split, anatomy))
            if not deficit:
                break
            ratio = sum(n - len(sub) for _, _, sub in chosen) / max(sum(right.values()), 1)
            for lab, d in deficit.items():
                cap_right[lab] = right[lab] - max(1, math.ceil(d / ratio))
        for _ in excluded:
            ctx.skip(template, "no_balanced_true_options")
        for _ in range(len(cands) - len(excluded) - len(chosen)):
            ctx.skip(template, "answer_subsets_not_uniform")
        return [
            self._multi(v, sub, trues[j], falses[j], ctx)  # type: ignore[arg-type]
            for j, (v, _, sub) in enumerate(chosen)
        ]

    @staticmethod
    def _plan_subsets(
        cands: list[tuple[StudyView, list[str]]], subsets: list[tuple[int, ...]], n: int
    ) -> list[tuple[StudyView, list[str], tuple[int, ...]]]:
        """The most studies that can take every answer subset equally often (round-robin
        over ``subsets``), largest subsets first, each to the fitting study with the fewest
        findings."""
        order = sorted(range(len(cands)), key=lambda i: len(cands[i][0].pathology))
        # per answer size, the studies that fit it, in the greedy's order
        fits = {size: [i for i in order if len(cands[i][0].pathology) >= size
                       and len(cands[i][1]) >= n - size] for size in {len(s) for s in subsets}}
        total = len(cands)
        while total > 0:
            wanted = sorted((subsets[i % len(subsets)] for i in range(total)), key=len, reverse=True)
            got: dict[int, tuple[int, ...]] = {}
            start = dict.fromkeys(fits, 0)  # fitting studies before this are taken
            for sub in wanted:
                size, queue = len(sub), fits[len(sub)]
                while start[size] < len(queue) and queue[start[size]] in got:
                    start[size] += 1
                if start[size] == len(queue):
                    break
                got[queue[start[size]]] = sub
            else:
                return [(v, absent, got[i]) for i, (v, absent) in enumerate(cands) if i in got]
            total -= 1
        return []

    def _multi(
        self,
        v: StudyView,
        positions: tuple[int, ...],
        true_labels: list[str],
        false_labels: list[str],
        ctx: BuildContext,
    ) -> Item:
        r = rng(ctx.seed, "multi_choice", v.id)
        n = ctx.n_options
        true_labels, false_labels = list(true_labels), list(false_labels)
        r.shuffle(true_labels)
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
        letters = ", ".join(marked(i) for i in answer)
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
