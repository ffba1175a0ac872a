"""The demo DAG run from Airflow's scheduler against ``datamill run``, in one
run on the same input (issue 12, goal: DAG run <= 1.5x the CLI).

Sides, each a fresh lakehouse, same spec (``include/pipelines/stdlib_docs.yaml``,
the bundled docstrings), same outputs written (bronze, silver, gold, ledger,
quarantine, steps, runs):

- ``cli``: ``datamill run SPEC`` as a user types it (its one Spark JVM starts
  inside the clock: the CLI has no service to start it earlier). Run before
  and after the DAG sides; the figure is their mean.
- ``dag_warm``: ``make airflow``'s set-up (``scripts/airflow.sh``: ``airflow
  standalone`` with SQLite + LocalExecutor, a warm Spark Connect server and a
  Ray head). The clock runs from the REST trigger to the run's success as the
  REST API reports it: scheduling, five task processes, their connects,
  lineage events. Services start outside the clock (they are up before
  anyone triggers a run).
- ``dag_cold``: the same without warm engines (``DATAMILL_WARM_SPARK=0``):
  each task starts its own JVM, the set-up issue 12 measured at 2.6x.
- ``cli_connect``: the CLI against the same warm Connect server, so the
  engine's share and the scheduler's share of the difference can be told apart.

Every side's gold table is checked equal to the first CLI run's.

    .venv/bin/python benchmarks/dagrun/run.py [--sides cli,dag_warm,dag_cold,cli_connect]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SPEC = ROOT / "include/pipelines/stdlib_docs.yaml"
DAG_ID = "datamill__stdlib_docs"
PY = str(ROOT / ".venv/bin/python")
DATAMILL = str(ROOT / ".venv/bin/datamill")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load() -> float:
    return round(os.getloadavg()[0], 2)


def gold(lake: Path) -> list[tuple[str, str]]:
    from deltalake import DeltaTable

    t = DeltaTable(str(lake / "gold/stdlib_docs")).to_pyarrow_table(columns=["id", "text"])
    return sorted(zip(t["id"].to_pylist(), t["text"].to_pylist()))


def run_cli(lake: Path, env: dict[str, str] | None = None) -> dict:
    t0, l0 = time.time(), load()
    res = subprocess.run([DATAMILL, "run", str(SPEC), "--lake", str(lake)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=3600)
    wall = time.time() - t0
    if res.returncode != 0:
        raise RuntimeError(f"datamill run failed:\n{res.stderr[-3000:]}")
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "output_rows": summary["output_rows"],
            "load_before": l0, "load_after": load()}


def _http(method: str, url: str, body=None, token: str | None = None):
    h = {"Accept": "application/json"}
    data = None
    if body is not None:
        data, h["Content-Type"] = json.dumps(body).encode(), "application/json"
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


class Airflow:
    """``scripts/airflow.sh`` (what ``make airflow`` runs) in a fresh AIRFLOW_HOME."""

    def __init__(self, work: Path, lake: Path, warm: bool):
        self.home = work / ("af_warm" if warm else "af_cold")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ,
                    "AIRFLOW_HOME": str(self.home), "DATAMILL_LAKE": str(lake),
                    "DATAMILL_PIPELINES_DIR": str(work / "pipelines"),
                    "AIRFLOW__API__PORT": str(self.port),
                    "AIRFLOW__API__BASE_URL": self.base,
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
                    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                    "DATAMILL_WARM_SPARK": "1" if warm else "0",
                    "DATAMILL_WARM_RAY": "1" if warm else "0",
                    # the scheduler's and triggerer's log servers, off their fixed ports
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                    "DATAMILL_SPARK_CONNECT_PORT": str(free_port()),
                    "DATAMILL_RAY_PORT": str(free_port())}
        for k in ("AIRFLOW__OPENLINEAGE__TRANSPORT", "DATAMILL_SPARK_URL", "DATAMILL_RAY_ADDRESS"):
            self.env.pop(k, None)
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        self.home.mkdir(parents=True)
        subprocess.run([PY, "-m", "airflow", "db", "migrate"], env={
            **self.env, "PYTHONPATH": str(ROOT), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}, check=True, capture_output=True)
        self.log = open(self.home / "airflow.log", "wb")
        self.proc = subprocess.Popen(["bash", str(ROOT / "scripts/airflow.sh")], env=self.env,
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 900
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("scripts/airflow.sh exited:\n" + self.tail())
            try:
                self.token = self._token()
                _http("GET", f"{self.base}/api/v2/dags/{DAG_ID}", token=self.token)
                break
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                if time.time() > deadline:
                    raise RuntimeError("Airflow not ready in 900 s:\n" + self.tail()) from None
                time.sleep(2)
        return self

    def tail(self) -> str:
        return (self.home / "airflow.log").read_text(errors="replace")[-4000:]

    def _token(self) -> str:
        pw = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        body = {"username": "admin", "password": pw["admin"]}
        req = urllib.request.Request(f"{self.base}/auth/token", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["access_token"]

    def run_dag(self) -> dict:
        l0 = load()
        t0 = time.time()
        run = _http("POST", f"{self.base}/api/v2/dags/{DAG_ID}/dagRuns",
                    {"logical_date": None, "conf": {}}, self.token)
        path = f"{self.base}/api/v2/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}"
        while True:
            r = _http("GET", path, token=self.token)
            if r["state"] in ("success", "failed"):
                break
            if time.time() - t0 > 3600:
                raise RuntimeError("DAG run did not finish in an hour")
            time.sleep(0.5)
        wall = time.time() - t0
        if r["state"] != "success":
            raise RuntimeError(f"DAG run {r['state']}:\n{self.tail()}")
        tis = _http("GET", path + "/taskInstances", token=self.token)["task_instances"]
        tasks = {t["task_id"]: round(t["duration"] or 0, 2) for t in tis}
        return {"wall_s": round(wall, 2), "tasks_s": tasks,
                "sum_of_task_durations_s": round(sum(tasks.values()), 2),
                "tries": {t["task_id"]: t["try_number"] for t in tis},
                "load_before": l0, "load_after": load()}

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sides", default="cli,dag_warm,dag_cold,cli_connect")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args()
    sides = args.sides.split(",")
    work = Path(tempfile.mkdtemp(prefix="dm-dagrun-"))
    (work / "pipelines").mkdir()
    shutil.copy(SPEC, work / "pipelines" / SPEC.name)
    results: dict = {"input": str(SPEC.relative_to(ROOT)), "cores": os.cpu_count(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S"), "sides": {}}
    print(f"work dir {work}; load average {load()} on {os.cpu_count()} cores", flush=True)
    try:
        first = run_cli(work / "cli_1")
        results["sides"]["cli_1"] = first
        reference = gold(work / "cli_1")
        print(f"cli (1): {first}", flush=True)
        for warm in (True, False):
            name = "dag_warm" if warm else "dag_cold"
            if name not in sides:
                continue
            lake = work / f"{name}_lake"
            with Airflow(work, lake, warm) as af:
                results["sides"][name] = af.run_dag()
                if warm and "cli_connect" in sides:
                    url = f"sc://127.0.0.1:{af.env['DATAMILL_SPARK_CONNECT_PORT']}"
                    results["sides"]["cli_connect"] = run_cli(work / "cli_connect",
                                                              {"DATAMILL_SPARK_URL": url})
                    assert gold(work / "cli_connect") == reference
                    print(f"cli over Connect: {results['sides']['cli_connect']}", flush=True)
            assert gold(lake) == reference, f"{name}: gold differs from the CLI's"
            print(f"{name}: {results['sides'][name]}", flush=True)
        second = run_cli(work / "cli_2")
        results["sides"]["cli_2"] = second
        assert gold(work / "cli_2") == reference
        print(f"cli (2): {second}", flush=True)
        cli = (first["wall_s"] + second["wall_s"]) / 2
        results["cli_mean_s"] = round(cli, 2)
        results["ratios_to_cli"] = {k: round(v["wall_s"] / cli, 2)
                                    for k, v in results["sides"].items()
                                    if k in ("dag_warm", "dag_cold", "cli_connect")}
        results["output_rows"] = first["output_rows"]
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps({"cli_mean_s": results["cli_mean_s"], **results["ratios_to_cli"]}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
