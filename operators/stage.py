"""Thin Airflow operators, one per stage kind. Each stores its arguments and
calls ``include.runner.run_stage`` — the same engine code ``datamill run``
uses — with the run's id, so a retry replaces that run's outputs.

UI-trigger overrides arrive as DAG params named ``s{N}_{op}__{param}``; only
those that differ from the spec are applied.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from operators.hooks import RayHook, SparkSessionHook

PARAM_SEP = "__"


def param_key(step_index: int, op: str, param: str) -> str:
    return f"s{step_index}_{op}{PARAM_SEP}{param}"


def overrides_from_params(spec_raw: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for i, step in enumerate(spec_raw.get("steps") or [], start=1):
        prefix = f"s{i}_{step['op']}{PARAM_SEP}"
        given = step.get("params") or {}
        for key, value in (params or {}).items():
            if key.startswith(prefix):
                name = key[len(prefix):]
                if name not in given or given[name] != value:
                    out[f"steps.{i}.params.{name}"] = value
    return out


class DatamillStageOperator(BaseOperator):
    """Run stage ``stage_index`` of the pipeline in ``spec_path``."""

    template_fields: Sequence[str] = ("spec_path", "lake")
    ui_color = "#e8f1fb"

    def __init__(self, *, spec_path: str, stage_index: int, lake: str | None = None,
                 spark_conn_id: str = SparkSessionHook.default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.stage_index = stage_index
        self.lake = lake
        self.spark_conn_id = spark_conn_id

    @cached_property
    def spark_hook(self) -> SparkSessionHook:
        return SparkSessionHook(self.spark_conn_id)

    def prepare_engines(self) -> None:
        self.spark_hook.get_conn()

    def execute(self, context) -> Any:
        from include.runner import run_stage
        from include.spec import apply_overrides, parse, read_yaml

        raw = read_yaml(self.spec_path)
        spec = parse(apply_overrides(raw, overrides_from_params(raw, context.get("params") or {})),
                     self.spec_path)
        self.prepare_engines()
        return run_stage(spec, self.stage_index, context["run_id"], self.lake)


class IngestOperator(DatamillStageOperator):
    ui_color = "#f3e5c0"


class SparkStageOperator(DatamillStageOperator):
    ui_color = "#fbd9b5"


class PythonStageOperator(DatamillStageOperator):
    ui_color = "#dfe9d0"


class RayStageOperator(DatamillStageOperator):
    ui_color = "#d7e3fc"

    def __init__(self, *, ray_conn_id: str = RayHook.default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.ray_conn_id = ray_conn_id

    def prepare_engines(self) -> None:
        super().prepare_engines()
        RayHook(self.ray_conn_id).get_conn()


class PublishOperator(DatamillStageOperator):
    """Publishes the output table; returns the run summary (kept in XCom)."""

    ui_color = "#c9ecd4"

    def get_openlineage_facets_on_complete(self, task_instance):
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
            from openlineage.client.event_v2 import Dataset
        except ImportError:
            return None
        from include.config import lake_root
        from include.spec import load_spec

        spec = load_spec(self.spec_path)
        root = str(lake_root(self.lake))
        return OperatorLineage(inputs=[Dataset(namespace="file", name=spec.source_path())],
                               outputs=[Dataset(namespace="file", name=f"{root}/{spec.output_table}")])


OPERATOR_FOR_STAGE = {"ingest": IngestOperator, "publish": PublishOperator}
OPERATOR_FOR_ENGINE = {"spark": SparkStageOperator, "ray": RayStageOperator,
                       "python": PythonStageOperator}
