"""Every Spark (scan) op over a real Spark Connect server gives the same rows as
classic Spark: html_extract (both extractors), normalize, language_filter,
quality_filter (the three presets), pii_redact, exact_dedup, minhash_dedup and
training_signal_filter (over a Delta table of training signals), on rows where
each of them decides something.

The server is Spark's own ``SparkConnectServer`` as ``make airflow`` starts it
(``include.local_services.SparkConnectServer``: the pyspark package's ``spark-submit``
with Delta's jars and SQL extension), here on ``local[2]``. The Connect side runs
in its own process (connect_ops.py) through ``get_spark()`` with
``$DATAMILL_SPARK_URL=sc://...``; the classic side runs the same workload on this
process's session.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from connect_ops import PAGES, dedup_rows, op_frames, rows_by_id, text_rows, write_signals
from tests.helpers import ROOT

def _missing_connect_client() -> str | None:
    """The pyspark[connect] client libraries that are not installed, if any."""
    from pyspark.sql.connect.utils import check_dependencies

    try:
        check_dependencies()
    except ImportError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    missing = _missing_connect_client()
    if missing:
        pytest.skip(f"Spark Connect client libraries missing (pip install "
                    f"'pyspark[connect]=={version('pyspark')}'): {missing}")
    from include.local_services import ServiceError, SparkConnectServer

    # not UTC, so the client's session setting must visibly win
    server = SparkConnectServer(tmp_path_factory.mktemp("connect"), master="local[2]",
                                conf={"spark.sql.session.timeZone": "America/New_York"})
    try:
        server.start()
    except ServiceError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def connect_url(connect_server):
    return connect_server.url


@pytest.fixture(scope="module")
def signal_lake(tmp_path_factory):
    lake = tmp_path_factory.mktemp("signal_lake")
    write_signals(lake)
    return lake


@pytest.fixture(scope="module")
def over_connect(connect_url, signal_lake, tmp_path_factory):
    """The workload's rows as the Connect client saw them."""
    d = tmp_path_factory.mktemp("connect_client")
    out, delta_dir = d / "rows.json", d / "delta_table"
    env = dict(os.environ, DATAMILL_SPARK_URL=connect_url)
    res = subprocess.run([sys.executable, str(Path(__file__).with_name("connect_ops.py")),
                          str(out), str(delta_dir), str(signal_lake)], capture_output=True,
                         text=True, env=env,
                         cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    return {**json.loads(out.read_text(encoding="utf-8")), "delta_dir": str(delta_dir)}


def test_connect_client_is_a_connect_session(over_connect):
    assert over_connect["session"] == "pyspark.sql.connect.session"
    assert over_connect["time_zone"] == "UTC"  # get_spark's setting, not the server's


def test_ops_over_connect_match_classic(spark, signal_lake, over_connect):
    classic = {name: rows_by_id(df) for name, df in op_frames(spark, str(signal_lake)).items()}
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


def test_the_whole_scan_op_set_runs_over_connect(over_connect):
    """A Spark op added to the catalogue without a Connect case here fails this."""
    from include.registry import all_ops

    spark_ops = {m.name for m in all_ops() if m.engine == "spark"}
    assert spark_ops <= {name.split()[0] for name in over_connect["ops"]}


def test_scan_ops_decide_the_same_over_connect(over_connect):
    ops = over_connect["ops"]
    ids = {i for i, _ in text_rows()}
    for name in ("normalize", "language_filter", "quality_filter gopher", "quality_filter c4",
                 "quality_filter fineweb", "pii_redact", "exact_dedup"):
        assert set(ops[name]) == ids, name
        assert ops[name]["prose"]["_reason"] is None, name   # plain prose survives every op
    norm = ops["normalize"]["mojibake"]
    assert "mojibake" in norm["_changed"] and norm["text"].startswith("The café by the mill serves")
    assert ops["language_filter"]["german"]["_reason"] == "language_not_allowed"
    assert ops["language_filter"]["empty"]["_reason"] == "empty"
    assert ops["quality_filter gopher"]["short"]["_reason"] == "min_words"
    assert ops["quality_filter c4"]["repeat"]["_reason"] == "c4_min_sentences"
    assert ops["quality_filter fineweb"]["repeat"]["_reason"] == "min_line_punct_ratio"
    pii = ops["pii_redact"]["pii"]
    assert pii["_changed"] == "pii_redact" and "jane.doe@example.org" not in pii["text"]
    assert "<EMAIL>" in pii["text"] and "<PHONE>" in pii["text"]
    dedup = ops["exact_dedup"]
    assert dedup["copy_b"]["_reason"] == "exact_duplicate" and dedup["copy_a"]["_reason"] is None
    signals = ops["training_signal_filter"]
    assert signals["repeat"]["_reason"] == "training_loss_high"
    assert signals["german"]["_reason"] == "training_never_selected"
    assert json.loads(signals["repeat"]["_detail"])["run_id"] == "run1"


def test_a_client_releases_its_session_when_it_exits(connect_server, over_connect):
    """The workload's client process (a client like every Airflow task on the warm
    server of `make airflow`) has exited: the server closed its session, so the
    frames it cached and checkpointed do not stay in the server's memory for the
    session timeout (an hour) after it."""
    import time

    deadline = time.time() + 20
    while "INFO SessionHolder: Closing session" not in connect_server.log.read_text(
            errors="replace"):
        assert time.time() < deadline, "the server never closed the exited client's session"
        time.sleep(0.5)
