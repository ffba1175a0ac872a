"""Thin Airflow operators for the training DAG.

Each stores its arguments and calls the engine code in ``training.tasks``
(the same code ``datamill train`` runs). The training run is the DAG run:
``train`` trains run ``<output.dir>/runs/<DAG run id>`` on the token folder
``prepare_tokens`` returned, so an Airflow retry resumes its own run from
the last checkpoint while a new DAG run (new data) trains afresh. Each
task's return value is its XCom: the token manifest, the run summary, the
evaluation, and the published report and model. ``publish`` emits the
model as an Asset and carries the "Training report" extra link, which
opens the report page of the datamill plugin (behind Airflow's login).
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Sequence
from urllib.parse import quote

from airflow.sdk import BaseOperator, BaseOperatorLink

from operators.hooks import SparkSessionHook


def report_url(dag_id: str, run_id: str) -> str:
    """The plugin page showing a training DAG run's report (plugins/datamill/training.py)."""
    from airflow.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}/datamill/training/run?dag_id={quote(dag_id)}&run_id={quote(run_id)}"


class TrainingReportLink(BaseOperatorLink):
    """Extra link on the publish task: the run's loss curves, weights and summary."""

    name = "Training report"

    def get_link(self, operator, *, ti_key) -> str:
        return report_url(ti_key.dag_id, ti_key.run_id)


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

    @staticmethod
    def upstream(context, task_id: str) -> dict[str, Any]:
        value = context["ti"].xcom_pull(task_ids=task_id)
        if not value:
            raise RuntimeError(f"no result from task {task_id!r} in this DAG run")
        return value

    # OpenLineage (the provider calls these): the gold tables a task read, at the
    # versions it read them, and the folders it wrote. START names them from the
    # config alone; COMPLETE and FAIL add what the task's XCom says it used.
    def lineage_datasets(self, result: dict[str, Any] | None, run_id: str | None):
        """``(inputs, outputs)`` as ``(location, version or None)`` lists."""
        return [], []

    def _lineage(self, task_instance, phase: str):
        from include.lineage import operator_lineage, paths_lineage

        def build():
            result = task_instance.xcom_pull(task_ids=self.task_id) \
                if task_instance is not None and phase == "complete" else None
            run_id = getattr(task_instance, "run_id", None)
            return paths_lineage(*self.lineage_datasets(result, run_id))

        return operator_lineage(build, self.log, f"{self.task_id} ({phase})")

    def get_openlineage_facets_on_start(self):
        return self._lineage(None, "start")

    def get_openlineage_facets_on_complete(self, task_instance):
        return self._lineage(task_instance, "complete")

    def get_openlineage_facets_on_failure(self, task_instance):
        return self._lineage(task_instance, "failure")

    def _tables(self, versions: dict[str, Any] | None) -> list[tuple[str, Any]]:
        from include.config import lake_root
        from include.lineage import table_location

        cfg, root = self.config(), lake_root(self.lake)
        tables = {**cfg.domains, **cfg.test_tables}
        domain_of = {t: d for d, t in tables.items()}
        versions = versions or {}
        return [(table_location(root, t), versions.get(domain_of[t])) for t in sorted(set(tables.values()))]

    def _run_dir(self, result, run_id) -> str | None:
        if result and result.get("run_dir"):
            return result["run_dir"]
        if run_id:
            from training.trainer import run_slug

            return str(self.config().output_dir / "runs" / run_slug(run_id))
        return None


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
        m = prepare_tokens(self.config(), self.lake, log=self.log.info)
        return {k: m[k] for k in ("dir", "versions", "test_versions", "tokenizer_sha256",
                                  "vocab_size", "counts")}

    def lineage_datasets(self, result, run_id):
        result = result or {}
        versions = {**(result.get("versions") or {}), **(result.get("test_versions") or {})}
        return self._tables(versions), [(result["dir"], None)] if result.get("dir") else []


class TrainOperator(TrainingOperator):
    """Train this DAG run's run (``train.ranks`` processes), resuming its last checkpoint."""

    def execute(self, context) -> dict[str, Any]:
        from training.tasks import train

        tokens = self.upstream(context, "prepare_tokens")
        return train(self.config(), log=self.log.info, data_dir=tokens["dir"],
                     run_id=context["run_id"], lake=self.lake)

    def lineage_datasets(self, result, run_id):
        run_dir = self._run_dir(result, run_id)
        return self._tables(None), [(run_dir, None)] if run_dir else []


class EvaluateOperator(TrainingOperator):
    """Per-domain loss of the final checkpoint on the evaluation split."""

    def execute(self, context) -> dict[str, float]:
        from training.tasks import evaluate

        return evaluate(self.config(), self.upstream(context, "train")["run_dir"], log=self.log.info)

    def lineage_datasets(self, result, run_id):
        run_dir = self._run_dir(None, run_id)
        return ([(run_dir, None)] if run_dir else []), []


class PublishOperator(TrainingOperator):
    """Write the plot and HTML report and publish the model (an Asset)."""

    ui_color = "#dfe9d0"
    operator_extra_links = (TrainingReportLink(),)

    def execute(self, context) -> dict[str, Any]:
        from training.tasks import publish

        out = publish(self.config(), self.upstream(context, "train")["run_dir"], log=self.log.info)
        out["report_url"] = report_url(context["dag"].dag_id, context["run_id"])
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {
                "run_id": out["run_id"], "path": out["model"], "published": out["published"]}
        return out

    def lineage_datasets(self, result, run_id):
        run_dir = (result or {}).get("run_dir") or self._run_dir(None, run_id)
        model = (result or {}).get("model") or str(self.config().output_dir / "model")
        return ([(run_dir, None)] if run_dir else []), [(model, None)]
