"""Airflow: one training DAG per config in include/training_configs/ (see training/dag_builder.py)."""
from training.dag_builder import build_training_dags

build_training_dags(globals())
