"""Shared fixtures: one real SparkSession per test process, a temporary
AIRFLOW_HOME migrated once, temporary lakehouses."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ROOT


def _test_slot():
    """Hold one of ``$DATAMILL_TEST_SLOTS`` (default 2) machine-wide test slots.

    Several test sessions on one 2-core machine (developers sharing a box)
    each start a JVM, Ray and Airflow servers, and thrash it so badly that
    timeouts fail healthy tests; beyond the slots a session waits its turn.
    ``DATAMILL_TEST_SLOTS=0`` turns this off.
    """
    import fcntl
    import time

    n = int(os.environ.get("DATAMILL_TEST_SLOTS", "2"))
    waited = False
    while n > 0:
        for i in range(n):
            fh = open(os.path.join(tempfile.gettempdir(), f"datamill-test-slot-{i}.lock"), "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fh
            except BlockingIOError:
                fh.close()
        if not waited:
            print(f"[datamill] waiting for one of {n} test slots (other test sessions are "
                  "running on this machine)", file=sys.stderr, flush=True)
            waited = True
        time.sleep(3)
    return None


_SLOT = _test_slot()

# Airflow reads its home at import time: point it at a throwaway one first.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="datamill-airflow-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("DATAMILL_STRICT", "1")
os.environ.pop("DATAMILL_LAKE", None)
os.environ.pop("DATAMILL_SPARK_URL", None)


@pytest.fixture(scope="session")
def spark():
    import logging

    from spark_jobs.session import get_spark, stop_spark

    # py4j logs "closing connection" at interpreter exit, after pytest has
    # closed the captured streams; stop Spark while they are still open.
    logging.getLogger("py4j").setLevel(logging.ERROR)
    yield get_spark()
    stop_spark()


@pytest.fixture
def lake(tmp_path) -> Path:
    p = tmp_path / "lake"
    p.mkdir()
    return p


@pytest.fixture(scope="session")
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   capture_output=True, env=os.environ.copy())
    return Path(_AIRFLOW_HOME)
