# Source this to point Airflow at the project: `. scripts/airflow_env.sh`.
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export AIRFLOW_HOME="${AIRFLOW_HOME:-$_here/airflow_home}"
export AIRFLOW__CORE__DAGS_FOLDER="$_here/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$_here/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
export PYTHONPATH="$_here${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$_here/.venv/bin:$PATH"
unset _here
