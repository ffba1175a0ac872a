"""The one place a SparkSession is made.

Local ``local[*]`` with Delta by default. For scale-out, the Airflow
connection ``datamill_spark`` (through ``configure``, called by the Airflow
hook) or ``$DATAMILL_SPARK_URL`` names either a Spark
Connect URL (``sc://host:15002``) or a master (``spark://``, ``yarn``,
``k8s://...``); extra Spark conf goes in the connection's ``extra`` JSON.

Delta's jars are resolved once through Ivy into the project's cache folder
(``.cache/ivy``) by the set-up; later sessions put the cached jars straight on
the classpath so runs and tests work offline and skip Ivy resolution.

Start-up is most of a small run's fixed cost, and most of the JVM's start is
loading and verifying Spark's and Delta's ~15 000 classes. The set-up dumps
them once into a class-data-sharing archive (``build_class_archive``, JDK
``-XX:ArchiveClassesAtExit``) in ``.cache/jvm``, keyed by the java binary,
the jars and the pyspark version; a local session maps it
(``-XX:SharedArchiveFile``), which cut the session's CPU seconds from 17.5-18
to 10.5-12 here. A stale or missing archive only means a slower start: the
JVM checks it and runs without.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from include.config import CACHE_DIR, IVY_DIR

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
# Set by build_class_archive: dump the loaded classes at JVM exit instead of mapping them.
_ARCHIVE_AT_EXIT: list[str] = []


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


class SparkConnectUnavailable(ConnectionError):
    """The Spark Connect server named by the connection or $DATAMILL_SPARK_URL
    does not answer (an Airflow task fails with this and is retried)."""


def check_connect(url: str, wait_s: float = 10.0) -> None:
    """Fail fast, naming the URL, when nothing listens at a Spark Connect URL.

    The Connect client itself retries an unreachable server with back-off for
    many minutes before it gives up (measured: still waiting after 5 min), so
    a task pointed at a server that is not running would hang instead of
    failing and being retried.
    """
    import socket
    import time
    from urllib.parse import urlparse

    u = urlparse(url.split(";", 1)[0])
    host, port = u.hostname or "localhost", u.port or 15002
    deadline, err = time.time() + wait_s, None
    while True:
        try:
            socket.create_connection((host, port), timeout=3).close()
            return
        except OSError as exc:
            err = exc
        if time.time() >= deadline:
            raise SparkConnectUnavailable(
                f"Spark Connect server {url} is not reachable ({err}; tried for {wait_s:.0f} s): "
                "start it (`make airflow` starts one) or fix the datamill_spark connection / "
                "$DATAMILL_SPARK_URL")
        time.sleep(1)


def delta_jars() -> list[str]:
    return sorted(glob.glob(str(IVY_DIR / "jars" / "*.jar")))


def class_archive() -> Path | None:
    """This JVM's and classpath's class-data-sharing archive (may not exist yet)."""
    java = shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")) \
        if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java:
        return None
    import pyspark

    java = os.path.realpath(java)
    key = [java, str(os.stat(java).st_mtime_ns), pyspark.__version__,
           *(os.path.basename(j) for j in delta_jars())]
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    return CACHE_DIR / "jvm" / f"spark-{pyspark.__version__}-{digest}.jsa"


def _java_options() -> str:
    if _ARCHIVE_AT_EXIT:
        return f"-XX:ArchiveClassesAtExit={_ARCHIVE_AT_EXIT[0]} -Xlog:cds=off -Xlog:cds+dynamic=off"
    archive = class_archive()
    if archive is not None and archive.is_file() and os.environ.get("DATAMILL_SPARK_CDS") != "0":
        return f"-XX:SharedArchiveFile={archive} -Xlog:cds=off -Xlog:cds+dynamic=off"
    return ""


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
        check_connect(target)
        # The Connect server owns the cluster settings; a client sets runtime
        # SQL conf only: UTC as in the local session, and the connection's extra.
        builder = SparkSession.builder.remote(target).appName(app_name)
        for k, v in {"spark.sql.session.timeZone": "UTC", **extra}.items():
            builder = builder.config(k, str(v))
        _SESSION = builder.getOrCreate()
        # A Connect server keeps a session (its cached and checkpointed frames)
        # for an hour after its client went away unless the client releases it;
        # a warm server serving one task after another then runs out of memory
        # (seen: the 4 GB server of benchmarks/refresh --connect, OOM in the
        # third 200k-document run). Release it when this process ends.
        atexit.register(stop_spark, quiet=True)
        return _SESSION

    builder = SparkSession.builder.appName(app_name)
    builder = builder.master(target or os.environ.get("DATAMILL_SPARK_MASTER", "local[*]"))
    conf = dict(LOCAL_CONF)
    conf.update({
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.jars.ivy": str(IVY_DIR),
    })
    if (opts := _java_options()):
        conf["spark.driver.extraJavaOptions"] = opts
    conf.update({k: str(v) for k, v in extra.items()})
    if opts and "spark.driver.extraJavaOptions" in extra:
        conf["spark.driver.extraJavaOptions"] = f"{opts} {extra['spark.driver.extraJavaOptions']}"
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


def stop_spark(quiet: bool = False) -> None:
    """Stop the session (a Connect client: release it on the server);
    ``quiet``: at exit, where the server may be gone already."""
    global _SESSION
    session, _SESSION = _SESSION, None
    if session is not None:
        with contextlib.suppress(Exception) if quiet else contextlib.nullcontext():
            session.stop()


def build_class_archive() -> Path | None:
    """Dump the classes a representative local session loads (Delta write and
    read, a shuffle, an Arrow Python UDF) into ``class_archive()``; run once by
    the set-up. Returns the archive's path, or None when there is no java."""
    target = class_archive()
    if target is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    stop_spark()
    _ARCHIVE_AT_EXIT[:] = [str(tmp)]
    try:
        import tempfile

        spark = get_spark()
        with tempfile.TemporaryDirectory(prefix="datamill-cds-") as d:
            df = spark.range(2000).selectExpr("cast(id as string) as id", "repeat('x', 50) as text")
            df = df.mapInArrow(lambda batches: batches, df.schema)
            df.write.format("delta").save(f"{d}/t")
            spark.read.format("delta").load(f"{d}/t").groupBy("text").count().collect()
            spark.read.format("delta").load(f"{d}/t").where("id = '1'").write.format(
                "delta").mode("overwrite").option("replaceWhere", "id = '1'").save(f"{d}/t")
        gateway = spark.sparkContext._gateway
        stop_spark()
        gateway.shutdown()
        gateway.proc.stdin.close()  # the JVM exits on EOF, writing the archive
        gateway.proc.wait(300)
        from pyspark import SparkContext

        SparkContext._gateway = SparkContext._jvm = None
    finally:
        _ARCHIVE_AT_EXIT.clear()
    if tmp.is_file() and tmp.stat().st_size:
        os.replace(tmp, target)
        return target
    tmp.unlink(missing_ok=True)
    return None


if __name__ == "__main__":  # python -m spark_jobs.session --class-archive
    if sys.argv[1:] == ["--class-archive"]:
        print(build_class_archive() or "no java: no class archive")
