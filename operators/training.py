"""Thin Airflow operators for the training DAG.

Each stores its arguments and calls the engine code in ``training.tasks``
(the same code ``datamill train`` runs). ``TrainOperator`` resumes from the
run's last checkpoint, so an Airflow retry continues where the failed try
stopped instead of starting over.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from operators.hooks import SparkSessionHook


class TrainingOperator(BaseOperator):
    """Base: holds the training config path and the lakehouse root."""

    template_fields: Sequence[str] = ("config_path", "lake")
    ui_color = "#e6dcf5"

    def __init__(self, *, config_path: str, lake: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config_path = config_path
        self.lake = lake

    def config(self):
        from training.config import load_config

        return load_config(self.config_path)


class PrepareTokensOperator(TrainingOperator):
    """Read the gold tables with Spark, train the tokenizer, write token files."""

    ui_color = "#fbd9b5"

    def __init__(self, *, spark_conn_id: str = SparkSessionHook.default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.spark_conn_id = spark_conn_id

    @cached_property
    def spark_hook(self) -> SparkSessionHook:
        return SparkSessionHook(self.spark_conn_id)

    def execute(self, context) -> dict[str, Any]:
        from training.tasks import prepare_tokens

        self.spark_hook.get_conn()
        manifest = prepare_tokens(self.config(), self.lake, log=self.log.info)
        return manifest["counts"]


class TrainOperator(TrainingOperator):
    """Train to the configured step count, resuming from the last checkpoint."""

    def execute(self, context) -> dict[str, Any]:
        from training.tasks import train

        summary = train(self.config(), log=self.log.info)
        return {k: summary[k] for k in ("steps", "resumed_from", "final_val_loss",
                                        "mean_val_loss", "strategy_overhead_share")}


class EvaluateOperator(TrainingOperator):
    """Per-domain validation loss of the final checkpoint."""

    def execute(self, context) -> dict[str, float]:
        from training.tasks import evaluate

        return evaluate(self.config(), log=self.log.info)


class PublishOperator(TrainingOperator):
    """Write the plot and HTML report; returns their paths for the UI."""

    ui_color = "#dfe9d0"

    def execute(self, context) -> dict[str, str]:
        from training.tasks import publish

        return publish(self.config(), log=self.log.info)
