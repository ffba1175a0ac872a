"""Row-wise Spark stages, side by side on the same input, in one process.

``--mode fuse`` (default): the same spec with ``execution.fuse: true``
(consecutive row-wise steps in one Spark job, one write) and ``fuse: false``
(each step written to its silver Delta table and read back). Input: the
bundled stdlib docstrings replicated with fresh ids.

``--mode skip --crawl DIR``: html_extract -> language_filter (English) ->
quality_filter -> pii_redact, fused, over a WARC crawl (``crawl.py``: mostly
non-English pages of real text), with ``spark_jobs.rowwise`` calling each
op's row function on every row ("all rows", as before) and only on rows no
earlier step removed ("live rows"). Runs alternate after one warm-up run;
both must give the same summary.

    .venv/bin/python benchmarks/fusion/run.py --copies 10
    .venv/bin/python -m benchmarks.fusion.crawl --pages 2000 --out /tmp/crawl
    .venv/bin/python benchmarks/fusion/run.py --mode skip --crawl /tmp/crawl --repeats 3
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
CRAWL_STEPS = [{"op": "html_extract"}, {"op": "language_filter", "params": {"languages": ["en"]}},
               {"op": "quality_filter"}, {"op": "pii_redact"}]


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


def crawl_spec(crawl: Path, work: Path) -> Path:
    import yaml

    raw = {"version": 1, "name": "crawl_skip", "source": {"path": str(crawl), "format": "warc"},
           "steps": CRAWL_STEPS, "output": {"table": "gold/crawl_skip"}}
    p = work / "crawl_skip.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def skip_dead(args) -> None:
    """All rows vs live rows only, in a fused html -> language -> quality -> PII group."""
    import os

    from include.runner import run_pipeline
    from spark_jobs import rowwise

    work = Path(tempfile.mkdtemp(prefix="dm-skip-"))
    p = crawl_spec(Path(args.crawl), work)
    load = [os.getloadavg()[0]]
    run_pipeline(str(p), lake=str(work / "warm"))
    times, summaries = {"all_rows": [], "live_rows": []}, {}
    for r in range(args.repeats):
        for mode in ("all_rows", "live_rows"):
            rowwise.SKIP_DEAD = mode == "live_rows"
            t = time.time()
            s = run_pipeline(str(p), lake=str(work / f"lake_{mode}_{r}"))
            times[mode].append(time.time() - t)
            summaries[mode] = [(x["op"], x["rows_in"], x["removed"], x["changed"] if "changed"
                                in x else 0) for x in s["steps"]]
            load.append(os.getloadavg()[0])
    assert summaries["all_rows"] == summaries["live_rows"], summaries
    best = {k: min(v) for k, v in times.items()}
    print(json.dumps({"pages": s["source"]["rows"], "steps": summaries["live_rows"],
                      "output_rows": s["output_rows"],
                      "all_rows_s": round(best["all_rows"], 2),
                      "live_rows_s": round(best["live_rows"], 2),
                      "all_over_live": round(best["all_rows"] / best["live_rows"], 2),
                      "all_runs": {k: [round(x, 2) for x in v] for k, v in times.items()},
                      "load_avg": [round(x, 1) for x in load]}))
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("fuse", "skip"), default="fuse")
    ap.add_argument("--crawl", help="WARC folder made by benchmarks/fusion/crawl.py (--mode skip)")
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if args.mode == "skip":
        return skip_dead(args)
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
