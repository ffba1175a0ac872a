"""Airflow on PostgreSQL with a real scheduler, warm Spark and two faults.

Debian's PostgreSQL runs as this test's own child process on a free port
with a temporary data directory; Airflow is migrated into it and runs as
real processes (api-server, scheduler, dag-processor, triggerer; LocalExecutor)
with a warm Spark Connect server (the ``make airflow`` set-up). One pipeline
run, triggered through the REST API with a Param override, meets two faults:

1. the ``datamill_spark`` connection names a Connect server that is not
   running: ingest fails naming the URL it tried, the connection is fixed
   through the REST API, and Airflow's retry (try 2) succeeds;
2. the exact-dedup task's process is SIGKILLed partway through its stage:
   Airflow retries it (try 2) and the run succeeds.

The gold table then equals a clean ``datamill run`` of the same spec with the
same override (classic local Spark), the tries are visible through the REST
API, and the plugin's Runs page shows them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from include.local_services import LocalPostgres, SparkConnectServer, free_port
from tests.browser import AirflowServices, artefact, browser, login, plugin_frame
from tests.helpers import DATAMILL, ROOT

pytestmark = pytest.mark.timeout(1800)

DAG_ID = "datamill__pgretry"
KILLED = "s3_exact_dedup"
SPEC = """
version: 1
name: pgretry
description: Airflow-on-Postgres retry test
source: {{path: {src}, format: jsonl, id_field: id, text_field: text}}
steps:
  - op: normalize
  - op: quality_filter
    params: {{min_words: 20}}
  - op: exact_dedup
output: {{table: gold/pgretry}}
"""
OVERRIDE = {"s2_quality_filter__min_words": 30}


def _source(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = (ROOT / "include/sample_data/docs/stdlib_docs.jsonl").read_text(
        encoding="utf-8").splitlines()[:240]
    copies = []
    for i, line in enumerate(lines[:40:4]):  # ten exact copies under new ids
        d = json.loads(line)
        d["id"] = f"copy-{i}"
        copies.append(json.dumps(d))
    (folder / "docs.jsonl").write_text("\n".join(lines + copies) + "\n", encoding="utf-8")
    return folder


def _gold(lake: Path) -> list[tuple[str, str]]:
    from deltalake import DeltaTable

    t = DeltaTable(str(lake / "gold/pgretry")).to_pyarrow_table(columns=["id", "text"])
    return sorted(zip(t["id"].to_pylist(), t["text"].to_pylist()))


class Stack:
    def __init__(self, af: AirflowServices, connect: SparkConnectServer, lake: Path,
                 timings: dict[str, float]):
        self.af, self.connect, self.lake, self.timings = af, connect, lake, timings
        self.token = af.token("admin")
        self.token_at = time.time()

    def api(self, method: str, path: str, body=None, ok=(200, 201)):
        if time.time() - self.token_at > 600:
            self.token, self.token_at = self.af.token("admin"), time.time()
        status, out = self.af.request(method, path, body, token=self.token)
        assert status in ok, f"{method} {path} -> {status}: {out}"
        return out

    def ti_path(self, run_id: str, task_id: str = "") -> str:
        base = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return f"{base}/{task_id}" if task_id else base

    def ti(self, run_id: str, task_id: str) -> dict:
        return self.api("GET", self.ti_path(run_id, task_id))

    def log(self, run_id: str, task_id: str, try_number: int) -> str:
        status, out = self.af.request(
            "GET", self.ti_path(run_id, task_id) + f"/logs/{try_number}?full_content=true",
            token=self.token)
        return json.dumps(out) if status == 200 else ""

    def wait(self, what: str, fn, timeout: float = 600, every: float = 2):
        deadline = time.time() + timeout
        while True:
            self.af.check_alive()
            got = fn()
            if got:
                return got
            if time.time() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                                     f"scheduler log:\n{self.af.tail('scheduler', 40)}")
            time.sleep(every)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    t0 = time.time()
    work = tmp_path_factory.mktemp("pgaf")
    timings: dict[str, float] = {}
    pipelines, lake = work / "pipelines", work / "lake"
    pipelines.mkdir()
    (lake / "_system/lineage").mkdir(parents=True)
    src = _source(work / "src")
    (pipelines / "pgretry.yaml").write_text(SPEC.format(src=src), encoding="utf-8")

    # The Connect server's JVM starts while PostgreSQL and the migration run.
    connect = SparkConnectServer(work / "connect", driver_memory="1500m")
    started: dict[str, BaseException | None] = {}

    def _start_connect():
        try:
            connect.start()
            started["err"] = None
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            started["err"] = exc

    th = threading.Thread(target=_start_connect, daemon=True)
    th.start()
    pg = LocalPostgres(work / "pg", cleanup=True)
    try:
        pg.start()
        timings["postgres_start_s"] = time.time() - t0
        t1 = time.time()
        env = dict(os.environ, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=pg.url)
        res = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                             capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        timings["migrate_s"] = time.time() - t1
        th.join(timeout=300)
        if started.get("err") is not None:
            raise started["err"]
        assert "err" in started, "Spark Connect server did not start in 300 s"
        t2 = time.time()
        services_env = {
            "DATAMILL_PIPELINES_DIR": str(pipelines), "DATAMILL_LAKE": str(lake),
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(lake / "_system/lineage/events.jsonl"),
                 "append": True}),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "datamill",
            "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "120",
        }
        with AirflowServices(work / "af", db_url=pg.url, env=services_env,
                             components=("api-server", "scheduler", "dag-processor",
                                         "triggerer")) as af:
            timings["services_start_s"] = time.time() - t2
            yield Stack(af, connect, lake, timings)
    finally:
        connect.stop()
        pg.stop()
        timings["total_s"] = time.time() - t0
        print(f"\n[postgres test timings] {json.dumps({k: round(v, 1) for k, v in timings.items()})}",
              file=sys.stderr)


def _task_pid(ti_id: str) -> int | None:
    """The task runner child: Airflow titles it ``airflow worker -- <ti id>``."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.strip() == f"airflow worker -- {ti_id}":
            return int(p.name)
    return None


@pytest.fixture(scope="module")
def retried_run(stack, tmp_path_factory):
    s = stack
    t0 = time.time()
    dead = free_port()
    conn = {"connection_id": "datamill_spark", "conn_type": "spark_connect",
            "host": "127.0.0.1", "port": dead}
    s.api("POST", "/api/v2/connections", conn)
    s.wait("the DAG to be parsed", lambda: s.af.request(
        "GET", f"/api/v2/dags/{DAG_ID}", token=s.token)[0] == 200, timeout=300)
    run = s.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": OVERRIDE})
    run_id = run["dag_run_id"]

    # The clean run, beside it: same spec, same override, classic local Spark.
    clean_lake = tmp_path_factory.mktemp("clean") / "lake"
    spec_file = next((s.lake.parent / "pipelines").glob("*.yaml"))
    clean = subprocess.Popen([DATAMILL, "run", str(spec_file), "--lake", str(clean_lake),
                              "--set", "quality_filter.min_words=30"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=str(ROOT))

    # Fault 1: nothing listens on the connection's port.
    s.wait("ingest try 1 to fail", lambda: s.ti(run_id, "ingest")["state"]
           in ("up_for_retry", "failed"), timeout=600)
    ingest_log = s.wait("ingest try 1's log", lambda: s.log(run_id, "ingest", 1), timeout=120)
    s.api("PATCH", "/api/v2/connections/datamill_spark", {**conn, "port": s.connect.port})

    # Fault 2: SIGKILL the exact-dedup task once its stage has started.
    ti = s.wait(f"{KILLED} to run", lambda: (t := s.ti(run_id, KILLED))["state"] == "running"
                and t, timeout=900, every=1)
    s.wait(f"{KILLED}'s stage to start", lambda: f"stage {KILLED} starting"
           in s.log(run_id, KILLED, 1), timeout=300, every=0.5)
    pid = s.wait(f"{KILLED}'s process", lambda: _task_pid(ti["id"]), timeout=30, every=0.5)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()

    final = s.wait("the run to finish", lambda: (r := s.api(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"))["state"]
        in ("success", "failed") and r, timeout=900, every=3)
    out, err = clean.communicate(timeout=900)
    s.timings["dag_run_s"] = time.time() - t0
    s.timings["kill_to_end_s"] = time.time() - killed_at
    return {"run_id": run_id, "final": final, "dead_port": dead, "ingest_log": ingest_log,
            "clean_rc": clean.returncode, "clean_out": out, "clean_err": err,
            "clean_lake": clean_lake, "killed_pid": pid,
            "tis": s.api("GET", s.ti_path(run_id))["task_instances"],
            "tries": {t: s.api("GET", s.ti_path(run_id, t) + "/tries")["task_instances"]
                      for t in ("ingest", KILLED)}}


def test_run_succeeds_after_both_faults(retried_run):
    assert retried_run["final"]["state"] == "success", retried_run["final"]
    assert retried_run["final"]["conf"] == OVERRIDE
    by_task = {t["task_id"]: t for t in retried_run["tis"]}
    assert set(by_task) == {"ingest", "s1_normalize__s2_quality_filter", KILLED, "publish"}
    assert all(t["state"] == "success" for t in by_task.values()), by_task
    assert by_task["ingest"]["try_number"] == 2 and by_task[KILLED]["try_number"] == 2
    assert by_task["publish"]["try_number"] == 1


def test_connect_outage_names_the_url_it_tried(retried_run):
    log = retried_run["ingest_log"]
    assert f"sc://127.0.0.1:{retried_run['dead_port']}" in log and "not reachable" in log, log[-3000:]


def test_retries_visible_through_rest(retried_run):
    for task in ("ingest", KILLED):
        tries = sorted(retried_run["tries"][task], key=lambda t: t["try_number"])
        assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "success")], \
            (task, tries)


def test_gold_equals_a_clean_run(stack, retried_run):
    assert retried_run["clean_rc"] == 0, retried_run["clean_err"][-3000:]
    summary = json.loads(retried_run["clean_out"].strip().splitlines()[-1])
    gold = _gold(stack.lake)
    assert gold == _gold(retried_run["clean_lake"])
    assert len(gold) == summary["output_rows"] > 0
    assert len({t for _, t in gold}) == len(gold)  # the planted copies were removed
    # the override (min_words 30, spec 20) reached the run: the airflow run's record says so
    from include.runs import list_runs

    run = next(r for r in list_runs(stack.lake, "pgretry") if r["run_id"] == retried_run["run_id"])
    assert run["status"] == "success" and run["output_rows"] == len(gold)


def test_runs_page_shows_the_tries(stack, retried_run):
    run_id = retried_run["run_id"]
    body = stack.api("GET", "/datamill/runs/api/runs?pipeline=pgretry")
    run = next(r for r in body["runs"] if r["run_id"] == run_id)
    tasks = run["airflow"]["tasks"]
    assert tasks[KILLED]["try_number"] == 2 and run["retried"]
    assert [t["state"] for t in tasks[KILLED]["tries"]] == ["failed", "success"]
    assert run["steps"][0]["op"] == "source" and run["top_removal_reasons"]
    with browser() as b:
        page = b.new_page()
        login(page, stack.af, "viewer")
        page.goto(stack.af.url("/plugin/datamill-runs"))
        frame = plugin_frame(page)
        frame.wait_for_selector(f".run[data-run-id='{run_id}'] .tries", timeout=90_000)
        card = frame.locator(f".run[data-run-id='{run_id}']")
        text = card.inner_text()
        assert "1: failed, 2: success" in text and KILLED in text
        assert "exact_dedup" in card.locator(".funnel").inner_text()
        assert "exact_duplicate" in card.locator(".reasons").inner_text()
        page.screenshot(path=artefact("runs_page_postgres.png"), full_page=True)
