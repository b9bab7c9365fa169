"""Secrets never reach a stored or printed text.

``redact`` is applied wherever an error (or a server's reply) is recorded: the adapter's
error messages, ``predictions.jsonl`` records, the report and the command line's error line.
It removes the given secret values (the API key, the value of the ``--api-key-env``
variable), any ``Bearer ...`` token, any ``sk-...`` key, the credentials of any URL
(``http://user:password@host``) and the values of secret-looking query parameters
(``?api_key=...``, ``&token=...``). ``safe_url`` is the form of a URL that may be stored
(run.json, results.json): without credentials, secret query values masked.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "[REDACTED]"
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20)[^\s\"',;)\]}]+")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{3,}")
KEY_ENVS = ("OPENAI_API_KEY",)  # always redacted when set, whatever --api-key-env says
#: query parameters whose values are credentials (``?key=``, ``&api_key=``, ``&access_token=``, ...)
SECRET_PARAM = r"(?:api[_-]?key|key|token|access[_-]?token|secret|client[_-]?secret|password|passwd|pwd|auth|sig|signature)"
# a scheme at the start of a word (never re-scanned from inside one: linear on any text), then userinfo
_USERINFO = re.compile(r"(?<![\w+.\-])([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@\[\]]*@")
_QUERY_SECRET = re.compile(rf"(?i)([?&]{SECRET_PARAM}=)[^&#\s\"'<>]+")


def env_secrets(*names: str | None) -> list[str]:
    """The values of the named environment variables (and OPENAI_API_KEY) that are set."""
    values = (os.environ.get(n) for n in (*names, *KEY_ENVS) if n)
    return [v for v in values if v and len(v.strip()) >= 4]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value, ``Bearer`` token, ``sk-`` key, URL credential and
    secret query value masked."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s and len(s.strip()) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _SK.sub(MASK, text)


def safe_url(url: str) -> str:
    """``url`` as it may be stored or shown: no ``user:password@``, secret-looking query values
    masked; a URL without either is returned unchanged (run identities stay byte-identical)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL: mask what looks secret in it as text
        return redact(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", "?" + parts.query)[1:]
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without ``user:password@``, and those (decoded) for Basic authorization: an
    HTTP client given the bare URL logs and reports no credentials."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:  # not a URL: whoever checks URLs says so
        return url, None
    if "@" not in parts.netloc:
        return url, None
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))
    return bare, (unquote(user or ""), unquote(password or ""))


def url_secrets(url: str) -> list[str]:
    """The credentials ``url`` carries (the password, or a user name standing alone as a token;
    the Basic authorization an HTTP client makes of them; secret query values): masked
    wherever a server might echo them."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return []
    found = [password] if password else [user] if user else []
    if user is not None:
        found.append(base64.b64encode(f"{unquote(user)}:{unquote(password or '')}".encode()).decode())
    found += [m.group(0).split("=", 1)[1] for m in _QUERY_SECRET.finditer("?" + parts.query)]
    return [s for s in found if s and len(s.strip()) >= 4]


def safe_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """A run identity whose model ``base_url`` (one URL or a list of replicas) is ``safe_url``'d:
    what results.json stores even of a run.json written before URLs were cleaned."""
    model = identity.get("model")
    if not isinstance(model, dict) or "base_url" not in model:
        return identity
    url = model["base_url"]
    clean = [safe_url(u) if isinstance(u, str) else u for u in url] if isinstance(url, list) else \
        safe_url(url) if isinstance(url, str) else url
    return {**identity, "model": {**model, "base_url": clean}}
