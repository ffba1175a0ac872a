"""The planner as an explicit graph of steps over one JSON-serialisable state.

    understand -> retrieve -> draft -> validate_repair -> dry_run -> explain -> render

Each step is a plain function ``state -> state`` that reads and adds keys of
a ``dict`` holding only JSON types, so the Airflow agent DAG can run one task
per step and pass the state through XCom, and ``plan()`` runs them in order
in one process. A step that finds nothing valid sets ``status: "refused"``
with a ``refusal`` message; every later step then passes the state through
unchanged, so a refused plan never reaches review.

Why a small explicit state machine and not LangGraph: the workflow is fixed
(no step chooses the next one except the bounded repair loop, which is a
``for`` loop inside ``validate_repair``), the state must cross process
boundaries as JSON anyway (XCom), and each step must be callable alone by an
Airflow task. LangGraph's value is in dynamic routing, checkpointers and
tool-calling agents; here it would add a dependency tree and a second state
model around seven function calls. DataFlow-Agent's lesson is kept: explicit
nodes, retrieval per sub-task and a compile-time data-flow check (the spec
validator) before anything runs.

The state (keys are added as steps run)::

    request, feedback, feedback_history, name, llm, source_arg, format_arg,
    output_table_arg, from_spec        inputs (from_spec: the spec being revised, a dict)
    understanding   parts of the request, params found, schedule, format,
                    source, domain, injections ignored, flags
    retrieved       per part: skills with hybrid/lexical/embedding scores, low_match
    spec            the draft spec (dict), then the repaired, validated one
    draft_notes     per step: why it is there (rule, skill, request part)
    validation      per round: {round, messages, actions}
    rounds_used     repair rounds used (0 = the first draft was valid)
    valid, errors   the validator's verdict on the final spec
    dry_run         {status: ok|no_sample|partial|failed|skipped, rows, funnel, message}
    explanation     per step: op, why, skills; flags for the reviewer
    prompts         rendered prompt for one sample row, per LLM step
    rendered        {spec_yaml, dag_py, plan_md}
    flags           [{kind, message, confirm}] shown in plan.md; confirm=True
                    needs the reviewer's explicit confirmation at approval
    timings         seconds per step
    status          ok | refused;  refusal: the message when refused
"""
from __future__ import annotations

import copy
import functools
import time
from pathlib import Path
from typing import Any, Callable

import yaml

MAX_REPAIR_ROUNDS = 3
DRY_RUN_ROWS = 20
LLM_MODES = ("none", "openai")


class PlanRefused(ValueError):
    """No valid spec could be made; ``str()`` is the message for the user."""


def _step(fn: Callable[[dict[str, Any]], dict[str, Any]]):
    """Skip a refused state, time the step, and keep the caller's dict unchanged."""

    @functools.wraps(fn)
    def run(state: dict[str, Any]) -> dict[str, Any]:
        if state.get("status") == "refused":
            return state
        state = copy.deepcopy(state)
        t0 = time.perf_counter()
        try:
            state = fn(state)
        except PlanRefused as exc:
            refuse(state, str(exc))
        state.setdefault("timings", {})[fn.__name__] = round(time.perf_counter() - t0, 3)
        return state

    return run


def refuse(state: dict[str, Any], message: str) -> dict[str, Any]:
    state["status"] = "refused"
    state["refusal"] = message
    state["valid"] = False
    return state


def flag(state: dict[str, Any], kind: str, message: str, confirm: bool = False) -> None:
    """A note for the reviewer; ``confirm`` makes approval need an explicit confirmation."""
    flags = state.setdefault("flags", [])
    entry = {"kind": kind, "message": message, "confirm": bool(confirm)}
    if entry not in flags:
        flags.append(entry)


def new_state(request: str, *, source: str | None = None, fmt: str | None = None,
              from_spec: str | Path | dict | None = None, feedback: str | None = None,
              name: str | None = None, llm: str = "none", output_table: str | None = None,
              feedback_history: list[str] | None = None,
              dry_run_rows: int = DRY_RUN_ROWS, dry_run: bool = True,
              max_rounds: int = MAX_REPAIR_ROUNDS, draft_ops: bool = False) -> dict[str, Any]:
    """The initial state. ``from_spec`` is a spec path or mapping to revise
    with ``feedback``; without a request the revised spec's description stands in."""
    base = None
    if from_spec is not None:
        base = _read_spec(from_spec)
    return {"version": 1, "status": "ok",
            "request": request if isinstance(request, str) else "",
            "feedback": feedback, "feedback_history": list(feedback_history or []),
            "name": name, "llm": llm, "source_arg": source, "format_arg": fmt,
            "output_table_arg": output_table, "from_spec": base,
            "options": {"dry_run": bool(dry_run), "dry_run_rows": int(dry_run_rows),
                        "max_rounds": int(max_rounds), "draft_ops": bool(draft_ops)},
            "flags": [], "timings": {}}


def _read_spec(from_spec: str | Path | dict) -> dict[str, Any]:
    if isinstance(from_spec, dict):
        return copy.deepcopy(from_spec)
    p = Path(from_spec)
    if not p.is_file():
        raise PlanRefused(f"--from {str(p)!r}: no such spec file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PlanRefused(f"--from {str(p)!r} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PlanRefused(f"--from {str(p)!r} is not a spec mapping")
    return raw


# -- the steps ----------------------------------------------------------------------
@_step
def understand(state: dict[str, Any]) -> dict[str, Any]:
    """Split the request into parts, extract params, schedule, format and source;
    record injected instructions (inert) and flags. Refuses an empty request,
    an unknown format and a missing source."""
    from include.agent.understand import understand_state

    return understand_state(state)


@_step
def retrieve(state: dict[str, Any]) -> dict[str, Any]:
    """Hybrid (BM25 + MiniLM) retrieval of skills for each part of the request,
    with a low-match signal per part; the planners see only these skills."""
    from include.agent.retrieve import retrieve_state

    return retrieve_state(state)


@_step
def draft(state: dict[str, Any]) -> dict[str, Any]:
    """A first spec: the offline rules (``llm: none``), one structured LLM call
    (``llm: openai``), or a revision of ``from_spec`` by the feedback."""
    if state.get("from_spec") is not None:
        from include.agent.revise import revise_state

        state = revise_state(state)
    elif state.get("llm") == "openai":
        from include.agent.llm_planner import draft_llm

        state = draft_llm(state)
    else:
        from include.agent.offline import draft_offline

        state = draft_offline(state)
    # Params the words gave on another scale than the op's (offline.params_for).
    for note in dict.fromkeys(state["understanding"].pop("param_notes", [])):
        flag(state, "param_mapped", note)
    return state


@_step
def validate_repair(state: dict[str, Any]) -> dict[str, Any]:
    """The spec validator plus plan checks; each failing round's messages are
    fed back to the planner (rules or LLM) for a bounded number of rounds.
    Exhausted rounds refuse with the last messages."""
    from include.agent.checks import validate_and_repair

    return validate_and_repair(state)


@_step
def dry_run(state: dict[str, Any]) -> dict[str, Any]:
    """Run the validated spec on a small sample of the real source through the
    real engines (temporary lakehouse) and record the funnel per step;
    ``no_sample`` without a source."""
    from include.agent.dry_run import dry_run_state

    return dry_run_state(state)


@_step
def explain(state: dict[str, Any]) -> dict[str, Any]:
    """Why each step is there, which skills were retrieved, the rendered prompt
    of each LLM step for one sample row, and the flags for the reviewer."""
    from include.agent.explain import explain_state

    return explain_state(state)


@_step
def render(state: dict[str, Any]) -> dict[str, Any]:
    """The review item's texts: spec YAML, the DAG file from the one fixed
    template, plan.md. Writes nothing: ``ReviewStore.save_round(state)`` does."""
    from include.agent.explain import render_state

    return render_state(state)


STEPS: tuple[Callable[[dict[str, Any]], dict[str, Any]], ...] = (
    understand, retrieve, draft, validate_repair, dry_run, explain, render)
STEP_NAMES = tuple(s.__name__ for s in STEPS)


def run_steps(state: dict[str, Any], steps=STEPS) -> dict[str, Any]:
    for step in steps:
        state = step(state)
    return state


def plan(request: str, *, source: str | None = None, fmt: str | None = None,
         from_spec: str | Path | dict | None = None, feedback: str | None = None,
         name: str | None = None, llm: str = "none", output_table: str | None = None,
         feedback_history: list[str] | None = None, dry_run: bool = True,
         dry_run_rows: int = DRY_RUN_ROWS, max_rounds: int = MAX_REPAIR_ROUNDS,
         draft_ops: bool = False) -> dict[str, Any]:
    """Run every step. ``draft_ops``: draft a new op into review for each part of the
    request no op fits (``datamill op new``). Returns the final state: ``status == "ok"`` with a valid
    ``spec`` and ``rendered`` texts, or ``status == "refused"`` with ``refusal``."""
    try:
        state = new_state(request, source=source, fmt=fmt, from_spec=from_spec,
                          feedback=feedback, name=name, llm=llm, output_table=output_table,
                          feedback_history=feedback_history, dry_run=dry_run,
                          dry_run_rows=dry_run_rows, max_rounds=max_rounds,
                          draft_ops=draft_ops)
    except PlanRefused as exc:
        return refuse({"request": request, "flags": [], "timings": {}}, str(exc))
    return run_steps(state)


def state_from_spec(spec_path: str | Path, *, dry_run: bool = True,
                    dry_run_rows: int = DRY_RUN_ROWS) -> dict[str, Any]:
    """A state for a spec nobody planned here (hand-written or edited after
    ``plan``): validated, dry-run, explained and rendered, so ``datamill render``
    works for any spec."""
    from include.agent.checks import validate_only

    state = new_state("", dry_run=dry_run, dry_run_rows=dry_run_rows)
    try:
        raw = _read_spec(spec_path)
    except PlanRefused as exc:
        return refuse(state, str(exc))
    state["request"] = str(raw.get("description") or "")
    state["spec"] = raw
    state["understanding"] = {"parts": [], "params": {}, "hand_written": True}
    state["retrieved"] = []
    state["draft_notes"] = [{"op": s.get("op") if isinstance(s, dict) else None,
                             "why": "written by hand (not planned by the agent)"}
                            for s in (raw.get("steps") or [])]
    state = validate_only(state)
    if state.get("status") == "ok":
        from include.agent.understand import check_source_spec

        check_source_spec(state)
    return run_steps(state, STEPS[STEP_NAMES.index("dry_run"):])
