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

# Debian's Chromium for the browser tests of the plugin pages (tests/browser.py drives
# /usr/bin/chromium with Playwright; a browser download fails here).
if [ ! -x /usr/bin/chromium ]; then
  log "installing Chromium (Debian's chromium)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

# Debian's PostgreSQL server binaries (/usr/lib/postgresql/<v>/bin): the tests and
# `DATAMILL_AIRFLOW_DB=postgres make airflow` start their own cluster with them.
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
  log "installing PostgreSQL (Debian's postgresql)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql >/dev/null
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

# llama-cpp-python (the agent's local model server) ships only an sdist: build its
# wheel once, portable (-DGGML_NATIVE=OFF: no -march=native), and keep it in
# .cache/wheels so that reruns and the package install below never compile again
# (about 5 min on 2 idle cores).
LLAMA_CPP=0.3.36
if ! ls .cache/wheels/llama_cpp_python-"$LLAMA_CPP"-*.whl >/dev/null 2>&1; then
  log "building llama-cpp-python $LLAMA_CPP (once; cached in .cache/wheels)"
  if ! command -v g++ >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq g++ make >/dev/null
  fi
  mkdir -p .cache/wheels
  CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    .venv/bin/python -m pip wheel -q --no-deps --disable-pip-version-check \
    "llama-cpp-python==$LLAMA_CPP" -w .cache/wheels
fi

STAMP=.venv/.datamill-installed
WANT=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  # requirements.lock pins every package, transitive ones too (regenerate it with
  # `uv pip compile pyproject.toml --extra dev --extra bench -o requirements.lock`);
  # the project itself goes in editable, with nothing more resolved.
  log "installing packages (requirements.lock)"
  .venv/bin/uv pip install -q --python .venv/bin/python --find-links .cache/wheels -r requirements.lock
  .venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
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

# The JVM's class-data-sharing archive of Spark's and Delta's classes (.cache/jvm):
# a third less CPU per Spark start (spark_jobs/session.py). Without it Spark still runs.
if ! .venv/bin/python -c "import sys; from spark_jobs.session import class_archive as a; \
sys.exit(a() is not None and not a().is_file())"; then
  log "dumping Spark's classes into a class-data-sharing archive (.cache/jvm)"
  .venv/bin/python -m spark_jobs.session --class-archive >/dev/null 2>&1 || log "no class archive"
fi

# shellcheck source=/dev/null
. scripts/airflow_env.sh
# The embedded SQLite database; a PostgreSQL one is migrated by scripts/airflow.sh.
if [ "${DATAMILL_AIRFLOW_DB:-sqlite}" = sqlite ] && [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
  log "airflow db migrate ($AIRFLOW_HOME)"
  mkdir -p "$AIRFLOW_HOME"
  .venv/bin/airflow db migrate >/dev/null
fi
log "ready: $ROOT/.venv"
