"""Spec-driven DAG factory: one Airflow DAG per pipeline spec.

The DAG file in ``dags/`` is one call to ``build_pipeline_dags(globals())``
(dag-factory style). Each spec builds in its own ``try``: a broken spec is
logged and skipped so it cannot break the other DAGs, except in strict mode
(``DATAMILL_STRICT=1``, set in CI), where it raises. Parsing imports only
Airflow's SDK, PyYAML and the op metadata: no Spark, Ray or torch.
"""
from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from include.config import lake_root
from include.lineage import asset_uri
from include.pipelines_catalog import pipelines_dir, spec_files
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


def strict() -> bool:
    return os.environ.get("DATAMILL_STRICT", "") not in ("", "0", "false")


def _fenced(text: str, lang: str = "text") -> str:
    fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _in_spec(value: Any) -> str:
    if value is None:
        return "not set in the spec; leave empty to keep it so"
    return f"in the spec: {json.dumps(value)}; leave empty to keep it"


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def dag_params(spec: PipelineSpec) -> dict[str, Any]:
    """Airflow Params for the run-time tunables only (each op's metadata
    declares its allow-list; engines, endpoints, models, templates, schemas,
    column names and capacities are never Params). One form section per step;
    every field is optional: left empty (null) it keeps the spec's value."""
    from airflow.sdk import Param

    from operators.stage import param_key

    out = {}
    for step in spec.steps:
        meta = get_op(step.op).meta
        schema = meta.params.get("properties", {})
        section = f"Step {step.index}: {step.op}"
        for name in meta.tunables:
            pschema = schema[name]
            kw = {k: pschema[k] for k in PARAM_KEYWORDS if k in pschema}
            types = kw.get("type", [])
            types = [types] if isinstance(types, str) else list(types)
            if "enum" in kw:
                kw["enum"] = [*kw["enum"], None] if None not in kw["enum"] else kw["enum"]
            if types and "null" not in types:
                types.append("null")
            if types:
                kw["type"] = types
            spec_value = step.params.get(name)
            out[param_key(step.index, step.op, name)] = Param(
                spec_value, title=_title(name), section=section,
                description=f"{pschema.get('description', _title(name))} ({_in_spec(spec_value)})",
                **kw)
    return out


def build_dag(spec: PipelineSpec, spec_path: str):
    from airflow.sdk import DAG, Asset

    from include.runner import plan_stages
    from operators.stage import OPERATOR_FOR_ENGINE, OPERATOR_FOR_STAGE

    lake = os.environ.get("DATAMILL_LAKE")
    # The description may be an agent request's words: shown as text in a
    # fence, never rendered as Markdown (links, images) in Airflow's UI.
    doc = (f"### {spec.name}\n\n{_fenced(spec.description.strip() or '(no description)')}\n\n"
           f"{_fenced(yaml.safe_dump(spec.raw, sort_keys=False), 'yaml')}")
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
        for stage in plan_stages(spec):
            if stage.kind == "steps":
                cls = OPERATOR_FOR_ENGINE[get_op(stage.steps[0].op).meta.engine]
            else:
                cls = OPERATOR_FOR_STAGE[stage.kind]
            kw = {}
            if stage.kind == "publish":
                kw["outlets"] = [Asset(asset_uri(lake_root(lake), spec.output_table))]
            task = cls(task_id=stage.task_id, spec_path=spec_path, pipeline=spec.name,
                       lake=lake, **kw)
            if prev is not None:
                prev >> task
            prev = task
    return dag


def build_pipeline_dags(globals_dict: dict[str, Any], folder: str | Path | None = None) -> list[str]:
    built = []
    for path in spec_files(folder or pipelines_dir()):
        try:
            spec = load_spec(path)
            globals_dict[spec.dag_id] = build_dag(spec, str(path))
            built.append(spec.dag_id)
        except Exception:
            if strict():
                raise
            log.exception("datamill: skipping pipeline spec %s", path)
    return built
