"""Any OpenAI-compatible chat server (vLLM, SGLang, hosted APIs) over HTTP.

Images go as base64 PNG data URLs, each after its "Frame k:" text part. Decoding is greedy
(temperature 0). Transient failures (429, 5xx, timeouts, connection errors, malformed JSON
replies or bodies that cannot be decoded, e.g. broken gzip) are retried with exponential
backoff and full jitter, honouring Retry-After up to ``max_retry_after`` seconds
(``MAX_RETRY_AFTER``, ``VOXQA_MAX_RETRY_AFTER``; seconds or an HTTP date, anything else
ignored); other 4xx are permanent. ``timeout`` bounds each whole request, headers and body
together, so a server trickling bytes cannot hold an item beyond it. 401, 403 and 404 (key
refused, model or endpoint not found) stop the run (``ServerConfigError``), and so does
``preflight``: an invalid URL, an unreachable server, a refused key or a model the server
does not list stop it before anything is written. The API key is read from an environment
variable only and is never written anywhere (run.json records the variable's name, not its
value, and the base URL without ``user:password@`` or secret query values; every error text
goes through ``redact`` before it is cut to length).

Several base URLs (``--base-url`` repeated: replicas of one model) are load-balanced: each
attempt goes to the endpoint with the fewest requests in flight, and a retry moves on to the
next one, so one slow or failing replica does not hold items back. Preflight checks them all.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import math
import os
import random
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit
from typing import Any

import httpx
import orjson

from voxqa.dataset.paths import read_png
from voxqa.errors import InputError
from voxqa.eval.models.base import ModelAdapter, PermanentError, ServerConfigError
from voxqa.eval.redact import env_secrets, redact, safe_url, split_credentials, url_secrets
from voxqa.eval.prompts import Prompt
from voxqa.schema import Item

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401, 403, 404}  # not about one item: the key, the model or the URL
PREFLIGHT_TIMEOUT = 10.0
#: the longest wait a Retry-After header can ask for, in seconds (``VOXQA_MAX_RETRY_AFTER``
#: overrides); a longer (or infinite) one waits this long, then the retry policy goes on
MAX_RETRY_AFTER = 60.0
ERROR_BODY_CHARS = 200  # of a server's error body kept in a message (after redaction)


class OpenAIChat(ModelAdapter):
    def __init__(self, model: str, base_url: str | list[str], *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, max_retries: int = 5, max_tokens: int = 1024,
                 backoff: float = 1.0, seed: int = 0):
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self._url_secrets = [s for u in urls for s in url_secrets(u)]
        # user:password@ travels as Basic authorization, never in a URL a log line or error may show
        bare = [_without_userinfo(u.rstrip("/")) for u in urls]
        self._auth = {u: auth for u, auth in bare if auth is not None}
        self.model, self.base_urls = model, [u for u, _ in bare]
        self.base_url = self.base_urls[0]
        self._in_flight = dict.fromkeys(self.base_urls, 0)
        self._turn = 0
        self.api_key_env, self.timeout = api_key_env, timeout
        self.max_retries, self.max_tokens, self.backoff = max_retries, max_tokens, backoff
        self.max_retry_after = max_retry_after()
        self.spec = f"openai:{model}"
        self._jitter = random.Random(seed)
        self._client: httpx.AsyncClient | None = None

    def identity(self) -> dict[str, Any]:
        # one URL as before; replicas as a sorted list (their order does not change answers)
        where = safe_url(self.base_url) if len(self.base_urls) == 1 else sorted(map(safe_url, self.base_urls))
        return {"spec": self.spec, "base_url": where, "temperature": 0.0,
                "max_tokens": self.max_tokens, "api_key_env": self.api_key_env}

    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for kind, value in prompt.parts:
            if kind == "text":
                content.append({"type": "text", "text": value})
            else:
                content.append({"type": "image_url", "image_url": {"url": _data_url(value)}})
        return [{"role": "user", "content": content}]

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def redact(self, text: str) -> str:
        """``text`` without the API key, the base URLs' credentials (or any Bearer / sk- token)."""
        return redact(text, [*env_secrets(self.api_key_env), *self._url_secrets])

    def _body(self, resp: httpx.Response) -> str:
        """The start of an error body, redacted whole before it is cut: a key crossing the cut
        is masked, never kept in part."""
        return self.redact(resp.text)[:ERROR_BODY_CHARS]

    def _fatal(self, resp: httpx.Response, url: str) -> ServerConfigError:
        body = self._body(resp).replace("\n", " ")
        if resp.status_code in (401, 403):
            key = "set" if os.environ.get(self.api_key_env) else "not set"
            return ServerConfigError(self.redact(f"{url} refused the API key (HTTP {resp.status_code}; "
                                                 f"key from ${self.api_key_env}, {key}): {body}"))
        return ServerConfigError(self.redact(f"{url}: HTTP {resp.status_code} for model {self.model!r} "
                                             f"(wrong --base-url or model name?): {body}"))

    def _pick(self, failed: str | None) -> str:
        """The endpoint with the fewest requests in flight, ties in turn; a retry never goes
        back to the endpoint that just failed it (when there is another)."""
        self._turn += 1
        n = len(self.base_urls)
        order = [u for i in range(n) if (u := self.base_urls[(self._turn + i) % n]) != failed or n == 1]
        return min(order, key=lambda u: self._in_flight[u])

    async def preflight(self) -> None:
        for url in self.base_urls:
            await self._preflight(url)

    async def _preflight(self, base_url: str) -> None:
        """Stop before a run that cannot work: an invalid URL, connection refused or DNS
        failure, a refused key (401/403) or a model missing from ``GET {base}/models``. A
        server without a model list (404/405/501) passes; its first request decides."""
        try:
            parts = urlsplit(base_url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # e.g. an unclosed [IPv6 bracket
            valid = False
        if not valid:
            raise ServerConfigError(self.redact(f"--base-url {safe_url(base_url)!r} is not an http(s) URL "
                                                "(e.g. http://localhost:8000/v1)"))
        limit = min(self.timeout, PREFLIGHT_TIMEOUT)
        try:
            async with httpx.AsyncClient(timeout=limit) as client:
                resp = await asyncio.wait_for(client.get(f"{base_url}/models", headers=self._headers(),
                                                         auth=self._auth.get(base_url, httpx.USE_CLIENT_DEFAULT)), limit)
        except (httpx.TimeoutException, TimeoutError):
            raise ServerConfigError(self.redact(f"{safe_url(base_url)}: no reply within {limit:g} s")) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ServerConfigError(self.redact(f"cannot reach {safe_url(base_url)}: {type(exc).__name__}: {exc}")) from None
        if resp.status_code in (401, 403):
            raise self._fatal(resp, base_url)
        if resp.status_code != 200:
            return
        try:
            served = [str(m["id"]) for m in resp.json()["data"]]
        except (ValueError, KeyError, TypeError):
            return
        if served and self.model not in served:
            raise ServerConfigError(self.redact(f"model {self.model!r} is not served by {safe_url(base_url)} "
                                                f"(served: {', '.join(served[:10])})"))

    async def answer(self, prompt: Prompt, item: Item) -> str:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        headers = self._headers()
        payload = orjson.dumps({"model": self.model, "messages": self._messages(prompt),
                                "temperature": 0.0, "max_tokens": self.max_tokens})
        last, url = "no attempt", None
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            url = self._pick(url)
            self._in_flight[url] += 1
            try:
                # the whole request, body included, within the timeout (httpx's own is per read)
                resp = await asyncio.wait_for(
                    self._client.post(f"{url}/chat/completions", content=payload, headers=headers,
                                      auth=self._auth.get(url, httpx.USE_CLIENT_DEFAULT)), self.timeout)
                if resp.status_code == 200:
                    return resp.json()["choices"][0]["message"]["content"] or ""
                if resp.status_code in FATAL_STATUS:
                    raise self._fatal(resp, url)
                last = f"HTTP {resp.status_code}: {self._body(resp)}"
                if resp.status_code not in RETRY_STATUS:
                    raise PermanentError(last)
                wait = retry_after(resp.headers.get("retry-after"), self.max_retry_after)
            except TimeoutError:
                last = f"timeout: no complete reply within {self.timeout:g} s"
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = self.redact(f"{type(exc).__name__}: {exc}")
            except ServerConfigError:
                raise
            except (ValueError, KeyError, IndexError, TypeError, httpx.DecodingError) as exc:  # malformed reply
                last = self.redact(f"malformed reply: {type(exc).__name__}: {exc}")
            finally:
                self._in_flight[url] -= 1
            if attempt < self.max_retries:
                cap = self.backoff * 2**attempt
                await asyncio.sleep(wait if wait is not None else self._jitter.uniform(0, cap))
        raise RuntimeError(f"gave up after {self.max_retries + 1} attempts: {last}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _data_url(path: str) -> str:
    """A PNG as a data URL, read for each request: reading and encoding a frame costs microseconds
    next to the request, and a frame re-rendered since the last request is sent as it is now."""
    return "data:image/png;base64," + base64.b64encode(read_png(path, "image")).decode()


def _without_userinfo(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """``url`` without ``user:password@``, and those as Basic authorization (as httpx would
    send them from the URL)."""
    bare, credentials = split_credentials(url)
    return bare, httpx.BasicAuth(*credentials) if credentials is not None else None


def max_retry_after() -> float:
    """``MAX_RETRY_AFTER``, or ``VOXQA_MAX_RETRY_AFTER`` (seconds, finite, not negative) when set."""
    value = os.environ.get("VOXQA_MAX_RETRY_AFTER")
    if value is None:
        return MAX_RETRY_AFTER
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise InputError(f"VOXQA_MAX_RETRY_AFTER={value!r} is not a number of seconds (finite, not negative)")
    return seconds


def retry_after(value: str | None, cap: float, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta seconds or an HTTP date), at most
    ``cap`` (an infinite or huge value waits ``cap``); None when absent or unreadable, so the
    backoff decides."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # an HTTP date is GMT
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)
