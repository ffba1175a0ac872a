"""The steps of a training run, shared by ``datamill train`` and the Airflow DAG.

prepare tokens -> train (resuming from the last checkpoint) -> evaluate ->
publish (summary, plot and HTML report). No Airflow imports here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from include.config import lake_root
from training.config import TrainConfig, load_config

Log = Callable[[str], None]


def prepare_tokens(cfg: TrainConfig, lake: str | Path | None = None, log: Log = print) -> dict:
    from training.data import prepare

    return prepare(cfg, lake_root(lake), log=log)


def train(cfg: TrainConfig, log: Log = print, stop_after: int | None = None) -> dict[str, Any]:
    from training.trainer import Trainer

    summary = Trainer(cfg, log=log).run(stop_after=stop_after)
    write_summary(cfg, summary)
    return summary


def evaluate(cfg: TrainConfig, log: Log = print) -> dict[str, float]:
    """Per-domain validation loss of the last checkpoint (``eval.json``)."""
    from training.config import ConfigError
    from training.trainer import Trainer

    trainer = Trainer(cfg, log=log)
    if not trainer.resume():
        raise ConfigError(f"no checkpoint in {cfg.output_dir}: train first")
    val = trainer.evaluate()
    (cfg.output_dir / "eval.json").write_text(json.dumps({"step": trainer.step, "val_loss": val}))
    log(f"evaluate step {trainer.step}: {val}")
    return val


def write_summary(cfg: TrainConfig, summary: dict[str, Any]) -> Path:
    path = cfg.output_dir / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary))
    return path


def publish(cfg: TrainConfig, log: Log = print) -> dict[str, str]:
    """Plot and HTML report from the run's summary and step metrics."""
    from training.plot import plot_run

    out = cfg.output_dir
    summary = json.loads((out / "summary.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    png, page = plot_run(summary, [r for r in history if r["kind"] == "train"], out)
    log(f"publish: {page}")
    return {"plot": str(png), "report": str(page), "summary": str(out / "summary.json")}


def run_all(config_path: str | Path, lake: str | Path | None = None, log: Log = print) -> dict[str, Any]:
    cfg = load_config(config_path)
    prepare_tokens(cfg, lake, log)
    summary = train(cfg, log)
    summary.update(publish(cfg, log))
    write_summary(cfg, summary)
    return summary
