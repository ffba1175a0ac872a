"""The Ray engine: runs an ``engine="ray"`` op on a step's rows, in Ray's workers.

The step's data never passes through the driver. ``RayEngine.apply`` gives
the op a Ray Dataset that Ray's workers read straight from the step's input
Delta table: delta-rs lists the table's Parquet files for the run's
partition (``DeltaTable.file_uris``) and ``ray.data.read_parquet`` reads
them in read tasks. When the input is not a table slice (a caller passing a
Spark DataFrame of its own), Spark's executors first write it as Parquet to a
staging folder the workers read. The op's output is written by the workers
(``Dataset.write_parquet``) to a staging folder in the lakehouse; Spark's
executors read it back, it is checkpointed in executor storage, and the
staging folders are deleted. What the driver holds is file lists and
schemas. (An op that gathers its rows itself, e.g. semantic_dedup's k-means
over every embedding, still does so: that is the op's algorithm, not data
movement.)

An op with a ``prestart(params, ctx)`` method (the LLM ops) gets it called
first, so its workers start while the input is being listed.

Ray starts locally (a few CPUs, no dashboard) unless ``$DATAMILL_RAY_ADDRESS``
or, inside an Airflow task, the connection ``datamill_ray`` names a cluster
(``ray://host:10001``, ``host:6379`` or ``auto``). Local workers inherit the
project on ``PYTHONPATH``; a remote cluster gets our packages shipped as
``py_modules``. The lakehouse must be reachable from the workers at the same
location (a shared file system or an object store).
"""
from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from include.config import PROJECT_ROOT, lake_path
from include.registry import Op, StepContext, apply_defaults

log = logging.getLogger("datamill.ray")
CONNECTION_ID = "datamill_ray"
# Rows per Ray block for tables built in the driver (``to_ray``): enough
# blocks for a pool of workers to share.
BLOCK_ROWS = 256
# Columns the runner adds to a step's input for its own bookkeeping.
RUNNER_COLUMNS = ("_dead", "_born")
# Delta reader features a plain read of the data files would get wrong.
UNSUPPORTED_FEATURES = ("deletionVectors", "columnMapping")


def connection_address(host: str | None, port: int | None) -> str | None:
    """The Ray address a ``datamill_ray`` connection names: its host as given
    (``ray://h`` for Ray Client, ``h`` for a cluster's GCS, ``auto``), with its port."""
    if not host:
        return None
    if host in ("auto", "local"):
        return host
    return f"{host}:{port}" if port else host


def ray_address() -> str | None:
    addr = os.environ.get("DATAMILL_RAY_ADDRESS")
    if addr or not os.environ.get("AIRFLOW_CTX_DAG_ID"):
        return addr or None
    try:
        from airflow.sdk import BaseHook  # type: ignore

        conn = BaseHook.get_connection(CONNECTION_ID)
    except Exception:  # noqa: BLE001 - no connection configured: local Ray
        return None
    return connection_address(conn.host, conn.port)


def ensure_ray() -> None:
    """Connect to (or start) Ray once per process."""
    import ray

    if ray.is_initialized():
        return
    address = ray_address()
    if address:
        import include
        import ray_jobs

        ray.init(address=address, runtime_env={"py_modules": [include, ray_jobs]},
                 log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        return
    # Local workers inherit the driver's environment through the raylet, so
    # no runtime_env is needed (it would force slower dedicated workers).
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(PROJECT_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(PROJECT_ROOT), *paths] if p)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # address="local": without it ray.init() attaches to the newest `ray start`
    # cluster on the machine (/tmp/ray/ray_current_cluster), e.g. the warm head
    # of `make airflow`, which a run must only use when configured to.
    ray.init(address="local", num_cpus=int(os.environ.get("DATAMILL_RAY_NUM_CPUS", "2")),
             object_store_memory=int(os.environ.get("DATAMILL_RAY_OBJECT_STORE_MB", "1024")) << 20,
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def to_ray(table):
    """A Ray Dataset over an Arrow table held by the caller, cut into blocks a
    worker pool can share (for tables an op or a test built itself)."""
    import ray

    ensure_ray()
    if table.num_rows <= BLOCK_ROWS:
        return ray.data.from_arrow(table)
    return ray.data.from_arrow([table.slice(i, BLOCK_ROWS)
                                for i in range(0, table.num_rows, BLOCK_ROWS)])


def to_arrow(ds):
    """The rows of a Ray Dataset as one Arrow table (schema kept when empty)."""
    import pyarrow as pa
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs())]
    tables = [t for t in tables if t.num_columns]
    if not tables:
        schema = ds.schema()
        return pa.Table.from_pylist([], schema=schema.base_schema if schema else pa.schema([]))
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


# -- data movement ----------------------------------------------------------------
def delta_files(table_uri: str, run_id: str):
    """(Parquet file URIs of the run's partition, Arrow schema without ``_run_id``)
    of a run-partitioned Delta table, from its log; None if a plain read of the
    files would be wrong (deletion vectors, column mapping)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    dt = DeltaTable(table_uri)
    features = set(dt.protocol().reader_features or [])
    if features & set(UNSUPPORTED_FEATURES):
        return None
    schema = pa.schema(dt.schema().to_arrow())
    schema = pa.schema([f for f in schema if f.name != "_run_id"])
    return dt.file_uris(partition_filters=[("_run_id", "=", run_id)]), schema


def read_files(files: list[str], schema):
    """A Ray Dataset that Ray's read tasks fill from ``files`` (Parquet)."""
    import ray

    ensure_ray()
    if not files:
        return ray.data.from_arrow(schema.empty_table())
    # partitioning=None: the files sit in _run_id=... folders, which are not columns;
    # the files' own schema is Spark's (the Delta schema is only for no files).
    return ray.data.read_parquet(files, partitioning=None)


def staging_dir(ctx: StepContext, what: str) -> str:
    return str(lake_path(ctx.lake, "_system", "staging", ctx.pipeline, ctx.run_id,
                         f"s{ctx.step_index:02d}_{ctx.op}", what))


def _remove(location: str) -> None:
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(location if "://" in location
                                        else "file://" + os.path.abspath(location))
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def step_input(df, ctx: StepContext):
    """The step's rows as a Ray Dataset read by Ray's workers; ``(ds, staged)``
    where ``staged`` is the folder Spark wrote them to (None for a Delta read)."""
    if ctx.input_table:
        from include.lakehouse import Lakehouse

        listed = delta_files(Lakehouse(ctx.lake).table_path(ctx.input_table), ctx.run_id)
        if listed is not None:
            return read_files(*listed), None
        log.warning("%s: table uses %s; Spark stages the rows for Ray instead", ctx.input_table,
                    "/".join(UNSUPPORTED_FEATURES))
    import ray

    staged = staging_dir(ctx, f"in-{uuid.uuid4().hex[:8]}")
    df.drop(*RUNNER_COLUMNS).write.mode("overwrite").parquet(staged)
    ensure_ray()
    return ray.data.read_parquet(staged, partitioning=None), staged


def _without_schema_metadata(table):
    return table.replace_schema_metadata(None)


def step_output(ds, ctx: StepContext, spark):
    """The op's output, written by Ray's workers, as a checkpointed Spark DataFrame."""
    from pyspark.sql.pandas.types import from_arrow_schema

    out_dir = staging_dir(ctx, f"out-{uuid.uuid4().hex[:8]}")
    # Tables read from Spark's Parquet keep Spark's row schema in their metadata,
    # and Spark trusts it over the file's own: an op's added columns would vanish.
    ds.map_batches(_without_schema_metadata, batch_format="pyarrow",
                   zero_copy_batch=True).write_parquet(out_dir)
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(out_dir if "://" in out_dir
                                        else "file://" + os.path.abspath(out_dir))
    written = [f for f in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
               if f.is_file and f.path.endswith(".parquet")]
    if written:
        out = spark.read.parquet(out_dir)
    else:  # no rows: nothing was written, the schema comes from the dataset
        schema = ds.schema()
        arrow = schema.base_schema if schema is not None else None
        import pyarrow as pa

        out = spark.createDataFrame([], from_arrow_schema(arrow or pa.schema([])))
    return out, out_dir


class RayEngine:
    def apply(self, op: Op, df, params: dict[str, Any], ctx: StepContext):
        from pyspark.sql import functions as F

        from spark_jobs.session import get_spark

        params = apply_defaults(op.meta, params)
        prestart = getattr(op, "prestart", None)
        if prestart is not None:  # model workers start while the input is listed
            ensure_ray()
            prestart(params, ctx)
        spark = get_spark()
        ds, staged = step_input(df, ctx)
        out, out_dir = step_output(op.run(ds, params, ctx), ctx, spark)
        for c, value in (("_dead", F.lit(None).cast("int")), ("_born", F.lit(0))):
            if c in df.columns and c not in out.columns:
                out = out.withColumn(c, value)
        # Materialised in Spark's executors, so the staging folders can go now.
        out = out.localCheckpoint(eager=True)
        for folder in (staged, out_dir):
            if folder:
                _remove(folder)
        return out
