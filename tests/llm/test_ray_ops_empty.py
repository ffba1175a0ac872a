"""Every Ray op on an empty step input, the way the runner calls it (Spark
DataFrame -> Ray engine -> Spark DataFrame): no crash, no request, and the
columns the op declares are there with types Spark can hold."""
from __future__ import annotations

import pytest
from llm_testkit import llm

from include.registry import CONTROL_COLUMNS, StepContext, all_ops, apply_defaults, get_op

pytestmark = pytest.mark.usefixtures("ray_local")

RAY_OPS = sorted(m.name for m in all_ops() if m.engine == "ray")


def test_every_ray_op_is_covered():
    assert len(RAY_OPS) >= 7 and {"llm_score", "embed_quality_score"} <= set(RAY_OPS)


@pytest.mark.parametrize("name", RAY_OPS)
def test_ray_op_on_empty_input(name, server, lake, spark):
    from ray_jobs import quality_model
    from ray_jobs.embeddings import DIM
    from ray_jobs.engine import RayEngine

    op_cls = get_op(name)
    params = llm(server) if name.startswith("llm_") else {}
    if name == "llm_synthesize":
        params["seeds"] = ["one seed"]
    if name == "embed_quality_score":
        quality_model.save(lake, "default", [0.0] * DIM, 0.0, {"note": "untrained, for the test"})
    df = spark.createDataFrame([], "id string, text string, meta string")
    ctx = StepContext(pipeline="t", run_id="r1", step_index=1, op=name, lake=lake)
    out = RayEngine().apply(op_cls(), df, params, ctx)

    declared = {*op_cls.meta.requires, *op_cls.columns_added(apply_defaults(op_cls.meta, params)),
                *CONTROL_COLUMNS, "meta"}
    assert declared <= set(out.columns)
    assert "void" not in {t for _, t in out.dtypes}  # no column Spark cannot type
    rows = out.collect()
    if name == "llm_synthesize":  # seeds make rows even from an empty input
        assert [r["_parent_id"] for r in rows] == [rows[0]["_parent_id"]] and rows[0]["text"]
        assert server.stats()["requests"] == 1
    else:
        assert rows == [] and server.stats().get("requests", 0) == 0
