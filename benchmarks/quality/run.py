"""Quality gate and statistics on 200k real documents.

Input: the dedup benchmark's corpus (``benchmarks/dedup/corpus.py``: chunks of
man pages, Debian docs and Python sources nobody here wrote, plus
near-duplicate families), published by a datamill pipeline (ingest,
``exact_dedup``) into a Delta table, so the statistics have a run to report.

1. The ``datamill_defaults`` suite by Great Expectations (``gate.run_suite``:
   the Checkpoint; Data Docs not rendered) against a plain Spark aggregation that
   makes the same checks and returns the same figures (per expectation:
   success, unexpected count, observed row count); both read the same Delta
   table, both were warmed up once on a 1 % slice first, GX's import is
   outside the clock, and the results are checked equal. Runs alternate,
   ``--repeat`` times each; medians are reported. The ratio is GX's overhead.
   The gate as the op runs it (Data Docs and the ``_system/quality`` write
   included) is timed once beside them.
2. ``datamill stats TABLE`` as a user runs it (a fresh process: JVM start
   included), wall seconds, and the peak resident memory of its Python driver
   process and of the JVM, sampled every 0.2 s with psutil, against the
   table's size: the Python driver is where a collect would land.

    python -m benchmarks.quality.run --docs 200000 --work /tmp/quality200k \\
        --out benchmarks/quality/results_200k.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load() -> float:
    return round(os.getloadavg()[0], 1)


def build_corpus(n: int, folder: Path, shards: int = 8) -> None:
    from benchmarks.dedup.corpus import build

    folder.mkdir(parents=True, exist_ok=True)
    files = [open(folder / f"docs-{k:02d}.jsonl", "w", encoding="utf-8") for k in range(shards)]
    for i, r in enumerate(build(n, 0, 2000 if n >= 100_000 else 1000)):
        files[i % shards].write(json.dumps({"id": r["id"], "text": r["text"]}) + "\n")
    for f in files:
        f.close()


def plain_checks(df) -> dict[str, dict]:
    """datamill_defaults as one Spark aggregation (plus the id duplicate count):
    the same figures GX reports for each expectation."""
    from pyspark.sql import functions as F

    t = F.col("text")
    a = df.agg(F.count(F.lit(1)).alias("rows"),
               F.sum(F.col("id").isNull().cast("long")).alias("id_null"),
               F.sum(t.isNull().cast("long")).alias("text_null"),
               F.sum((t.isNotNull() & t.rlike(r"^\s*$")).cast("long")).alias("blank"),
               F.sum((t.isNotNull() & ((F.length(t) < 1) | (F.length(t) > 1_000_000)))
                     .cast("long")).alias("length")).collect()[0]
    dup = df.where(F.col("id").isNotNull()).groupBy("id").count().where("count > 1") \
        .agg(F.sum("count")).collect()[0][0] or 0
    rows = int(a["rows"])
    return {
        "expect_table_row_count_to_be_between": {"success": rows >= 1, "observed": rows},
        "expect_column_values_to_not_be_null:id": {"success": a["id_null"] == 0,
                                                   "unexpected": int(a["id_null"])},
        "expect_column_values_to_be_unique:id": {"success": dup == 0, "unexpected": int(dup)},
        "expect_column_values_to_not_be_null:text": {"success": a["text_null"] == 0,
                                                     "unexpected": int(a["text_null"])},
        "expect_column_values_to_not_match_regex:text": {"success": a["blank"] == 0,
                                                         "unexpected": int(a["blank"])},
        "expect_column_value_lengths_to_be_between:text": {"success": a["length"] == 0,
                                                           "unexpected": int(a["length"])},
    }


def gx_checks(df, lake: Path, expectations) -> dict[str, dict]:
    from include.quality.gate import run_suite

    _, _, vresult = run_suite(df, expectations, lake=lake, name="bench", asset="bench",
                              run_id="bench")
    out = {}
    for r in vresult.results:
        kw = r.expectation_config.kwargs
        key = r.expectation_config.type + (f":{kw['column']}" if "column" in kw else "")
        res = r.result or {}
        out[key] = ({"success": bool(r.success), "observed": res.get("observed_value")}
                    if "observed_value" in res else
                    {"success": bool(r.success), "unexpected": res.get("unexpected_count")})
    return out


class PeakRss:
    """Peak RSS (MB) per process name in a process tree, sampled every 0.2 s."""

    def __init__(self, pid: int):
        import psutil

        self.root, self.peak, self._stop = psutil.Process(pid), {}, threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    name = "jvm" if "java" in p.name() else (
                        "python_driver" if p.pid == self.root.pid else "python_workers")
                    rss = p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak.get(name, 0.0), rss)
            time.sleep(0.2)

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        return {k: round(v) for k, v in self.peak.items()}


def gate_part(res: dict, lh, table: str, work: Path, lake: Path, repeat: int) -> None:
    from include.quality.expectations import resolve

    df = lh.read(table)
    _, expectations = resolve({"suite": "datamill_defaults"})
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    t0 = time.time()
    import great_expectations  # noqa: F401 - outside the clock, reported
    res["gx_import_s"] = round(time.time() - t0, 1)

    # Warm-up, both sides, on a 1 % slice of the same table.
    warm = df.where("abs(xxhash64(id)) % 100 = 0")
    gx_checks(warm, work / "warm", expectations)
    plain_checks(warm)

    times = {"gx": [], "plain": []}
    got = {}
    for i in range(repeat):
        for side in ("gx", "plain") if i % 2 == 0 else ("plain", "gx"):
            d = lh.read(table)
            t0 = time.time()
            got[side] = gx_checks(d, work / "gxrun", expectations) if side == "gx" \
                else plain_checks(d)
            times[side].append((round(time.time() - t0, 2), load()))
    assert got["gx"] == got["plain"], (got["gx"], got["plain"])
    med = {k: statistics.median(t for t, _ in v) for k, v in times.items()}
    res["gate"] = {"checks": got["plain"], "gx_s": times["gx"], "plain_s": times["plain"],
                   "gx_median_s": med["gx"], "plain_median_s": med["plain"],
                   "gx_over_plain": round(med["gx"] / med["plain"], 2)}

    from include.quality.gate import validate

    t0 = time.time()
    full = validate(lh.read(table), expectations, lake=lake, pipeline="bench", run_id="bench-op",
                    step_index=1, suite="datamill_defaults")
    res["gate"]["op_path_s"] = (round(time.time() - t0, 2), load())
    res["gate"]["op_path_passed"] = full["success"]


def stats_part(res: dict, table: str, lake: Path, work: Path) -> None:
    """``datamill stats`` as a user runs it: a fresh process."""
    out = work / "report"
    cmd = [str(ROOT / ".venv" / "bin" / "datamill"), "stats", table, "--lake", str(lake),
           "--out", str(out)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(ROOT))
    meter = PeakRss(proc.pid)
    stdout, stderr = proc.communicate()
    peak = meter.stop()
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"datamill stats failed:\n{stderr[-3000:]}")
    st = json.loads(stdout.strip().splitlines()[-1])
    res["stats"] = {"wall_s": round(wall, 1), "load": load(), "in_process_s": st["seconds"],
                    "peak_rss_mb": peak, "rows": st["rows"],
                    "text_mb": round((st["length"]["chars"]["total"] or 0) / 1e6, 1),
                    "near_sample": st["duplication_rate"]["near_sample"],
                    "near_in_table": st["duplication_rate"]["near_in_table"],
                    "exact_in_table": st["duplication_rate"]["exact_in_table"],
                    "removed_by_dedup": st["duplication_rate"]["removed_by_dedup"],
                    "report": st["report"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--work", default="/tmp/quality200k")
    ap.add_argument("--data", help="an existing corpus folder of JSONL files (else built)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=("gate", "stats"), help="run one part (results merged "
                    "into --out)")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    work = Path(a.work)
    lake = work / "lake"
    res: dict = {}
    if a.out and Path(a.out).is_file():
        res = json.loads(Path(a.out).read_text())
    res.update({"docs": a.docs, "cores": os.cpu_count(),
                "note": "machine shared with other helpers' jobs; load = 1-min load average"})

    def save() -> None:  # after each part, so a later failure keeps the figures
        if a.out:
            Path(a.out).write_text(json.dumps(res, indent=1, default=str) + "\n")

    data = Path(a.data) if a.data else work / "input"
    if not a.data and not any(data.glob("*.jsonl")):
        t0 = time.time()
        build_corpus(a.docs, data)
        res["corpus_build_s"] = round(time.time() - t0, 1)
    res["input_mb"] = round(sum(p.stat().st_size for p in data.glob("*.jsonl")) / 1e6, 1)

    from include.lakehouse import Lakehouse
    from include.runner import run_pipeline
    from spark_jobs.session import get_spark

    spark = get_spark()
    lh = Lakehouse(lake)
    table = "gold/bench"
    if not lh.exists(table):
        spec = work / "bench.yaml"
        spec.write_text(f"version: 1\nname: bench\nsource: {{path: {data}, format: jsonl, "
                        f"id_field: id}}\nsteps:\n  - op: exact_dedup\noutput: {{table: {table}}}\n")
        t0 = time.time()
        summary = run_pipeline(str(spec), lake=str(lake))
        res["publish"] = {"seconds": round(time.time() - t0, 1), "output_rows": summary["output_rows"],
                          "load": load()}
    df = lh.read(table)
    res["table_rows"] = df.count()
    if a.only != "stats":
        gate_part(res, lh, table, work, lake, a.repeat)
        save()
    spark.stop()
    if a.only != "gate":
        stats_part(res, table, lake, work)
        save()
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
