#!/usr/bin/env bash
# The whole test suite, against real Spark, Delta, Airflow, Ray and Megatron-Core.
# Two xdist workers, a test file per worker (--dist loadfile keeps a file's
# module fixtures, e.g. an Airflow stack, in one process; files in collection
# order, which tests/conftest.py starts with the slowest); most of a test's
# time is spent waiting on JVMs, schedulers and servers, so two workers keep a
# 2-core machine busy. DATAMILL_TEST_WORKERS=0 runs everything in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATAMILL_STRICT=1
WORKERS=${DATAMILL_TEST_WORKERS:-2}
XDIST=()
if [ "$WORKERS" != "0" ]; then XDIST=(-n "$WORKERS" --dist loadfile --no-loadscope-reorder); fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${XDIST[@]}" tests "$@"
