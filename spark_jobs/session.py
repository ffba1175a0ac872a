"""The one place a SparkSession is made.

Local ``local[*]`` with Delta by default. For scale-out, the Airflow
connection ``datamill_spark`` (through ``configure``, called by the Airflow
hook) or ``$DATAMILL_SPARK_URL`` names either a Spark
Connect URL (``sc://host:15002``) or a master (``spark://``, ``yarn``,
``k8s://...``); extra Spark conf goes in the connection's ``extra`` JSON.

Delta's jars are resolved once through Ivy into the project's cache folder
(``.cache/ivy``) by the set-up; later sessions put the cached jars straight on
the classpath so runs and tests work offline and skip Ivy resolution.
"""
from __future__ import annotations

import glob
import os
import sys
from typing import Any

from include.config import IVY_DIR

_SESSION = None

# Small-data defaults: 2-core machines and many tiny stages; Spark's defaults
# (200 shuffle partitions, 50 snapshot partitions) cost seconds per stage here.
LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "8",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "4g",
    "spark.sql.execution.pythonUDF.arrow.enabled": "true",
    "spark.databricks.delta.schema.autoMerge.enabled": "true",
    "spark.python.worker.reuse": "true",
}


_TARGET: dict[str, Any] = {}


def configure(target: str | None = None, conf: dict[str, Any] | None = None) -> None:
    """Point the next session at a Spark Connect URL or master, with extra conf.

    Called by ``operators.hooks.SparkSessionHook`` from the Airflow connection
    ``datamill_spark``; engine code itself never imports Airflow.
    """
    _TARGET.clear()
    _TARGET.update({"target": target, "conf": dict(conf or {})})


def _connection_target() -> tuple[str | None, dict[str, Any]]:
    """Return (url-or-master, extra conf): configure() first, then env."""
    if _TARGET.get("target"):
        return _TARGET["target"], _TARGET.get("conf", {})
    return os.environ.get("DATAMILL_SPARK_URL") or None, _TARGET.get("conf", {})


def delta_jars() -> list[str]:
    return sorted(glob.glob(str(IVY_DIR / "jars" / "*.jar")))


def get_spark(app_name: str = "datamill"):
    """Return the process-wide SparkSession, creating it on first use."""
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    from pyspark.sql import SparkSession

    # Python workers must use this interpreter (the project's venv), not
    # whatever ``python3`` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    target, extra = _connection_target()
    if target and target.startswith("sc://"):
        # The Connect server owns the cluster settings; a client sets runtime
        # SQL conf only: UTC as in the local session, and the connection's extra.
        builder = SparkSession.builder.remote(target).appName(app_name)
        for k, v in {"spark.sql.session.timeZone": "UTC", **extra}.items():
            builder = builder.config(k, str(v))
        _SESSION = builder.getOrCreate()
        return _SESSION

    builder = SparkSession.builder.appName(app_name)
    builder = builder.master(target or os.environ.get("DATAMILL_SPARK_MASTER", "local[*]"))
    conf = dict(LOCAL_CONF)
    conf.update({
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.jars.ivy": str(IVY_DIR),
    })
    conf.update({k: str(v) for k, v in extra.items()})
    for k, v in conf.items():
        builder = builder.config(k, v)
    jars = delta_jars()
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
        _SESSION = builder.getOrCreate()
    else:
        from delta import configure_spark_with_delta_pip

        _SESSION = configure_spark_with_delta_pip(builder).getOrCreate()
    _SESSION.sparkContext.setLogLevel(os.environ.get("DATAMILL_SPARK_LOG_LEVEL", "ERROR"))
    return _SESSION


def stop_spark() -> None:
    global _SESSION
    if _SESSION is not None:
        _SESSION.stop()
        _SESSION = None

