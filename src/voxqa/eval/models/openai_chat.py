"""Any OpenAI-compatible chat server (vLLM, SGLang, hosted APIs) over HTTP.

Images go as base64 PNG data URLs, each after its "Frame k:" text part. Decoding is greedy
(temperature 0). Transient failures (429, 5xx, timeouts, connection errors, malformed JSON
replies) are retried with exponential backoff and full jitter, honouring Retry-After; other
4xx are permanent. The API key is read from an environment variable only and is never
written anywhere (run.json records the variable's name, not its value).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import orjson

from voxqa.eval.models.base import PermanentError
from voxqa.eval.prompts import Prompt
from voxqa.schema import Item

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIChat:
    def __init__(self, model: str, base_url: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, max_retries: int = 5, max_tokens: int = 1024,
                 backoff: float = 1.0, seed: int = 0):
        self.model, self.base_url = model, base_url.rstrip("/")
        self.api_key_env, self.timeout = api_key_env, timeout
        self.max_retries, self.max_tokens, self.backoff = max_retries, max_tokens, backoff
        self.spec = f"openai:{model}"
        self._jitter = random.Random(seed)
        self._client: httpx.AsyncClient | None = None

    def identity(self) -> dict[str, Any]:
        return {"spec": self.spec, "base_url": self.base_url, "temperature": 0.0,
                "max_tokens": self.max_tokens, "api_key_env": self.api_key_env}

    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for kind, value in prompt.parts:
            if kind == "text":
                content.append({"type": "text", "text": value})
            else:
                content.append({"type": "image_url", "image_url": {"url": _data_url(value)}})
        return [{"role": "user", "content": content}]

    async def answer(self, prompt: Prompt, item: Item) -> str:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        key = os.environ.get(self.api_key_env)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        payload = orjson.dumps({"model": self.model, "messages": self._messages(prompt),
                                "temperature": 0.0, "max_tokens": self.max_tokens})
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            try:
                resp = await self._client.post(f"{self.base_url}/chat/completions", content=payload,
                                               headers=headers)
                if resp.status_code == 200:
                    return resp.json()["choices"][0]["message"]["content"] or ""
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in RETRY_STATUS:
                    raise PermanentError(last)
                wait = _retry_after(resp)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # malformed reply
                last = f"malformed reply: {type(exc).__name__}: {exc}"
            if attempt < self.max_retries:
                cap = self.backoff * 2**attempt
                await asyncio.sleep(wait if wait is not None else self._jitter.uniform(0, cap))
        raise RuntimeError(f"gave up after {self.max_retries + 1} attempts: {last}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@lru_cache(maxsize=4096)
def _data_url(path: str) -> str:
    """A PNG as a data URL; cached, as the items of a study share their frames."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
