"""Secrets never reach a stored or printed text.

``redact`` is applied wherever an error (or a server's reply) is recorded: the adapter's
error messages, ``predictions.jsonl`` records, the report and the command line's error line.
It removes the given secret values (the API key, the value of the ``--api-key-env``
variable), any ``Bearer ...`` token and any ``sk-...`` key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MASK = "[REDACTED]"
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20)[^\s\"',;)\]}]+")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{3,}")
KEY_ENVS = ("OPENAI_API_KEY",)  # always redacted when set, whatever --api-key-env says


def env_secrets(*names: str | None) -> list[str]:
    """The values of the named environment variables (and OPENAI_API_KEY) that are set."""
    values = (os.environ.get(n) for n in (*names, *KEY_ENVS) if n)
    return [v for v in values if v and len(v.strip()) >= 4]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value, ``Bearer`` token and ``sk-`` key masked."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s and len(s.strip()) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _SK.sub(MASK, text)
