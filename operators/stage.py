"""Thin Airflow operators, one per stage kind. Each stores its arguments and
calls ``include.runner.run_task`` — the same engine code ``datamill run``
uses — with the run's id, so a retry replaces that run's outputs.

UI-trigger overrides arrive as DAG params named ``s{N}_{op}__{param}``, one
per tunable of each step (the op's metadata declares them); any other
run-config key fails the task, and a null or unchanged value keeps the spec's.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from operators.hooks import RayHook, SparkSessionHook

PARAM_SEP = "__"


class RunConfigError(ValueError):
    pass


def param_key(step_index: int, op: str, param: str) -> str:
    return f"s{step_index}_{op}{PARAM_SEP}{param}"


def check_run_conf(params: dict[str, Any], declared: set[str]) -> None:
    """Refuse run-config keys the DAG does not declare as Params: only the
    tunables' Params may be set at trigger time (anything else, e.g. an LLM
    step's ``engine``, would otherwise reach the run)."""
    extra = sorted(set(params or {}) - declared)
    if extra:
        raise RunConfigError(f"run config key(s) {', '.join(map(repr, extra))} are not "
                             f"tunables of this pipeline; allowed: {', '.join(sorted(declared))}")


def overrides_from_params(spec_raw: dict[str, Any], params: dict[str, Any],
                          declared: set[str]) -> dict[str, Any]:
    """``--set``-style overrides from the run's Params: declared tunables whose
    value is given (not null) and differs from the spec's."""
    check_run_conf(params, declared)
    out = {}
    for i, step in enumerate(spec_raw.get("steps") or [], start=1):
        prefix = f"s{i}_{step['op']}{PARAM_SEP}"
        given = step.get("params") or {}
        for key, value in (params or {}).items():
            if key.startswith(prefix) and value is not None:
                name = key[len(prefix):]
                if name not in given or given[name] != value:
                    out[f"steps.{i}.params.{name}"] = value
    return out


class DatamillStageOperator(BaseOperator):
    """Run the stage named by this task's id of the pipeline in ``spec_path``.

    Ingest applies the run's Params to the spec and records the result as the
    run's snapshot; every later task runs that snapshot (include.runner), so
    an edit of the YAML during a run does not reach it.
    """

    template_fields: Sequence[str] = ("spec_path", "lake")
    ui_color = "#e8f1fb"

    def __init__(self, *, spec_path: str, pipeline: str, lake: str | None = None,
                 spark_conn_id: str = SparkSessionHook.default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.pipeline = pipeline
        self.lake = lake
        self.spark_conn_id = spark_conn_id

    @cached_property
    def spark_hook(self) -> SparkSessionHook:
        return SparkSessionHook(self.spark_conn_id)

    def prepare_engines(self) -> None:
        self.spark_hook.get_conn()

    def run_spec(self, context):
        """The spec this task hands the runner: for ingest the YAML with the
        run's Params applied; later stages need only the pipeline's name."""
        params = context.get("params") or {}
        declared = set(self.dag.params.keys()) if self.dag is not None else set()
        if self.task_id != "ingest":
            check_run_conf(params, declared)
            return self.pipeline
        from include.spec import apply_overrides, parse, read_yaml

        raw = read_yaml(self.spec_path)
        return parse(apply_overrides(raw, overrides_from_params(raw, params, declared)),
                     self.spec_path)

    def execute(self, context) -> Any:
        from include.runner import run_task

        spec = self.run_spec(context)
        self.prepare_engines()
        return run_task(spec, self.task_id, context["run_id"], self.lake,
                        fresh=context["ti"].try_number == 1, on_change="use_snapshot")

    # OpenLineage (the provider calls these; include/lineage.py builds the facets
    # from the run's records). START comes before Airflow hands the operator its
    # context, so it names the datasets from the spec file alone.
    def _lineage(self, run_id: str | None, phase: str):
        from include.lineage import operator_lineage, task_lineage

        return operator_lineage(lambda: task_lineage(self.spec_path, self.task_id, run_id,
                                                     self.lake, phase=phase),
                                self.log, f"{self.task_id} ({phase})")

    def get_openlineage_facets_on_start(self):
        return self._lineage(None, "start")

    def get_openlineage_facets_on_complete(self, task_instance):
        return self._lineage(task_instance.run_id, "complete")

    def get_openlineage_facets_on_failure(self, task_instance):
        return self._lineage(task_instance.run_id, "failure")


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
    """Publishes the output table; returns the run summary (kept in XCom).

    A run that a later-started run has overtaken is skipped, not published: a
    skipped task emits no Asset event, so downstream training is not triggered
    by stale data. So is an incremental refresh that found nothing new (the
    table is unchanged). The Asset event's ``extra`` carries the table version,
    rows and, for a refresh, the rows it added.
    """

    ui_color = "#c9ecd4"

    def execute(self, context) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        from include.runner import StalePublishError

        try:
            summary = super().execute(context)
        except StalePublishError as exc:
            raise AirflowSkipException(str(exc)) from None
        if summary.get("table_changed") is False:  # a refresh that found nothing new
            raise AirflowSkipException(
                f"{summary['output_table']} unchanged at version {summary['output_version']}: "
                "the refresh found no new or changed files (no Asset event)")
        for asset in self.outlets or []:
            context["outlet_events"][asset].extra = {
                "table": summary["output_table"], "version": summary["output_version"],
                "rows": summary["output_rows"], "rows_added": summary.get("rows_added",
                                                                          summary["output_rows"]),
                "pipeline": summary["pipeline"], "run_id": summary["run_id"]}
        return summary


OPERATOR_FOR_STAGE = {"ingest": IngestOperator, "publish": PublishOperator}
OPERATOR_FOR_ENGINE = {"spark": SparkStageOperator, "ray": RayStageOperator,
                       "python": PythonStageOperator}
