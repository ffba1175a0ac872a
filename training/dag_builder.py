"""One Airflow DAG per training config: ``datamill__train__NAME``.

prepare_tokens >> train >> evaluate >> publish. The DAG is scheduled on the
Airflow Assets of its domain tables (the URIs the pipeline DAGs emit as
outlets, ``include.lineage.asset_uri``), so it runs when the pipelines that
make its data have all published; each DAG run trains its own run on the
data it found. ``publish`` has the published model as its outlet Asset
(:func:`model_asset`), so other DAGs can be scheduled on a new model.
Parsing reads YAML only: no torch, Spark or Megatron at import time. Each
config builds in its own ``try``; a broken one is logged and skipped unless
``DATAMILL_STRICT`` is set.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from include.config import PROJECT_ROOT, lake_root
from include.lineage import asset_uri

log = logging.getLogger(__name__)
CONFIGS_DIR = PROJECT_ROOT / "include" / "training_configs"
DEFAULT_ARGS = {"owner": "datamill", "retries": 2, "retry_delay": timedelta(seconds=30)}


def dag_id(name: str) -> str:
    return f"datamill__train__{name}"


def model_asset(cfg):
    """The Asset a training config's published model is (``<output.dir>/model``)."""
    from airflow.sdk import Asset

    return Asset(name=f"datamill_model__{cfg.name}", uri=f"file://{cfg.output_dir / 'model'}",
                 group="model")


def build_dag(config_path: Path):
    from airflow.sdk import DAG, Asset

    from operators.training import (
        EvaluateOperator,
        PrepareTokensOperator,
        PublishOperator,
        TrainOperator,
    )
    from training.config import load_config

    cfg = load_config(config_path)
    lake = os.environ.get("DATAMILL_LAKE")
    assets = [Asset(asset_uri(lake_root(lake), table)) for table in cfg.domains.values()]
    doc = (f"### training: {cfg.name}\n\nEach run's report: the *Training report* link of "
           f"the `publish` task, or the run's *Training* tab. Published model: "
           f"`{cfg.output_dir / 'model'}` ({cfg.train['ranks']} rank(s)).\n\n"
           f"```yaml\n{yaml.safe_dump(cfg.raw, sort_keys=False)}```")
    with DAG(
        dag_id=dag_id(cfg.name),
        description=cfg.raw.get("description") or f"train {cfg.name} on {sorted(cfg.domains)}",
        schedule=assets,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["datamill", "training"],
        doc_md=doc,
    ) as dag:
        common: dict[str, Any] = {"config_path": str(config_path), "lake": lake}
        (PrepareTokensOperator(task_id="prepare_tokens", **common)
         >> TrainOperator(task_id="train", **common)
         >> EvaluateOperator(task_id="evaluate", **common)
         >> PublishOperator(task_id="publish", outlets=[model_asset(cfg)], **common))
    return dag


def build_training_dags(globals_dict: dict[str, Any], folder: str | Path | None = None) -> list[str]:
    folder = Path(folder or os.environ.get("DATAMILL_TRAINING_CONFIGS_DIR", CONFIGS_DIR))
    built = []
    for path in sorted(folder.glob("*.y*ml")):
        try:
            dag = build_dag(path)
            globals_dict[dag.dag_id] = dag
            built.append(dag.dag_id)
        except Exception:
            if os.environ.get("DATAMILL_STRICT", "") not in ("", "0", "false"):
                raise
            log.exception("datamill: skipping training config %s", path)
    return built
