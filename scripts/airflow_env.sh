# Source this to point Airflow at the project: `. scripts/airflow_env.sh`.
#
# DATAMILL_AIRFLOW_DB=sqlite (default: $AIRFLOW_HOME/airflow.db) or postgres
# (DATAMILL_AIRFLOW_DB_URL, else the local cluster scripts/airflow.sh starts on
# 127.0.0.1:${DATAMILL_PG_PORT:-5433}). Lineage: the OpenLineage provider's file
# transport appends JSONL to <lake>/_system/lineage/events.jsonl (what the
# plugin's Lineage page reads); set AIRFLOW__OPENLINEAGE__TRANSPORT yourself to
# send events elsewhere (Marquez: see README).
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export AIRFLOW_HOME="${AIRFLOW_HOME:-$_here/airflow_home}"
export AIRFLOW__CORE__DAGS_FOLDER="$_here/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$_here/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
export PYTHONPATH="$_here${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$_here/.venv/bin:$PATH"

case "${DATAMILL_AIRFLOW_DB:-sqlite}" in
  sqlite) ;;
  postgres)
    export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${DATAMILL_AIRFLOW_DB_URL:-postgresql+psycopg2://airflow@127.0.0.1:${DATAMILL_PG_PORT:-5433}/airflow}" ;;
  *) echo "DATAMILL_AIRFLOW_DB must be 'sqlite' or 'postgres', not '${DATAMILL_AIRFLOW_DB}'" >&2
     return 2 ;;
esac

_lake="${DATAMILL_LAKE:-$_here/lakehouse}"
export AIRFLOW__OPENLINEAGE__NAMESPACE="${AIRFLOW__OPENLINEAGE__NAMESPACE:-datamill}"
if [ -z "${AIRFLOW__OPENLINEAGE__TRANSPORT:-}" ]; then
  mkdir -p "$_lake/_system/lineage"
  export AIRFLOW__OPENLINEAGE__TRANSPORT="{\"type\": \"file\", \"log_file_path\": \"$_lake/_system/lineage/events.jsonl\", \"append\": true}"
fi
# Emit from a thread, not a fork of the task process: a forked child closes the
# task's py4j sockets to the Spark JVM it shares (seen as "Connection reset by peer").
export AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD="${AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD:-True}"
unset _here _lake
