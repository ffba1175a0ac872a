"""Helpers for the agent DAG tests: waiting on a real Airflow through its REST API."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

AGENT = "datamill__agent"


def wait_for(what: str, fn: Callable[[], Any], af, timeout: float = 420, every: float = 2) -> Any:
    """Poll ``fn`` until it returns something truthy; fail with Airflow's logs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        af.check_alive()
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n--- scheduler:\n"
                         f"{af.tail('scheduler', 40)}\n--- dag-processor:\n"
                         f"{af.tail('dag-processor', 40)}")


def trigger(af, conf: dict[str, Any], user: str = "user") -> str:
    status, body = af.request("POST", f"/api/v2/dags/{AGENT}/dagRuns",
                              {"logical_date": None, "conf": conf}, user=user)
    assert status == 200, body
    return body["dag_run_id"]


def task_states(af, run_id: str) -> dict[str, str | None]:
    status, body = af.request("GET", f"/api/v2/dags/{AGENT}/dagRuns/{run_id}/taskInstances")
    assert status == 200, body
    return {t["task_id"]: t["state"] for t in body["task_instances"]}


def run_state(af, run_id: str) -> str:
    status, body = af.request("GET", f"/api/v2/dags/{AGENT}/dagRuns/{run_id}")
    assert status == 200, body
    return body["state"]


def wait_awaiting_review(af, run_id: str, timeout: float = 480) -> dict[str, Any]:
    """Wait until the run's review step waits for a person; its HITL detail."""
    def ready():
        states = task_states(af, run_id)
        failed = [t for t, s in states.items() if s in ("failed", "upstream_failed")]
        assert not failed, f"agent run {run_id}: {failed} failed: {states}"
        return states.get("review") == "awaiting_input"

    wait_for(f"{run_id} to await review", ready, af, timeout)
    status, body = af.request("GET", hitl_path(run_id))
    assert status == 200, body
    # Answer no sooner than the page does (operators/agent.py ANSWER_SETTLE_S: an
    # Airflow 3.3.2 race fails a step answered before the scheduler saw it park).
    from operators.agent import ANSWER_SETTLE_S

    age = (datetime.now(timezone.utc) - datetime.fromisoformat(body["created_at"])).total_seconds()
    time.sleep(max(0.0, ANSWER_SETTLE_S - age))
    return body


def wait_run_done(af, run_id: str, timeout: float = 300) -> str:
    """The run's final state; a failed run's failed task logs go into the message."""
    state = wait_for(f"{run_id} to finish",
                     lambda: (s := run_state(af, run_id)) in ("success", "failed") and s, af,
                     timeout)
    if state == "failed":
        failed = [t for t, s in task_states(af, run_id).items() if s == "failed"]
        logs = "\n".join(f"--- {t}:\n{task_log(af, run_id, t)}" for t in failed)
        raise AssertionError(f"agent run {run_id} failed at {failed}\n{logs}")
    return state


def task_log(af, run_id: str, task_id: str, try_number: int = 1) -> str:
    status, body = af.request(
        "GET", f"/api/v2/dags/{AGENT}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
        headers={"Accept": "application/json"})
    if status != 200:
        return f"(log: HTTP {status}: {body})"
    lines = [e.get("event", "") + (f" {e['error_detail']}" if e.get("error_detail") else "")
             for e in (body.get("content") or []) if isinstance(e, dict)]
    return "\n".join(lines[-40:])


def hitl_path(run_id: str) -> str:
    return f"/api/v2/dags/{AGENT}/dagRuns/{run_id}/taskInstances/review/-1/hitlDetails"


def answer(af, run_id: str, option: str, feedback: str = "", user: str = "user",
           confirm_source: bool = False) -> tuple[int, Any]:
    return af.request("PATCH", hitl_path(run_id), {
        "chosen_options": [option],
        "params_input": {"review_feedback": feedback, "confirm_source": confirm_source}},
        user=user)


def dag_listed(af, dag_id: str) -> bool:
    status, body = af.request("GET", f"/api/v2/dags/{dag_id}")
    return status == 200 and not body.get("is_stale", False)
