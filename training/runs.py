"""Finding training runs and their reports (for the Airflow plugin page and the CLI).

A run lives in ``<output.dir>/runs/<run_slug(run id)>`` of its config; inside
Airflow the run id is the DAG run's id. Only configs in the training configs
folder are looked at, and folder names come from :func:`run_slug`, so no
request can name a path outside a config's runs folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from include.config import PROJECT_ROOT

CONFIGS_DIR = PROJECT_ROOT / "include" / "training_configs"
DAG_PREFIX = "datamill__train__"


def configs_dir() -> Path:
    return Path(os.environ.get("DATAMILL_TRAINING_CONFIGS_DIR", CONFIGS_DIR))


def configs() -> dict[str, Any]:
    """name -> TrainConfig for every valid config in the folder (invalid ones are skipped)."""
    from training.config import ConfigError, load_config

    out = {}
    for path in sorted(configs_dir().glob("*.y*ml")):
        try:
            cfg = load_config(path)
        except ConfigError:
            continue
        out[cfg.name] = cfg
    return out


def _summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def list_runs() -> list[dict[str, Any]]:
    """Every run of every config, newest first: name, dag_id, run_id, strategy,
    steps, complete, mean evaluation loss, started_at, has_report."""
    rows = []
    for name, cfg in configs().items():
        for run_dir in (cfg.output_dir / "runs").glob("*"):
            s = _summary(run_dir)
            if not s:
                continue
            rows.append({"name": name, "dag_id": DAG_PREFIX + name, "run_id": s.get("run_id"),
                         "strategy": " + ".join(s.get("strategy", [])), "steps": s.get("steps"),
                         "complete": s.get("complete"), "ranks": s.get("ranks", 1),
                         "mean_eval_loss": s.get("mean_val_loss"),
                         "started_at": s.get("started_at"),
                         "has_report": (run_dir / "report.html").exists()})
    return sorted(rows, key=lambda r: str(r["started_at"]), reverse=True)


def find_run(dag_id: str, run_id: str) -> tuple[str, Path | None]:
    """(state, run folder) for a training DAG run: ``not_training``, ``no_run`` or ``ok``."""
    from training.trainer import run_slug

    if not dag_id.startswith(DAG_PREFIX):
        return "not_training", None
    cfg = configs().get(dag_id[len(DAG_PREFIX):])
    if cfg is None:
        return "not_training", None
    run_dir = cfg.output_dir / "runs" / run_slug(run_id)
    return ("ok", run_dir) if run_dir.is_dir() else ("no_run", None)
