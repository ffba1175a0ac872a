# The two commands of the README: `make demo` and `make test`.
.PHONY: setup demo test airflow bench-dedup

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/datamill demo

test: setup
	bash scripts/test.sh

airflow: setup
	bash -c '. scripts/airflow_env.sh && airflow standalone'
