"""Claim extraction by an OpenAI-compatible model, for free-text reports the rules miss.

The model gets one sentence at a time and must answer in the claim schema (the request's
``response_format`` is a JSON schema, so servers that enforce it cannot reply otherwise).
Replies are cached per (model, server, language, sentence) in a JSON-lines file, so a
rebuild asks nothing twice. Names are mapped to the label vocabulary with
``labelnames.canonical_name``; verification is the same as for the rules. A reply that is
not the schema is a BuildError naming the sentence: nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from voxqa.anatomy.labelnames import canonical_name
from voxqa.errors import BuildError
from voxqa.eval.redact import redact, split_credentials, url_secrets
from voxqa.fileio import JsonlAppender
from voxqa.radreports.claims import Claim, Language, Relation
from voxqa.radreports.extract_rules import sentences

RELATIONS = list(Relation.__args__)  # type: ignore[attr-defined]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["claims"],
    "properties": {"claims": {"type": "array", "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["structures", "relation", "side", "polarity"],
        "properties": {
            "structures": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
            "relation": {"type": "string", "enum": RELATIONS},
            "side": {"type": ["string", "null"], "enum": ["left", "right", None]},
            "polarity": {"type": "string", "enum": ["positive", "negative"]},
        },
    }}},
}
PROMPT = (
    "Extract the spatial claims of one sentence of a radiology report ({language}). Each claim: "
    "structures (1 or 2 anatomical structures in TotalSegmentator names, English snake_case with "
    "the side last, e.g. liver, kidney_left, inferior_vena_cava, lung_lower_lobe_right; a plural "
    "of a paired organ is one claim per side), relation (present: the structure exists, negative "
    "polarity for absent or surgically removed; side: on the patient's left/right, with side set; "
    "otherwise structures[0] <relation> structures[1]: superior, inferior, anterior, posterior, "
    "left_of, right_of, medial, lateral, adjacent, within, larger), side (only for relation side, "
    "else null), polarity (negative if the sentence negates it). No claims: an empty list.\n"
    "Sentence: {sentence}"
)


class OpenAIExtractor:
    """``extract`` like ``RuleExtractor``, one request per sentence not in the cache."""

    def __init__(self, model: str, base_url: str, *, api_key_env: str = "OPENAI_API_KEY",
                 cache: Path | None = None, timeout: float = 120.0, max_retries: int = 2):
        # user:password@ go as Basic authorization: no URL httpx logs or an error names holds them
        self.model, (self.base_url, self._credentials) = model, split_credentials(base_url.rstrip("/"))
        self._secrets = url_secrets(base_url)
        self.name = f"openai:{model}"
        self.api_key_env, self.timeout, self.max_retries = api_key_env, timeout, max_retries
        self.cache_path = cache
        self.cache: dict[str, list[dict]] = {}
        if cache is not None and cache.is_file():
            for line in cache.read_bytes().splitlines():
                if line.strip():
                    rec = orjson.loads(line)
                    self.cache[rec["key"]] = rec["claims"]

    def extract(self, study_id: str, text: str, language: Language) -> list[Claim]:
        out = []
        for start, end in sentences(text):
            sentence = text[start:end]
            for raw in self._claims(sentence, language):
                try:
                    out.append(Claim(study_id=study_id, sentence=sentence, span=(start, end), language=language,
                                     structures=[canonical_name(s) for s in raw["structures"]],
                                     relation=raw["relation"], side=raw.get("side"),
                                     polarity=raw.get("polarity", "positive"), extractor=self.name))
                except (ValidationError, KeyError, TypeError) as exc:
                    raise BuildError(f"{self.name}: a claim of {sentence!r} is not in the schema: {raw!r} "
                                     f"({exc.__class__.__name__})") from None
        return out

    def no_claim_reason(self, sentence: str, language: Language) -> str | None:
        """Why ``sentence`` yields no claim: the model returned none (cached replies only)."""
        return None if self._claims(sentence, language) else "model_returned_none"

    def _key(self, sentence: str, language: str) -> str:
        return hashlib.sha256("\x1f".join([self.model, self.base_url, language, sentence]).encode()).hexdigest()

    def _claims(self, sentence: str, language: str) -> list[dict]:
        key = self._key(sentence, language)
        if key not in self.cache:
            self.cache[key] = self._ask(sentence, language)
            if self.cache_path is not None:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with JsonlAppender(self.cache_path) as out:
                    out.write({"key": key, "sentence": sentence, "claims": self.cache[key]})
        return self.cache[key]

    def _ask(self, sentence: str, language: str) -> list[dict]:
        body = {"model": self.model, "temperature": 0.0,
                "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT.format(
                    language={"en": "English", "de": "German"}[language], sentence=sentence)}]}],
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "claims", "strict": True, "schema": SCHEMA}}}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last = "no attempt"
        secrets = [*([key] if key else []), *self._secrets]
        auth = httpx.BasicAuth(*self._credentials) if self._credentials is not None else None
        with httpx.Client(timeout=self.timeout, auth=auth) as client:
            for _ in range(self.max_retries + 1):
                try:
                    resp = client.post(f"{self.base_url}/chat/completions", content=orjson.dumps(body), headers=headers)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                    continue
                if resp.status_code != 200:
                    last = f"HTTP {resp.status_code}: {redact(resp.text, secrets)[:200]}"  # redacted, then cut
                    continue
                try:
                    claims = orjson.loads(resp.json()["choices"][0]["message"]["content"])["claims"]
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    raise BuildError(f"{self.name}: reply for {sentence!r} is not the claim schema ({exc!r})") from None
                if not isinstance(claims, list):
                    raise BuildError(f"{self.name}: reply for {sentence!r} has no list of claims")
                return claims
        raise BuildError(redact(f"{self.name}: no reply for {sentence!r} from {self.base_url}: {last}", secrets))
