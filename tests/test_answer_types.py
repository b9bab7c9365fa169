"""The answer-type registry (voxqa.answers) on real items of three rendered phantoms.

Every answer type the schema allows is registered; per type, the gold training target of
real items parses back to the gold answer and scores perfect, the blind baseline's written
value reads back, chance follows the documented rule (1/2, 1/k, 1/(2^k - 1)) and random
replies are valid answers; option letters have one format.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any, get_args

import pytest
from helpers import rendered_phantom, rendered_segmentation
from typer.testing import CliRunner

from voxqa.answers import ANSWER_TYPES
from voxqa.answers.base import AnswerType
from voxqa.answers.options import index_of, letter, letters, marked
from voxqa.boxes.profiles import get_profile
from voxqa.cli import app
from voxqa.conversation import InlineBoxes, build_sample
from voxqa.dataset.folder import read_items, read_studies
from voxqa.eval.metrics.items import score_item
from voxqa.eval.parse import parse_answer
from voxqa.eval.score import gold_value
from voxqa.schema import Answer, Item

PIXEL = get_profile("pixel")
#: per-item scores of a perfect answer (those a type has)
PERFECT = {"correct": 1.0, "a_score": 1.0, "exact_match": 1.0, "set_f1": 1.0, "within_tolerance": 1.0,
           "abs_error": 0.0, "frame_precision": 1.0, "frame_recall": 1.0, "frame_f1": 1.0, "miou": 1.0,
           "v_score": 1.0, "iou3d": 1.0, "acc@0.25": 1.0, "acc@0.5": 1.0, "bleu": 1.0, "rouge_l": 1.0,
           "entity_f1": 1.0, "token_f1": 1.0}
Row = tuple[Path, Item, tuple[int, int]]


def schema_types() -> set[str]:
    return {m.model_fields["type"].default for m in get_args(get_args(Answer)[0])}


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[Row]:
    """(folder, item, study frame size) of every rendered item of a fastMRI+ phantom, a
    segmentation phantom (box3d answers) and a knee phantom (grades)."""
    root = tmp_path_factory.mktemp("answer_types")
    knee_src, knee = root / "knee_src", root / "knee"
    for args in (["phantom", "--knee", "--out", knee_src, "--n", "4"],
                 ["build", "knee-grading", "--studies", knee_src / "studies.csv",
                  "--grades", knee_src / "grades.csv", "--out", knee],
                 ["render", knee]):
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
    folders = [rendered_phantom(root, n=24, seed=0, size=160, context=4),
               rendered_segmentation(root, size=96, context=4), knee]
    out = []
    for folder in folders:
        sizes = {st.id: st.frame_size for st in read_studies(folder)}
        out += [(folder.resolve(), it, sizes[it.study_id]) for it in read_items(folder) if it.images]
    return out


@pytest.fixture(scope="module")
def sample(rows: list[Row]) -> list[Row]:
    """Up to 5 items per (template, answer type): every kind of question, quickly."""
    kept: Counter[tuple[str, str]] = Counter()
    out = []
    for row in rows:
        key = (row[1].template, row[1].answer.type)
        if kept[key] < 5:
            kept[key] += 1
            out.append(row)
    return out


def test_registry_covers_every_answer_type_the_schema_allows() -> None:
    assert set(ANSWER_TYPES) == schema_types()
    for name, kind in ANSWER_TYPES.items():
        assert isinstance(kind, AnswerType) and kind.name == name and kind.instruction.strip()
        assert kind.selects in (None, "one", "many")


def test_the_phantoms_hold_every_answer_type(rows: list[Row]) -> None:
    assert {it.answer.type for _, it, _ in rows} == schema_types()


def test_gold_target_parses_back_and_scores_perfect(sample: list[Row]) -> None:
    """The structured target an ideal model writes is read back as the gold answer, and the
    gold answer scored against itself gets every score's best value."""
    for folder, item, frame_size in sample:
        target = build_sample(item, folder, frame_size, PIXEL, InlineBoxes(PIXEL)).target
        parsed = parse_answer(target, item, "pixel", frame_size=frame_size)
        assert parsed.ok, (item.id, parsed.error)
        gold = gold_value(item, frame_size, folder, "pixel")
        assert parsed.value == gold, item.id
        scores = score_item(item.answer.type, gold, parsed.value,
                            tolerance=getattr(item.answer, "tolerance", 0.0), scale=getattr(item.answer, "scale", ()))
        perfect = {k: v for k, v in scores.items() if k in PERFECT}
        assert perfect and perfect == pytest.approx({k: PERFECT[k] for k in perfect}), (item.id, scores)
        assert all(scores[k] == 0 for k in scores if k.startswith(("fp@", "fn@"))), (item.id, scores)


def test_unparsed_answers_score_as_wrong(sample: list[Row]) -> None:
    for folder, item, frame_size in sample:
        gold = gold_value(item, frame_size, folder, "pixel")
        scores = score_item(item.answer.type, gold, None, scale=getattr(item.answer, "scale", ()))
        assert all(scores[k] in (0.0, None) for k in scores if k in PERFECT and k != "abs_error"), scores


def test_blind_reply_text_reads_back(sample: list[Row]) -> None:
    """What the prior baseline writes for a value is read back as that value."""
    for _, item, frame_size in sample:
        kind = ANSWER_TYPES[item.answer.type]
        if not kind.blind_prior:
            continue
        parsed = parse_answer(kind.reply_text(item.answer.value), item, "pixel", frame_size=frame_size)
        assert parsed.ok and parsed.value == item.answer.value, (item.id, parsed)


def chance_rule(item: Item) -> float | None:
    """The documented rule: 1/2 for yes/no, 1/k for one of k options, 1/(2^k - 1) for any
    non-empty subset of k options; none where the answer space is not finite and uniform."""
    k = len(item.options or [])
    return {"yes_no": 1 / 2, "choice": 1 / k if k else None,
            "multi_choice": 1 / (2 ** k - 1) if k else None}.get(item.answer.type)


def test_chance_follows_the_documented_rule(rows: list[Row]) -> None:
    for _, item, _ in rows:
        kind = ANSWER_TYPES[item.answer.type]
        assert kind.chance(item) == pytest.approx(chance_rule(item)), item.id
        assert kind.chance(item) == pytest.approx(item.chance), item.id  # what the build recorded


def test_random_replies_are_valid_answers(sample: list[Row]) -> None:
    """The random baseline draws from the answer space (numbers and grades from the
    template's pool, which may lie off a grade's scale, so not these)."""
    rng = random.Random(0)
    for _, item, frame_size in sample:
        kind = ANSWER_TYPES[item.answer.type]
        if kind.numeric:
            continue
        reply = kind.random_reply(item, rng, PIXEL, [])
        assert parse_answer(reply, item, "pixel", frame_size=frame_size).ok, (item.id, reply)


def test_audit_hooks_recognise_the_gold_answer(rows: list[Row]) -> None:
    for _, item, _ in rows:
        kind = ANSWER_TYPES[item.answer.type]
        if kind.audited:
            value = kind.hashable(item.answer.value)
            assert hash(value) is not None and kind.matches(item.answer, value), item.id


def test_option_letters_have_one_format(sample: list[Row]) -> None:
    assert [letter(i) for i in range(4)] == ["A", "B", "C", "D"]
    assert (marked(2), letters([0, 2]), index_of("c")) == ("(C)", "A, C", 2)
    for folder, item, frame_size in sample:
        if not item.options:
            continue
        user = build_sample(item, folder, frame_size, PIXEL, InlineBoxes(PIXEL)).user_text()
        for i, option in enumerate(item.options):
            assert f"\n{marked(i)} " in user, item.id
            if item.answer.type == "choice":
                shown: Any = ANSWER_TYPES["choice"].display(item, i)
                assert shown == f"{letter(i)}. {option}"
                assert parse_answer(f"Answer: {marked(i)}", item).value == i
