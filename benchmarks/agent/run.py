"""The agent benchmark: the offline planner's accuracy, the valid-spec rate, dry runs,
and the LLM planner against the local OpenAI-compatible server with injected faults.

    .venv/bin/python benchmarks/agent/run.py [--only offline,dry,llm] [--out results.json]

Everything runs in one process in a throwaway review folder, pipelines folder (a copy
of the bundled specs, so "the usual cleaning" has something to reuse) and lakehouse.
Dry runs read the first 20 records of the bundled sample docs through Spark/Delta, and
their LLM steps go through Ray to the scripted local server (no faults), so each step
really runs. The LLM planner runs against the same server with 429 (Retry-After), 500
and malformed-JSON faults; its fault-free answers are themselves schema-shaped
nonsense (each field filled from a hash of the prompt), which is the fourth fault.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent


def load(name: str = "requests.yaml") -> list[dict]:
    import yaml

    return yaml.safe_load((HERE / name).read_text())["requests"]


def judge(case: dict, st: dict) -> dict:
    """Per-dimension verdicts for one planned request."""
    from include.registry import get_op

    if case.get("refuse"):
        ok = st["status"] == "refused"
        return {"categories": ok, "order": ok, "params": ok, "schedule": ok, "format": ok,
                "all": ok}
    if st["status"] != "ok":
        return {"categories": False, "order": False, "params": False, "schedule": False,
                "format": False, "all": False, "refusal": st.get("refusal")}
    steps = st["spec"]["steps"]
    got = [s["op"] for s in steps]
    want = case["ops"]
    cat = lambda ops: sorted(get_op(o).meta.category for o in ops)  # noqa: E731
    v = {"categories": cat(got) == cat(want), "order": got == want}
    pv = True
    for op, params in (case.get("params") or {}).items():
        step = next((s for s in steps if s["op"] == op), None)
        for k, val in params.items():
            if step is None or (step.get("params") or {}).get(k) != val:
                pv = False
    v["params"] = pv
    v["schedule"] = st["spec"].get("schedule") == case.get("schedule")
    v["format"] = case.get("format") is None or st["spec"]["source"]["format"] == case["format"]
    v["all"] = all(v.values())
    return v


def offline(cases: list[dict]) -> dict:
    from include.agent.graph import plan
    from include.spec import validate_raw

    rows = []
    for c in cases:
        t0 = time.perf_counter()
        st = plan(c["request"], dry_run=False)
        secs = time.perf_counter() - t0
        valid = st["status"] == "ok" and validate_raw(st["spec"]) == []
        rows.append({"id": c["id"], "status": st["status"], "valid": valid,
                     "rounds": st.get("rounds_used"), "seconds": round(secs, 3),
                     "ops": [s["op"] for s in st["spec"]["steps"]] if st.get("spec") else None,
                     "schedule": (st.get("spec") or {}).get("schedule"),
                     "refusal": st.get("refusal"), "verdict": judge(c, st)})
    planned = [r for r in rows if r["status"] == "ok"]
    n = len(rows)
    share = lambda k: sum(r["verdict"][k] for r in rows) / n  # noqa: E731
    return {"requests": n, "accuracy": share("all"),
            "by_dimension": {k: share(k) for k in ("categories", "order", "params",
                                                    "schedule", "format")},
            "valid_spec_rate": (sum(r["valid"] for r in planned) / len(planned)) if planned
            else None,
            "planned": len(planned), "refused": n - len(planned),
            "refusals_expected": sum(1 for c in cases if c.get("refuse")),
            "repair_rounds": {str(k): sum(1 for r in planned if r["rounds"] == k)
                              for k in sorted({r["rounds"] for r in planned})},
            "seconds_per_request": {"median": statistics.median(r["seconds"] for r in rows),
                                    "max": max(r["seconds"] for r in rows)},
            "misses": [{k: r[k] for k in ("id", "ops", "schedule", "refusal", "verdict")}
                       for r in rows if not r["verdict"]["all"]],
            "rows": rows}


def dry_runs(cases: list[dict], server) -> dict:
    from include.agent.graph import plan

    os.environ["OPENAI_BASE_URL"] = server.url
    os.environ["DATAMILL_LLM_MODEL"] = "bench-model"
    src = str(ROOT / "include" / "sample_data" / "docs")
    rows = []
    for c in [c for c in cases if c.get("dry_run")]:
        t0 = time.perf_counter()
        st = plan(c["request"], source=src, dry_run_rows=20)
        dr = st.get("dry_run") or {}
        rows.append({"id": c["id"], "status": dr.get("status"), "message": dr.get("message"),
                     "funnel": dr.get("funnel"), "conservation_ok": dr.get("conservation_ok"),
                     "seconds": round(time.perf_counter() - t0, 1)})
    os.environ.pop("OPENAI_BASE_URL")
    ok = [r for r in rows if r["status"] == "ok" and r["conservation_ok"]]
    return {"dry_runs": len(rows), "succeeded": len(ok),
            "success_rate": len(ok) / len(rows) if rows else None,
            "seconds": {"median": statistics.median(r["seconds"] for r in rows),
                        "max": max(r["seconds"] for r in rows)} if rows else None,
            "rows": rows}


def llm_faults(cases: list[dict], server) -> dict:
    from include.agent.graph import plan
    from include.spec import validate_raw

    os.environ["OPENAI_BASE_URL"] = server.url
    os.environ["DATAMILL_LLM_MODEL"] = "bench-model"
    server.configure(rate_429=0.2, retry_after_s=0.02, rate_500=0.15, rate_malformed=0.15,
                     seed=7)
    server.reset()
    rows = []
    for c in cases:
        t0 = time.perf_counter()
        try:
            st = plan(c["request"], llm="openai", dry_run=False)
            outcome = ("valid" if st["status"] == "ok" and validate_raw(st["spec"]) == []
                       else "refused" if st["status"] == "refused" and st.get("refusal")
                       else "invalid")
        except Exception as exc:  # noqa: BLE001 - a crash is the failure this measures
            st, outcome = {"refusal": f"{type(exc).__name__}: {exc}"}, "crashed"
        rows.append({"id": c["id"], "outcome": outcome, "rounds": st.get("rounds_used"),
                     "calls": len(st.get("llm_calls") or []),
                     "refusal": (st.get("refusal") or "")[:200],
                     "seconds": round(time.perf_counter() - t0, 2)})
    os.environ.pop("OPENAI_BASE_URL")
    n = len(rows)
    stats = server.stats()
    return {"requests": n,
            "valid_or_clean_refusal": sum(r["outcome"] in ("valid", "refused") for r in rows) / n,
            "valid": sum(r["outcome"] == "valid" for r in rows),
            "refused": sum(r["outcome"] == "refused" for r in rows),
            "invalid_or_crashed": [r for r in rows if r["outcome"] not in ("valid", "refused")],
            "server": {k: v for k, v in stats.items() if not k.endswith("_at")},
            "calls_per_request": statistics.mean(r["calls"] for r in rows), "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="offline,dry,llm")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--requests", default="requests.yaml",
                    help="requests.yaml (the set the rules were fixed on) or "
                         "requests_holdout.yaml (never tuned on)")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="datamill-agent-bench-"))
    shutil.copytree(ROOT / "include" / "pipelines", tmp / "pipelines")
    os.environ.update(DATAMILL_REVIEW_DIR=str(tmp / "review"),
                      DATAMILL_PIPELINES_DIR=str(tmp / "pipelines"),
                      DATAMILL_LAKE=str(tmp / "lake"), HF_HUB_OFFLINE="1",
                      DATAMILL_DATA_ROOTS=str(ROOT / "include" / "sample_data"))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["DATAMILL_RAY_NUM_CPUS"] = "2"
    cases = load(args.requests)
    out: dict = {"set": args.requests, "requests": len(cases), "load_before": open("/proc/loadavg").read().split()[:3]}
    t0 = time.time()
    from include.testing.openai_server import OpenAIServer

    with OpenAIServer() as server:
        if "offline" in parts:
            out["offline"] = offline(cases)
            o = out["offline"]
            print(f"offline: {o['requests']} requests, accuracy {o['accuracy']:.1%}, valid-spec "
                  f"rate {o['valid_spec_rate']:.1%}, by dimension {o['by_dimension']}, "
                  f"repair rounds {o['repair_rounds']}", flush=True)
            for m in o["misses"]:
                print("  miss:", json.dumps(m), flush=True)
        if "llm" in parts:
            out["llm_faults"] = llm_faults(cases, server)
            lf = out["llm_faults"]
            print(f"llm planner under faults: {lf['valid_or_clean_refusal']:.1%} valid or clean "
                  f"refusal ({lf['valid']} valid, {lf['refused']} refused), server "
                  f"{lf['server']}", flush=True)
        if "dry" in parts:
            server.configure(rate_429=0, rate_500=0, rate_malformed=0)
            out["dry"] = dry_runs(cases, server)
            d = out["dry"]
            print(f"dry runs: {d['succeeded']}/{d['dry_runs']} ok, {d['seconds']}", flush=True)
            for r in d["rows"]:
                if r["status"] != "ok":
                    print("  dry run:", json.dumps(r)[:400], flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    out["load_after"] = open("/proc/loadavg").read().split()[:3]
    Path(args.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {args.out} ({out['seconds']} s; load {out['load_before']} -> "
          f"{out['load_after']})")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
