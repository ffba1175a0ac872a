"""The workload that test_connect.py runs on classic Spark and over Spark Connect.

Run as a script it is the Connect side: ``get_spark()`` is pointed at the
server by ``$DATAMILL_SPARK_URL`` (the production path), the ops run, the
minhash result makes a round trip through a Delta table, and the rows are
written as JSON. It runs in its own process because pyspark switches its
column functions to Connect for the whole process once a Connect session
exists, so the two modes cannot share one interpreter.

    python tests/spark_ops/connect_ops.py OUT.json DELTA_DIR SIGNAL_LAKE

SIGNAL_LAKE holds ``_system/training_signals`` (written once by the test with
the trainer's own writer) for training_signal_filter; both sides read it.
"""
from __future__ import annotations

import json
import random
import sys

from spark_ops_samples import GOOD, PAGE

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


GERMAN = ("Die Bibliothek stellt Funktionen bereit, mit denen sich Dateien lesen und schreiben "
          "lassen. Jede Funktion prüft ihre Argumente und meldet Fehler mit einer klaren "
          "Beschreibung, damit Benutzer wissen, was schiefgelaufen ist.")


def text_rows() -> list[tuple[str, str | None]]:
    """Rows on which every row-wise scan op and exact_dedup decides something:
    kept prose, mojibake and stray controls (normalize), German (language_filter),
    short and repetitive text (quality_filter), an e-mail and a phone number
    (pii_redact), copies differing only in case and spacing (exact_dedup)."""
    return [
        ("prose", GOOD),
        ("mojibake", "The cafÃ© by the mill\u00a0serves tea\x07 and coffee.\n\n" + GOOD),
        ("german", GERMAN),
        ("short", "Buy now!!! Best deals."),
        ("repeat", "spam eggs " * 150),
        ("pii", GOOD + " Write to jane.doe@example.org or call +1 415 555 0134 today."),
        ("copy_a", GOOD.replace("river", "canal")),
        ("copy_b", "  " + GOOD.replace("river", "canal").upper().replace(" ", "   ") + " "),
        ("empty", ""), ("null", None),
    ]


def write_signals(lake) -> None:
    """A training run's signals for training_signal_filter: 'repeat' has a high
    loss, 'german' was offered and never selected, 'prose' trained fine."""
    from training.signals import SignalWriter

    w = SignalWriter(lake, "run1", "cfg", {"web": "gold/web"}, {"web": 0}, flush_every=10**6)
    w.add(1, ["prose", "repeat", "german"], ["web"] * 3, [2.0, 9.0, None], [10, 10, 10],
          [1.0, 1.0, 0.0], [1.0] * 3, [True, True, False])
    w.close()


def op_frames(spark, signal_lake: str) -> dict:
    """Op name (with params) -> its output DataFrame, for the given session."""
    import spark_jobs.ops  # noqa: F401 - registers the ops
    from include.registry import StepContext, get_op

    ctx = StepContext(pipeline="connect", run_id="r1", step_index=0, op="test", lake="/tmp")
    pages = spark.createDataFrame(PAGES, "id string, html string, url string")
    docs = spark.createDataFrame(dedup_rows(), "id string, text string").repartition(3)
    texts = spark.createDataFrame(text_rows(), "id string, text string").repartition(2)
    return {
        "normalize": get_op("normalize")().run(texts, {}, ctx),
        "language_filter": get_op("language_filter")().run(texts, {"languages": ["en"]}, ctx),
        "quality_filter gopher": get_op("quality_filter")().run(
            texts, {"preset": "gopher", "min_words": 20}, ctx),
        "quality_filter c4": get_op("quality_filter")().run(texts, {"preset": "c4"}, ctx),
        "quality_filter fineweb": get_op("quality_filter")().run(texts, {"preset": "fineweb"}, ctx),
        "pii_redact": get_op("pii_redact")().run(texts, {}, ctx),
        "exact_dedup": get_op("exact_dedup")().run(texts, {}, ctx),
        "training_signal_filter": get_op("training_signal_filter")().run(
            texts, {"max_mean_loss": 5.0, "drop_never_selected": True},
            StepContext(pipeline="connect", run_id="r1", step_index=0, op="test",
                        lake=str(signal_lake))),
        "html_extract trafilatura": get_op("html_extract")().run(
            pages, {"extractor": "trafilatura"}, ctx),
        "html_extract resiliparse": get_op("html_extract")().run(
            pages, {"extractor": "resiliparse"}, ctx),
        "minhash_dedup": get_op("minhash_dedup")().run(docs, {"threshold": 0.8}, ctx),
    }


def rows_by_id(df) -> dict[str, dict]:
    return {r["id"]: r.asDict() for r in df.collect()}


def main(out_path: str, delta_dir: str, signal_lake: str) -> int:
    from spark_jobs.session import get_spark, stop_spark

    spark = get_spark()
    try:
        frames = op_frames(spark, signal_lake)
        result = {"session": type(spark).__module__,
                  "time_zone": spark.conf.get("spark.sql.session.timeZone"),
                  "ops": {name: rows_by_id(df) for name, df in frames.items()}}
        # Delta through Connect, the lakehouse's own publish (write + version).
        from include.lakehouse import Lakehouse

        lh = Lakehouse(delta_dir)
        result["delta_version"], _ = lh.publish(
            frames["html_extract resiliparse"], "gold/t", app_id="datamill:gold/t", seq=1,
            marker={"pipeline": "connect", "run_id": "r1"})
        result["delta"] = rows_by_id(lh.read("gold/t"))
    finally:
        stop_spark()
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
