"""Airflow DAGs: one per pipeline spec in include/pipelines/ (include/dag_factory.py)."""
from include.dag_factory import build_pipeline_dags

build_pipeline_dags(globals())
