"""MinHash dedup side by side on one labelled corpus (see ``corpus.py``).

Every method runs in a fresh process, one after the other, on the same input
files and the same cores, and the clock is that process's life: interpreter
start, imports, datamill's JVM start (``get_spark``) and datatrove's worker
pool are inside the clock for every method, and so is writing the result.
Equal work: every method reads the JSONL shards and writes its kept
documents and its removed documents (``id``, ``text``) as Parquet (snappy):

- ``datamill``: ``minhash_dedup`` on Spark ``local[N]`` (JSONL read by
  Spark, one ``partitionBy("kept")`` Parquet write of its annotated rows);
- ``datamill_run``: the same step through ``datamill run SPEC`` as a user
  runs it: ingest to bronze, the step, ledger, quarantine, run record and the
  published gold table, all in Delta (Parquet files plus commits; the kept
  rows are the gold table and the removed ids are in the ledger). It does
  more than the others (bronze, silver and ledger copies), so it is shown for
  the fixed cost of a run, not for the equal-work ratio;
- ``datatrove_<b>x<r>_w<k>``: datatrove's four-stage MinHash pipeline
  (``LocalPipelineExecutor`` with k workers; b bands x r rows: 14 x 8 is its
  default, FineWeb's, and 11 x 11), kept documents through ``ParquetWriter``
  and removed ones through the filter's exclusion writer, also Parquet;
- ``datasketch``: ``MinHashLSH`` in one process (it has no parallel mode,
  shingles as datamill's), union-find over its query results, pyarrow Parquet.

Reports precision, recall and near-duplicate clusters lost entirely against
each ground truth (``truth.json``: datamill's shingling; ``truth_ws.json``:
an independent whitespace tokenisation, see ``corpus.py``), wall time,
core-seconds (wall x cores used) and CPU seconds of the method's process tree
(psutil, sampled every 0.2 s). Ratios divide the fastest datatrove variant's
core-seconds (or CPU seconds) by the method's (> 1 = cheaper than datatrove).

Metrics, with C the true clusters (components of the J >= t graph):
precision = removed docs that belong to some true cluster / removed docs;
recall = sum over C of min(removed in C, |C| - 1) / sum over C of (|C| - 1);
lost = clusters whose every member was removed.

    python -m benchmarks.dedup.run --data /tmp/dedup20k --cores 2
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

def _components(ids, pairs):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups = defaultdict(set)
    for x in list(parent):
        groups[find(x)].add(x)
    return [g for g in groups.values() if len(g) > 1]


class CpuMeter:
    """CPU seconds (user + system) used by this process and its descendants while open."""

    def __init__(self, period: float = 0.2):
        import psutil

        self._me, self._period = psutil.Process(), period
        self._base = self._sample()
        self._last = dict(self._base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> dict:
        import psutil

        out = {}
        for p in [self._me, *self._me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                out[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def _loop(self):
        while not self._stop.wait(self._period):
            self._last.update(self._sample())

    def seconds(self) -> float:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())
        return sum(v - self._base.get(k, 0.0) for k, v in self._last.items())


def score(removed: set[str], clusters: list[set[str]]) -> dict:
    member = set().union(*clusters) if clusters else set()
    should = sum(len(c) - 1 for c in clusters)
    hit = sum(min(len(removed & c), len(c) - 1) for c in clusters)
    return {"removed": len(removed),
            "precision": round(len(removed & member) / len(removed), 4) if removed else 1.0,
            "recall": round(hit / should, 4) if should else 1.0,
            "clusters_lost": sum(1 for c in clusters if c <= removed)}



# -- the methods, each run by ``--worker NAME`` in its own process ---------------
def _mark(work: str, name: str) -> None:
    """Seconds since the parent started this process, for the start-up breakdown."""
    path = os.path.join(work, "marks.json")
    marks = json.load(open(path)) if os.path.exists(path) else {}
    marks[name] = round(time.time() - float(os.environ["DEDUP_T0"]), 2)
    json.dump(marks, open(path, "w"))


def work_datamill(data: str, work: str, threshold: float, cores: int) -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["DATAMILL_SPARK_MASTER"] = f"local[{cores}]"
    from pyspark.sql import functions as F

    from include.registry import StepContext, get_op
    from spark_jobs.session import get_spark

    _mark(work, "imported")
    spark = get_spark()
    _mark(work, "spark_ready")
    df = spark.read.json(os.path.join(data, "input", "*.jsonl"), schema="id string, text string")
    ctx = StepContext(pipeline="bench", run_id="bench", step_index=1, op="minhash_dedup", lake=work)
    out = get_op("minhash_dedup")().run(df, {"threshold": threshold}, ctx)
    out.select("id", "text", F.col("_reason").isNull().alias("kept")).write.partitionBy(
        "kept").parquet(os.path.join(work, "out"))
    _mark(work, "written")


def work_datamill_run(data: str, work: str, threshold: float, cores: int) -> None:
    spec = os.path.join(work, "dedup.yaml")
    with open(spec, "w") as f:
        json.dump({"version": 1, "name": "dedup_bench",
                   "source": {"path": os.path.join(data, "input"), "format": "jsonl",
                              "id_field": "id"},
                   "steps": [{"op": "minhash_dedup", "params": {"threshold": threshold}}],
                   "output": {"table": "gold/dedup_bench"}}, f)
    env = {**os.environ, "DATAMILL_SPARK_MASTER": f"local[{cores}]"}
    exe = os.path.join(os.path.dirname(sys.executable), "datamill")
    subprocess.run([exe, "run", spec, "--lake", os.path.join(work, "lake")], check=True,
                   env=env, stdout=open(os.path.join(work, "run.log"), "w"),
                   stderr=subprocess.STDOUT)


def work_datatrove(data: str, work: str, bands: int, rows: int, workers: int) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster,
                                          MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import ParquetWriter

    _mark(work, "imported")

    def adapter(_writer, doc):
        return {"id": doc.id, "text": doc.text}

    cfg = MinhashConfig(num_buckets=bands, hashes_per_bucket=rows)
    n_files = len(glob.glob(os.path.join(data, "input", "*.jsonl")))
    inp, logs = os.path.join(data, "input"), os.path.join(work, "logs")
    LocalPipelineExecutor(pipeline=[JsonlReader(inp), MinhashDedupSignature(
        output_folder=f"{work}/sigs", config=cfg)], tasks=n_files, workers=workers,
        logging_dir=f"{logs}/1").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(
        input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=cfg)],
        tasks=cfg.num_buckets, workers=workers, logging_dir=f"{logs}/2").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(
        input_folder=f"{work}/buckets", output_folder=f"{work}/remove", config=cfg)],
        tasks=1, logging_dir=f"{logs}/3").run()
    LocalPipelineExecutor(pipeline=[JsonlReader(inp), MinhashDedupFilter(
        input_folder=f"{work}/remove",
        exclusion_writer=ParquetWriter(f"{work}/removed", adapter=adapter)),
        ParquetWriter(f"{work}/kept", adapter=adapter)], tasks=n_files, workers=workers,
        logging_dir=f"{logs}/4").run()
    _mark(work, "written")


def work_datasketch(data: str, work: str, threshold: float) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH

    from benchmarks.dedup.corpus import shingle_set

    docs = []
    for path in sorted(glob.glob(os.path.join(data, "input", "*.jsonl"))):
        with open(path) as f:
            docs += [json.loads(line) for line in f]
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    sigs = {}
    for d in docs:
        sh = shingle_set(d["text"])
        if not sh:
            continue
        m = MinHash(num_perm=128)
        m.update_batch([s.encode() for s in sh])
        sigs[d["id"]] = m
        lsh.insert(d["id"], m)
    pairs = [(k, o) for k, m in sigs.items() for o in lsh.query(m) if o != k]
    removed = set()
    for comp in _components(sigs, pairs):
        removed |= comp - {min(comp)}
    for name, keep in (("kept", False), ("removed", True)):
        part = [d for d in docs if (d["id"] in removed) == keep]
        pq.write_table(pa.Table.from_pylist(part, schema=pa.schema(
            [("id", pa.string()), ("text", pa.string())])), os.path.join(work, f"{name}.parquet"))


def removed_ids(method: str, work: str) -> set[str]:
    """What the method removed, read from what it wrote (outside the clock)."""
    import pyarrow.dataset as pds

    if method == "datamill":
        path = os.path.join(work, "out", "kept=false")
    elif method == "datamill_run":
        from deltalake import DeltaTable

        t = DeltaTable(os.path.join(work, "lake", "_system", "ledger")).to_pyarrow_table(
            columns=["doc_id", "action"])
        return {d for d, a in zip(t.column("doc_id").to_pylist(), t.column("action").to_pylist())
                if a == "removed"}
    elif method == "datasketch":
        path = os.path.join(work, "removed.parquet")
    else:
        path = os.path.join(work, "removed")
    if not os.path.exists(path):
        return set()
    return set(pds.dataset(path, format="parquet").to_table(columns=["id"])
               .column("id").to_pylist())


def methods(threshold: float, cores: int) -> dict:
    """name -> (worker function, cores it may use)."""
    out = {"datamill": (lambda d, w: work_datamill(d, w, threshold, cores), cores),
           "datamill_run": (lambda d, w: work_datamill_run(d, w, threshold, cores), cores)}
    for bands, rows in ((14, 8), (11, 11)):
        for k in (1, cores):
            out[f"datatrove_{bands}x{rows}_w{k}"] = (
                lambda d, w, b=bands, r=rows, k=k: work_datatrove(d, w, b, r, k), k)
    out["datasketch"] = (lambda d, w: work_datasketch(d, w, threshold), 1)
    return out


def load_truths(data: str) -> dict[str, list[set[str]]]:
    out = {}
    for key, name in (("word", "truth.json"), ("ws", "truth_ws.json")):
        path = os.path.join(data, name)
        if os.path.exists(path):
            with open(path) as f:
                truth = json.load(f)
            out[key] = (truth, _components(truth["origin"], [(x, y) for x, y, _ in truth["pairs"]]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="a subset of the method names")
    ap.add_argument("--out", default=None, help="write (merge) the results JSON here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    truths = load_truths(a.data)
    t = truths["word"][0]["threshold"]
    table = methods(t, a.cores)
    if a.worker:  # inside the clock: one method, then exit
        table[a.worker][0](a.data, a.work)
        return 0
    results = {}
    for name, (_, cores) in table.items():
        if a.only and name not in a.only:
            continue
        work = tempfile.mkdtemp(prefix=f"dedup_{name}_")
        load0 = os.getloadavg()[0]
        meter = CpuMeter()
        t0 = time.time()
        with open(os.path.join(work, "output.log"), "w") as log:  # both sides' chatter
            done = subprocess.run([sys.executable, "-m", "benchmarks.dedup.run", "--data", a.data,
                                   "--cores", str(a.cores), "--worker", name, "--work", work],
                                  env={**os.environ, "DEDUP_T0": repr(t0)}, stdout=log,
                                  stderr=subprocess.STDOUT)
        wall = time.time() - t0
        cpu = meter.seconds()
        if done.returncode:
            raise SystemExit(f"{name} failed; its output is in {work}/output.log")
        removed = removed_ids(name, work)
        marks = json.load(open(os.path.join(work, "marks.json"))) \
            if os.path.exists(os.path.join(work, "marks.json")) else {}
        shutil.rmtree(work, ignore_errors=True)
        results[name] = {"wall_s": round(wall, 1), "cores": cores, "core_s": round(wall * cores, 1),
                         "cpu_s": round(cpu, 1), "start_marks_s": marks,
                         "load": [round(load0, 1), round(os.getloadavg()[0], 1)],
                         **{key: score(removed, c) for key, (_, c) in truths.items()}}
        print(name, results[name], file=sys.stderr, flush=True)
    if a.out:  # merge with earlier --only runs on the same corpus
        if os.path.exists(a.out):
            with open(a.out) as f:
                results = {**json.load(f)["results"], **results}
        with open(a.out, "w") as f:
            json.dump({"docs": truths["word"][0]["docs"],
                       "clusters": {k: len(c) for k, (_, c) in truths.items()},
                       "results": results}, f, indent=1)
    print_table(truths, results)
    return 0


def print_table(truths: dict, results: dict) -> None:
    peers = [r for n, r in results.items() if n.startswith("datatrove")]
    best_core = min((r["core_s"] for r in peers), default=None)
    best_cpu = min((r["cpu_s"] for r in peers), default=None)
    for key, (truth, clusters) in truths.items():
        print(f"\ntruth {key}: {truth['docs']} docs, {len(clusters)} true clusters "
              f"({sum(len(c) - 1 for c in clusters)} duplicates to remove) at "
              f"J>={truth['threshold']}")
    print("\n| method | removed | P / R / lost (datamill shingles) | P / R / lost (whitespace) | "
          "wall s | cores | core-s | best datatrove core-s / core-s | CPU s | "
          "best datatrove CPU s / CPU s | load (start, end) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        q = [f"{r[k]['precision']} / {r[k]['recall']} / {r[k]['clusters_lost']}"
             if k in r else "-" for k in ("word", "ws")]
        ratio = f"{best_core / r['core_s']:.2f}" if best_core else "-"
        cpu_ratio = f"{best_cpu / r['cpu_s']:.2f}" if best_cpu else "-"
        print(f"| {name} | {r['word']['removed']} | {q[0]} | {q[1]} | {r['wall_s']} | "
              f"{r['cores']} | {r['core_s']} | {ratio} | {r['cpu_s']} | {cpu_ratio} | "
              f"{r['load'][0]}, {r['load'][1]} |")


if __name__ == "__main__":
    sys.exit(main())
