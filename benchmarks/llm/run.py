"""LLM-stage throughput and embedding speed, side by side on the same input.

1. ``llm_score`` against a plain asyncio client. The local OpenAI-compatible
   server (``include.testing.openai_server``) runs in its own process with a
   fixed per-request latency. The same N prompts (the llm_score template over
   CPython stdlib docstrings, bundled in include/sample_data) are sent by
   (a) a plain ``AsyncOpenAI`` client with an ``asyncio.Semaphore(C)`` and
   (b) datamill's ``llm_score`` op on local Ray (one async actor with C
   requests in flight, cache off so every row is asked), alternating a/b
   ``--repeat`` times. End to end, each run is a fresh process timed from its
   start to its exit: interpreter, imports, for (b) ``ray.init`` (a local Ray
   cluster) and its actor, the requests, the answers as an Arrow table. In
   process, after one warm-up of each in the benchmark's own process, the
   same runs without the process and ``ray.init`` start-up (b still starts
   its actor each run). Reported: requests/s of both, requests/s as the
   server saw them (first to last request: the steady state), seconds to the
   first request, and b/a ratios.
2. ``semantic_dedup`` embedding speed on CPU: docs/s of all-MiniLM-L6-v2 with
   sentence-transformers in-process, and of the whole op on Ray (load the
   model in an actor, embed, cluster, decide).

    python -m benchmarks.llm.run --requests 2000 --concurrency 16 --latency-ms 100
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow as pa

from include.config import PROJECT_ROOT, SAMPLE_DATA_DIR
from include.prompts import load_template
from include.registry import StepContext, apply_defaults, get_op

DOCS = SAMPLE_DATA_DIR / "docs" / "stdlib_docs.jsonl"


def load_texts(n: int) -> list[dict]:
    base = [json.loads(line) for line in DOCS.read_text().splitlines() if line.strip()]
    base = [r for r in base if r.get("id") and r.get("text")]
    # Cycled with a round number so every prompt is distinct (no cache effects anywhere).
    return [{"id": f"{base[i % len(base)]['id']}#{i // len(base)}",
             "text": f"{base[i % len(base)]['text']}\n(round {i // len(base)})"}
            for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "include.testing.openai_server", "--port",
                             str(port), "--latency-ms", str(latency_ms)], cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/v1/models", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("benchmark server did not start")


def server_span(url: str) -> dict:
    s = httpx.get(f"{url}/_stats").json()
    httpx.post(f"{url}/_reset")
    return {"requests": s.get("requests", 0), "first_at": s.get("first_at"),
            "rps": s["requests"] / (s["last_at"] - s["first_at"]) if s.get("requests") else 0}


async def plain_client(url: str, rows: list[dict], concurrency: int) -> int:
    """The baseline: what one would write by hand with the OpenAI SDK."""
    from openai import AsyncOpenAI

    t = load_template("llm_score")
    fmt = {"type": "json_schema", "json_schema": {"name": t.name, "schema": t.schema,
                                                  "strict": True}}
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="EMPTY", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(row: dict) -> int:
        async with sem:
            r = await client.chat.completions.create(
                model="bench", messages=t.render({"text": row["text"]}), temperature=0,
                max_tokens=512, response_format=fmt, timeout=60)
        return json.loads(r.choices[0].message.content)["score"]

    scores = await asyncio.gather(*(one(r) for r in rows))
    await client.close()
    return len(scores)


def datamill_score(url: str, rows: list[dict], concurrency: int, lake: str) -> int:
    from ray_jobs.engine import to_arrow, to_ray

    op = get_op("llm_score")()
    ctx = StepContext(pipeline="bench", run_id="b", step_index=1, op="llm_score", lake=lake)
    params = apply_defaults(op.meta, {"engine": {"base_url": f"{url}/v1", "model": "bench"},
                                      "concurrency": concurrency, "cache": False,
                                      "batch_size": max(32, concurrency)})
    out = to_arrow(op.run(to_ray(pa.Table.from_pylist(rows)), params, ctx))
    assert out.num_rows == len(rows) and out.column("_quarantine").null_count == len(rows)
    return out.num_rows


def cold_worker(args) -> int:
    """One whole run in this fresh process (``--cold-worker``): what a user's job pays."""
    rows = load_texts(args.requests)
    if args.cold_worker == "plain":
        asyncio.run(plain_client(args.url, rows, args.concurrency))
        return 0
    from ray_jobs.engine import ensure_ray

    t0 = time.time()
    ensure_ray()
    print(json.dumps({"ray_init_s": round(time.time() - t0, 2)}), flush=True)
    datamill_score(args.url, rows, args.concurrency, args.lake)
    return 0


def cold_runs(args, url: str) -> dict[str, list]:
    runs: dict[str, list] = {"plain_asyncio_openai": [], "datamill_llm_score": []}
    for _ in range(args.repeat):
        for name, worker in (("plain_asyncio_openai", "plain"), ("datamill_llm_score", "datamill")):
            t0 = time.time()
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.llm.run", "--cold-worker", worker, "--url", url,
                 "--requests", str(args.requests), "--concurrency", str(args.concurrency),
                 "--lake", args.lake], cwd=PROJECT_ROOT, capture_output=True, text=True)
            wall = time.time() - t0
            if done.returncode:
                raise RuntimeError(f"{worker} run failed: {done.stderr[-2000:]}")
            span = server_span(url)
            inner = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
            runs[name].append({"seconds": wall, "rps": args.requests / wall,
                               "to_first_request_s": span["first_at"] - t0, "server": span,
                               **(inner[0] if inner else {}), "load": os.getloadavg()[0]})
    return runs


def bench_llm(args) -> dict:
    from ray_jobs.engine import ensure_ray

    rows = load_texts(args.requests)
    proc, url = start_server(args.latency_ms)
    try:
        cold = cold_runs(args, url)
    except BaseException:
        proc.terminate()
        raise
    t0 = time.time()
    ensure_ray()
    ray_init_s = time.time() - t0
    runs: dict[str, list] = {"plain_asyncio_openai": [], "datamill_llm_score": []}
    try:
        # Warm-ups: the server and client libraries, and Ray Data's own start-up
        # (each measured datamill run still starts its own actor pool).
        asyncio.run(plain_client(url, rows[:64], args.concurrency))
        datamill_score(url, rows[:64], args.concurrency, args.lake)
        server_span(url)
        for _ in range(args.repeat):
            t0 = time.time()
            asyncio.run(plain_client(url, rows, args.concurrency))
            wall = time.time() - t0
            span = server_span(url)
            runs["plain_asyncio_openai"].append({"seconds": wall, "rps": len(rows) / wall,
                                                 "to_first_request_s": span["first_at"] - t0,
                                                 "server": span})
            t0 = time.time()
            datamill_score(url, rows, args.concurrency, args.lake)
            wall = time.time() - t0
            span = server_span(url)
            runs["datamill_llm_score"].append({"seconds": wall, "rps": len(rows) / wall,
                                               "to_first_request_s": span["first_at"] - t0,
                                               "server": span})
    finally:
        proc.terminate()
        proc.wait(10)

    def med(table: dict, name: str, key: str) -> float:
        vals = [r["rps"] if key == "rps" else r["server"]["rps"] for r in table[name]]
        return statistics.median(vals)

    summary = {k: {"rps_end_to_end": round(med(cold, k, "rps"), 1),
                   "rps_in_process": round(med(runs, k, "rps"), 1),
                   "rps_server_seen": round(med(runs, k, "server"), 1)} for k in runs}
    ideal = args.concurrency / (args.latency_ms / 1000)

    def ratio(key: str) -> float:
        return round(summary["datamill_llm_score"][key] / summary["plain_asyncio_openai"][key], 3)

    return {"requests": args.requests, "concurrency": args.concurrency,
            "latency_ms": args.latency_ms, "ideal_rps": ideal, "repeat": args.repeat,
            "ray_init_seconds_in_process": round(ray_init_s, 2), "cold_runs": cold,
            "runs": runs, "median": summary, "ratio_end_to_end": ratio("rps_end_to_end"),
            "ratio_in_process": ratio("rps_in_process"),
            "ratio_server_seen": ratio("rps_server_seen")}


def bench_embed(args) -> dict:
    from ray_jobs.embeddings import encode, load_model
    from ray_jobs.engine import to_arrow, to_ray

    rows = load_texts(args.embed_docs)
    texts = [r["text"] for r in rows]
    t0 = time.time()
    model = load_model(threads=args.threads)
    load_s = time.time() - t0
    encode(model, texts[:64])  # warm-up
    t0 = time.time()
    encode(model, texts)
    plain_s = time.time() - t0
    del model

    op = get_op("semantic_dedup")()
    ctx = StepContext(pipeline="bench", run_id="b", step_index=1, op="semantic_dedup",
                      lake=args.lake)
    t0 = time.time()
    out = to_arrow(op.run(to_ray(pa.Table.from_pylist(rows)),
                          apply_defaults(op.meta, {"threads": args.threads}), ctx))
    op_s = time.time() - t0
    return {"docs": len(rows), "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
            "threads": args.threads, "model_load_seconds": round(load_s, 2),
            "sentence_transformers_docs_per_s": round(len(rows) / plain_s, 1),
            "semantic_dedup_op_docs_per_s": round(len(rows) / op_s, 1),
            "semantic_dedup_op_seconds": round(op_s, 2),
            "removed": out.num_rows - out.column("_reason").null_count,
            "clusters": ctx.extras["stats"]["clusters"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency-ms", type=float, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--embed-docs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", choices=["llm", "embed"], action="append", default=[])
    ap.add_argument("--lake", default="/tmp/datamill_bench_llm_lake")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    ap.add_argument("--cold-worker", choices=["plain", "datamill"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("DATAMILL_RAY_NUM_CPUS", "2")
    if args.cold_worker:
        return cold_worker(args)
    result = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0],
                          "gpu": None}}
    if "llm" not in args.skip:
        result["llm_score"] = bench_llm(args)
        print(json.dumps({"llm_score": result["llm_score"]["median"],
                          **{k: result["llm_score"][k] for k in (
                              "ratio_end_to_end", "ratio_in_process", "ratio_server_seen")}}),
              flush=True)
    if "embed" not in args.skip:
        result["semantic_dedup"] = bench_embed(args)
        print(json.dumps({"semantic_dedup": result["semantic_dedup"]}), flush=True)
    result["machine"]["load_avg_at_end"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
