"""A real local HTTP server that speaks OpenAI's chat-completions API.

Used by the test suite, the LLM benchmark and local demo runs in place of a
hosted model. It is an ordinary aiohttp server on a socket, so the client code
under test goes through its full HTTP path (connection pool, timeouts, status
codes, headers).

Answers are deterministic functions of the request: the JSON schema in
``response_format`` is filled from a hash of the messages, and a marker
``[field=value]`` anywhere in the prompt pins that field (``[score=2]``), so a
test can say what the model will answer. ``[malformed]`` makes every answer to
that prompt invalid JSON and ``[fail500]`` makes every attempt a 500.

Faults are injected per request with configurable rates (429 with
Retry-After, 500, malformed JSON, a hang longer than the client's timeout).
Whether attempt *n* of a prompt faults is a hash of (seed, prompt, n), so a
run is reproducible and a retried prompt eventually gets through. An outage
(``outage_after=N, outage_s=T``) answers every request 503 for T seconds
once N requests have been served, as an endpoint that goes away and comes
back. Rates and latency can be changed on a live server (``POST /_config``);
``GET /_stats`` counts requests so tests can prove that a cached rerun sends
none, and ``server.log`` records each request's time, outcome and
``messages_sha256`` (SHA-256 of its JSON messages with sorted keys) so a test
can tell which prompts were asked when.

Refusals of a misconfigured request, as hosted APIs and vLLM answer them:
``api_key`` set -> 401 for any other Bearer token; ``models`` (comma-separated)
set -> 404 for another model; ``reject_json_schema`` -> 400 for a
``json_schema`` response format; ``max_prompt_chars`` -> 400 "maximum context
length" for a longer prompt and ``max_body_bytes`` -> 413 for a larger body
(both about the one row, not the set-up).

Run standalone: ``python -m include.testing.openai_server --port 8000 --latency-ms 50``.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web

MARKER_RE = re.compile(r"\[([A-Za-z_][\w.]*)=([^\]]*)\]")


@dataclass
class Faults:
    latency_ms: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float = 0.05
    rate_500: float = 0.0
    rate_malformed: float = 0.0
    rate_timeout: float = 0.0
    hang_s: float = 5.0
    outage_after: int = 0  # 0: no outage
    outage_s: float = 0.0
    seed: int = 0
    api_key: str = ""
    models: str = ""
    reject_json_schema: bool = False
    max_prompt_chars: int = 0
    max_body_bytes: int = 0

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: type(f.default) for f in fields(self)}
        for k, v in values.items():
            if k not in known:
                raise ValueError(f"unknown fault setting {k!r}; known: {sorted(known)}")
            if known[k] is bool and isinstance(v, str):
                v = v.lower() in ("1", "true", "yes")
            setattr(self, k, known[k](v))


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()[:8],
                          "big")


def prompt_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def _markers(text: str) -> dict[str, str]:
    return {k: v for k, v in MARKER_RE.findall(text)}


def fill_schema(schema: dict[str, Any], text: str, name: str = "answer",
                markers: dict[str, str] | None = None) -> Any:
    """A value valid for ``schema``: pinned by ``[name=value]`` markers, else hashed."""
    markers = _markers(text) if markers is None else markers
    h = _h(text, name)
    typ = schema.get("type", "object")
    if isinstance(typ, list):
        typ = next(t for t in typ if t != "null")
    pinned = markers.get(name)
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):  # a branch picked by the hash, as a model might
        if schema.get(key):
            return fill_schema(schema[key][h % len(schema[key])], text, name, markers)
    if "enum" in schema:
        return pinned if pinned in schema["enum"] else schema["enum"][h % len(schema["enum"])]
    if typ == "object":
        props = schema.get("properties", {})
        return {k: fill_schema(s, text, k, markers) for k, s in props.items()}
    if typ == "array":
        n = int(markers.get(f"{name}.len", schema.get("minItems", 1)))
        return [fill_schema(schema.get("items", {"type": "string"}), text, f"{name}.{i}", markers)
                for i in range(n)]
    if typ == "integer":
        lo, hi = int(schema.get("minimum", 1)), int(schema.get("maximum", 5))
        return int(pinned) if pinned is not None else lo + h % (hi - lo + 1)
    if typ == "number":
        lo, hi = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 1.0))
        return float(pinned) if pinned is not None else round(lo + (hi - lo) * (h % 1000) / 999, 3)
    if typ == "boolean":
        return pinned == "true" if pinned is not None else bool(h % 2)
    return pinned if pinned is not None else f"{name.split('.')[0]} {h % 16**8:08x}"


def expected_answer(messages: list[dict[str, Any]], schema: dict[str, Any] | None) -> Any:
    """What the server answers (fault-free) for these messages and schema."""
    text = prompt_text(messages)
    return fill_schema(schema or {"type": "object", "properties": {"answer": {"type": "string"}}},
                       text)


class OpenAIServer:
    """The server; ``start()`` runs it on a background thread, ``url`` is its base URL."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **faults: Any):
        self.host, self.port = host, port
        self.faults = Faults()
        self.faults.update(faults)
        self.counts: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []
        self._span: list[float] = []  # wall time of the first and the latest request
        self._seen = 0
        self._outage_at: float | None = None
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()

    # -- HTTP ------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post("/_config", self._config)
        app.router.add_post("/_reset", self._reset)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list",
                                  "data": [{"id": "datamill-test", "object": "model"}]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _config(self, request: web.Request) -> web.Response:
        try:
            self.faults.update(await request.json())
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.faults))

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    def _in_outage(self) -> bool:
        """Whether this request falls in the outage (call once per request, under the lock)."""
        f = self.faults
        self._seen += 1
        if not f.outage_after or self._seen <= f.outage_after:
            return False
        now = time.monotonic()
        if self._outage_at is None:
            self._outage_at = now
        return now - self._outage_at < f.outage_s

    def _outcome(self, key: str, attempt: int, text: str) -> str:
        if "[fail500]" in text:
            return "500"
        f = self.faults
        u = (_h(f.seed, key, attempt) % 1_000_000) / 1_000_000
        for name, rate in (("429", f.rate_429), ("500", f.rate_500),
                           ("timeout", f.rate_timeout), ("malformed", f.rate_malformed)):
            if u < rate:
                return name
            u -= rate
        return "malformed" if "[malformed]" in text else "ok"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            raw = await request.read()
            body = json.loads(raw)
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            self._count("bad_request")
            return web.json_response({"error": {"message": "body must be JSON with messages"}},
                                     status=400)
        text = prompt_text(messages)
        refusal = self._refusal(request, body, text, len(raw))
        if refusal is not None:
            self._count(f"http_{refusal[0]}", json.dumps(messages, sort_keys=True))
            return web.json_response({"error": {"message": refusal[1],
                                                "type": "invalid_request_error"}},
                                     status=refusal[0])
        key = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            outage = self._in_outage()
            attempt = self._attempts[key]
            self._attempts[key] += 1
        outcome = "outage" if outage else self._outcome(key, attempt, text)
        self._count(outcome, json.dumps(messages, sort_keys=True))
        if outage:
            return web.json_response({"error": {"message": "service unavailable (outage)"}},
                                     status=503)
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if outcome == "429":
            return web.json_response(
                {"error": {"message": "rate limited", "type": "rate_limit_exceeded"}}, status=429,
                headers={"Retry-After": f"{self.faults.retry_after_s:g}"})
        if outcome == "500":
            return web.json_response({"error": {"message": "injected server error"}}, status=500)
        if outcome == "timeout":
            await asyncio.sleep(self.faults.hang_s)
        rf = body.get("response_format") or {}
        schema = ((rf.get("json_schema") or {}).get("schema")
                  if rf.get("type") == "json_schema" else None)
        content = json.dumps(expected_answer(messages, schema))
        if outcome == "malformed":
            content = content[: max(1, len(content) // 2)]  # truncated JSON
        prompt_tokens = max(1, len(text) // 4)
        completion_tokens = max(1, len(content) // 4)
        return web.json_response({
            "id": f"chatcmpl-{key[:12]}-{attempt}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "datamill-test"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}})

    def _refusal(self, request: web.Request, body: dict[str, Any], text: str,
                 size: int) -> tuple[int, str] | None:
        """(status, message) for a request this server's settings refuse."""
        f = self.faults
        if f.api_key and request.headers.get("Authorization") != f"Bearer {f.api_key}":
            return 401, "Incorrect API key provided"
        allowed = [m for m in f.models.split(",") if m]
        if allowed and body.get("model") not in allowed:
            return 404, f"The model `{body.get('model')}` does not exist"
        if f.reject_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            return 400, "response_format 'json_schema' is not supported by this server"
        if f.max_body_bytes and size > f.max_body_bytes:
            return 413, f"request body of {size} bytes is over the limit of {f.max_body_bytes}"
        if f.max_prompt_chars and len(text) > f.max_prompt_chars:
            return 400, (f"This model's maximum context length is {f.max_prompt_chars // 4} "
                         f"tokens. However, your messages resulted in {len(text) // 4} tokens.")
        return None

    def _count(self, outcome: str, messages_json: str = "") -> None:
        now = time.time()
        digest = hashlib.sha256(messages_json.encode()).hexdigest()
        with self._lock:
            self.counts["requests"] += 1
            self.counts[outcome] += 1
            self.log.append({"t": now, "outcome": outcome, "messages_sha256": digest})
            self._span = [self._span[0] if self._span else now, now]

    # -- control from Python -----------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Request counts by outcome; ``first_at``/``last_at``: wall times of requests."""
        with self._lock:
            out: dict[str, Any] = dict(self.counts)
            if self._span:
                out["first_at"], out["last_at"] = self._span
            return out

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.log.clear()
            self._attempts.clear()
            self._span = []
            self._seen, self._outage_at = 0, None

    def configure(self, **faults: Any) -> None:
        self.faults.update(faults)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "OpenAIServer":
        self._thread = threading.Thread(target=self._serve, name="openai-test-server", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("openai test server did not start within 10 s")
        return self

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app(), access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # the port chosen for port=0
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    for f in fields(Faults):
        if isinstance(f.default, bool):
            ap.add_argument(f"--{f.name.replace('_', '-')}", action="store_true")
        else:
            ap.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                            default=f.default)


def serve(args: argparse.Namespace) -> int:
    """Serve in the foreground until interrupted."""
    server = OpenAIServer(args.host, args.port,
                          **{f.name: getattr(args, f.name) for f in fields(Faults)})
    print(f"serving OpenAI-compatible API on http://{args.host}:{args.port}/v1", flush=True)
    web.run_app(server.app(), host=args.host, port=args.port, access_log=None, print=None)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return serve(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
