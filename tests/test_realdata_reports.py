"""The shared sample reports (English and German) for the TotalSegmentator CT and MR: every
expected verdict of ``reference/reports/expected_verdicts.jsonl`` is reproduced by the rule
extractor, and a report build makes items only from supported claims.

The reference folder is VOXQA_TEST_REFERENCE, else ``reference/`` beside VOXQA_TEST_DATA
(../shared/reference next to ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import data_unavailable

from voxqa.build import build_reports
from voxqa.dataset.folder import read_items
from voxqa.radreports.check import check_reports
from voxqa.radreports.claims import combine
from voxqa.radreports.extract_rules import RuleExtractor
from voxqa.sources.segmentation import read_studies_csv

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def reports_dir(shared_reference: Path) -> Path:
    root = shared_reference / "reports"
    if not (root / "expected_verdicts.jsonl").is_file():
        data_unavailable(f"{root}/expected_verdicts.jsonl not found (set VOXQA_TEST_REFERENCE)")
    return root


def test_every_expected_verdict_reproduced(reports_dir: Path) -> None:
    claims = check_reports(read_studies_csv(reports_dir / "studies.csv"), reports_dir / "reports.jsonl",
                           RuleExtractor())
    expected = [json.loads(line) for line in (reports_dir / "expected_verdicts.jsonl").read_text().splitlines()]
    got = []
    for e in expected:
        mine = [c.verdict for c in claims if c.study_id == e["study_id"] and c.sentence == e["sentence"]]
        got.append((e["study_id"], e["sentence"], combine(mine) if mine else "no claim"))
    assert got == [(e["study_id"], e["sentence"], e["verdict"]) for e in expected]
    assert {e["study_id"] for e in expected} >= {"ts_ct_en", "ts_ct_de", "ts_mr_en"}


def test_sample_build_items_from_supported_claims(reports_dir: Path, tmp_path: Path) -> None:
    manifest = build_reports(read_studies_csv(reports_dir / "studies.csv"), reports_dir / "reports.jsonl",
                             tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    assert manifest["claims"] == {"total": 27, "supported": 15, "contradicted": 9, "unverifiable": 3}
    supported = {(c["study_id"], c["sentence"]) for c in map(json.loads, (tmp_path / "ds" / "claims.jsonl").open())
                 if c["verdict"] == "supported"}
    spatial = [it for it in read_items(tmp_path / "ds") if it.task == "spatial"]
    assert spatial and {it.language for it in spatial} == {"en", "de"}
    for it in spatial:
        assert (it.study_id.removesuffix(".mirrored"), it.reasoning.split('"')[1]) in supported
    assert json.loads((tmp_path / "ds" / "audit.json").read_text())["flagged"] == []


def test_caption_grounding_has_one_gold_per_prompt(reports_dir: Path, tmp_path: Path) -> None:
    """"Caption this image and detect keywords." named neither sentence nor keywords: on the
    shared reports 80 prompts (study, frame, question) carried 2-7 different box sets, so the
    best possible exact match was 0.307. The question now states the sentence and its keywords."""
    build_reports(read_studies_csv(reports_dir / "studies.csv"), reports_dir / "reports.jsonl",
                  tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    grounding = [it for it in read_items(tmp_path / "ds") if it.subtask == "report_grounding"]
    assert len(grounding) > 100 and {it.language for it in grounding} == {"en", "de"}
    golds: dict[tuple, set[str]] = {}
    for it in grounding:
        golds.setdefault((it.study_id, tuple(it.frames), it.question), set()).add(it.answer.model_dump_json())
    assert [g for g in golds.values() if len(g) > 1] == []
    rows = {r["item_id"]: r for r in map(json.loads, (tmp_path / "ds" / "grounding.jsonl").open())}
    for it in grounding:
        assert f'"{rows[it.id]["sentence"]}"' in it.question  # the sentence asked about, quoted
