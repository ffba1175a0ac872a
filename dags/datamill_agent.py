"""Airflow: the data agent, ``datamill__agent`` (operators/agent.py): a request
becomes a pipeline spec that a person approves, revises or rejects."""
from operators.agent import build_agent_dag

dag = build_agent_dag()
