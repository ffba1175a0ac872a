"""The Delta lakehouse: table paths, per-run idempotent writes, system tables.

Layout under the root:
    bronze/<pipeline>                 ingested rows, partitioned by _run_id
    silver/<pipeline>/<NN>_<op>       each materialised stage, by _run_id
    <output.table>  (e.g. gold/x)     the published table (overwritten per run;
                                      Delta's history keeps every version)
    _system/ledger                    removed / changed / added documents
    _system/quarantine                rows that could not be processed, with error
    _system/steps                     per-step counters of every run
    _system/runs                      one row per run: spec, summary, status
    _system/training_signals          per-document losses/weights from training runs
    _system/files                     incremental sources: every file a run read (path,
                                      size, mtime, sha256), spark_jobs/manifest.py
    _system/file_docs                 which documents each file gave (and which earlier
                                      ones a changed file replaces)
    _system/published                 per published version, the ids it added and dropped
                                      (the index ``datamill trace`` reads)
    <output.table>__dedup/...         dedup indexes of a refreshed table
                                      (spark_jobs/dedup_index.py)

The root is a local folder or a URI (``s3://bucket/lake``; include/config.py
``as_location``): table locations are joined as URIs, never through ``Path``.

Every write that belongs to a run replaces exactly that run's slice
(``replaceWhere``), so a retried Airflow task or a rerun of the same run id
never duplicates or drops rows.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

SYSTEM = "_system"
LEDGER = f"{SYSTEM}/ledger"
QUARANTINE = f"{SYSTEM}/quarantine"
STEPS = f"{SYSTEM}/steps"
RUNS = f"{SYSTEM}/runs"
# Per-sample training signals written by training runs (training/signals.py).
TRAINING_SIGNALS = f"{SYSTEM}/training_signals"
FILES = f"{SYSTEM}/files"
FILE_DOCS = f"{SYSTEM}/file_docs"
PUBLISHED = f"{SYSTEM}/published"
RESERVED_PREFIXES = ("bronze", "silver", SYSTEM)
TABLE_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")

LEDGER_SCHEMA = ("pipeline string, run_id string, step_index int, op string, op_version string, "
                 "action string, doc_id string, rule string, detail string, ts timestamp")
QUARANTINE_SCHEMA = ("pipeline string, run_id string, step_index int, op string, doc_id string, "
                     "source_ref string, raw string, error string, ts timestamp")
STEPS_SCHEMA = ("pipeline string, run_id string, step_index int, op string, op_version string, "
                "rows_in long, kept long, removed long, quarantined long, added long, "
                "changed long, stats string, seconds double, ts timestamp")
FILES_SCHEMA = ("pipeline string, run_id string, path string, size long, mtime long, "
                "sha256 string, status string, ts timestamp")
FILE_DOCS_SCHEMA = "pipeline string, run_id string, path string, doc_id string, action string"
PUBLISHED_SCHEMA = ("pipeline string, output_table string, version long, run_id string, "
                    "doc_id string, action string, ts timestamp")
RUNS_SCHEMA = ("pipeline string, run_id string, status string, output_table string, "
               "output_version long, spec string, summary string, ts timestamp, "
               "spec_hash string, seq long")


def check_table_name(name: str) -> str | None:
    """Return an error message if ``name`` is not a valid output table."""
    if not isinstance(name, str) or not TABLE_RE.match(name):
        return (f"output table {name!r} must be a relative path inside the lakehouse "
                "(letters, digits, _ and -, separated by /; no '..', no absolute path)")
    if name.split("/")[0] in RESERVED_PREFIXES:
        return f"output table {name!r} is inside the reserved area {name.split('/')[0]!r}"
    return None


def _marker(user_metadata: str | None) -> dict[str, Any] | None:
    try:
        m = json.loads(user_metadata) if user_metadata else None
    except ValueError:
        return None
    return m if isinstance(m, dict) else None


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _sql_str(v: str) -> str:
    return "'" + str(v).replace("'", "''") + "'"


class Lakehouse:
    def __init__(self, root: str | Path):
        from include.config import as_location

        self.root = as_location(root)

    # -- paths -----------------------------------------------------------
    @property
    def local(self) -> bool:
        return isinstance(self.root, Path)

    def table_path(self, name: str) -> str:
        """The table's location: an absolute path, or the root URI joined with ``/``."""
        return str(self.root / name)

    def bronze(self, pipeline: str) -> str:
        return f"bronze/{pipeline}"

    def silver(self, pipeline: str, step_index: int, op: str) -> str:
        return f"silver/{pipeline}/{step_index:02d}_{op}"

    def exists(self, name: str) -> bool:
        if self.local:
            return (self.root / name / "_delta_log").is_dir()
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.table_path(name))

    # -- reads -----------------------------------------------------------
    @property
    def spark(self):
        from spark_jobs.session import get_spark

        return get_spark()

    def read(self, name: str, version: int | None = None):
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        return reader.load(self.table_path(name))

    def read_run(self, name: str, run_id: str):
        from pyspark.sql import functions as F

        return self.read(name).where(F.col("_run_id") == run_id).drop("_run_id")

    def read_system(self, name: str, schema: str):
        if self.exists(name):
            return self.read(name)
        return self.spark.createDataFrame([], schema)

    def version(self, name: str) -> int:
        from deltalake import DeltaTable

        return int(DeltaTable(self.table_path(name)).version())

    # -- writes ----------------------------------------------------------
    @staticmethod
    def _delta_writer(df):
        """``df.write.format("delta")`` with string columns cast to plain STRING.

        Over Spark Connect (pyspark 4.2) string columns declared from Python
        (mapInArrow/mapInPandas schemas, createDataFrame) reach the server as
        ``string collate UTF8_BINARY``; Delta records that in the table schema
        and delta-rs (the ``deltalake`` reader used by the LLM cache and the
        tools) then cannot open the table. The cast drops the explicit
        collation; in classic mode it is a no-op the optimizer removes.
        """
        from pyspark.sql.types import StringType

        cols = [df[f.name].cast("string").alias(f.name) if isinstance(f.dataType, StringType)
                else df[f.name] for f in df.schema.fields]
        return df.select(*cols).write.format("delta")

    def write_run(self, df, name: str, run_id: str) -> None:
        """Replace this run's slice of a run-partitioned table."""
        from pyspark.sql import functions as F

        df = df.withColumn("_run_id", F.lit(run_id))
        (self._delta_writer(df).mode("overwrite")
           .option("replaceWhere", f"_run_id = {_sql_str(run_id)}")
           .option("mergeSchema", "true")
           .partitionBy("_run_id").save(self.table_path(name)))

    def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest commits of a table (version, operation, userMetadata), newest first.

        Read from the Delta log with delta-rs: the commit metadata needs no Spark
        job (``DESCRIBE HISTORY`` costs a Spark job per call, several per run).
        """
        from deltalake import DeltaTable

        return [{"version": h.get("version"), "operation": h.get("operation"),
                 "userMetadata": h.get("userMetadata")}
                for h in DeltaTable(self.table_path(name)).history(int(limit))]

    def publisher(self, name: str) -> dict[str, Any] | None:
        """Who made the table's current version: ``{"pipeline", "run_id", ...}``
        from the commit's userMetadata (None for tables datamill did not publish)."""
        if not self.exists(name):
            return None
        hist = self.history(name, 1)
        return _marker(hist[0]["userMetadata"]) if hist else None

    def publish(self, df, name: str, *, app_id: str, seq: int,
                marker: dict[str, Any]) -> tuple[int, bool]:
        """Overwrite a published table in one Delta commit, at most once per run.

        The commit carries Delta's idempotent-write options: ``txnAppId`` (one per
        table) and ``txnVersion`` = the run's ``seq`` (taken when the run started),
        so Delta itself skips the write when this run, or any run that started
        later, has already committed to the table: a retried publish never
        republishes and an older run never replaces a newer run's table.
        ``marker`` (pipeline, run_id) is the commit's userMetadata.

        Returns ``(version, current)``: the version holding this run's data and
        whether it is still the table's newest; ``(newest version, False)`` when
        a newer run's commit made Delta skip this one.
        """
        meta = json.dumps(marker, sort_keys=True)
        (self._delta_writer(df).mode("overwrite").option("overwriteSchema", "true")
           .option("txnAppId", app_id).option("txnVersion", int(seq))
           .option("userMetadata", meta)
           .save(self.table_path(name)))
        hist = self.history(name)
        mine = [h["version"] for h in hist if _marker(h["userMetadata"]) == marker]
        if mine:
            return int(mine[0]), int(mine[0]) == int(hist[0]["version"])
        return int(hist[0]["version"]), False

    def replace_slice(self, df, name: str, pipeline: str, run_id: str,
                      step_indices: Iterable[int] | None = None) -> None:
        """Replace (pipeline, run, steps) rows of a system table.

        System tables are partitioned by pipeline so that concurrent runs of
        different pipelines touch disjoint files and never conflict.
        """
        cond = f"pipeline = {_sql_str(pipeline)} AND run_id = {_sql_str(run_id)}"
        if step_indices is not None:
            idx = ",".join(str(int(i)) for i in step_indices)
            cond += f" AND step_index IN ({idx})"
        (self._delta_writer(df).mode("overwrite").option("replaceWhere", cond)
           .partitionBy("pipeline").save(self.table_path(name)))

    def write_records(self, rows: list[tuple] | list[dict[str, Any]], name: str, schema: str,
                      pipeline: str, run_id: str,
                      step_indices: Iterable[int] | None = None) -> None:
        """``replace_slice`` for a handful of rows the driver already holds
        (run records, step counters, the file manifest), committed with delta-rs.

        A run makes about ten such commits; as Spark jobs each cost 1-4 s of
        planning, a Parquet task and a Delta commit (measured in a 2 500-row
        refresh: 14 s of its 112 s), with delta-rs a few milliseconds. Same
        table, partitioning and replace predicate as the Spark path, so Spark
        and delta-rs readers see one table; delta-rs's commit is optimistic
        like Spark's, so concurrent runs of other pipelines do not conflict.
        """
        import pyarrow as pa
        from deltalake import write_deltalake

        arrow = _arrow_schema(schema)
        if rows and not isinstance(rows[0], dict):
            rows = [dict(zip(arrow.names, r)) for r in rows]
        cond = f"pipeline = {_sql_str(pipeline)} AND run_id = {_sql_str(run_id)}"
        if step_indices is not None:
            cond += f" AND step_index IN ({','.join(str(int(i)) for i in step_indices)})"
        path = self.table_path(name)
        table = pa.Table.from_pylist(rows, schema=arrow)
        if not self.exists(name):
            write_deltalake(path, table, mode="append", partition_by=["pipeline"])
            return
        write_deltalake(path, table, mode="overwrite", predicate=cond, schema_mode="merge")

    def record_steps(self, rows: list[dict[str, Any]], pipeline: str, run_id: str) -> None:
        self.write_records(rows, STEPS, STEPS_SCHEMA, pipeline, run_id,
                           [r["step_index"] for r in rows])

    def record_run(self, pipeline: str, run_id: str, status: str, output_table: str,
                   output_version: int | None, spec: dict, summary: dict,
                   spec_hash: str | None = None, seq: int | None = None) -> None:
        """The run's one row in ``_system/runs``: written with status ``running``
        when the run starts (its spec snapshot, hash and sequence number, which
        every later task reads) and replaced as the run ends."""
        row = (pipeline, run_id, status, output_table, output_version,
               json.dumps(spec, sort_keys=True), json.dumps(summary), now(), spec_hash, seq)
        self.write_records([row], RUNS, RUNS_SCHEMA, pipeline, run_id)

    def run_record(self, pipeline: str, run_id: str) -> dict[str, Any] | None:
        from include.runs import read_system

        rows = read_system(self.root, RUNS, pipeline=pipeline, run_ids=[run_id])
        if not rows:
            return None
        rec = rows[0]
        rec.setdefault("spec_hash", None)
        rec.setdefault("seq", None)
        return rec

    def step_rows(self, pipeline: str, run_id: str) -> list[dict[str, Any]]:
        from include.runs import step_rows

        return step_rows(self.root, pipeline, run_id)


def _arrow_schema(schema: str):
    """The pyarrow schema of a DDL column list such as ``LEDGER_SCHEMA``."""
    import pyarrow as pa

    # Delta's ``timestamp`` (what Spark writes) holds UTC instants; the naive
    # UTC datetimes of ``now()`` are stored as they are.
    types = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(),
             "double": pa.float64(), "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([pa.field(n, types[t]) for n, t in (c.split() for c in schema.split(", "))])
