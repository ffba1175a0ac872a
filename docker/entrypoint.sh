#!/usr/bin/env bash
# Entrypoint of the datamill image (docker/Dockerfile).
#
# For Airflow commands it waits for the metadata database (a clear message and
# exit 1 when it stays down), then execs the command. `datamill-init` is the
# compose file's init service: migrate the database, write the UI's password
# file from the secret in .env, and make the shared folders.
set -euo pipefail

wait_for_db() {
  local url="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" waited=0 limit="${DATAMILL_DB_WAIT_S:-120}"
  [ -n "$url" ] || return 0
  until python -m include.local_services check-db "$url" 2>/tmp/db-check; do
    if [ "$waited" -ge "$limit" ]; then
      cat /tmp/db-check >&2
      exit 1
    fi
    sleep 2; waited=$((waited + 2))
  done
}

case "${1:-}" in
  datamill-init)
    wait_for_db
    mkdir -p /opt/airflow/logs /opt/airflow/auth /data/lakehouse/_system/lineage
    airflow db migrate
    if [ -n "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-}" ]; then
      python - <<'PY'
import json, os
users = [u.split(":")[0] for u in os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")]
pw = os.environ.get("DATAMILL_ADMIN_PASSWORD") or ""
if not pw:
    raise SystemExit("DATAMILL_ADMIN_PASSWORD is empty: set it in docker/.env")
path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
with open(path, "w") as fh:
    json.dump({u: pw for u in users}, fh)
os.chmod(path, 0o600)
print(f"datamill: passwords for {', '.join(users)} written to {path}")
PY
    fi
    # init runs as root (as in Airflow's compose): hand the shared volumes to the
    # uid every other datamill container runs as.
    chown -R "${AIRFLOW_UID:-50000}:0" /opt/airflow/logs /opt/airflow/auth /data/lakehouse
    airflow version
    ;;
  airflow)
    wait_for_db
    exec "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
