"""Disk use of the lakehouse after 10 runs of the demo, without and with a
retention policy.

The demo's two pipelines (``include/pipelines/stdlib_docs.yaml`` and
``stdlib_code.yaml``, on the bundled sample data) run ``--runs`` times each,
in turn, into a fresh lakehouse: once as they are (no policy: every run keeps
its bronze copy and its silver slices), once with ``retention: {runs: 2}``
set for the run (``--set retention.runs=2``; applied after each publish:
other runs' bronze/silver slices deleted, ``VACUUM ... LITE``). Each variant
runs in its own process (one JVM for its runs). Disk use is measured after
every round (all files under each area: bytes as ``du`` counts them, and
file counts); the published tables, the ledger, quarantine and run records
are the same in both.

    python -m benchmarks.retention.run --runs 10 --work /tmp/retention
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
AREAS = ("bronze", "silver", "gold", "_system")


def usage(lake: str) -> dict:
    out = {}
    for area in AREAS + ("",):
        total, files = 0, 0
        for root, _, names in os.walk(os.path.join(lake, area)):
            for n in names:
                st = os.lstat(os.path.join(root, n))
                total += st.st_blocks * 512
                files += 1
        out[area or "total"] = {"mb": round(total / 2**20, 2), "files": files}
    return out


def worker(variant: str, runs: int, lake: str) -> dict:
    from include.demo import DEMO_SPECS
    from include.runner import run_pipeline
    from include.spec import load_spec

    overrides = ["retention.runs=2"] if variant == "policy" else None
    specs = [load_spec(p, overrides) for p in DEMO_SPECS]
    rounds, t0 = [], time.time()
    for i in range(runs):
        for spec in specs:
            s = run_pipeline(spec, lake=lake)
            assert s["conservation"]["ok"]
        rounds.append({"round": i + 1, "seconds": round(time.time() - t0, 1), **usage(lake)})
        print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {"variant": variant, "runs_per_pipeline": runs, "rounds": rounds, "final": usage(lake),
            "load_after": load}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--work", required=True)
    ap.add_argument("--worker", choices=("none", "policy"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker, a.runs, os.path.join(a.work, f"lake_{a.worker}"))))
        return 0
    os.makedirs(a.work, exist_ok=True)
    results = {"runs_per_pipeline": a.runs, "variants": {}}
    for variant in ("none", "policy"):
        shutil.rmtree(os.path.join(a.work, f"lake_{variant}"), ignore_errors=True)
        with open("/proc/loadavg") as f:
            before = f.read().split()[:3]
        p = subprocess.run([sys.executable, "-m", "benchmarks.retention.run", "--runs",
                            str(a.runs), "--work", a.work, "--worker", variant],
                           cwd=ROOT, capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"{variant} failed:\n{p.stderr[-3000:]}")
        results["variants"][variant] = {**json.loads(p.stdout.strip().splitlines()[-1]),
                                        "load_before": before}
    none, pol = (results["variants"][v]["final"]["total"]["mb"] for v in ("none", "policy"))
    results["ratio_policy_to_none"] = round(pol / none, 3) if none else None
    out = a.out or os.path.join(HERE, f"results_{a.runs}runs.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps({v: r["final"] for v, r in results["variants"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
