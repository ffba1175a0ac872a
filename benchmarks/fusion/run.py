"""Fused vs materialised row-wise Spark stages, side by side on the same input.

The same spec runs twice in one process (one SparkSession, warmed up first):
``execution.fuse: true`` (consecutive row-wise steps in one Spark job, one
write) and ``fuse: false`` (each step written to its silver Delta table and
read back). Input: the bundled stdlib docstrings replicated with fresh ids.

    .venv/bin/python benchmarks/fusion/run.py --copies 10
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

STEPS = ["normalize", "quality_filter", "language_filter", "pii_redact"]


def make_input(folder: Path, copies: int) -> int:
    src = ROOT / "include/sample_data/docs/stdlib_docs.jsonl"
    docs = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines()]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "docs.jsonl").open("w", encoding="utf-8") as fh:
        for c in range(copies):
            for d in docs:
                fh.write(json.dumps({"id": f"{d['id']}#{c}", "text": d["text"]}) + "\n")
    return copies * len(docs)


def spec(folder: Path, fuse: bool, steps: list[str]) -> Path:
    import yaml

    raw = {"version": 1, "name": f"fusion_{'on' if fuse else 'off'}",
           "source": {"path": str(folder), "format": "jsonl", "id_field": "id"},
           "steps": [{"op": s} for s in steps], "execution": {"fuse": fuse},
           "output": {"table": f"gold/fusion_{'on' if fuse else 'off'}"}}
    p = folder.parent / f"{raw['name']}.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from include.registry import get_op
    from include.runner import run_pipeline

    steps = [s for s in STEPS if _exists(get_op, s)]
    work = Path(tempfile.mkdtemp(prefix="dm-fusion-"))
    n = make_input(work / "in", args.copies)
    times = {True: [], False: []}
    run_pipeline(str(spec(work / "in", True, steps)), lake=str(work / "warm"))  # JVM, jars, UDF warm-up
    for r in range(args.repeats):
        for fuse in (True, False):
            lake = work / f"lake_{fuse}_{r}"
            p = spec(work / "in", fuse, steps)
            t = time.time()
            s = run_pipeline(str(p), lake=str(lake))
            times[fuse].append(time.time() - t)
    best = {k: min(v) for k, v in times.items()}
    print(json.dumps({"docs": n, "steps": steps, "output_rows": s["output_rows"],
                      "fused_s": round(best[True], 2), "materialised_s": round(best[False], 2),
                      "materialised_over_fused": round(best[False] / best[True], 2),
                      "all_runs": {str(k): [round(x, 2) for x in v] for k, v in times.items()}}))
    shutil.rmtree(work, ignore_errors=True)


def _exists(get_op, name: str) -> bool:
    try:
        get_op(name)
        return True
    except KeyError:
        return False


if __name__ == "__main__":
    main()
