"""Real Spark (local, Delta-enabled) for the Spark op tests."""
from __future__ import annotations

import pytest

from include.registry import StepContext


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
