"""`DATAMILL_AIRFLOW_DB=postgres make airflow`, end to end: ``scripts/airflow.sh``
as a user starts it (its supervisor starts Debian's PostgreSQL, a warm Spark
Connect server and a Ray head; the script migrates Airflow into PostgreSQL and
runs ``airflow standalone``). A pipeline triggered through the REST API runs
to success on the warm Connect server, its run is recorded in PostgreSQL, and
stopping the script stops every service it started.

(tests/ops/test_airflow_postgres.py covers retries and faults on Postgres with
the servers started one by one; this one is the user's single command.)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from include.local_services import free_port, postgres_bin
from tests.browser import AirflowServices
from tests.helpers import ROOT

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(postgres_bin() is None, reason="no PostgreSQL binaries "
                                 "(scripts/setup.sh installs Debian's postgresql)")]

SPEC = """
version: 1
name: makeaf
source: {{path: {src}, format: jsonl, id_field: id, text_field: text}}
steps:
  - op: normalize
  - op: exact_dedup
output: {{table: gold/makeaf}}
"""


class MakeAirflow(AirflowServices):
    """``bash scripts/airflow.sh`` (what ``make airflow`` runs) as one process group.

    Stopped by SIGTERM to the group, as Ctrl-C or a service manager does; the
    script's supervisor then stops PostgreSQL, Connect and Ray (up to a minute
    each), so SIGKILL waits longer than for plain Airflow servers."""

    stop_timeout = 240

    def _start(self) -> None:
        # health = the api-server's, which the script's `airflow standalone` runs
        self.procs["api-server"] = self._spawn("make-airflow", ["bash", "scripts/airflow.sh"])

    def tail(self, component: str, n: int = 60) -> str:
        return super().tail("make-airflow", n)


def _pids(pattern: str) -> list[int]:
    """Processes whose command line matches ``pattern`` (a regex), from /proc."""
    rx, found = re.compile(pattern), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if rx.search(cmd):
            found.append(int(d.name))
    return found


def test_make_airflow_on_postgres_runs_a_pipeline(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    lines = (ROOT / "include/sample_data/docs/stdlib_docs.jsonl").read_text(
        encoding="utf-8").splitlines()[:30]
    (src / "docs.jsonl").write_text("\n".join(lines + lines[:5]) + "\n", encoding="utf-8")
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "makeaf.yaml").write_text(SPEC.format(src=src))
    lake, home = tmp_path / "lake", tmp_path / "home"
    pg_port, connect_port, ray_port = free_port(), free_port(), free_port()
    for k in ("AIRFLOW__OPENLINEAGE__TRANSPORT", "DATAMILL_SPARK_URL", "DATAMILL_RAY_ADDRESS",
              "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "DATAMILL_AIRFLOW_DB_URL"):
        monkeypatch.delenv(k, raising=False)
    env = {"AIRFLOW_HOME": str(home), "DATAMILL_AIRFLOW_DB": "postgres",
           "DATAMILL_PG_PORT": str(pg_port), "DATAMILL_SPARK_CONNECT_PORT": str(connect_port),
           "DATAMILL_RAY_PORT": str(ray_port), "DATAMILL_LAKE": str(lake),
           "DATAMILL_PIPELINES_DIR": str(pipelines)}
    t0 = time.time()
    with MakeAirflow(tmp_path / "logs", env=env, start_timeout=420) as af:
        started = time.time() - t0
        env_file = home / "run" / "services.env"
        services = env_file.read_text()
        assert f"127.0.0.1:{pg_port}/airflow" in services
        assert f'"port": {connect_port}' in services and f'"port": {ray_port}' in services
        health = af.request("GET", "/api/v2/monitor/health", user=None)[1]
        assert health["metadatabase"]["status"] == "healthy", health
        token = af.token("admin")
        dag_id = "datamill__makeaf"
        deadline = time.time() + 180
        while af.request("GET", f"/api/v2/dags/{dag_id}", token=token)[0] != 200:
            assert time.time() < deadline, af.tail("make-airflow")
            time.sleep(2)
        status, run = af.request("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                                 {"logical_date": None}, token=token)
        assert status in (200, 201), run
        deadline = time.time() + 420
        while True:
            state = af.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}",
                               token=token)[1]["state"]
            if state in ("success", "failed"):
                break
            assert time.time() < deadline, af.tail("make-airflow")
            time.sleep(3)
        ran = time.time() - t0 - started
        assert state == "success", af.tail("make-airflow", 200)

        # The run is in PostgreSQL, not in a SQLite file.
        import psycopg2

        with contextlib.closing(psycopg2.connect(host="127.0.0.1", port=pg_port,
                                                 user="airflow", dbname="airflow")) as db:
            cur = db.cursor()
            cur.execute("SELECT state FROM dag_run WHERE dag_id = %s", (dag_id,))
            assert cur.fetchall() == [("success",)]
        assert not (home / "airflow.db").exists()
        # Its tasks ran on the warm Connect server, not on a JVM of their own.
        base = f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances"
        for task in ("ingest", "s2_exact_dedup", "publish"):
            status, log = af.request("GET", f"{base}/{task}/logs/1?full_content=true",
                                     token=token)
            assert status == 200 and f"Spark: sc://127.0.0.1:{connect_port}" in json.dumps(log)
        from deltalake import DeltaTable

        gold = DeltaTable(str(lake / "gold/makeaf")).to_pyarrow_table(columns=["id"])
        assert gold.num_rows == 30  # the five exact copies removed
    # Stopping `make airflow` stops what it started: no Postgres, Connect server
    # or Ray head of this test is left.
    patterns = [f"postgres .*-p {pg_port}( |$)", f"grpc.binding.port={connect_port}",
                f"(--port {ray_port}|gcs_server_port={ray_port}|127.0.0.1:{ray_port})"]
    deadline = time.time() + 60
    while time.time() < deadline:
        left = [p for pat in patterns for p in _pids(pat)]
        if not left:
            break
        time.sleep(1)
    # The cluster's files (moved to /tmp when the server's user cannot reach
    # pytest's private temp folder, include/local_services.LocalPostgres).
    tag = hashlib.sha1(str((home / "postgres").resolve()).encode()).hexdigest()[:12]
    shutil.rmtree(Path(os.environ.get("TMPDIR", "/tmp")) / f"datamill-pg-{tag}",
                  ignore_errors=True)
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes() for p in left
                      if Path(f"/proc/{p}").exists()]
    print(f"[make airflow on postgres] services + airflow healthy in {started:.1f} s, "
          f"pipeline run {ran:.1f} s")
