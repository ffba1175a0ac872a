"""Engine executors, picked once per op from its metadata's ``engine``.

Every executor takes and returns a Spark DataFrame (the lakehouse's currency)
and calls ``op.run`` in the engine's own data model; the runner never branches
on the engine.
"""
from __future__ import annotations

import importlib
from typing import Any

from include.registry import Op, StepContext


class SparkEngine:
    def apply(self, op: Op, df, params: dict[str, Any], ctx: StepContext):
        return op.run(df, params, ctx)


# Python ops receive the Spark DataFrame too and may collect it (small, late data).
PythonEngine = SparkEngine

_ENGINES = {"spark": "include.engines:SparkEngine",
            "python": "include.engines:PythonEngine",
            "ray": "ray_jobs.engine:RayEngine"}
_CACHE: dict[str, Any] = {}


def engine_for(name: str):
    if name not in _CACHE:
        mod, cls = _ENGINES[name].split(":")
        _CACHE[name] = getattr(importlib.import_module(mod), cls)()
    return _CACHE[name]
