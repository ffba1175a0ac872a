"""Helpers the test modules import (``from tests.helpers import ...``).

Kept out of conftest.py: importing conftest under its module name would run it
a second time and point AIRFLOW_HOME at a new, unmigrated directory.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATAMILL = str(ROOT / ".venv" / "bin" / "datamill")


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    e = os.environ.copy()
    e.update(env or {})
    return subprocess.run([DATAMILL, *args], capture_output=True, text=True, env=e,
                          timeout=timeout, cwd=str(ROOT))


def dag_test(dag, capfd, **kwargs):
    """``dag.test(**kwargs)``, asserting success; a failed run names its failed
    tasks and the exception lines of their logs, which ``dag.test()`` writes
    to stdout (a CI summary shows the assertion, not the captured output)."""
    run = dag.test(**kwargs)
    if run.state != "success":
        out, err = capfd.readouterr()
        sys.stdout.write(out)  # still shown in the test's report
        sys.stderr.write(err)
        failed = sorted(ti.task_id for ti in run.get_task_instances()
                        if ti.state not in ("success", "skipped"))
        errors = [ln.strip() for ln in out.splitlines()
                  if re.match(r"^\s*[\w.]+(Error|Exception|Exit)\b.*:", ln)]
        raise AssertionError(f"dag run {run.state}; tasks {failed}; errors: {errors[-8:]}")
    return run


def write_spec(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


# Real docstrings from the bundled sample that pass the default Gopher rules
# at min_words 40: test rows made of real prose, not repeated filler.
CLEAN_IDS = ['py:abc.ABCMeta', 'py:abc.abstractmethod', 'py:abc.update_abstractmethods',
             'py:argparse', 'py:argparse.Action', 'py:argparse.ArgumentParser',
             'py:argparse.MetavarTypeHelpFormatter', 'py:array', 'py:array.ArrayType', 'py:ast',
             'py:ast.NodeTransformer', 'py:ast.NodeVisitor', 'py:ast.dump',
             'py:ast.fix_missing_locations', 'py:ast.get_docstring', 'py:ast.get_source_segment',
             'py:ast.literal_eval', 'py:asynchat', 'py:asyncore', 'py:base64.a85decode',
             'py:base64.a85encode', 'py:base64.b32decode', 'py:base64.b64decode',
             'py:base64.b64encode', 'py:base64.standard_b64decode', 'py:base64.urlsafe_b64decode',
             'py:bdb.Bdb', 'py:bdb.Bdb.format_stack_entry', 'py:bdb.Bdb.trace_dispatch',
             'py:bdb.Breakpoint']


def clean_texts(n: int) -> list[str]:
    import json

    docs = {}
    with open(ROOT / "include/sample_data/docs/stdlib_docs.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            docs[d["id"]] = d["text"]
    return [docs[i] for i in CLEAN_IDS[:n]]


class CaptureServer:
    """A real HTTP server on loopback that records every request it gets
    (method, path, headers, body) and answers like an OpenAI-compatible
    endpoint, so a test can prove that nothing was sent to it, or script what
    a model answers (``content``: the assistant message of every answer)."""

    def __init__(self, content: str = '{"score": 5, "rationale": "ok"}'):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                import json as _json

                n = int(self.headers.get("Content-Length") or 0)
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers),
                                       "body": self.rfile.read(n).decode(errors="replace")})
                body = _json.dumps({"id": "x", "object": "chat.completion", "choices": [{
                    "index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "CaptureServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
