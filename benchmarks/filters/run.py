"""Quality-filter throughput: datamill's ``quality_filter`` vs datatrove's filters.

Same documents (real text from man pages, Debian docs and the Python standard
library, as in ``benchmarks/dedup/corpus.py``), same cores, one run:

- pipeline: datamill through Spark ``local[N]`` (read JSONL, filter, collect
  the verdicts) vs datatrove's ``LocalPipelineExecutor`` with N workers
  (JsonlReader + filter); documents per second per core.
- rules only: the per-document predicate in one Python process, no framework
  (datamill's row function vs datatrove's ``filter(doc)``).
- agreement: share of documents on which both keep or both remove.

Presets map to datatrove's classes: gopher = GopherQualityFilter +
GopherRepetitionFilter, c4 = C4QualityFilter, fineweb = FineWebQualityFilter.

Both sides are warmed the same way before any clock starts: each side's
predicate runs once over the first 50 documents of every preset (loading
datatrove's spaCy tokenizer and datamill's word lists), and each side's
pipeline runs once untimed (datamill: the JVM, Delta's jars and Spark's Python
workers; datatrove: its imports and the OS file cache; its executor starts
fresh worker processes on every run by design, and that start stays inside
its clock, as Spark's job scheduling stays inside datamill's).

    python -m benchmarks.filters.run --docs 10000 --cores 2
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time


def datatrove_filters(preset: str):
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
                                            GopherQualityFilter, GopherRepetitionFilter)

    return {"gopher": [GopherRepetitionFilter(), GopherQualityFilter()],
            "c4": [C4QualityFilter()],
            "fineweb": [FineWebQualityFilter()]}[preset]


def datatrove_verdicts(docs, preset):
    """Rules only, one process: ids kept and seconds."""
    from datatrove.data import Document

    filters = datatrove_filters(preset)
    kept = set()
    t0 = time.time()
    for d in docs:
        doc = Document(text=d["text"], id=d["id"])
        ok = True
        for f in filters:
            res = f.filter(doc)
            if not (res[0] if isinstance(res, tuple) else res):
                ok = False
                break
        if ok:
            kept.add(d["id"])
    return kept, time.time() - t0


def datamill_verdicts(docs, preset):
    from include.registry import apply_defaults, get_op
    from spark_jobs.ops.quality_filter import _QualityRow

    row_fn = _QualityRow(apply_defaults(get_op("quality_filter").meta, {"preset": preset}))
    kept = set()
    t0 = time.time()
    for d in docs:
        if not row_fn({"text": d["text"]}).get("_reason"):
            kept.add(d["id"])
    return kept, time.time() - t0


def datatrove_pipeline(path, preset, cores, n_files):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader

    logs = tempfile.mkdtemp(prefix="dtf_")
    t0 = time.time()
    LocalPipelineExecutor(pipeline=[JsonlReader(path), *datatrove_filters(preset)],
                          tasks=n_files, workers=cores, logging_dir=logs).run()
    dt = time.time() - t0
    shutil.rmtree(logs, ignore_errors=True)
    return dt


def datamill_pipeline(path, preset, spark):
    from include.registry import StepContext, get_op

    t0 = time.time()
    df = spark.read.json(os.path.join(path, "*.jsonl"), schema="id string, text string")
    ctx = StepContext(pipeline="bench", run_id="b", step_index=0, op="quality_filter", lake=path)
    out = get_op("quality_filter")().run(df, {"preset": preset}, ctx)
    out.groupBy("_reason").count().collect()
    return time.time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["DATAMILL_SPARK_MASTER"] = f"local[{a.cores}]"
    from benchmarks.dedup.corpus import base_documents

    texts = base_documents(a.docs, seed=1)
    docs = [{"id": f"d{i:06d}", "text": t} for i, t in enumerate(texts)]
    path = tempfile.mkdtemp(prefix="filters_in_")
    files = [open(os.path.join(path, f"docs-{k:02d}.jsonl"), "w") for k in range(a.files)]
    for i, d in enumerate(docs):
        files[i % a.files].write(json.dumps(d) + "\n")
    for f in files:
        f.close()
    from spark_jobs.session import get_spark

    spark = get_spark()
    spark.range(1).count()
    for preset in ("gopher", "c4", "fineweb"):  # warm both predicates
        datamill_verdicts(docs[:50], preset)
        datatrove_verdicts(docs[:50], preset)
    datamill_pipeline(path, "fineweb", spark)  # and both pipelines, untimed
    datatrove_pipeline(path, "fineweb", a.cores, a.files)
    load = [os.getloadavg()[0]]
    rows = []
    for preset in ("gopher", "c4", "fineweb"):
        dm_kept, dm_rules = datamill_verdicts(docs, preset)
        dt_kept, dt_rules = datatrove_verdicts(docs, preset)
        agree = sum((d["id"] in dm_kept) == (d["id"] in dt_kept) for d in docs) / len(docs)
        dm_pipe = datamill_pipeline(path, preset, spark)
        dt_pipe = datatrove_pipeline(path, preset, a.cores, a.files)
        n = len(docs)
        r = {"preset": preset, "docs": n, "agreement": round(agree, 4),
             "kept_datamill": len(dm_kept), "kept_datatrove": len(dt_kept),
             "rules_docs_s_datamill": round(n / dm_rules), "rules_docs_s_datatrove": round(n / dt_rules),
             "pipeline_docs_s_core_datamill": round(n / dm_pipe / a.cores),
             "pipeline_docs_s_core_datatrove": round(n / dt_pipe / a.cores)}
        rows.append(r)
        load.append(os.getloadavg()[0])
        print(r, file=sys.stderr, flush=True)
    mb = sum(len(d["text"]) for d in docs) / 1e6
    print(f"\n{len(docs)} docs ({mb:.1f} MB), {a.cores} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in load)} (start, after each preset) on "
          f"{os.cpu_count()} cores\n")
    print("| preset | kept datamill / datatrove | agreement | rules docs/s datamill | "
          "rules docs/s datatrove | ratio | pipeline docs/s/core datamill | "
          "pipeline docs/s/core datatrove | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['kept_datamill']} / {r['kept_datatrove']} | {r['agreement']} | "
              f"{r['rules_docs_s_datamill']} | {r['rules_docs_s_datatrove']} | "
              f"{r['rules_docs_s_datamill'] / r['rules_docs_s_datatrove']:.2f} | "
              f"{r['pipeline_docs_s_core_datamill']} | {r['pipeline_docs_s_core_datatrove']} | "
              f"{r['pipeline_docs_s_core_datamill'] / r['pipeline_docs_s_core_datatrove']:.2f} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"rows": rows, "load_avg": [round(x, 1) for x in load]}, f, indent=1)
    shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
