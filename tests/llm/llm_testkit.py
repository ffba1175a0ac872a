"""Helpers shared by the Ray/LLM op tests."""
from __future__ import annotations

import pyarrow as pa

from include.registry import StepContext, apply_defaults, get_op


def rows(n: int, prefix: str = "d", **extra) -> list[dict]:
    return [{"id": f"{prefix}{i:03d}", "text": f"document {prefix}{i}", "meta": "{}", **extra}
            for i in range(n)]


def run_op(name: str, data: list[dict] | pa.Table, params: dict, lake: str, *,
           pipeline: str = "t", step: int = 1):
    """Run a registered Ray op on rows the way the engine does; (Arrow table, ctx)."""
    from ray_jobs.engine import to_arrow, to_ray

    op = get_op(name)()
    ctx = StepContext(pipeline=pipeline, run_id="r1", step_index=step, op=name, lake=lake)
    table = data if isinstance(data, pa.Table) else pa.Table.from_pylist(data)
    out = op.run(to_ray(table), apply_defaults(op.meta, params), ctx)
    return to_arrow(out), ctx


def llm(server, **params) -> dict:
    """LLM op params pointing at the test server, with fast back-off."""
    return {"engine": {"base_url": server.url, "model": "test-model"},
            "backoff_base_s": 0.02, "backoff_cap_s": 0.2, "timeout_s": 5, **params}
