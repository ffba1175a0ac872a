"""Incremental refresh against a full rerun, on one labelled corpus.

A corpus of ``docs x (1 + new)`` documents is built by
``benchmarks/dedup/corpus.py`` (real text installed on this machine, with
near-duplicate families, edit rates from 0 to 15 % and one skewed family of
1000 copies; ids shuffled). Its documents, in their shuffled order, are cut
into the *base* (the first ``docs``, four JSONL files) and the *new* part (the
rest, one more file): the new documents are a random 5 % whose near-duplicate
families mostly lie in the base, which is what a nightly refresh sees.

The pipeline is the same on both sides: ``exact_dedup`` then
``minhash_dedup`` (threshold 0.8), run by ``datamill run`` in a fresh process
each, clock around the whole process (interpreter, JVM start, every stage and
commit), ``local[N]`` Spark:

- ``refresh``: the spec with ``source.incremental: true``. An untimed first
  run publishes the base (and builds the dedup indexes beside the table);
  then the new file is added to the source folder and the timed run reads
  only it, dedups it against itself and the published table, and MERGEs it;
- ``full_rerun``: the same spec without ``incremental``, over all five files,
  on a fresh lakehouse: today's way of taking in new data.

Both end with the gold table of all the data; the removed documents of each
side are all ids minus its gold table's ids. Quality is scored against
ground truth over the whole corpus (all pairs with exact Jaccard >= 0.8, two
tokenisations; see corpus.py for how it is computed and what each favours)
with ``benchmarks/dedup/run.py``'s metrics: precision, recall, near-duplicate
clusters lost entirely. The two sides differ by design in one thing: in a
refresh a published document always survives, while a full rerun keeps the
lowest id of a cluster; the metrics count survivors per cluster, not which.

    python -m benchmarks.refresh.run --docs 200000 --work /tmp/refresh200k --cores 2

``--connect``: every run is a ``datamill run`` against one Spark Connect
server (``local[N]``, started before the first run, the way ``make airflow``
serves DAG runs) instead of a JVM of its own, so neither side pays the JVM
start and its warm-up: the server has run the untimed initial run before
either timed run. Results then go to ``results_<docs>_connect.json``.

Results go to ``benchmarks/refresh/results_<docs>.json``; the load average
is recorded before and after each timed run (the machine is shared).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

from benchmarks.dedup.corpus import TOKENIZERS, TRUTH_FILES, build, true_pairs
from benchmarks.dedup.run import _components, score

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = [{"op": "exact_dedup"}, {"op": "minhash_dedup", "params": {"threshold": 0.8}}]


def load() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def prepare(work: str, docs: int, new: float, seed: int) -> dict:
    """Corpus files and ground truth (kept across reruns of the benchmark)."""
    meta_path = os.path.join(work, "corpus.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            return json.load(f)
    t0 = time.time()
    total = int(round(docs * (1 + new)))
    rows = build(total, seed)
    base, fresh = rows[:docs], rows[docs:]
    os.makedirs(os.path.join(work, "base"), exist_ok=True)
    os.makedirs(os.path.join(work, "new"), exist_ok=True)
    shards = [open(os.path.join(work, "base", f"docs-{k:02d}.jsonl"), "w") for k in range(4)]
    for i, r in enumerate(base):
        shards[i % 4].write(json.dumps({"id": r["id"], "text": r["text"]}) + "\n")
    for f in shards:
        f.close()
    with open(os.path.join(work, "new", "docs-04.jsonl"), "w") as f:
        for r in fresh:
            f.write(json.dumps({"id": r["id"], "text": r["text"]}) + "\n")
    texts = {r["id"]: r["text"] for r in rows}
    truth = {}
    for tokens in sorted(TOKENIZERS, reverse=True):
        pairs = true_pairs(texts, 0.8, tokens)
        truth[tokens] = [[x, y, round(j, 4)] for (x, y), j in sorted(pairs.items())]
        with open(os.path.join(work, TRUTH_FILES[tokens]), "w") as f:
            json.dump({"threshold": 0.8, "tokens": tokens, "pairs": truth[tokens]}, f)
    new_ids = {r["id"] for r in fresh}
    cross = {x if x in new_ids else y for x, y, _ in truth["word"]
             if (x in new_ids) != (y in new_ids)}
    meta = {"docs": total, "base": len(base), "new": len(fresh),
            "ids": sorted(texts), "seconds": round(time.time() - t0, 1),
            "new_with_a_true_duplicate_in_base": len(cross),
            "mb": round(sum(len(t) for t in texts.values()) / 1e6, 1)}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return meta


def spec_file(work: str, name: str, src: str, incremental: bool) -> str:
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as f:
        json.dump({"version": 1, "name": name,
                   "source": {"path": src, "format": "jsonl", "id_field": "id",
                              "incremental": incremental},
                   "steps": STEPS, "output": {"table": f"gold/{name}"}}, f)
    return path


def timed_run(spec: str, lake: str, cores: int, log: str, connect: str | None = None) -> dict:
    env = {**os.environ, "DATAMILL_SPARK_MASTER": f"local[{cores}]"}
    if connect:
        env["DATAMILL_SPARK_URL"] = connect
    exe = os.path.join(os.path.dirname(sys.executable), "datamill")
    before = load()
    t0 = time.time()
    with open(log, "w") as out:
        p = subprocess.run([exe, "run", spec, "--lake", lake], env=env, stdout=subprocess.PIPE,
                           stderr=out, text=True)
    wall = time.time() - t0
    if p.returncode:
        raise SystemExit(f"datamill run {spec} failed ({p.returncode}); see {log}")
    return {"wall_s": round(wall, 1), "load_before": before, "load_after": load(),
            "summary": json.loads(p.stdout.strip().splitlines()[-1])}


def gold_ids(lake: str, table: str) -> set[str]:
    from deltalake import DeltaTable

    return set(DeltaTable(os.path.join(lake, table)).to_pyarrow_table(columns=["id"])
               .column("id").to_pylist())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200000)
    ap.add_argument("--new", type=float, default=0.05, help="new documents, as a fraction")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--connect", action="store_true",
                    help="run every side against one warm Spark Connect server")
    a = ap.parse_args(argv)
    os.makedirs(a.work, exist_ok=True)
    if a.connect:
        from include.local_services import SparkConnectServer

        with SparkConnectServer(os.path.join(a.work, "connect"), master=f"local[{a.cores}]",
                                driver_memory="4g") as server:
            return measure(a, server.url)
    return measure(a, None)


def measure(a, connect: str | None) -> int:
    meta = prepare(a.work, a.docs, a.new, a.seed)
    print(f"corpus: {meta['docs']} docs ({meta['mb']} MB), base {meta['base']}, new "
          f"{meta['new']}", file=sys.stderr)
    results: dict = {k: meta[k] for k in ("docs", "base", "new", "mb",
                                          "new_with_a_true_duplicate_in_base")}
    results.update({"cores": a.cores, "spark": connect or f"local[{a.cores}]", "runs": {}})

    # refresh: untimed first run over the base, then the timed refresh
    inc_src, inc_lake = os.path.join(a.work, "src_inc"), os.path.join(a.work, "lake_inc")
    shutil.rmtree(inc_src, ignore_errors=True)
    shutil.rmtree(inc_lake, ignore_errors=True)
    os.makedirs(inc_src)
    for f in sorted(glob.glob(os.path.join(a.work, "base", "*.jsonl"))):
        os.link(f, os.path.join(inc_src, os.path.basename(f)))
    inc = spec_file(a.work, "refresh_bench", inc_src, True)
    results["runs"]["initial"] = timed_run(inc, inc_lake, a.cores,
                                           os.path.join(a.work, "initial.log"), connect)
    print(f"initial incremental run: {results['runs']['initial']['wall_s']} s", file=sys.stderr)
    os.link(os.path.join(a.work, "new", "docs-04.jsonl"), os.path.join(inc_src, "docs-04.jsonl"))
    results["runs"]["refresh"] = timed_run(inc, inc_lake, a.cores,
                                           os.path.join(a.work, "refresh.log"), connect)
    print(f"refresh: {results['runs']['refresh']['wall_s']} s", file=sys.stderr)

    # full rerun over everything on a fresh lakehouse
    full_src, full_lake = os.path.join(a.work, "src_full"), os.path.join(a.work, "lake_full")
    shutil.rmtree(full_src, ignore_errors=True)
    shutil.rmtree(full_lake, ignore_errors=True)
    os.makedirs(full_src)
    for f in sorted(glob.glob(os.path.join(a.work, "base", "*.jsonl")) +
                    [os.path.join(a.work, "new", "docs-04.jsonl")]):
        os.link(f, os.path.join(full_src, os.path.basename(f)))
    full = spec_file(a.work, "full_bench", full_src, False)
    results["runs"]["full_rerun"] = timed_run(full, full_lake, a.cores,
                                              os.path.join(a.work, "full.log"), connect)
    print(f"full rerun: {results['runs']['full_rerun']['wall_s']} s", file=sys.stderr)

    # quality of the final tables against the ground truth
    everything = set(meta["ids"])
    kept = {"refresh": gold_ids(inc_lake, "gold/refresh_bench"),
            "full_rerun": gold_ids(full_lake, "gold/full_bench")}
    results["quality"] = {}
    for tokens, fname in TRUTH_FILES.items():
        with open(os.path.join(a.work, fname)) as f:
            pairs = [tuple(p[:2]) for p in json.load(f)["pairs"]]
        clusters = _components(everything, pairs)
        results["quality"][tokens] = {
            side: score(everything - ids, clusters) for side, ids in kept.items()}
        results["quality"][tokens]["true_clusters"] = len(clusters)
    results["ratio_refresh_to_full"] = round(
        results["runs"]["refresh"]["wall_s"] / results["runs"]["full_rerun"]["wall_s"], 3)
    for r in results["runs"].values():
        s = r.pop("summary")
        r["output_rows"], r["output_version"] = s["output_rows"], s["output_version"]
        r["rows_added"] = s.get("rows_added")
        r["steps"] = [{k: st[k] for k in ("op", "rows_in", "kept", "removed")}
                      | ({"stats": st["stats"]} if "stats" in st else {}) for st in s["steps"]]
    out = a.out or os.path.join(HERE, f"results_{a.docs // 1000}k"
                                      f"{'_connect' if connect else ''}.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
