"""Driver memory of a Ray step on 1M rows: the engine before and after its
rows stopped passing through the driver.

- ``before``: ``ray_jobs/engine.py`` as it was at commit ``77a159e`` (loaded
  from git, unchanged): the step's input is collected to the driver
  (``df.toArrow()``), handed to Ray (``from_arrow``), and the op's output is
  collected again (``to_arrow``) and sent back to Spark (``createDataFrame``);
- ``after``: the current engine: Ray's read tasks read the input table's
  Parquet files (delta-rs file list of the run's partition,
  ``ray.data.read_parquet``), Ray's workers write the output as Parquet,
  Spark's executors read it back.

Both run the same runner stage (``include.runner.run_task``: read the run's
slice, the op, ledger, quarantine, the silver write, the counters) of the
same spec, on the same bronze table of 1M rows, each in a fresh process (a
new JVM and a new local Ray with 2 CPUs and a 1 GiB object store). The op is
a streaming row-wise Ray op made for this benchmark (``char_count``: adds
the length of each text with ``map_batches``), so that what is measured is
the engine's data movement, not an op's algorithm. The text is real: pairs
of the bundled Python standard-library docstrings (about 510 characters per
row, about 0.5 GB in all).

Memory: a thread samples, every 0.1 s, the resident set size (psutil) of the
driver's Python process, of its JVM (the Spark driver, a child process) and
of the Ray processes it started (raylet, GCS, workers: children too); the
peaks are reported, and ``ru_maxrss`` of the Python process as a check.

    python -m benchmarks.ray_driver.run --rows 1000000 --work /tmp/raydriver
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BEFORE_COMMIT = "77a159e"
SPEC = {"version": 1, "name": "ray_driver_bench",
        "source": {"path": "unused/", "format": "jsonl", "id_field": "id"},
        "steps": [{"op": "char_count"}], "output": {"table": "gold/ray_driver_bench"}}
RUN_ID = "bench__ray_driver"


def register_op() -> None:
    """The benchmark's streaming Ray op (registered in this process only)."""
    from include.registry import Op, register_op as reg

    def count(batch):
        import pyarrow as pa
        import pyarrow.compute as pc

        from ray_jobs.control import with_control

        n = pc.utf8_length(batch.column("text")).cast(pa.int64())
        return with_control(batch.append_column("chars", n))

    @reg(name="char_count", version="1", category="stats", engine="ray",
         description="Benchmark op: the length of each text, row by row on Ray.",
         params={"properties": {}}, requires=("text",), adds=("chars",))
    class CharCount(Op):
        def run(self, ds, params, ctx):
            return ds.map_batches(count, batch_format="pyarrow", batch_size=4096)


def load() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


class Peaks:
    """Peak RSS of this process, its JVM child and its other children (Ray)."""

    def __init__(self, period: float = 0.1):
        import psutil

        self.me, self.period = psutil.Process(), period
        self.peak = {"driver_python": 0, "driver_jvm": 0, "ray_processes": 0}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        import psutil

        while not self._stop.wait(self.period):
            now = {"driver_python": 0, "driver_jvm": 0, "ray_processes": 0}
            try:
                now["driver_python"] = self.me.memory_info().rss
                for p in self.me.children(recursive=True):
                    try:
                        name = " ".join(p.cmdline()[:2])
                        key = "driver_jvm" if "java" in name else "ray_processes"
                        now[key] += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                continue
            for k, v in now.items():
                self.peak[k] = max(self.peak[k], v)

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        return {f"{k}_peak_mb": round(v / 2**20) for k, v in self.peak.items()}


def prepare(lake: str, rows: int) -> None:
    """The bronze slice of 1M rows and the run's record (what ingest leaves)."""
    from pyspark.sql import functions as F

    from include.lakehouse import Lakehouse
    from include.runner import begin_run
    from include.spec import parse

    register_op()
    with open(os.path.join(ROOT, "include/sample_data/docs/stdlib_docs.jsonl")) as f:
        texts = [json.loads(line)["text"] for line in f]
    lh = Lakehouse(lake)
    spark = lh.spark
    docs = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "k long, t string")
    n = len(texts)
    df = (spark.range(rows).select(
        F.concat(F.lit("r"), F.col("id").cast("string")).alias("id"),
        (F.col("id") % n).alias("a"), ((F.col("id") * 7 + 3) % n).alias("b"),
        F.lit("{}").alias("meta"))
        .join(F.broadcast(docs.select(F.col("k").alias("a"), F.col("t").alias("ta"))), "a")
        .join(F.broadcast(docs.select(F.col("k").alias("b"), F.col("t").alias("tb"))), "b")
        .select("id", F.concat_ws("\n\n", "ta", "tb").alias("text"), "meta"))
    spec = parse(SPEC)
    begin_run(spec, RUN_ID, lh)
    lh.write_run(df.repartition(8), lh.bronze(spec.name), RUN_ID)


def worker(variant: str, lake: str) -> dict:
    register_op()
    if variant == "before":
        src = subprocess.run(["git", "-C", ROOT, "show", f"{BEFORE_COMMIT}:ray_jobs/engine.py"],
                             check=True, capture_output=True, text=True).stdout
        path = os.path.join(lake, "..", "engine_before.py")
        with open(path, "w") as f:
            f.write(src)
        spec = importlib.util.spec_from_file_location("engine_before", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        from include import engines

        engines._CACHE["ray"] = mod.RayEngine()
    from include.runner import plan_stages, run_task
    from include.spec import parse

    task = plan_stages(parse(SPEC))[1].task_id
    peaks = Peaks()
    before = load()
    t0 = time.time()
    rows = run_task("ray_driver_bench", task, RUN_ID, lake)
    wall = time.time() - t0
    out = peaks.stop()
    out.update({"variant": variant, "wall_s": round(wall, 1), "rows_in": rows[0]["rows_in"],
                "kept": rows[0]["kept"], "load_before": before, "load_after": load(),
                "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--work", required=True)
    ap.add_argument("--worker", choices=("prepare", "before", "after"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    lake = os.path.join(a.work, "lake")
    if a.worker == "prepare":
        prepare(lake, a.rows)
        return 0
    if a.worker:
        print(json.dumps(worker(a.worker, lake)))
        return 0
    os.makedirs(a.work, exist_ok=True)
    env = {**os.environ, "DATAMILL_RAY_NUM_CPUS": "2", "PYTHONPATH": ROOT}
    me = [sys.executable, "-m", "benchmarks.ray_driver.run", "--rows", str(a.rows),
          "--work", a.work]
    if not os.path.isdir(os.path.join(lake, "bronze")):
        subprocess.run(me + ["--worker", "prepare"], check=True, env=env, cwd=ROOT)
    results = {"rows": a.rows, "runs": {}}
    for variant in ("before", "after"):
        p = subprocess.run(me + ["--worker", variant], env=env, cwd=ROOT, capture_output=True,
                           text=True)
        if p.returncode:
            results["runs"][variant] = {"failed": p.returncode, "stderr": p.stderr[-3000:]}
        else:
            results["runs"][variant] = json.loads(p.stdout.strip().splitlines()[-1])
        print(variant, json.dumps(results["runs"][variant]), file=sys.stderr)
    out = a.out or os.path.join(HERE, f"results_{a.rows // 1000}k.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
