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


_SLOT = None


def pytest_configure(config):
    """Take a slot in each process that runs tests: a plain session, or each
    xdist worker (scripts/test.sh runs two), never the xdist controller."""
    global _SLOT
    if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    _SLOT = _test_slot()


# Files that take minutes each (real Airflow stacks, clusters, the local model):
# with a file per xdist worker (--dist loadfile --no-loadscope-reorder, which
# keeps this order instead of sorting files by test count) they go first, so no
# long file starts last and leaves the other worker idle.
SLOW_FIRST = (  # by each file's time in a 2-worker run, slowest first
    "tests/ops/test_airflow_postgres.py", "tests/ops_data/test_clusters.py",
    "tests/spine/test_airflow.py", "tests/ops_data/test_incremental.py",
    "tests/agent_airflow/test_agent_dag.py", "tests/ops/test_make_airflow.py",
    "tests/spine/test_publish.py",
    "tests/llm/test_llm_dag.py", "tests/quality/test_gate.py",
    "tests/spark_ops/test_connect.py", "tests/spine/test_pipeline.py",
    "tests/ops/test_lineage_pages.py", "tests/agent_airflow/test_agent_page.py",
    "tests/llm/test_llm_embedding_ops.py", "tests/agent/test_agent_demo.py",
    "tests/training/test_distributed.py", "tests/training/test_training.py",
    "tests/quality/test_stats.py", "tests/ops_data/test_retention.py",
    "tests/llm/test_llm_pipeline.py", "tests/agent/test_agent_smollm2.py",
    "tests/training/test_mixing_suite.py", "tests/quality/test_inspect.py",
    "tests/llm/test_hostile_run_config.py", "tests/training/test_signals.py",
)


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a serial run keeps pytest's order (a package's files stay together)
    rank = {f: i for i, f in enumerate(SLOW_FIRST)}
    # a stable sort: every worker collects the same order, as xdist requires
    items.sort(key=lambda it: rank.get(it.nodeid.split("::", 1)[0], len(rank)))

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
