"""Async chat-completions client with one retry budget per row.

Transport goes through the official ``openai`` SDK (``AsyncOpenAI``) with its
own retries switched off: the SDK retries 429/5xx internally but does not
report how many requests it sent, and it cannot retry an answer that arrived
fine over HTTP but is not valid JSON for our schema. Here both kinds of
failure share one budget (``max_retries``), every request sent is counted,
and back-off is exponential with full jitter, or the server's ``Retry-After``
when it gives one. Only the HTTP call holds a concurrency slot, so rows that
are backing off do not block others.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from include.llm.answers import Request

RETRYABLE_STATUS = {408, 409, 429}
RETRY_AFTER_CAP_S = 120.0


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
        from openai import AsyncOpenAI

        self.model = model
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._limiter = RateLimiter(rate_limit_rps)

    async def complete(self, messages: list[dict[str, str]], req: Request) -> Outcome:
        import openai

        out = Outcome()
        invalid = None  # the last malformed answer's error outlives later transport errors
        t0 = time.perf_counter()
        for attempt in range(req.max_retries + 1):
            wait = 0.0
            out.attempts += 1
            try:
                await self._limiter.wait()
                async with self._slots:
                    resp = await self._client.chat.completions.create(
                        model=self.model, messages=messages, temperature=req.temperature,
                        max_tokens=req.max_tokens, response_format=req.response_format_body(),
                        timeout=req.timeout_s)
            except openai.APIStatusError as exc:
                out.error = f"HTTP {exc.status_code}: {_short(exc.message)}"
                if exc.status_code not in RETRYABLE_STATUS and exc.status_code < 500:
                    break  # 400/401/404...: asking again cannot help
                hint = retry_after_s(exc.response.headers) if exc.response is not None else None
                wait = backoff_s(attempt, req.backoff_base_s, req.backoff_cap_s) \
                    if hint is None else hint * random.uniform(1.0, 1.1)
            except openai.APITimeoutError:
                out.error = f"timeout after {req.timeout_s:g}s"
                wait = backoff_s(attempt, req.backoff_base_s, req.backoff_cap_s)
            except openai.APIConnectionError as exc:
                out.error = f"connection error: {_short(str(exc))}"
                wait = backoff_s(attempt, req.backoff_base_s, req.backoff_cap_s)
            else:
                if resp.usage is not None:
                    out.prompt_tokens += resp.usage.prompt_tokens or 0
                    out.completion_tokens += resp.usage.completion_tokens or 0
                raw = resp.choices[0].message.content if resp.choices else None
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
        await self._client.close()


def _short(s: str, n: int = 300) -> str:
    return s if len(s) <= n else s[:n] + "..."
