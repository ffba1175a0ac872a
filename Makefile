# The two commands of the README: `make demo` and `make test`.
.PHONY: setup demo test airflow bench-dedup

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/datamill demo

test: setup
	bash scripts/test.sh

# Airflow + a warm Spark Connect server and Ray head (scripts/airflow.sh);
# DATAMILL_AIRFLOW_DB=postgres for PostgreSQL instead of the embedded SQLite.
airflow: setup
	bash scripts/airflow.sh
