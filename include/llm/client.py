"""Async chat-completions client with one retry budget per row.

Requests are plain HTTP POSTs of the OpenAI chat-completions body through
``aiohttp``, as Ray Data's own ``HttpRequestProcessor`` and vLLM's benchmark
client send them, rather than through the ``openai`` SDK: the SDK takes a
fresh worker 0.7-1 s to import (measured here: a third of an LLM stage's
start-up on a 2-core machine) and parses every response into pydantic models
we do not use, and its retries would be switched off anyway, since it does
not report how many requests it sent and cannot retry an answer that arrived
fine over HTTP but is not valid JSON for our schema. Here both kinds of
failure share one budget (``max_retries``), every request sent is counted,
and back-off is exponential with full jitter, or the server's ``Retry-After``
when it gives one. Only the HTTP call holds a concurrency slot, so rows that
are backing off do not block others.

A refusal of the request itself is sorted by what it says about the stage
(``refusal``). Most refusals are the set-up's fault and the same for every
row — a key the endpoint rejects (401/403), an unknown model or a wrong URL
(404 and other 4xx), a ``response_format`` it does not support (400/422) —
so ``complete`` raises ``RequestRejected`` with the server's message at once
and the stage fails instead of quarantining every row. Only a refusal of the
one row's size, 413 or a 400/422 about the context length, belongs to the
row: it comes back as the row's error, unretried, and the row is quarantined.
"""
from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass
from typing import Any

from include.llm.answers import Request

RETRYABLE_STATUS = {408, 409, 429}
RETRY_AFTER_CAP_S = 120.0
# How OpenAI, vLLM, llama.cpp and TGI word a prompt too long for the model.
TOO_LONG_RE = re.compile(r"context.length|context_length_exceeded|maximum context|too long|"
                         r"too many tokens|exceeds? the (?:model|maximum)|max_model_len",
                         re.IGNORECASE)


class RequestRejected(RuntimeError):
    """The endpoint refuses the stage's configuration: no row can succeed."""

    def __init__(self, status: int, message: str, url: str, model: str):
        super().__init__(f"HTTP {status}: {message} (endpoint {public_url(url)}, model {model})")
        self.status, self.message, self.url, self.model = status, message, url, model

    def __reduce__(self):  # keep the fields across Ray's pickling
        return RequestRejected, (self.status, self.message, self.url, self.model)


def public_url(url: str) -> str:
    """``url`` without user info or query, fit for messages and cache keys."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme.lower(), host.lower(), parts.path.rstrip("/"), "", ""))


def refusal(status: int, message: str) -> str:
    """``retry`` (the endpoint is failing or busy), ``row`` (this row is too
    large for it) or ``config`` (the set-up is wrong: fail the stage)."""
    if status in RETRYABLE_STATUS or status >= 500:
        return "retry"
    if status == 413 or (status in (400, 422) and TOO_LONG_RE.search(message)):
        return "row"
    return "config"


@dataclass
class Outcome:
    parsed: Any = None
    raw: str | None = None
    error: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0


def retry_after_s(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds form), if any."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return min(RETRY_AFTER_CAP_S, max(0.0, float(value) / scale))
        except ValueError:
            continue  # an HTTP-date: fall back to our own back-off
    return None


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    return random.uniform(0, min(cap_s, base_s * 2 ** attempt))


class RateLimiter:
    """Spaces request starts at least ``1/rps`` apart (``rps<=0``: no limit)."""

    def __init__(self, rps: float):
        self.interval = 1.0 / rps if rps and rps > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class ChatClient:
    """One per worker; must be created inside the event loop that uses it."""

    def __init__(self, base_url: str, api_key: str, model: str, concurrency: int,
                 rate_limit_rps: float = 0.0):
        import aiohttp

        self.model, self.base_url = model, base_url
        self.url = base_url.rstrip("/") + "/chat/completions"
        # One keep-alive connection per request slot; the semaphore is the limit.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(1, concurrency)),
            headers={"Authorization": f"Bearer {api_key}"})
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._limiter = RateLimiter(rate_limit_rps)
        # Once the endpoint has refused the set-up, no request of this client
        # is sent again: every other row would be refused the same way.
        self.refused: RequestRejected | None = None

    async def _post(self, body: dict[str, Any], timeout_s: float) -> tuple[int, Any, Any]:
        """(status, parsed JSON body or the text if not JSON, headers)."""
        import aiohttp

        async with self._slots:
            if self.refused is not None:
                raise self.refused
            async with self._session.post(self.url, json=body,
                                          timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                raw = await resp.read()
        try:
            return resp.status, json.loads(raw), resp.headers
        except ValueError:
            return resp.status, raw.decode(errors="replace"), resp.headers

    async def complete(self, messages: list[dict[str, str]], req: Request) -> Outcome:
        import aiohttp

        body = {"model": self.model, "messages": messages, "temperature": req.temperature,
                "max_tokens": req.max_tokens, "response_format": req.response_format_body()}
        out = Outcome()
        invalid = None  # the last malformed answer's error outlives later transport errors
        t0 = time.perf_counter()
        for attempt in range(req.max_retries + 1):
            wait = backoff_s(attempt, req.backoff_base_s, req.backoff_cap_s)
            try:
                await self._limiter.wait()
                out.attempts += 1
                status, data, headers = await self._post(body, req.timeout_s)
            except asyncio.TimeoutError:
                out.error = f"timeout after {req.timeout_s:g}s"
            except aiohttp.ClientError as exc:
                out.error = f"connection error: {_short(str(exc) or type(exc).__name__)}"
            else:
                if status >= 400:
                    message = _short(_error_message(data))
                    kind = refusal(status, message)
                    if kind == "config":
                        self.refused = RequestRejected(status, message, self.base_url, self.model)
                        raise self.refused
                    out.error = f"HTTP {status}: {message}"
                    if kind == "row":
                        break  # asking again cannot make the row shorter
                    hint = retry_after_s(headers)
                    if hint is not None:
                        wait = hint * random.uniform(1.0, 1.1)
                else:
                    try:
                        raw = data["choices"][0]["message"]["content"]
                        usage = data.get("usage") or {}
                    except (TypeError, KeyError, IndexError, AttributeError):
                        out.error = f"invalid response: {_short(str(data))}"
                    else:
                        out.prompt_tokens += usage.get("prompt_tokens") or 0
                        out.completion_tokens += usage.get("completion_tokens") or 0
                        parsed, err = req.validate(raw)
                        out.raw = raw
                        if err is None:
                            out.parsed, out.error = parsed, None
                            break
                        out.error = invalid = f"malformed answer: {err}"
                        continue  # a malformed answer is asked again at once
            if attempt < req.max_retries:
                await asyncio.sleep(wait)
        if out.error and invalid:
            out.error = invalid
        out.latency_ms = (time.perf_counter() - t0) * 1000
        return out

    async def close(self) -> None:
        await self._session.close()


def _error_message(data: Any) -> str:
    """The message of an OpenAI-style error body ``{"error": {"message": ...}}``."""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message") or data["error"])
    return str(data)


def _short(s: str, n: int = 300) -> str:
    return s if len(s) <= n else s[:n] + "..."
