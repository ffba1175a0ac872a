"""Faults at start: a metadata database that is down, a Spark Connect server
that is not running. Each gives a clear message naming what it tried."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from include.local_services import free_port
from tests.helpers import ROOT


def _airflow_sh(tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__DATABASE")}
    e.update({"AIRFLOW_HOME": str(tmp_path / "home"), **env})
    t0 = time.time()
    res = subprocess.run(["bash", str(ROOT / "scripts/airflow.sh")], env=e, capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    return res, time.time() - t0


def test_postgres_down_at_start_is_a_clear_error(tmp_path):
    port = free_port()  # nothing listens there
    res, seconds = _airflow_sh(tmp_path, DATAMILL_AIRFLOW_DB="postgres",
                               DATAMILL_AIRFLOW_DB_URL=f"postgresql+psycopg2://airflow:s3cret@127.0.0.1:{port}/airflow")
    assert res.returncode == 1
    assert f"127.0.0.1:{port}" in res.stderr and "not reachable" in res.stderr, res.stderr
    assert "s3cret" not in res.stderr + res.stdout   # the password is not echoed
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "home/run/services.env").exists()  # nothing was started
    assert seconds < 60


def test_unknown_database_kind_is_refused(tmp_path):
    res, _ = _airflow_sh(tmp_path, DATAMILL_AIRFLOW_DB="mysql")
    assert res.returncode != 0 and "must be 'sqlite' or 'postgres'" in res.stderr


def test_connect_server_not_running_names_the_url():
    from spark_jobs.session import SparkConnectUnavailable, check_connect

    url = f"sc://127.0.0.1:{free_port()}"
    t0 = time.time()
    with pytest.raises(SparkConnectUnavailable, match=url.replace(".", r"\.") + " is not reachable"):
        check_connect(url, wait_s=1)
    assert time.time() - t0 < 15
