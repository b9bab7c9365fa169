"""Broken and hostile replies, requests that never end, secrets in error bodies and base URLs.

Each reply, whatever it holds, is one item's recorded failure or parse failure (in eval, the
jury and ``score --as-published``), never the end of a run; a request ends within its
timeout; Retry-After is capped; no part of a key or URL credential is stored or printed; and
parsing takes linear time, reading at most ``MAX_REPLY_CHARS`` of a reply. Real servers on
loopback (``tests/openai_stub.py``), replies made by the test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import rendered_phantom
from openai_stub import StubServer
from typer.testing import CliRunner

from voxqa.answers import reply as reply_mod
from voxqa.answers.frames import _CONTEXT_COUNT, _FRAME_RANGE
from voxqa.answers.reply import MAX_REPLY_CHARS, json_values
from voxqa.boxes import syntax
from voxqa.cli import app
from voxqa.eval.jury import Jury
from voxqa.eval.models import make_model
from voxqa.eval.models.openai_chat import OpenAIChat, retry_after
from voxqa.eval.parse import parse_answer
from voxqa.eval.redact import redact, safe_url, url_secrets
from voxqa.eval.run import PREDICTIONS, RUN, RunConfig, read_predictions, run_eval
from voxqa.eval.score import score_run
from voxqa.schema import Item

SECRET = "hunter2-not-a-pattern-9f3c"  # matches no Bearer/sk- pattern: only its exact value hides it


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """A small rendered fastMRI+ phantom: yes/no, counts, boxes, frames and captions in every split."""
    return rendered_phantom(tmp_path_factory.mktemp("replies"), n=8, seed=4, size=64, context=2)


def _run(folder: Path, out: Path, model, limit_s: float = 30, **kw) -> dict[str, int]:  # noqa: ANN001
    """``run_eval``, bounded: a request that never ends fails the test instead of hanging it."""
    return asyncio.run(asyncio.wait_for(run_eval(RunConfig(dataset=folder, out=out, **kw), model), limit_s))


def _openai(folder: Path, url: str, **kw: Any):  # noqa: ANN202
    model = make_model("openai:stub-vlm", folder, base_url=url, **kw)
    model.backoff = 0.01
    return model


# ---------------------------------------------------------------- any reply is one item's outcome


def test_a_body_that_is_not_the_gzip_it_claims_fails_its_item_and_the_run_goes_on(rendered, tmp_path) -> None:
    """Defect: a bad gzip content-encoding (httpx.DecodingError) was no transport error."""
    with StubServer(lambda content: "yes", faults=["gzip", "gzip"]) as srv:
        model = _openai(rendered, srv.url, max_retries=1)
        counts = _run(rendered, tmp_path / "run", model, split="test", tasks=("detection",), limit=3, concurrency=1)
    assert counts == {"items": 3, "already_done": 0, "ok": 2, "failed": 1}
    (failed,) = [r for r in read_predictions(tmp_path / "run" / PREDICTIONS).values() if r["status"] == "failed"]
    assert "gave up after 2 attempts" in failed["error"] and "DecodingError" in failed["error"]


def _cases(n: int) -> dict[str, tuple[str, str, str]]:
    return {f"i{k}": (f"question {k}?", "a small effusion", "a small effusion") for k in range(n)}


def test_the_jury_records_garbage_from_a_judge_as_that_items_failure(rendered, tmp_path) -> None:
    """A judge replying with bad gzip, a number, a list or 1,200 open brackets fails the item it
    was asked about (no jury score, the failure listed); the other items keep their verdicts."""
    replies = iter([7, ["yes"], "[" * 1200] + ["Yes."] * 10)
    with StubServer(lambda content: next(replies), faults=["gzip"]) as srv:
        jury = Jury([OpenAIChat("judge", srv.url, max_retries=0, max_tokens=8)], tmp_path, concurrency=1)
        verdicts = asyncio.run(jury.verdicts(_cases(5)))
    failures = {i: v.failures for i, v in verdicts.items()}
    assert "DecodingError" in failures["i0"][0]
    assert failures["i1"] == ["openai:judge: the reply is a int, not text"]
    assert failures["i2"] == ["openai:judge: the reply is a list, not text"]
    assert failures["i3"] == ["openai:judge: no verdict for this item in its reply"]
    assert [verdicts[i].score for i in ("i0", "i1", "i2", "i3", "i4")] == [None, None, None, None, 1.0]

    nested = "[" * 1200 + "]" * 1200  # batched: a list nested past the JSON reader's depth
    with StubServer(lambda content: nested) as srv:
        (tmp_path / "b").mkdir()
        jury = Jury([OpenAIChat("judge", srv.url, max_retries=0, max_tokens=8)], tmp_path / "b", batch=2)
        verdicts = asyncio.run(jury.verdicts(_cases(2)))
    assert all(v.score is None and "no verdict" in v.failures[0] for v in verdicts.values())


def test_score_with_a_jury_and_as_published_survive_garbage_replies(rendered, tmp_path) -> None:
    """``score --as-published sgmri-vqa`` on stored replies that are a number, a list or 1,200
    open brackets (AttributeError and RecursionError before): they count as no answer; a jury
    whose judge replies with garbage leaves those items without a jury score."""
    run = tmp_path / "oracle"
    _run(rendered, run, make_model("oracle", rendered), split=None)
    lines = [json.loads(x) for x in (run / PREDICTIONS).read_text().splitlines()]
    types = {it["id"]: it["answer"]["type"] for it in map(json.loads, (rendered / "items.jsonl").read_text().splitlines())}
    garbage = iter([7, ["yes"], "[" * 1200])
    for rec in lines:
        if types[rec["item_id"]] == "yes_no" and (bad := next(garbage, None)) is not None:
            rec["raw"] = bad
    (run / PREDICTIONS).write_text("".join(json.dumps(r) + "\n" for r in lines))
    with StubServer(lambda content: ["not", "text"]) as srv:
        jury = Jury([OpenAIChat("judge", srv.url, max_retries=0, max_tokens=8)], run)
        results = score_run(run, jury, as_published="sgmri-vqa")
    assert results["as_published"]["replies_not_text"] == 2
    assert results["as_published"]["as_published"]["columns"]["Detection"] < 100  # the garbage scored 0
    captions = results["by"]["task"]["captioning"]["metrics"]
    assert "bleu" in captions and "judge" not in captions  # every judge reply failed: no jury score


# ---------------------------------------------------------------- requests that never end


def test_a_trickling_server_cannot_outlive_the_timeout(rendered, tmp_path) -> None:
    """Defect: one byte every 0.4 s outlived --timeout 1 (httpx's timeout is per read). The
    timeout bounds the whole request: a timeout, retried, then the item's recorded failure."""
    with StubServer(lambda content: "yes", faults=["trickle"] * 3, trickle=0.4, trickle_bytes=8) as srv:
        model = _openai(rendered, srv.url, timeout=1.0, max_retries=1)
        t0 = time.monotonic()
        counts = _run(rendered, tmp_path / "run", model, split="test", tasks=("detection",), limit=2, concurrency=1)
        took = time.monotonic() - t0
    assert counts == {"items": 2, "already_done": 0, "ok": 1, "failed": 1}  # 2nd item: timeout, then answered
    (failed,) = [r for r in read_predictions(tmp_path / "run" / PREDICTIONS).values() if r["status"] == "failed"]
    assert failed["error"].endswith("timeout: no complete reply within 1 s")
    assert took < 3 * 3.2  # three trickled requests of 3.2 s each would take longer


@pytest.mark.parametrize("value", ["100000", "inf", "1e999", "Fri, 31 Dec 9999 23:59:59 GMT", "soon"])
def test_retry_after_is_capped_and_read_robustly(rendered, tmp_path, monkeypatch, value) -> None:
    """Defect: Retry-After: 100000 (or inf) slept without bound. It waits at most
    VOXQA_MAX_RETRY_AFTER (here 0.2 s), and a value that is no time leaves it to the backoff."""
    monkeypatch.setenv("VOXQA_MAX_RETRY_AFTER", "0.2")
    with StubServer(lambda content: "yes", faults=[f"retry-after:{value}"]) as srv:
        model = _openai(rendered, srv.url, max_retries=2)
        counts = _run(rendered, tmp_path / "run", model, limit_s=10, split="test", tasks=("detection",), limit=1)
        assert len(srv.requests) == 2
    assert counts["ok"] == 1 and model.max_retry_after == 0.2


def test_retry_after_values() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    at = lambda s: format_datetime(now + timedelta(seconds=s), usegmt=True)  # noqa: E731
    cases = {"5": 5.0, " 2.5 ": 2.5, "-3": 0.0, "inf": 60.0, "1e999": 60.0, "100000": 60.0, "nan": None,
             "soon": None, "": None, at(30): 30.0, at(-30): 0.0, at(10**6): 60.0, None: None}
    for value, expected in cases.items():
        assert retry_after(value, 60.0, now=now.timestamp()) == expected, value


def test_a_bad_retry_after_override_is_one_error(monkeypatch, rendered) -> None:
    monkeypatch.setenv("VOXQA_MAX_RETRY_AFTER", "forever")
    with pytest.raises(ValueError, match="VOXQA_MAX_RETRY_AFTER"):
        make_model("openai:m", rendered, base_url="http://127.0.0.1:9/v1")


# ---------------------------------------------------------------- no part of a secret leaks


def _echo_across_the_cut(auth: str) -> str:
    """An error text whose key starts 10 characters before the 200-character cut of its JSON body."""
    key = auth.removeprefix("Bearer ")
    return "x" * (190 - len('{"error": "bad key ')) + "bad key " + key


def _no_part_of(secret: str, text: str) -> None:
    assert not any(secret[i:i + 6] in text for i in range(len(secret) - 5)), text


def test_a_key_across_the_cut_of_an_error_body_is_masked_whole(rendered, tmp_path, monkeypatch) -> None:
    """Defect: error bodies were cut to 200 characters before redaction, so a key crossing the
    cut was stored (HTTP 400, predictions.jsonl) or printed (HTTP 401, the error line) in part."""
    monkeypatch.setenv("VOXQA_CUT_KEY", SECRET)
    runner = CliRunner()
    args = ["--model", "openai:m", "--split", "test", "--limit", "2", "--api-key-env", "VOXQA_CUT_KEY"]
    with StubServer(lambda content: "yes", echo_auth=400, echo_text=_echo_across_the_cut) as srv:
        res = runner.invoke(app, ["eval", str(rendered), *args, "--base-url", srv.url, "--out", str(tmp_path / "r400")])
    errors = [r["error"] for r in read_predictions(tmp_path / "r400" / PREDICTIONS).values()]
    assert len(errors) == 2 and all("bad key [REDA" in e for e in errors)
    _no_part_of(SECRET, (tmp_path / "r400" / PREDICTIONS).read_text() + res.output)
    with StubServer(lambda content: "yes", echo_auth=401, echo_text=_echo_across_the_cut) as srv:
        res = runner.invoke(app, ["eval", str(rendered), *args, "--base-url", srv.url, "--out", str(tmp_path / "r401")])
    assert res.exit_code != 0 and "HTTP 401" in res.output
    _no_part_of(SECRET, res.output)


def test_credentials_in_the_base_url_are_never_stored_or_printed(rendered, tmp_path, caplog) -> None:
    """Defect: --base-url http://user:password@host/v1 was stored in run.json and results.json.
    The requests still carry them (Basic authorization); nothing written or shown does, not
    even a server's echo of the authorization header, nor results.json of an older run.json."""
    password = "pw-7e1d-secret"
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    runner = CliRunner()
    run = tmp_path / "run"
    with StubServer(lambda content: "yes") as srv:
        url = srv.url.replace("http://", f"http://alice:{password}@")
        with caplog.at_level(logging.DEBUG):
            res = runner.invoke(app, ["--debug", "eval", str(rendered), "--model", "openai:m", "--base-url", url,
                                      "--split", "test", "--limit", "3", "--out", str(run)])
        assert res.exit_code == 0, res.output
        assert srv.headers and all(h["Authorization"] == f"Basic {basic}" for h in srv.headers)
    assert json.loads((run / RUN).read_text())["identity"]["model"]["base_url"] == srv.url
    outputs = [res.output, caplog.text]
    for cmd in (["score", str(run)], ["report", str(run), "--out", str(tmp_path / "report.html")]):
        outputs.append(runner.invoke(app, cmd).output)
    with StubServer(lambda content: "yes", echo_auth=400) as srv:  # a server echoing the authorization
        url = srv.url.replace("http://", f"http://alice:{password}@")
        outputs.append(runner.invoke(app, ["eval", str(rendered), "--model", "openai:m", "--base-url", url, "--split",
                                           "test", "--limit", "2", "--out", str(tmp_path / "echo")]).output)
    with StubServer(lambda content: "yes", echo_auth=401) as srv:  # refused: the error line names the URL
        url = srv.url.replace("http://", f"http://alice:{password}@")
        res = runner.invoke(app, ["eval", str(rendered), "--model", "openai:m", "--base-url", url, "--split",
                                  "test", "--out", str(tmp_path / "refused")])
        assert res.exit_code != 0 and "127.0.0.1" in res.output
        outputs.append(res.output)
    old = json.loads((run / RUN).read_text())  # a run.json written before URLs were cleaned
    old["identity"]["model"]["base_url"] = url
    (run / RUN).write_text(json.dumps(old))
    outputs.append(runner.invoke(app, ["score", str(run)]).output)
    stored = [run / RUN, run / PREDICTIONS, run / "results.json", tmp_path / "report.html",
              tmp_path / "echo" / PREDICTIONS]
    for text in outputs + [p.read_text() for p in stored[1:]]:
        assert password not in text and basic not in text and "alice" not in text, text
    assert "invalid key Basic [REDACTED]" in (tmp_path / "echo" / PREDICTIONS).read_text()


def test_safe_url_and_url_secrets() -> None:
    assert safe_url("http://localhost:8000/v1") == "http://localhost:8000/v1"  # unchanged: identities stay
    assert safe_url("https://u:p4ss@api.example.org/v1") == "https://api.example.org/v1"
    assert safe_url("https://h/v1?api-version=2024&api_key=abcd1234&token=t0k3n") == \
        "https://h/v1?api-version=2024&api_key=[REDACTED]&token=[REDACTED]"
    assert url_secrets("https://u:p4ss-word@h/v1?key=k3y-value")[::2] == ["p4ss-word", "k3y-value"]
    assert "tok3n-abc" not in redact("cannot reach https://tok3n-abc@h/v1: refused")
    assert redact("see https://example.org/a?b=c and mail a@b.c") == "see https://example.org/a?b=c and mail a@b.c"


# ---------------------------------------------------------------- parsing in linear time


def _item(answer: dict[str, Any], options: list[str] | None = None) -> Item:
    return Item.model_validate({
        "id": "t", "study_id": "s", "split": "test", "source": "phantom", "task": "detection", "subtask": "x",
        "level": "frame", "frames": [3], "question": "?", "options": options, "answer": answer,
        "answer_text": "", "reasoning": "", "template": "t",
        "images": [{"path": "f3.png", "frame": 3, "width": 160, "height": 160}]})


ITEMS = [_item({"type": "yes_no", "value": "yes"}), _item({"type": "choice", "value": 1}, ["a b", "c d"]),
         _item({"type": "multi_choice", "value": [0]}, ["a b", "c d"]), _item({"type": "number", "value": 3}),
         _item({"type": "frames", "value": [3]}), _item({"type": "boxes", "value": [{"frame": 3, "box": [1, 2, 3, 4]}]}),
         _item({"type": "box3d", "value": {"frame_start": 3, "frame_end": 4, "box": [1, 2, 3, 4]}}),
         _item({"type": "text", "value": "x"}), _item({"type": "grade", "value": 2, "scale": [0, 1, 2, 3]})]
PROSE = "The posterior horn of the medial meniscus shows a small tear; the cartilage is intact. "
#: replies that took quadratic (or worse) time: (profile, text repeated to the length)
HOSTILE = [("pixel", "7"), ("florence-2", PROSE), ("pixel", "Frame 3: [10, 20, 30, 40]\n"), ("pixel", "<think> x "),
           ("qwen2-vl", "<|object_ref_start|> x "), ("qwen2-vl", " "), ("kosmos-2", "<object> x "), ("pixel", "of ("),
           ("internvl", "<ref>a</ref><box>[ "), ("molmo", '<point x="1" y="2" '), ("radgrounder", "<p bbox=<loc0001>"),
           ("pixel", '{"answer": '), ("pixel", "[1, "), ("minicpm-v", "</ref><box>1 2 3 4</box>")]


def test_a_1_mb_reply_parses_to_a_result_and_says_it_was_cut() -> None:
    reply = ("yes " + PROSE) * (2**20 // (len(PROSE) + 4))
    for item in ITEMS:
        result = parse_answer(reply, item, "pixel")
        assert result.truncated and (result.ok or f"first {MAX_REPLY_CHARS} characters" in result.error)
    assert parse_answer(reply, ITEMS[0]).value == "yes"
    assert not parse_answer("yes", ITEMS[0]).truncated


@pytest.mark.parametrize(("profile", "unit"), HOSTILE)
def test_hostile_replies_at_the_size_limit_parse_to_a_result(profile: str, unit: str) -> None:
    """Each of these took from seconds to minutes at this size; now each reads to a result."""
    reply = (unit * (MAX_REPLY_CHARS // len(unit) + 1))[:MAX_REPLY_CHARS]
    for item in ITEMS:
        result = parse_answer(reply, item, profile)
        assert result.ok or result.error


def test_a_long_reply_is_recorded_as_truncated(rendered, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOXQA_MAX_REPLY_CHARS", "1000")
    replies = iter(["yes " * 25_000, "no"])
    with StubServer(lambda content: next(replies)) as srv:
        counts = _run(rendered, tmp_path / "run", _openai(rendered, srv.url), split="test", tasks=("detection",),
                      limit=2, concurrency=1)
    assert counts["ok"] == 2
    first, second = read_predictions(tmp_path / "run" / PREDICTIONS).values()
    assert first["parse_truncated"] is True and first["parsed"] == "yes" and len(first["raw"]) == 100_000
    assert "parse_truncated" not in second


# ---------------------------------------------------------------- same results as the patterns they replace

NUM = r"-?\d+(?:\.\d+)?"
REFERENCE = {  # the patterns as they were: the linear versions must find exactly what these find
    "florence": re.compile(r"([^<>]*?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>"),
    "qwen": re.compile(rf"(?:<\|object_ref_start\|>(?P<label>.*?)<\|object_ref_end\|>)?\s*<\|box_start\|>\s*\(\s*"
                       rf"({NUM})\s*,\s*({NUM})\s*\)\s*,\s*\(\s*({NUM})\s*,\s*({NUM})\s*\)\s*<\|box_end\|>", re.DOTALL),
    "point": re.compile(r'<point\s+x="([^"]+)"\s+y="([^"]+)"[^>]*>(.*?)</point>', re.DOTALL),
    "points": re.compile(r"<points\s+([^>]*)>(.*?)</points>", re.DOTALL),
    "think": re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE),
    "range": re.compile(r"(\d+)\s*(?:-|–|—|\bto\b|\bthrough\b)\s*(\d+)", re.IGNORECASE),
    "context": re.compile(r"\([^()]*\b(?:of|out of|total)\b[^()]*\)|\b(?:out\s+)?of\s+\d+\s+(?:frames|slices|images)\b",
                          re.IGNORECASE),
}
TOKENS = ["1", "23", " ", "\n", "[", "]", "{", "}", "<", ">", '"', "\\", ",", "(", ")", "-", " to ", "of ", "out ",
          "frames", "a", "x", ":", '"answer": ', "<think>", "</THINK>", "<loc_1>", "<loc_22>", "<|box_start|>",
          "<|box_end|>", "(1,2)", "(3, 4)", ",", "<|object_ref_start|>", "<|object_ref_end|>", "<object>", "</object>",
          "<patch_index_1>", '<point x="1" y="2">', '<point x="3" y="4" ', "</point>", "<points ", 'x1="1" y1="2" ',
          "</points>", "<box>", "</box>", "<ref>", "</ref>", "[[1,2,3,4]]", "<p bbox=", "<loc0001>", "</p>"]


def _old_json_values(text: str) -> list[tuple[int, Any]]:
    decoder, pos, out = json.JSONDecoder(), 0, []
    while (m := re.compile(r"[{\[]").search(text, pos)) is not None:
        try:
            value, end = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            pos = m.start() + 1
            continue
        out.append((m.start(), value))
        pos = end
    return out


def _old_structured(text: str) -> tuple[Any, Any] | None:
    objects = [v for _, v in _old_json_values(text) if isinstance(v, dict) and "answer" in v]
    if objects:
        return objects[-1]["answer"], objects[-1].get("bboxes")
    for key in reversed(list(re.finditer(r'"answer"\s*:\s*', text))):
        try:
            return json.JSONDecoder().raw_decode(text, key.end())[0], None
        except json.JSONDecodeError:
            continue
    return None


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        return rng.choice([1, -2.5, 1e5, True, None, 's"x', "[{", "a" * rng.randint(0, 300), "\u00e9\n"])
    if roll < 0.65:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    return {rng.choice(["answer", "bboxes", "k", "frame"]) + str(i): _random_json(rng, depth + 1)
            for i in range(rng.randint(0, 6))} | ({"answer": _random_json(rng, 3)} if roll > 0.9 else {})


def test_json_values_read_long_documents_exactly_as_before() -> None:
    """Valid JSON of hundreds to thousands of characters (the reader's window grows over them),
    cut short, nested in junk: the values found and the structured answer are as before."""
    rng = random.Random(7)
    for _ in range(400):
        parts = []
        for _ in range(rng.randint(1, 6)):
            doc = json.dumps(_random_json(rng), indent=rng.choice([None, 1]))
            parts.append(rng.choice([doc, doc[: rng.randint(0, len(doc))], "x ", "[", "{", '"answer": ', "Frame 3: "]))
        text = "".join(parts)
        assert list(json_values(text)) == _old_json_values(text), text
        assert reply_mod._structured(text) == _old_structured(text), text


def test_linear_readers_find_exactly_what_the_old_patterns_found() -> None:
    from voxqa.importers.published_scores import released_answer_text

    rng = random.Random(25)
    for _ in range(600):
        pool = rng.sample(TOKENS, rng.randint(2, 14))
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))
        florence = [(m.start(2) - 5, m.end(), [int(g) for g in m.groups()[1:]], m[1].strip() or None)
                    for m in REFERENCE["florence"].finditer(text)]
        assert [(f.pos, f.end, f.values, f.label) for f in syntax.FlorenceLocs().find(text)] == florence, text
        qwen = [(m.start(), m.end(), list(m.groups()[1:]), m["label"]) for m in REFERENCE["qwen"].finditer(text)]
        assert syntax._qwen_tokens(text) == qwen, text
        point = [(m.start(), m.end(), m[1], m[2], m[3]) for m in REFERENCE["point"].finditer(text)]
        assert [(m.start(), e + 8, m[1], m[2], text[t + 1:e])
                for m, t, e in syntax._molmo_tags(text, syntax._MOLMO_POINT, "</point>")] == point, text
        points = [(m.start(), m.end(), m[1], m[2]) for m in REFERENCE["points"].finditer(text)]
        assert [(m.start(), e + 9, text[m.end():t], text[t + 1:e])
                for m, t, e in syntax._molmo_tags(text, syntax._MOLMO_POINTS, "</points>")] == points, text
        for finder in (syntax.KosmosPatches(), syntax.TaggedList(("<ref>", "</ref>"), ("<box>", "</box>")),
                       syntax.RadGrounderTags()):
            assert [(f.pos, f.end, f.values) for f in finder.find(text)] == \
                [(f.pos, f.end, f.values) for f in _unbounded(finder, text)], text
        try:
            old: Any = _old_json_values(text)
        except RecursionError:
            old = RecursionError
        try:
            assert list(json_values(text)) == old, text
        except RecursionError:
            assert old is RecursionError
        assert reply_mod.drop_think_blocks(text) == REFERENCE["think"].sub("", text), text
        # SGMRI-VQA's released extract_answer_text: the same, case-sensitive
        assert released_answer_text(text) == re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL).strip(), text
        assert _FRAME_RANGE.findall(text) == REFERENCE["range"].findall(text), text
        assert _CONTEXT_COUNT.sub(" ", text) == REFERENCE["context"].sub(" ", text), text


def _unbounded(finder: Any, text: str) -> list[syntax.Found]:
    """What ``finder`` found with its box pattern run over the whole text (no end bound)."""
    if isinstance(finder, syntax.KosmosPatches):
        return [syntax.Found(m.start(), m.end(), [int(p[0]), int(p[1])]) for m in syntax._KOSMOS_OBJECT.finditer(text)
                for p in syntax._KOSMOS_PAIR.findall(m[1])]
    if isinstance(finder, syntax.RadGrounderTags):
        return [syntax.Found(m.start(), m.end(), [int(g) for g in m.groups()[:4]])
                for m in syntax._RADGROUNDER.finditer(text)]
    box, _ = finder._patterns()
    return [syntax.Found(m.start(), m.end(), [syntax._num(v) for v in values]) for m in box.finditer(text)
            for values in re.findall(rf"\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]", m[1])]


def test_the_report_extractor_keeps_url_credentials_and_cut_keys_out_of_its_errors(tmp_path, monkeypatch) -> None:
    """``build reports --extractor openai:MODEL``: credentials in --base-url go as Basic
    authorization, and its error line (HTTP 400 echoing the key across the 200-character cut)
    holds neither them nor any part of the key."""
    from voxqa.errors import BuildError
    from voxqa.radreports.extract_openai import OpenAIExtractor

    monkeypatch.setenv("VOXQA_CUT_KEY", SECRET)
    password = "pw-7e1d-secret"
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    messages = []
    with StubServer(lambda content: "{}", echo_auth=400, echo_text=_echo_across_the_cut) as srv:
        for url, env in ((srv.url, "VOXQA_CUT_KEY"), (srv.url.replace("http://", f"http://alice:{password}@"), "NONE")):
            with pytest.raises(BuildError) as err:
                OpenAIExtractor("m", url, api_key_env=env, max_retries=0).extract("s", "The liver is enlarged.", "en")
            messages.append(str(err.value))
        assert [h["Authorization"] for h in srv.headers] == [f"Bearer {SECRET}", f"Basic {basic}"]
    assert all("HTTP 400" in m for m in messages) and "bad key [REDA" in messages[0]
    _no_part_of(SECRET, messages[0])
    assert password not in messages[1] and basic not in messages[1] and "alice" not in messages[1]
