"""The Ray engine: runs an ``engine="ray"`` op on a step's Spark DataFrame.

The runner hands every step a Spark DataFrame; ``RayEngine.apply`` moves it
into Ray through Arrow (``toArrow`` -> ``ray.data.from_arrow``: the late
funnel is small enough to pass through the driver), calls ``op.run`` on the
Ray Dataset and brings the annotated rows back as a Spark DataFrame. An op
with a ``prestart(params, ctx)`` method (the LLM ops) gets it called first, so
its workers start while Spark reads the input.

Ray starts locally (a few CPUs, no dashboard) unless ``$DATAMILL_RAY_ADDRESS``
or, inside an Airflow task, the connection ``datamill_ray`` names a cluster
(``ray://host:10001`` or ``auto``). Local workers inherit the project on
``PYTHONPATH``; a remote cluster gets our packages shipped as ``py_modules``.
"""
from __future__ import annotations

import os
from typing import Any

from include.config import PROJECT_ROOT
from include.registry import Op, StepContext, apply_defaults

CONNECTION_ID = "datamill_ray"
# Rows per Ray block going in: enough blocks for a pool of workers to share.
BLOCK_ROWS = 256


def ray_address() -> str | None:
    addr = os.environ.get("DATAMILL_RAY_ADDRESS")
    if addr or not os.environ.get("AIRFLOW_CTX_DAG_ID"):
        return addr or None
    try:
        from airflow.sdk import BaseHook  # type: ignore

        conn = BaseHook.get_connection(CONNECTION_ID)
    except Exception:  # noqa: BLE001 - no connection configured: local Ray
        return None
    host = conn.host or ""
    if host in ("auto", "local"):
        return host
    if host and "://" not in host:
        host = f"ray://{host}"
    return f"{host}:{conn.port}" if conn.port else (host or None)


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
        return
    # Local workers inherit the driver's environment through the raylet, so
    # no runtime_env is needed (it would force slower dedicated workers).
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(PROJECT_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(PROJECT_ROOT), *paths] if p)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ray.init(num_cpus=int(os.environ.get("DATAMILL_RAY_NUM_CPUS", "2")),
             object_store_memory=int(os.environ.get("DATAMILL_RAY_OBJECT_STORE_MB", "1024")) << 20,
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def to_ray(table):
    """A Ray Dataset over an Arrow table, cut into blocks a worker pool can share."""
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


class RayEngine:
    def apply(self, op: Op, df, params: dict[str, Any], ctx: StepContext):
        import pyarrow as pa

        from spark_jobs.session import get_spark

        params = apply_defaults(op.meta, params)
        prestart = getattr(op, "prestart", None)
        if prestart is not None:  # model workers start while Spark reads the input
            ensure_ray()
            prestart(params, ctx)
        out = to_arrow(op.run(to_ray(df.toArrow()), params, ctx))
        # Rows an op creates leave the runner's bookkeeping columns null, which
        # Spark's non-nullable literals (e.g. ``_born``) would refuse.
        out = out.cast(pa.schema([f.with_nullable(True) for f in out.schema]))
        return get_spark().createDataFrame(out)
