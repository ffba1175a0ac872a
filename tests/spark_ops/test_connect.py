"""minhash_dedup and html_extract over a real Spark Connect server give the same
rows as classic Spark.

The server is Spark's own ``SparkConnectServer`` (what ``sbin/start-connect-server.sh``
runs), started with the pyspark package's ``spark-submit`` on ``local[2]`` with the
Delta jars. The Connect side runs in its own process (connect_ops.py) through
``get_spark()`` with ``$DATAMILL_SPARK_URL=sc://...``; the classic side runs the same
workload on this process's session.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from connect_ops import PAGES, dedup_rows, op_frames, rows_by_id
from tests.helpers import ROOT

CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def _missing_connect_client() -> str | None:
    """The pyspark[connect] client libraries that are not installed, if any."""
    from pyspark.sql.connect.utils import check_dependencies

    try:
        check_dependencies()
    except ImportError as exc:
        return str(exc)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory):
    missing = _missing_connect_client()
    if missing:
        pytest.skip(f"Spark Connect client libraries missing (pip install "
                    f"'pyspark[connect]=={version('pyspark')}'): {missing}")
    from include.config import IVY_DIR
    from spark_jobs.session import LOCAL_CONF, delta_jars

    port = _free_port()
    conf = dict(LOCAL_CONF, **{
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.memory": "2g",
        # not UTC, so the client's session setting must visibly win
        "spark.sql.session.timeZone": "America/New_York",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    })
    jars = delta_jars()
    if jars:
        conf["spark.jars"] = ",".join(jars)
    else:  # no cached jars: resolve them through Ivy as get_spark() does
        conf.update({"spark.jars.ivy": str(IVY_DIR), "spark.jars.packages":
                     f"io.delta:delta-spark_4.2_2.13:{version('delta-spark')}"})
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]",
           "--class", CONNECT_CLASS, "--name", "datamill-connect-test"]
    for k, v in conf.items():
        cmd += ["--conf", f"{k}={v}"]
    log = tmp_path_factory.mktemp("connect") / "server.log"
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
    try:
        deadline = time.time() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Spark Connect server exited with {proc.returncode}:\n"
                            + log.read_text(errors="replace")[-3000:])
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("Spark Connect server did not listen within 240 s:\n"
                                + log.read_text(errors="replace")[-3000:])
                time.sleep(1)
        yield f"sc://localhost:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def over_connect(connect_url, tmp_path_factory):
    """The workload's rows as the Connect client saw them."""
    d = tmp_path_factory.mktemp("connect_client")
    out, delta_dir = d / "rows.json", d / "delta_table"
    env = dict(os.environ, DATAMILL_SPARK_URL=connect_url)
    res = subprocess.run([sys.executable, str(Path(__file__).with_name("connect_ops.py")),
                          str(out), str(delta_dir)], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    return {**json.loads(out.read_text(encoding="utf-8")), "delta_dir": str(delta_dir)}


def test_connect_client_is_a_connect_session(over_connect):
    assert over_connect["session"] == "pyspark.sql.connect.session"
    assert over_connect["time_zone"] == "UTC"  # get_spark's setting, not the server's


def test_ops_over_connect_match_classic(spark, over_connect):
    classic = {name: rows_by_id(df) for name, df in op_frames(spark).items()}
    # JSON turned the classic rows' values into the same plain types
    assert json.loads(json.dumps(classic)) == over_connect["ops"]
    # ... and the rows are the interesting ones, not empty agreement
    for name in ("html_extract trafilatura", "html_extract resiliparse"):
        rows = over_connect["ops"][name]
        assert set(rows) == {p[0] for p in PAGES}
        assert rows["page"]["title"] == "River report" and "Nitrate" in rows["page"]["text"]
        assert rows["page"]["url"] == "https://example.org/r" and rows["page"]["_reason"] is None
        assert rows["untitled"]["_reason"] is None and rows["untitled"]["title"] is None
        assert [rows[k]["_reason"] for k in ("blank", "junk", "null")] == \
            ["no_text", "no_text", "no_html"]
    dedup = over_connect["ops"]["minhash_dedup"]
    assert len(dedup) == len(dedup_rows())
    for f in range(12):
        assert dedup[f"f{f:02d}_a"]["_reason"] is None
        assert dedup[f"f{f:02d}_far"]["_reason"] is None
        for k in ("b", "c", "d"):  # chained copies all land in the original's cluster
            assert dedup[f"f{f:02d}_{k}"]["_reason"] == "near_duplicate"
            assert json.loads(dedup[f"f{f:02d}_{k}"]["_detail"])["survivor"] == f"f{f:02d}_a"


def test_delta_round_trip_over_connect(over_connect):
    assert over_connect["delta_version"] == 0  # Lakehouse.version() over Connect
    assert over_connect["delta"] == over_connect["ops"]["html_extract resiliparse"]
    # The table must stay readable by delta-rs (the LLM cache's and tools' reader):
    # Connect once left 'string collate UTF8_BINARY' in the schema, which it rejects.
    from deltalake import DeltaTable

    table = DeltaTable(f"{over_connect['delta_dir']}/gold/t").to_pyarrow_table()
    assert table.num_rows == len(over_connect["delta"])
