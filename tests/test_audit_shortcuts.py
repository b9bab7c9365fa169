"""The audit's learners beyond the linear one, each shown a deliberately leaky template:
per split label rates (balance pooled over splits), option x option-set features with a
multi-choice decision that can flag, a non-degenerate reference for counts, and both tails
(a learner far below chance is a reversible leak). Items are the knee phantom build's, with
answers and options rewritten to carry exactly one shortcut each."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from voxqa.build import build_fastmri_plus
from voxqa.dataset.audit import LabelRateRule, audit_items, likeliest_subset
from voxqa.dataset.folder import read_items, read_studies
from voxqa.phantom import write_phantom
from voxqa.schema import ChoiceAnswer, Item, MultiChoiceAnswer, NumberAnswer, YesNoAnswer

LABELS = [f"Finding {c}" for c in "ABCDEFGH"]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("shortcuts")
    src = write_phantom(root / "src", n=40, seed=5, shape=(12, 48, 48))
    build_fastmri_plus([(src["annotations"], src["file_list"])], root / "ds", volumes=src["volumes"],
                       fractions=(0.5, 0.25, 0.25))
    return SimpleNamespace(items=read_items(root / "ds"), studies=read_studies(root / "ds"))


def _copies(base: Item, template: str, n: int, make) -> list[Item]:
    """``n`` items of ``template`` from ``base`` (splits 2 : 1 : 1), ``make(j, split)`` giving
    the fields that differ."""
    out = []
    for j in range(n):
        split = ("train", "train", "val", "test")[j % 4]
        out.append(base.model_copy(update={"id": f"{template}:{j}", "split": split,
                                           "template": template, **make(j, split)}))
    return out


def _row(phantom, items: list[Item], template: str) -> dict:
    return audit_items(items, phantom.studies)["templates"][template]


def _pooled_balance_choice(j: int, split: str, r: random.Random) -> dict:
    """Labels A-D more often right than E-H in train, less often in val + test, as balance
    pooled over splits makes them (a label over its share in train is under it held out)."""
    often = tuple("ABCD") if split == "train" else tuple("EFGH")
    options = r.sample(LABELS, 4)
    weights = [4.0 if o[-1] in often else 1.0 for o in options]
    answer = r.choices(range(4), weights=weights)[0]
    return {"options": options, "answer": ChoiceAnswer(value=answer), "chance": 0.25,
            "question": "Which finding is inside the box?"}


def test_balance_pooled_over_splits_is_flagged_in_both_tails(phantom) -> None:
    base = next(it for it in phantom.items if it.answer.type == "choice")
    r = random.Random(0)
    items = _copies(base, "leaky/pooled", 800, lambda j, s: _pooled_balance_choice(j, s, r))
    row = _row(phantom, items, "leaky/pooled")
    assert row["flagged"]
    assert row["learners"]["least_right_in_train"]["flag"] == "above"
    assert row["learners"]["most_right_in_train"]["flag"] == "below"


def test_balance_within_each_split_is_not_flagged(phantom) -> None:
    base = next(it for it in phantom.items if it.answer.type == "choice")
    r = random.Random(1)
    items = _copies(base, "clean/choice", 800, lambda j, s: {
        "options": r.sample(LABELS, 4), "answer": ChoiceAnswer(value=r.randrange(4)), "chance": 0.25})
    row = _row(phantom, items, "clean/choice")
    assert not row["flagged"], row["learners"]


def _subsets() -> list[tuple[int, ...]]:
    return [tuple(i for i in range(4) if m >> i & 1) for m in range(1, 16)]


def test_option_set_that_carries_its_answer_is_flagged(phantom) -> None:
    """Six option sets, each always with the same answer labels; every answer size equally
    often per label, so no single label says anything: only the set does."""
    base = next(it for it in phantom.items if it.answer.type == "multi_choice")
    r = random.Random(2)
    sets = [r.sample(LABELS, 4) for _ in range(6)]
    truth = [set(r.sample(s, r.randint(1, 3))) for s in sets]

    def make(j: int, split: str) -> dict:
        k = j % len(sets)
        options = r.sample(sets[k], 4)
        value = [i for i, o in enumerate(options) if o in truth[k]]
        return {"options": options, "answer": MultiChoiceAnswer(value=value), "chance": 1 / 15}

    row = _row(phantom, _copies(base, "leaky/option_set", 400, make), "leaky/option_set")
    assert row["learners"]["linear"]["flag"] == "above", row["learners"]


def test_multi_choice_without_a_leak_is_not_flagged(phantom) -> None:
    base = next(it for it in phantom.items if it.answer.type == "multi_choice")
    r = random.Random(3)
    items = _copies(base, "clean/multi", 400, lambda j, s: {
        "options": r.sample(LABELS, 4), "answer": MultiChoiceAnswer(value=list(r.choice(_subsets()))),
        "chance": 1 / 15})
    assert not _row(phantom, items, "clean/multi")["flagged"]


def test_multi_choice_decision_is_not_every_option() -> None:
    """Most options right on average (answer sizes uniform over the 15 subsets: 2.13 of 4)
    made "p > 0.5 per option" pick all four; the likeliest set under the size prior does not."""
    from collections import Counter

    sizes = Counter({1: 4, 2: 6, 3: 4, 4: 1})
    base = 32 / 60  # options right on average
    assert likeliest_subset(dict.fromkeys(range(4), base), sizes) != (0, 1, 2, 3)
    assert likeliest_subset({0: 0.9, 1: 0.1, 2: 0.1, 3: 0.1}, sizes) == (0,)


def test_a_learner_far_below_chance_is_flagged(phantom) -> None:
    """A word that means "yes" in train and "no" in val + test: the linear learner scores far
    below chance, which read the other way round is far above."""
    base = next(it for it in phantom.items if it.answer.type == "yes_no")
    r = random.Random(4)

    def make(j: int, split: str) -> dict:
        word = r.choice(("alpha", "beta"))
        yes = (word == "alpha") == (split == "train")
        return {"question": f"Is {word} present?", "answer": YesNoAnswer(value="yes" if yes else "no"),
                "chance": 0.5}

    row = _row(phantom, _copies(base, "leaky/reversed", 200, make), "leaky/reversed")
    assert row["learners"]["linear"]["flag"] == "below" and row["flagged"]


def test_counts_are_compared_with_guessing_not_with_the_best_constant(phantom) -> None:
    """Counts that are 0 nine times in ten: the constant "0" is the shortcut; compared with
    itself it could never be flagged, compared with guessing from the train answers it is."""
    base = next(it for it in phantom.items if it.answer.type == "number")
    r = random.Random(5)
    items = _copies(base, "leaky/counts", 400, lambda j, s: {
        "answer": NumberAnswer(value=0 if r.random() < 0.9 else r.randint(1, 3))})
    row = _row(phantom, items, "leaky/counts")
    assert row["reference"] == "train answer distribution"
    assert row["learners"]["constant"]["flag"] == "above" and row["flagged"]


def test_label_rate_rule_reads_train_rates() -> None:
    items = [Item.model_validate({
        "id": f"x{j}", "study_id": "s", "split": "train", "source": "fastmri_plus",
        "task": "classification", "subtask": "finding_in_box", "level": "frame", "frames": [0],
        "question": "q", "options": ["A", "B"], "answer": {"type": "choice", "value": int(j % 4 == 0)},
        "answer_text": "", "evidence": [], "reasoning": "", "chance": 0.5, "template": "t"})
        for j in range(8)]
    assert LabelRateRule(items, least=True).predict(items[:1]) == [1]  # B right 2 of 8
    assert LabelRateRule(items, least=False).predict(items[:1]) == [0]
