#!/usr/bin/env bash
# The whole test suite, against real Spark, Delta, Airflow, Ray and Megatron-Core.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATAMILL_STRICT=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
