#!/usr/bin/env bash
# `make airflow`: Airflow (`airflow standalone`: api-server, scheduler,
# dag-processor, triggerer; LocalExecutor) on this project, with warm engines
# started once beside it: a Spark Connect server with Delta (connection
# datamill_spark) and a Ray head (datamill_ray), so tasks attach instead of
# starting a JVM or a Ray cluster each. All of them stop when this exits.
#
#   DATAMILL_AIRFLOW_DB=sqlite|postgres    metadata database (default sqlite)
#   DATAMILL_AIRFLOW_DB_URL=...            an existing PostgreSQL (else a local one
#                                          in $AIRFLOW_HOME/postgres, port DATAMILL_PG_PORT=5433)
#   DATAMILL_WARM_SPARK=0 / DATAMILL_WARM_RAY=0   run without that warm engine
#   DATAMILL_SPARK_CONNECT_PORT=15002, DATAMILL_RAY_PORT=6379
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. scripts/airflow_env.sh

if [ "${DATAMILL_AIRFLOW_DB:-sqlite}" = postgres ] && [ -n "${DATAMILL_AIRFLOW_DB_URL:-}" ]; then
  # An external database that is down: say so now, not in a migration traceback.
  python -m include.local_services check-db "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" || exit 1
fi

RUN="$AIRFLOW_HOME/run"
mkdir -p "$RUN"
ENVF="$RUN/services.env"
rm -f "$ENVF"
args=(--workdir "$RUN" --env-file "$ENVF")
if [ "${DATAMILL_WARM_SPARK:-1}" = 1 ]; then
  args+=(--spark-connect --spark-connect-port "${DATAMILL_SPARK_CONNECT_PORT:-15002}")
fi
if [ "${DATAMILL_WARM_RAY:-1}" = 1 ]; then
  args+=(--ray --ray-port "${DATAMILL_RAY_PORT:-6379}")
fi
if [ "${DATAMILL_AIRFLOW_DB:-sqlite}" = postgres ] && [ -z "${DATAMILL_AIRFLOW_DB_URL:-}" ]; then
  args+=(--postgres "$AIRFLOW_HOME/postgres" --postgres-port "${DATAMILL_PG_PORT:-5433}")
fi
python -m include.local_services serve "${args[@]}" &
SERVICES=$!
trap 'kill -TERM "$SERVICES" 2>/dev/null || true; wait "$SERVICES" 2>/dev/null || true' EXIT
while [ ! -f "$ENVF" ]; do
  kill -0 "$SERVICES" 2>/dev/null || { echo "datamill: the warm engines did not start (see above)" >&2; exit 1; }
  sleep 1
done
# shellcheck source=/dev/null
. "$ENVF"

if [ "${DATAMILL_AIRFLOW_DB:-sqlite}" = postgres ]; then
  python -m include.local_services check-db "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" || exit 1
  airflow db migrate >/dev/null
fi
airflow standalone
