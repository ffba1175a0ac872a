"""Spec-driven DAG factory: one Airflow DAG per pipeline spec.

The DAG file in ``dags/`` is one call to ``build_pipeline_dags(globals())``
(dag-factory style). Each spec builds in its own ``try``: a broken spec is
logged and skipped so it cannot break the other DAGs, except in strict mode
(``DATAMILL_STRICT=1``, set in CI), where it raises. Parsing imports only
Airflow's SDK, PyYAML and the op metadata: no Spark, Ray or torch.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from include.config import PIPELINES_DIR, lake_root
from include.lineage import asset_uri
from include.registry import get_op
from include.spec import PipelineSpec, load_spec

log = logging.getLogger(__name__)
PARAM_KEYWORDS = ("type", "enum", "minimum", "maximum", "exclusiveMinimum",
                  "exclusiveMaximum", "minLength", "maxLength", "items", "pattern")
DEFAULT_ARGS = {
    "owner": "datamill",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def pipelines_dir() -> Path:
    return Path(os.environ.get("DATAMILL_PIPELINES_DIR", PIPELINES_DIR))


def strict() -> bool:
    return os.environ.get("DATAMILL_STRICT", "") not in ("", "0", "false")


def dag_params(spec: PipelineSpec) -> dict[str, Any]:
    """A Param for every param of every step, defaulting to the spec's value."""
    from airflow.sdk import Param

    from operators.stage import param_key

    out = {}
    for step in spec.steps:
        schema = get_op(step.op).meta.params.get("properties", {})
        for name, pschema in schema.items():
            kw = {k: pschema[k] for k in PARAM_KEYWORDS if k in pschema}
            if "type" in kw and step.params.get(name) is None:
                kw["type"] = [kw["type"], "null"] if isinstance(kw["type"], str) else kw["type"]
            out[param_key(step.index, step.op, name)] = Param(
                step.params.get(name), description=f"step {step.index} ({step.op}): "
                + pschema.get("description", name), **kw)
    return out


def build_dag(spec: PipelineSpec, spec_path: str):
    from airflow.sdk import DAG, Asset

    from include.runner import plan_stages
    from operators.stage import OPERATOR_FOR_ENGINE, OPERATOR_FOR_STAGE

    lake = os.environ.get("DATAMILL_LAKE")
    doc = f"### {spec.name}\n\n{spec.description}\n\n```yaml\n{yaml.safe_dump(spec.raw, sort_keys=False)}```"
    with DAG(
        dag_id=spec.dag_id,
        description=spec.description[:200] or None,
        schedule=spec.schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        params=dag_params(spec),
        tags=["datamill", "pipeline"],
        doc_md=doc,
    ) as dag:
        prev = None
        for i, stage in enumerate(plan_stages(spec)):
            if stage.kind == "steps":
                cls = OPERATOR_FOR_ENGINE[get_op(stage.steps[0].op).meta.engine]
            else:
                cls = OPERATOR_FOR_STAGE[stage.kind]
            kw = {}
            if stage.kind == "publish":
                kw["outlets"] = [Asset(asset_uri(lake_root(lake), spec.output_table))]
            task = cls(task_id=stage.task_id, spec_path=spec_path, stage_index=i, lake=lake, **kw)
            if prev is not None:
                prev >> task
            prev = task
    return dag


def build_pipeline_dags(globals_dict: dict[str, Any], folder: str | Path | None = None) -> list[str]:
    built = []
    for path in sorted(Path(folder or pipelines_dir()).glob("*.y*ml")):
        try:
            spec = load_spec(path)
            globals_dict[spec.dag_id] = build_dag(spec, str(path))
            built.append(spec.dag_id)
        except Exception:
            if strict():
                raise
            log.exception("datamill: skipping pipeline spec %s", path)
    return built
