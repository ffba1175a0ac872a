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

ROOT = Path(__file__).resolve().parent.parent
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

DATAMILL = str(ROOT / ".venv" / "bin" / "datamill")


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


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    e = os.environ.copy()
    e.update(env or {})
    return subprocess.run([DATAMILL, *args], capture_output=True, text=True, env=e,
                          timeout=timeout, cwd=str(ROOT))


def write_spec(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


# Real docstrings from the bundled sample that pass the default Gopher rules
# at min_words 40: test rows made of real prose, not repeated filler.
CLEAN_IDS = ['py:abc.ABCMeta', 'py:abc.abstractmethod', 'py:abc.update_abstractmethods',
             'py:argparse', 'py:argparse.Action', 'py:argparse.ArgumentParser',
             'py:argparse.MetavarTypeHelpFormatter', 'py:array', 'py:array.ArrayType', 'py:ast',
             'py:ast.NodeTransformer', 'py:ast.NodeVisitor', 'py:ast.dump',
             'py:ast.fix_missing_locations', 'py:ast.get_docstring', 'py:ast.get_source_segment',
             'py:ast.literal_eval', 'py:asynchat', 'py:asyncore', 'py:base64.a85decode',
             'py:base64.a85encode', 'py:base64.b32decode', 'py:base64.b64decode',
             'py:base64.b64encode', 'py:base64.standard_b64decode', 'py:base64.urlsafe_b64decode',
             'py:bdb.Bdb', 'py:bdb.Bdb.format_stack_entry', 'py:bdb.Bdb.trace_dispatch',
             'py:bdb.Breakpoint']


def clean_texts(n: int) -> list[str]:
    import json

    docs = {}
    with open(ROOT / "include/sample_data/docs/stdlib_docs.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            docs[d["id"]] = d["text"]
    return [docs[i] for i in CLEAN_IDS[:n]]
