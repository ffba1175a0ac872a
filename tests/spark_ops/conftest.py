"""Real Spark (local, Delta-enabled) for the Spark op tests."""
from __future__ import annotations

import os
import sys

import pytest

from include.config import PROJECT_ROOT
from include.registry import StepContext

# Python workers must run this interpreter and import this project, as the
# driver does, whichever way pytest was started.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="session")
def spark():
    from spark_jobs.session import get_spark

    return get_spark()


@pytest.fixture
def ctx():
    return StepContext(pipeline="test", run_id="r1", step_index=0, op="test", lake="/tmp")


@pytest.fixture
def run_op(spark, ctx):
    """Run a registered op on rows of (id, text, ...) and return rows by id."""
    from include.registry import get_op

    def _run(name, rows, params=None, schema="id string, text string"):
        df = spark.createDataFrame(rows, schema)
        out = get_op(name)().run(df, dict(params or {}), ctx)
        return {r["id"]: r.asDict() for r in out.collect()}

    return _run
