#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: Java, .venv with pinned packages,
# Delta's jars in .cache/ivy (later runs are offline), Airflow's database.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { printf '[setup] %s\n' "$*"; }

if ! java -version >/dev/null 2>&1; then
  log "installing Java (OpenJDK 17 headless)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "Python 3.11 is required (megatron-core 0.16.1 and the pins are for 3.11)"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check uv

STAMP=.venv/.datamill-installed
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  log "installing packages (pyproject.toml pins)"
  .venv/bin/uv pip install -q --python .venv/bin/python -e ".[dev,bench]"
  # uv writes no .pyc, and where PYTHONDONTWRITEBYTECODE is set (as on our CI
  # machines) every new Spark/Ray/Airflow process would compile its imports from
  # source again (measured: a Ray worker's start 3-4 s without .pyc, ~1 s with).
  log "compiling bytecode"
  .venv/bin/python -m compileall -q -j 0 .venv/lib/python3.11/site-packages >/dev/null || true
  echo "$WANT" > "$STAMP"
fi

if ! ls .cache/ivy/jars/io.delta_delta-spark_*.jar >/dev/null 2>&1; then
  log "resolving Delta's jars into .cache/ivy"
  .venv/bin/python -c "from spark_jobs.session import get_spark; s = get_spark(); s.stop()"
fi

# shellcheck source=/dev/null
. scripts/airflow_env.sh
if [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
  log "airflow db migrate ($AIRFLOW_HOME)"
  mkdir -p "$AIRFLOW_HOME"
  .venv/bin/airflow db migrate >/dev/null
fi
log "ready: $ROOT/.venv"
