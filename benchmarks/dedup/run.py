"""MinHash dedup side by side on one labelled corpus (see ``corpus.py``).

Runs, one after the other on the same input files and the same cores:
datamill's ``minhash_dedup`` (Spark ``local[N]``), datatrove's MinHash
pipeline (its default config, 14 bands x 8 rows as in FineWeb, and 11 x 11;
``LocalPipelineExecutor`` with N workers), and datasketch's ``MinHashLSH``
(one process; its library has no parallel mode). Reports precision, recall
and near-duplicate clusters lost entirely against the exact ground truth,
wall time, core-seconds (wall x cores used) and the ratio of datatrove's
default core-seconds to each method's (> 1 = faster than datatrove). CPU
seconds actually used by the method's process tree (sampled with psutil every
0.2 s, so processes that live less than that are missed) are reported beside
them: on a shared machine they move less with other jobs' load than wall time.

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


def run_datamill(data: str, threshold: float, cores: int) -> set[str]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["DATAMILL_SPARK_MASTER"] = f"local[{cores}]"
    from include.registry import StepContext, get_op
    from spark_jobs.session import get_spark

    spark = get_spark()
    spark.range(1).count()  # JVM up before the clock starts, as datatrove's imports are
    t0 = time.time()
    df = spark.read.json(os.path.join(data, "input", "*.jsonl"), schema="id string, text string")
    ctx = StepContext(pipeline="bench", run_id="bench", step_index=0, op="minhash_dedup", lake=data)
    out = get_op("minhash_dedup")().run(df, {"threshold": threshold}, ctx)
    removed = {r["id"] for r in out.where("_reason is not null").select("id").collect()}
    run_datamill.seconds = time.time() - t0
    return removed


def run_datatrove(data: str, bands: int, rows: int, cores: int) -> set[str]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster,
                                          MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    work = tempfile.mkdtemp(prefix="dt_")
    cfg = MinhashConfig(num_buckets=bands, hashes_per_bucket=rows)
    n_files = len(glob.glob(os.path.join(data, "input", "*.jsonl")))
    inp = os.path.join(data, "input")
    logs = os.path.join(work, "logs")
    t0 = time.time()
    LocalPipelineExecutor(pipeline=[JsonlReader(inp), MinhashDedupSignature(
        output_folder=f"{work}/sigs", config=cfg)], tasks=n_files, workers=cores,
        logging_dir=f"{logs}/1").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(
        input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=cfg)],
        tasks=cfg.num_buckets, workers=cores, logging_dir=f"{logs}/2").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(
        input_folder=f"{work}/buckets", output_folder=f"{work}/remove", config=cfg)],
        tasks=1, logging_dir=f"{logs}/3").run()
    LocalPipelineExecutor(pipeline=[JsonlReader(inp), MinhashDedupFilter(
        input_folder=f"{work}/remove", exclusion_writer=JsonlWriter(f"{work}/removed")),
        JsonlWriter(f"{work}/kept")], tasks=n_files, workers=cores,
        logging_dir=f"{logs}/4").run()
    run_datatrove.seconds = time.time() - t0
    removed = set()
    for path in glob.glob(f"{work}/removed/*"):
        import gzip

        with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
            removed |= {json.loads(line)["id"] for line in f}
    shutil.rmtree(work, ignore_errors=True)
    return removed


def run_datasketch(data: str, threshold: float) -> set[str]:
    from datasketch import MinHash, MinHashLSH

    from benchmarks.dedup.corpus import shingle_set

    t0 = time.time()
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
    run_datasketch.seconds = time.time() - t0
    return removed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None,
                    help="subset of: datamill datatrove_14x8 datatrove_11x11 datasketch")
    ap.add_argument("--out", default=None, help="write the results JSON here")
    a = ap.parse_args(argv)
    with open(os.path.join(a.data, "truth.json")) as f:
        truth = json.load(f)
    t = truth["threshold"]
    clusters = _components(truth["origin"], [(x, y) for x, y, _ in truth["pairs"]])
    methods = {
        "datamill": (lambda: run_datamill(a.data, t, a.cores), a.cores, run_datamill),
        "datatrove_14x8": (lambda: run_datatrove(a.data, 14, 8, a.cores), a.cores, run_datatrove),
        "datatrove_11x11": (lambda: run_datatrove(a.data, 11, 11, a.cores), a.cores, run_datatrove),
        "datasketch": (lambda: run_datasketch(a.data, t), 1, run_datasketch),
    }
    results = {}
    for name, (fn, cores, holder) in methods.items():
        if a.only and name not in a.only:
            continue
        meter = CpuMeter()
        removed = fn()
        cpu = meter.seconds()
        results[name] = {**score(removed, clusters), "wall_s": round(holder.seconds, 1),
                         "cores": cores, "core_s": round(holder.seconds * cores, 1),
                         "cpu_s": round(cpu, 1), "load": round(os.getloadavg()[0], 1)}
        print(name, results[name], file=sys.stderr, flush=True)
    if a.out:  # merge with earlier --only runs on the same corpus
        if os.path.exists(a.out):
            with open(a.out) as f:
                results = {**json.load(f)["results"], **results}
        with open(a.out, "w") as f:
            json.dump({"docs": truth["docs"], "clusters": len(clusters), "results": results}, f,
                      indent=1)
    base = results.get("datatrove_14x8", {})
    print(f"\n{truth['docs']} docs, {len(clusters)} true clusters "
          f"({sum(len(c) - 1 for c in clusters)} duplicates to remove) at J>={t}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| method | removed | precision | recall | clusters lost | wall s | cores | "
          "core-s | datatrove core-s / core-s | CPU s | datatrove CPU s / CPU s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio = f"{base['core_s'] / r['core_s']:.2f}" if base else "-"
        cpu_ratio = f"{base['cpu_s'] / r['cpu_s']:.2f}" if base.get("cpu_s") else "-"
        print(f"| {name} | {r['removed']} | {r['precision']} | {r['recall']} | "
              f"{r['clusters_lost']} | {r['wall_s']} | {r['cores']} | {r['core_s']} | {ratio} | "
              f"{r.get('cpu_s', '-')} | {cpu_ratio} | {r.get('load', '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
