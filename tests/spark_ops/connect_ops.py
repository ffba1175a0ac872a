"""The workload that test_connect.py runs on classic Spark and over Spark Connect.

Run as a script it is the Connect side: ``get_spark()`` is pointed at the
server by ``$DATAMILL_SPARK_URL`` (the production path), the ops run, the
minhash result makes a round trip through a Delta table, and the rows are
written as JSON. It runs in its own process because pyspark switches its
column functions to Connect for the whole process once a Connect session
exists, so the two modes cannot share one interpreter.

    python tests/spark_ops/connect_ops.py OUT.json DELTA_DIR
"""
from __future__ import annotations

import json
import random
import sys

from spark_ops_samples import PAGE

PAGES = [("page", PAGE, "https://example.org/r"), ("blank", "<html><body></body></html>", None),
         ("junk", "\x00\x01\x89PNG\r\n\x1a\n\xff\xfe" + "\x07" * 50, None), ("null", None, None),
         ("untitled", "<html><body><p>" + "Это длинный русский текст о реках. " * 20
          + "</p></body></html>", "https://example.org/ru")]


def dedup_rows() -> list[tuple[str, str]]:
    """12 families: an original, copies at J >= 0.8, a far copy, and chains
    (c edits b, d edits c) so connected components needs several rounds."""
    rng = random.Random(11)
    vocab = [f"w{i}" for i in range(5000)]

    def edit(words, n):
        out = list(words)
        for i in rng.sample(range(len(out)), n):
            out[i] = rng.choice(vocab)
        return out

    rows = []
    for f in range(12):
        a = [rng.choice(vocab) for _ in range(200)]
        b = edit(a, 2)
        c = edit(b, 2)
        d = edit(c, 2)
        far = edit(a, 40)
        rows += [(f"f{f:02d}_{k}", " ".join(v))
                 for k, v in (("a", a), ("b", b), ("c", c), ("d", d), ("far", far))]
    return rows + [("empty", ""), ("null", None)]


def op_frames(spark) -> dict:
    """Op name (with params) -> its output DataFrame, for the given session."""
    import spark_jobs.ops  # noqa: F401 - registers the ops
    from include.registry import StepContext, get_op

    ctx = StepContext(pipeline="connect", run_id="r1", step_index=0, op="test", lake="/tmp")
    pages = spark.createDataFrame(PAGES, "id string, html string, url string")
    docs = spark.createDataFrame(dedup_rows(), "id string, text string").repartition(3)
    return {
        "html_extract trafilatura": get_op("html_extract")().run(
            pages, {"extractor": "trafilatura"}, ctx),
        "html_extract resiliparse": get_op("html_extract")().run(
            pages, {"extractor": "resiliparse"}, ctx),
        "minhash_dedup": get_op("minhash_dedup")().run(docs, {"threshold": 0.8}, ctx),
    }


def rows_by_id(df) -> dict[str, dict]:
    return {r["id"]: r.asDict() for r in df.collect()}


def main(out_path: str, delta_dir: str) -> int:
    from spark_jobs.session import get_spark, stop_spark

    spark = get_spark()
    try:
        frames = op_frames(spark)
        result = {"session": type(spark).__module__,
                  "time_zone": spark.conf.get("spark.sql.session.timeZone"),
                  "ops": {name: rows_by_id(df) for name, df in frames.items()}}
        # Delta through Connect, the lakehouse's own publish (write + version).
        from include.lakehouse import Lakehouse

        lh = Lakehouse(delta_dir)
        result["delta_version"] = lh.publish(frames["html_extract resiliparse"], "gold/t")
        result["delta"] = rows_by_id(lh.read("gold/t"))
    finally:
        stop_spark()
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
