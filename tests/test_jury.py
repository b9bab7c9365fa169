"""Jury protocols: CT-SpatialVQA's published judge (fixed prompt, five items a request, three
judges, 2 of 3) beside voxqa's default, on real OpenAI-compatible servers on loopback."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from openai_stub import StubServer
from typer.testing import CliRunner

from voxqa.cli import app
from voxqa.errors import InputError
from voxqa.eval.jury import Jury, JudgeChat, make_jury
from voxqa.eval.jury_protocols import CT_SPATIALVQA, VOXQA, ct_spatialvqa_correct

#: evaluate_with_gpt.py L24-32 and L178-184 of github.com/Mashrafi27/CT-SpatialVQA @ e25374c,
#: formatted for a batch of two by hand (numbered from 1, three-space indents, no blank line between items)
RELEASED_PROMPT = """You are a medical QA evaluator.
For each item determine if the model prediction semantically matches the ground-truth answer.
Consider synonyms and equivalent medical phrasing as correct, but require the same clinical fact.
Respond strictly as JSON list where each element is:
{"index": <int>, "is_correct": true/false}

Batch:
1. Question: Where is the nodule?
   Answer: In the right upper lobe.
   Prediction: Right upper lobe.
2. Question: Which side is the effusion on?
   Answer: Left.
   Prediction: Right.
"""
_ENTRY = re.compile(r"(\d+)\. Question: (.*)\n   Answer: (.*)\n   Prediction: (.*)")

# six items (two requests of at most five per judge); each judge's vote, by hand
CASES = {f"item-{k}": (f"Question {k}?", f"reference {k}", f"candidate {k}") for k in "abcdef"}
VOTES = {  # judge -> item -> verdict; None: the judge's reply leaves the item out
    "gpt": {"a": True, "b": True, "c": False, "d": False, "e": True, "f": True},
    "qwen": {"a": True, "b": False, "c": True, "d": False, "e": True, "f": False},
    "gemini": {"a": False, "b": True, "c": False, "d": True, "e": None, "f": False},
}
# at least 2 of 3 (floor(100 * mean) / 100 >= 0.66): a 2/3, b 2/3 -> 1; c 1/3, d 1/3, f 1/3 -> 0;
# e: Gemini gave no verdict -> a recorded failure, no score
EXPECTED = {"item-a": 1.0, "item-b": 1.0, "item-c": 0.0, "item-d": 0.0, "item-e": None, "item-f": 0.0}


def released_judge(votes: dict[str, bool | None], reverse: bool = False):
    """A judge answering the released prompt: a JSON list of {"index", "is_correct"} for the
    numbered entries, in a code fence with a trailing comma (as Gemini wrote them)."""
    def answer(content: list) -> str:
        rows = [{"index": int(n), "is_correct": votes[q.split()[1].rstrip("?")]}
                for n, q, _, _ in _ENTRY.findall(content[0]["text"]) if votes[q.split()[1].rstrip("?")] is not None]
        text = json.dumps(rows[::-1] if reverse else rows)
        return "```json\n" + text[:-1] + ",]\n```" if rows else "[]"
    return answer


def test_released_rule_by_hand() -> None:
    assert [ct_spatialvqa_correct(v) for v in ([True, True, False], [True, False, False], [True, True, True],
                                               [True, True, None], [True, None, None])] == [True, False, True, True, False]
    assert VOXQA.decide([True, True, False]) == CT_SPATIALVQA.decide([True, True, False]) == 1.0


def test_ct_spatialvqa_prompt_is_the_released_one() -> None:
    cases = {"x": ("Where is the nodule?", "In the right upper lobe.", "Right upper lobe."),
             "y": ("Which side is the effusion on?", "Left.", "Right.")}
    assert CT_SPATIALVQA.prompt(cases, True) == RELEASED_PROMPT
    # read by the index each element names, never by position; a missing index gives no verdict
    assert CT_SPATIALVQA.read('[{"index": 2, "is_correct": false}, {"index": 1, "is_correct": true}]',
                              ["x", "y"], True) == {"x": True, "y": False}
    assert CT_SPATIALVQA.read('[{"index": 2, "is_correct": true}]', ["x", "y"], True) == {"y": True}
    assert CT_SPATIALVQA.read('[{"index": 3, "is_correct": true}, {"index": 1, "is_correct": "yes"}]',
                              ["x", "y"], True) == {}


def test_three_loopback_judges_two_of_three(tmp_path: Path) -> None:
    """Three judge servers answer CT-SpatialVQA's prompt; Gemini answers its batches in reverse
    order and leaves item e out. Each item gets its own three votes (keyed by index), 2 of 3
    decide, the missing verdict is a recorded failure, requests carry the released system
    message and at most five items."""
    with StubServer(released_judge(VOTES["gpt"])) as gpt, \
            StubServer(released_judge(VOTES["qwen"])) as qwen, \
            StubServer(released_judge(VOTES["gemini"], reverse=True)) as gemini:
        judges = [JudgeChat(name, server.url, system=CT_SPATIALVQA.system, max_tokens=CT_SPATIALVQA.max_tokens,
                            max_retries=0) for name, server in (("gpt", gpt), ("qwen", qwen), ("gemini", gemini))]
        jury = Jury(judges, tmp_path, protocol=CT_SPATIALVQA)
        got = asyncio.run(jury.verdicts({iid: c for iid, c in CASES.items()}))
        servers = (gpt, qwen, gemini)
    assert {i: v.score for i, v in got.items()} == EXPECTED
    assert got["item-e"].failures == ["openai:gemini: no verdict for this item in its reply"]
    for server in servers:
        assert sorted(len(_ENTRY.findall(r["messages"][-1]["content"][0]["text"])) for r in server.requests) == [1, 5]
        assert all(r["messages"][0] == {"role": "system", "content": "You are a strict medical QA evaluator."}
                   and r["max_tokens"] == 512 and r["temperature"] == 0.0 for r in server.requests)
    # cached under the protocol: the default protocol's keys never see these verdicts
    reloaded = Jury(judges, tmp_path, protocol=CT_SPATIALVQA)
    assert reloaded._case_key(judges[0], CASES["item-a"]) in reloaded.cache
    assert Jury._key(judges[0], *CASES["item-a"]) not in reloaded.cache
    assert jury.describe() == {"protocol": "ct-spatialvqa", "batch": 5, "rule": CT_SPATIALVQA.rule,
                               "judges": ["openai:gpt", "openai:qwen", "openai:gemini"]}


def test_protocol_judge_count_and_name_checked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="takes 3 judges, got 2"):
        make_jury(["openai:a", "openai:b"], "http://127.0.0.1:9/v1", tmp_path, protocol="ct-spatialvqa")
    with pytest.raises(InputError, match="known protocols are voxqa, ct-spatialvqa"):
        make_jury(["openai:a"], "http://127.0.0.1:9/v1", tmp_path, protocol="sgmri")
    default = make_jury(["openai:a"], "http://127.0.0.1:9/v1", tmp_path)
    assert default.protocol is VOXQA and default.batch == 1 and default.judges[0].system is None


def test_score_cli_with_ct_spatialvqa_protocol(tmp_path: Path) -> None:
    """`voxqa score RUN --judge x3 --jury-protocol ct-spatialvqa` on a released-format run: one
    request of five items per judge, each item's verdict by its index, results.json says which
    protocol judged."""
    from test_importers import CT_PREDICTIONS, CT_QA, write_ct

    src = write_ct(tmp_path / "src")
    runner = CliRunner()
    for args in (["import", "ct-spatialvqa", "--qa", src["qa"], "--out", tmp_path / "ds"],
                 ["import", "ct-spatialvqa-run", "--dataset", tmp_path / "ds",
                  *[a for e in src["evals"] for a in ("--eval", e)], "--out", tmp_path / "run"]):
        res = runner.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
    right = {p for p, (_, _, a) in zip(CT_PREDICTIONS, CT_QA, strict=True) if p.rstrip(".").lower() in a.lower()}

    def judge(content: list) -> str:
        entries = _ENTRY.findall(content[0]["text"])
        return json.dumps([{"index": int(n), "is_correct": p in right} for n, _, _, p in entries][::-1])

    with StubServer(judge) as server:
        res = runner.invoke(app, ["score", str(tmp_path / "run"), "--judge", "openai:gpt-4o-mini", "--judge",
                                  "openai:qwen-plus", "--judge", "openai:gemini-2.0-flash",
                                  "--judge-base-url", server.url, "--jury-protocol", "ct-spatialvqa"])
        assert res.exit_code == 0, res.output
        assert len(server.requests) == 3 and {r["model"] for r in server.requests} == {
            "gpt-4o-mini", "qwen-plus", "gemini-2.0-flash"}
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["jury"]["protocol"] == "ct-spatialvqa"
    # by hand: "Right upper lobe." / "In the right upper lobe.", "Left." / "The left side.", "Normal." /
    # "The aortic arch is normal in calibre." are judged right; "Left lung." and "Bilateral." are not
    assert results["overall"]["metrics"]["judge"]["mean"] == pytest.approx(3 / 5)
