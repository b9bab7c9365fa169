"""Hard distractors: single-choice distractors are the answers of other items
with similar quoted boxes and frames in the same anatomy, balanced per context bin, so that
neither the label, nor the geometry, nor the frame index tells the answer."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from voxqa.schema import Box, Finding, Study
from voxqa.tasks.base import BuildContext, StudyView
from voxqa.tasks.classification import Classification, _context_bins


def _synthetic(n_per_label: int = 60, seed: int = 0) -> list[StudyView]:
    """Eight labels whose box size, position and frame grow with the label: geometry says a
    lot about the label (a sanity check: the audit's linear learner does not flag the old rule
    here either, so the per-bin balance test above is the check of the new rule). One finding per study, so every other label is a valid
    distractor."""
    r = random.Random(seed)
    studies = []
    for li in range(8):
        for j in range(n_per_label):
            size = 8 + 3 * li + r.randint(0, 24)
            x0 = 20 + 10 * li + r.randint(0, 70)
            y0 = 40 + 8 * li + r.randint(0, 70)
            frame = 3 + li + r.randint(0, 8)
            sid = f"s{li}_{j}"
            split = ("train", "train", "train", "val", "test")[j % 5]
            studies.append(Study(
                id=sid, patient_id=sid, source="fastmri_plus", modality="MR", anatomy="knee",
                frame_count=30, frame_size=(320, 320), split=split, view_axis=0,
                frame_size_source="default",
                findings=[Finding(label=f"L{li}", raw_label=f"L{li}", instance_id=0,
                                  boxes=[Box(frame=frame, box=(x0, y0, x0 + size, y0 + size))])],
            ))
    return [StudyView(s, lambda lab: True) for s in studies]


def _items(views):
    vocab = sorted({f.label for v in views for f in v.study.findings})
    ctx = BuildContext(seed=0, is_pathology=lambda lab: True, pathology_vocab={"knee": vocab},
                  boxed_vocab={"knee": vocab})
    return Classification().generate(views, ctx), ctx


def test_each_label_is_right_one_in_n_times_it_is_shown_per_context_bin() -> None:
    views = _synthetic()
    items, ctx = _items(views)
    box = [it for it in items if it.subtask == "finding_in_box"]
    assert len(box) >= 100
    specs = [s for v in views for s in Classification()._box_specs(v)]
    bin_of = {}
    for key, members in _context_bins(specs, "finding_in_box").items():
        for s in members:
            bin_of[(s.view.id, s.label, s.frame)] = key
    right: dict[tuple, Counter] = defaultdict(Counter)
    shown: dict[tuple, Counter] = defaultdict(Counter)
    for it in box:
        key = bin_of[(it.study_id, it.label, it.frames[0])]
        right[key][it.label] += 1
        shown[key].update(it.options)
    for key in shown:
        for lab, c in shown[key].items():
            assert c == 4 * right[key][lab], (key, lab, c, right[key][lab])
    # items that could not be balanced are counted, not silently lost
    single = sum(c for k, c in ctx.skipped.items() if "findings_present" not in k)
    assert single + len(box) + sum(
        1 for it in items if it.subtask == "finding_on_frame") == 2 * len(views)


def test_text_only_learner_stays_at_chance_when_geometry_is_informative() -> None:
    from voxqa.dataset.audit import audit_items

    views = _synthetic(n_per_label=80)
    items, _ = _items(views)
    audit = audit_items(items, [v.study for v in views])
    row = audit["templates"]["classification/finding_in_box/frame"]
    assert row["status"] == "pass", row
    assert row["learner"]["ci"][0] <= 0.25 < row["learner"]["ci"][1] or row["learner"]["accuracy"] <= 0.25


def test_distractors_are_never_near_labels_on_a_multi_label_study() -> None:
    views = _synthetic()
    items, _ = _items(views)
    by_id = {v.id: v for v in views}
    for it in items:
        if it.answer.type != "choice":
            continue
        v = by_id[it.study_id]
        (k,) = it.frames
        near = {e.label for f in (k - 1, k, k + 1) for e in v.evidence_for(frame=f)}
        for i, o in enumerate(it.options):
            if i != it.answer.value:
                assert o not in near | set(v.study_labels)


def _multi_label(n: int = 300, seed: int = 0) -> list[StudyView]:
    """Studies with 1-5 findings of eight labels, L0 far more common than L7."""
    r = random.Random(seed)
    studies = []
    for j in range(n):
        k = r.choice((1, 1, 2, 2, 3, 4, 5))
        labels = sorted(r.sample(range(8), k), key=lambda li: li)
        sid = f"m{j}"
        findings = [
            Finding(label=f"L{li}", raw_label=f"L{li}", instance_id=i,
                    boxes=[Box(frame=3 + i, box=(10, 10, 40, 40))])
            for i, li in enumerate(sorted(set(labels) | ({0} if r.random() < 0.6 else set())))
        ]
        studies.append(Study(
            id=sid, patient_id=sid, source="fastmri_plus", modality="MR", anatomy="knee",
            frame_count=30, frame_size=(320, 320), split=("train", "train", "train", "val", "test")[j % 5],
            view_axis=0, frame_size_source="default", findings=findings,
        ))
    return [StudyView(s, lambda lab: True) for s in studies]


def test_select_all_label_exposure_and_subsets_are_balanced_per_split() -> None:
    """P(option right | label shown) is the same for every label within each split (up to
    rounding), every answer subset is used equally often per split, and skipped studies are
    counted."""
    views = _multi_label()
    items, ctx = _items(views)
    multi = [it for it in items if it.subtask == "findings_present"]
    assert len(multi) >= 100
    skipped = sum(c for k, c in ctx.skipped.items() if "findings_present" in k)
    assert skipped + len(multi) == len(views)
    for split in ("train", "val", "test"):
        group = [it for it in multi if it.split == split]
        subsets = Counter(tuple(it.answer.value) for it in group)
        assert len(subsets) == 15 and max(subsets.values()) - min(subsets.values()) <= 1, subsets
        right, wrong = Counter(), Counter()
        for it in group:
            for i, o in enumerate(it.options):
                (right if i in it.answer.value else wrong)[o] += 1
        ratio = sum(wrong.values()) / sum(right.values())
        for lab in set(right) | set(wrong):
            assert abs(wrong[lab] - ratio * right[lab]) < 1, (split, lab, right[lab], wrong[lab])
