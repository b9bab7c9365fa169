"""Report-grounded claims: extract spatial statements from radiology reports (English and
German), verify each against the study's segmentation geometry, and make items from the
supported ones only (``docs/reports.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from voxqa.errors import InputError, MissingExtra

if TYPE_CHECKING:
    from voxqa.radreports.extract_openai import OpenAIExtractor
    from voxqa.radreports.extract_rules import RuleExtractor


def make_extractor(spec: str, base_url: str | None, api_key_env: str = "OPENAI_API_KEY",
                   cache: Path | None = None) -> RuleExtractor | OpenAIExtractor:
    """The claim extractor of ``--extractor``: ``rules``, or ``openai:MODEL`` on ``base_url``."""
    from voxqa.radreports.extract_rules import RuleExtractor

    if spec == "rules":
        return RuleExtractor()
    if not spec.startswith("openai:") or not base_url:
        raise InputError("--extractor is 'rules' or 'openai:MODEL' with --base-url URL")
    try:
        from voxqa.radreports.extract_openai import OpenAIExtractor
    except ImportError as exc:  # httpx: the eval extra
        raise MissingExtra(str(exc)) from exc
    return OpenAIExtractor(spec.split(":", 1)[1], base_url, api_key_env=api_key_env, cache=cache)
