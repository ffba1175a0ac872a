"""The agent DAG, ``datamill__agent``: the planner's graph as Airflow tasks,
ending in Airflow's own Human-in-the-loop step.

    start -> understand -> retrieve -> draft -> validate_repair -> dry_run
          -> explain -> render -> save -> review --Approve--> publish
                                                 --Revise---> revise  (a new agent run)
                                                 --Reject---> close

Each planner task runs one step of ``include.agent.graph`` (``state -> state``)
on the previous task's state, passed as XCom (the state is plain JSON by
design). ``save`` writes the round into the one review store
(``include.agent.review_store.ReviewStore``) that the CLI and the plugin's
"Data agent" page use too. ``review`` is a ``HITLBranchOperator``: on Airflow
3.3 it waits in ``awaiting_input``, holding no worker slot, until a person
answers in Required Actions, on the Data agent page, or with ``PATCH
/api/v2/dags/datamill__agent/dagRuns/{run_id}/taskInstances/review/-1/hitlDetails``.
Who answered goes into the store (approvals/rejections) and the new run's note.

Untrusted text (request, feedback, plan, LLM output) is data throughout: it
arrives as validated DAG Params, travels as XCom values, and is shown in the
HITL body inside fenced code blocks set at ``execute()`` time, after Airflow has
rendered the templated fields, so it is never a Jinja template. The DAG file
an approved pipeline gets is the DAG factory's, built from the spec.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any, Mapping

from airflow.providers.standard.operators.hitl import HITLBranchOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, BaseOperator, Param

from include.lakehouse import TABLE_RE
from include.spec import FORMATS, NAME_RE

AGENT_DAG_ID = "datamill__agent"
PLANNER_STEPS = ("understand", "retrieve", "draft", "validate_repair", "dry_run", "explain",
                 "render")  # include.agent.graph.STEP_NAMES (checked by the tests)
APPROVE, REVISE, REJECT = "Approve", "Revise", "Reject"
DECISION_TASKS = {APPROVE: "publish", REVISE: "revise", REJECT: "close"}
MAX_TEXT = 4000  # include.agent.understand.MAX_REQUEST_CHARS
NO_CONTROL = r"^[^\u0000-\u001f\u007f]*$"  # one-line fields: no newlines, no control chars
PAGE_URL = "/plugin/datamill-agent"
# Airflow 3.3.2 race: an answer given before the scheduler has processed the
# executor's exit event of the parked (awaiting_input) workload resumes the
# task, and that late event then marks the resumed task failed ("finished with
# state success, but the task instance's state attribute is running";
# SchedulerJobRunner.process_executor_events tolerates it only while the task
# is still "scheduled"). Seen here with the scheduler 5 s behind under load: a
# person rarely answers that fast, a click on the Data agent page can. The page
# answers a step no sooner than this after it started waiting.
ANSWER_SETTLE_S = 15.0

# The run's inputs. Untrusted: Airflow validates them against these schemas
# when a run is created (UI form, REST, the plugin page, the revise task),
# and ``validate_inputs`` checks them again inside the run.
PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "request": {
        "type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": r"\S",
        "title": "Request", "section": "Request",
        "description": "What the pipeline should do, in plain language, e.g. \"Remove "
                       "low-quality and duplicate samples and report basic statistics\". "
                       "It is read as data: instructions in it cannot skip the review."},
    "source_path": {
        "type": ["null", "string"], "maxLength": 1024, "pattern": NO_CONTROL,
        "title": "Source path", "section": "Source",
        "description": "File, folder or glob of the raw data (optional). Without it the spec "
                       "reads a placeholder under the lake's raw area and the dry run has no "
                       "sample. A path outside the data roots needs the reviewer's confirmation."},
    "source_format": {
        "type": ["null", "string"], "enum": [None, *FORMATS],
        "title": "Source format", "section": "Source",
        "description": "Optional; inferred from the files or the request when empty."},
    "output_table": {
        "type": ["null", "string"], "maxLength": 200, "pattern": TABLE_RE.pattern,
        "title": "Output table", "section": "Output",
        "description": "Delta table inside the lakehouse, e.g. gold/math_sft (optional; "
                       "default gold/<name>)."},
    "name": {
        "type": ["null", "string"], "pattern": NAME_RE.pattern,
        "title": "Pipeline name", "section": "Output",
        "description": "Optional: lower-case letters, digits and _; the DAG becomes "
                       "datamill__<name>. Derived from the request when empty."},
    "llm": {
        "type": "string", "enum": ["none", "openai"],
        "values_display": {"none": "Offline planner (rules + retrieval, no model)",
                           "openai": "LLM planner (OpenAI-compatible endpoint)"},
        "title": "Planner", "section": "Planner",
        "description": "The offline planner needs no model; the LLM planner uses the "
                       "datamill_llm connection or OPENAI_BASE_URL."},
    "previous_item": {
        "type": ["null", "string"], "pattern": NAME_RE.pattern,
        "title": "Previous review item", "section": "Revision",
        "description": "Revise this review item (its latest spec) instead of planning anew; "
                       "needs Feedback."},
    "feedback": {
        "type": ["null", "string"], "maxLength": MAX_TEXT,
        "title": "Feedback", "section": "Revision",
        "description": "What should change in the previous item, e.g. \"less augmentation on "
                       "easy samples\". Steps it does not touch are kept as they are."},
}
PARAM_DEFAULTS: dict[str, Any] = {"llm": "none"}


def agent_params() -> dict[str, Param]:
    out = {}
    for key, schema in PARAM_SCHEMAS.items():
        schema = dict(schema)
        description = schema.pop("description")
        if key in PARAM_DEFAULTS:
            out[key] = Param(PARAM_DEFAULTS[key], description=description, **schema)
        elif key == "request":
            out[key] = Param(description=description, **schema)  # no default: required
        else:
            out[key] = Param(None, description=description, **schema)
    return out


class InputError(ValueError):
    """Run inputs that do not validate; ``str()`` says which and why."""


def validate_inputs(params: Mapping[str, Any]) -> dict[str, Any]:
    """The run's inputs, checked against :data:`PARAM_SCHEMAS` (unknown keys
    refused) and normalised: blank strings become ``None``, text is stripped.
    Used inside the run and by the plugin before it triggers one."""
    import jsonschema

    unknown = sorted(set(params) - set(PARAM_SCHEMAS))
    if unknown:
        raise InputError(f"unknown input(s): {', '.join(unknown)} "
                         f"(known: {', '.join(PARAM_SCHEMAS)})")
    out: dict[str, Any] = {}
    for key, schema in PARAM_SCHEMAS.items():
        value = params.get(key, PARAM_DEFAULTS.get(key))
        if isinstance(value, str):
            value = value.strip() or None
        check = {k: v for k, v in schema.items()
                 if k not in ("title", "section", "values_display", "description")}
        label = f"{schema.get('title', key)} ({key})"
        if value is None:
            if key == "request" and params.get("previous_item"):
                out[key] = None  # a revision may leave the request to the item
                continue
            if "null" not in check["type"]:
                raise InputError(f"{label} is required")
        try:
            jsonschema.validate(value, check)
        except jsonschema.ValidationError as exc:
            shown = value if not isinstance(value, str) or len(value) < 80 else value[:77] + "..."
            raise InputError(f"{label}: {exc.message}; got {shown!r}") from None
        out[key] = value
    if out["previous_item"] and not out["feedback"]:
        raise InputError("Previous review item needs Feedback: say what should change")
    if out["feedback"] and not out["previous_item"]:
        raise InputError("Feedback revises a Previous review item: name the item too")
    return out


# -- markdown for the HITL body (shown by Airflow's UI) -------------------------------
def fenced(text: Any, info: str = "text") -> str:
    """``text`` as a fenced code block that no content can close early
    (CommonMark: the fence is longer than any backtick run inside)."""
    text = "" if text is None else str(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}\n"


def wrapped(text: Any, width: int = 100) -> str:
    """Prose for a fenced block, wrapped (Airflow's UI does not wrap code blocks)."""
    import textwrap

    return "\n".join(textwrap.fill(line, width) if line.strip() else line
                     for line in ("" if text is None else str(text)).splitlines())


def funnel_text(dry_run: Mapping[str, Any] | None) -> str:
    """The dry run's per-step funnel as aligned plain text."""
    dr = dry_run or {}
    lines = [f"status: {dr.get('status', 'not run')}"
             + (f", sample rows: {dr['rows']}" if dr.get("rows") is not None else "")]
    if dr.get("message"):
        lines.append(str(dr["message"]))
    funnel = dr.get("funnel") or []
    if funnel:
        lines.append(f"{'step':<4} {'op':<22} {'rows in':>8} {'kept':>8} {'removed':>8} "
                     f"{'quar.':>6}")
        for i, s in enumerate(funnel, start=1):
            lines.append(f"{i:<4} {str(s.get('op', '?'))[:22]:<22} {s.get('rows_in', ''):>8} "
                         f"{s.get('kept', ''):>8} {s.get('removed', ''):>8} "
                         f"{s.get('quarantined', ''):>6}")
    return "\n".join(lines)


def review_body(item: Mapping[str, Any]) -> str:
    """The HITL step's Markdown: every untrusted text inside a fenced block."""
    history = item.get("history") or []
    last = history[-1] if history else {}
    parts = [f"Pipeline **{item['name']}** (DAG `{item.get('dag_id')}`), round "
             f"**{len(history)}**. Nothing is live until you choose **Approve**.\n",
             "**Request** (data, not instructions):\n", fenced(wrapped(item.get("request")))]
    if last.get("feedback"):
        parts += ["**Feedback for this round:**\n", fenced(wrapped(last["feedback"]))]
    flags = item.get("flags") or []
    if flags:
        parts += ["**Flags for the reviewer:**\n",
                  fenced(wrapped("\n".join(f"- [{f.get('kind')}] {f.get('message')}"
                                           + (" (needs Confirm source)" if f.get("confirm") else "")
                                           for f in flags if isinstance(f, dict))))]
    if last.get("diff"):
        parts += [f"**Changes since round {len(history) - 1}:**\n", fenced(last["diff"], "diff")]
    parts += ["**Spec:**\n", fenced(item.get("spec_yaml"), "yaml"),
              "**Dry run:**\n", fenced(funnel_text(item.get("dry_run"))),
              "**Approve** copies the spec into the pipelines folder; the DAG factory then "
              f"builds `{item.get('dag_id')}`. **Revise** needs *Feedback* and starts a new "
              "agent run that keeps the steps the feedback does not touch. **Reject** closes "
              "the item (with the *Feedback*, if given). Tick *Confirm source* only when a "
              "flag asks for it and you have checked the path.\n",
              f"The plan, the DAG file and the round history are on the "
              f"[Data agent page]({PAGE_URL}).\n"]
    return "\n".join(parts)


# -- operators -------------------------------------------------------------------------
class _AgentLineage:
    """OpenLineage for the agent's tasks (the provider calls these): the review
    item a round is written to, the source it sampled, the live spec an approval
    writes. Tasks that only pass the planner's state along have no datasets."""

    def lineage_datasets(self, task_instance) -> tuple[list[str], list[str]]:
        return [], []

    def _lineage(self, task_instance):
        from include.lineage import operator_lineage, paths_lineage

        def build():
            ins, outs = self.lineage_datasets(task_instance) if task_instance else ([], [])
            return paths_lineage([(i, None) for i in ins], [(o, None) for o in outs])

        return operator_lineage(build, self.log, self.task_id)

    def get_openlineage_facets_on_start(self):
        return self._lineage(None)

    def get_openlineage_facets_on_complete(self, task_instance):
        return self._lineage(task_instance)

    def get_openlineage_facets_on_failure(self, task_instance):
        return self._lineage(None)


class AgentStartOperator(_AgentLineage, BaseOperator):
    """Validate the run's Params and build the planner's initial state; for a
    revision, from the review item's latest spec and its feedback history."""

    ui_color = "#eef3f8"

    def execute(self, context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from include.agent.graph import PlanRefused, new_state, refuse
        from include.agent.review_store import ReviewError, ReviewStore

        try:
            inp = validate_inputs({k: v for k, v in context["params"].items()
                                   if k in PARAM_SCHEMAS})
        except InputError as exc:
            raise AirflowFailException(f"invalid run inputs: {exc}") from None
        request, name, revision = inp["request"] or "", inp["name"], {}
        if inp["previous_item"]:
            store = ReviewStore()
            name = inp["previous_item"]
            try:
                item = store.get(name)
                if item.get("kind", "pipeline") != "pipeline":
                    raise ReviewError(f"{name!r} is a generated op, not a pipeline item")
                revision = {"from_spec": str(store.spec_path(name)),
                            "feedback_history": store.feedback_history(name)}
            except ReviewError as exc:
                raise AirflowFailException(f"previous_item: {exc}") from None
            request = request or item.get("request") or ""
        try:
            return new_state(request, source=inp["source_path"], fmt=inp["source_format"],
                             feedback=inp["feedback"], name=name, llm=inp["llm"],
                             output_table=inp["output_table"], **revision)
        except PlanRefused as exc:
            return refuse({"request": request, "flags": [], "timings": {}}, str(exc))


class PlannerStepOperator(_AgentLineage, BaseOperator):
    """One step of the planner's graph on the previous task's state."""

    ui_color = "#e8f1fb"

    def __init__(self, *, step: str, state_from: str, **kwargs):
        super().__init__(task_id=step, **kwargs)
        self.step = step
        self.state_from = state_from

    def execute(self, context) -> dict[str, Any]:
        from include.agent import graph

        state = context["ti"].xcom_pull(task_ids=self.state_from)
        if not isinstance(state, dict):
            raise ValueError(f"no planner state from task {self.state_from!r}")
        state = getattr(graph, self.step)(state)
        if state.get("status") == "refused":
            self.log.warning("plan refused: %s", state.get("refusal"))
        return state


class SaveRoundOperator(_AgentLineage, BaseOperator):
    """Write the validated plan as a new round of its review item; a refused
    plan fails here with the planner's message (and nothing is written)."""

    ui_color = "#e8f1fb"

    def __init__(self, *, state_from: str, **kwargs):
        super().__init__(**kwargs)
        self.state_from = state_from

    def execute(self, context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from include.agent.review_store import ReviewError, ReviewStore

        state = context["ti"].xcom_pull(task_ids=self.state_from) or {}
        if state.get("status") != "ok":
            raise AirflowFailException(f"no valid plan: {state.get('refusal') or 'refused'}")
        store = ReviewStore()
        try:
            path = store.save_round(state)
        except ReviewError as exc:
            raise AirflowFailException(str(exc)) from None
        item = store.get(state["spec"]["name"])
        self.log.info("review item %s, round %d: %s", item["name"], len(item["history"]), path)
        return {"name": item["name"], "round": len(item["history"]), "dag_id": item["dag_id"],
                "path": str(path), "confirm_needed": item.get("confirm_needed") or []}

    def lineage_datasets(self, task_instance):
        from include.agent.review_store import ReviewStore

        saved = task_instance.xcom_pull(task_ids=self.task_id) or {}
        state = task_instance.xcom_pull(task_ids=self.state_from) or {}
        source = ((state.get("spec") or {}).get("source") or {}).get("path")
        item = [str(ReviewStore().path(saved["name"]))] if saved.get("name") else []
        return ([source] if source else []), item


def review_params() -> dict[str, Param]:
    """The HITL form's fields (passed as the task's ``params``, which Airflow
    merges with the DAG's and the HITL operator keeps only these of)."""
    # Keys differ from the DAG's Params: a task param of the same name would
    # replace the DAG's (and take the run's conf value).
    return {"review_feedback": Param("", type="string", maxLength=MAX_TEXT, title="Feedback",
                              description="Needed for Revise; kept with a Reject."),
            "confirm_source": Param(False, type="boolean", title="Confirm source",
                                    description="Only when a flag asks for it: you checked "
                                    "the source path outside the data roots.")}


class ReviewDecisionOperator(_AgentLineage, HITLBranchOperator):
    """Airflow's HITL branch over Approve / Revise / Reject, with the review
    item shown in the body; the answer (who, when, feedback) is kept as XCom
    ``decision`` for the task that carries it out."""

    def __init__(self, *, saved_from: str, **kwargs):
        # subject and body are set in execute() from the review item.
        super().__init__(subject="Review a datamill pipeline", options=[APPROVE, REVISE, REJECT],
                         options_mapping=dict(DECISION_TASKS), multiple=False, **kwargs)
        self.saved_from = saved_from

    def execute(self, context):
        from include.agent.review_store import ReviewStore

        saved = context["ti"].xcom_pull(task_ids=self.saved_from)
        item = ReviewStore().get(saved["name"])
        # Set after template rendering: the item's texts are never Jinja templates.
        self.subject = f"Review datamill pipeline '{item['name']}' (round {saved['round']})"
        self.body = review_body(item)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]):
        # Recorded before branching: on Airflow 3 skipping the other branches
        # ends the task (DownstreamTasksSkipped), so nothing runs after super().
        if "error" not in event:
            self.validate_chosen_options(event["chosen_options"])
            self.validate_params_input(event["params_input"] or {})
            user = event.get("responded_by_user") or {}
            params = event.get("params_input") or {}
            at = event.get("responded_at")
            context["ti"].xcom_push(key="decision", value={
                "option": event["chosen_options"][0],
                "by": user.get("name") or user.get("id") or "unknown",
                "by_id": user.get("id"),
                "at": at.isoformat() if hasattr(at, "isoformat") else at,
                "feedback": (params.get("review_feedback") or "").strip() or None,
                "confirm_source": bool(params.get("confirm_source"))})
        return super().execute_complete(context, event)


class _DecisionMixin:
    """A task that carries out one answer of the review step (its branch)."""

    option = ""
    review_task = "review"
    save_task = "save"

    def decision(self, context) -> tuple[dict[str, Any], dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowFailException

        ti = context["ti"]
        decision = ti.xcom_pull(task_ids=self.review_task, key="decision")
        saved = ti.xcom_pull(task_ids=self.save_task)
        if not decision or not saved:
            raise AirflowFailException("the review step recorded no answer in this run")
        if decision.get("option") != self.option:
            raise AirflowFailException(f"the reviewer chose {decision.get('option')}, "
                                       f"not {self.option}")
        return decision, saved


class PublishOperator(_AgentLineage, _DecisionMixin, BaseOperator):
    """Approve: the store publishes the spec into the pipelines folder and
    records who approved; refused when the item changed since this step."""

    option = APPROVE

    ui_color = "#e6f4ea"

    def execute(self, context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from include.agent.review_store import ReviewError, ReviewStore

        decision, saved = self.decision(context)
        store = ReviewStore()
        name, rnd = saved["name"], saved["round"]
        item = store.get(name)
        approvals = item.get("approvals") or []
        if item.get("status") == "approved" and approvals and approvals[-1].get("round") == rnd:
            self.log.info("%s round %d was already approved by %s (%s)", name, rnd,
                          approvals[-1].get("by"), approvals[-1].get("ts"))
            return {"name": name, "path": approvals[-1].get("path"), "already": True}
        if len(item.get("history") or []) != rnd or item.get("status") != "draft":
            raise AirflowFailException(
                f"review item {name!r} changed since this review step (round {rnd}): it is "
                f"{item.get('status')} at round {len(item.get('history') or [])}; review it again")
        ti = context["ti"]
        try:
            path = store.approve(name, by=decision["by"],
                                 confirm_source=decision.get("confirm_source", False),
                                 note=f"Airflow {ti.dag_id} run {ti.run_id}",
                                 expected_round=rnd)
        except ReviewError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("approved by %s: %s is live at %s", decision["by"], name, path)
        return {"name": name, "path": str(path), "dag_id": saved["dag_id"], "by": decision["by"]}

    def lineage_datasets(self, task_instance):
        from include.agent.review_store import ReviewStore

        out = task_instance.xcom_pull(task_ids=self.task_id) or {}
        if not out.get("path"):
            return [], []
        return [str(ReviewStore().spec_path(out["name"]))], [out["path"]]


class CloseOperator(_AgentLineage, _DecisionMixin, BaseOperator):
    """Reject: the store closes the item with the reviewer's name and feedback."""

    option = REJECT

    ui_color = "#fbeaea"

    def execute(self, context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from include.agent.review_store import ReviewError, ReviewStore

        decision, saved = self.decision(context)
        try:
            item = ReviewStore().reject(saved["name"], by=decision["by"],
                                        feedback=decision.get("feedback"),
                                        expected_round=saved["round"])
        except ReviewError as exc:
            raise AirflowFailException(str(exc)) from None
        return {"name": item["name"], "status": item["status"], "by": decision["by"]}


class ReviseOperator(_AgentLineage, _DecisionMixin, TriggerDagRunOperator):
    """Revise: a new agent run on the item's latest spec, carrying the feedback."""

    option = REVISE

    def __init__(self, **kwargs):
        super().__init__(trigger_dag_id=AGENT_DAG_ID, logical_date=None,
                         wait_for_completion=False, **kwargs)

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowFailException

        from include.agent.review_store import ReviewStore

        decision, saved = self.decision(context)
        if not decision.get("feedback"):
            raise AirflowFailException("Revise needs Feedback: say what should change (clear "
                                       "the review task to answer again)")
        item = ReviewStore().get(saved["name"])
        # Built here, after templating: feedback and request are values, never templates.
        self.conf = {"request": item.get("request") or context["params"].get("request"),
                     "previous_item": saved["name"], "feedback": decision["feedback"],
                     "llm": context["params"].get("llm") or "none"}
        self.note = (f"Revision of review item {saved['name']} (round {saved['round']}), "
                     f"requested by {decision['by']}")
        self.log.info("%s; conf %s", self.note, json.dumps(self.conf)[:500])
        return super().execute(context)


# -- the DAG ---------------------------------------------------------------------------
DOC = """\
### datamill data agent

A request in plain language becomes a validated pipeline spec, a DAG file and
a plan for review. The tasks are the planner's steps; **review** waits for a
person (Required Actions, or the *Data agent* page): **Approve** publishes the
spec (the DAG factory builds `datamill__<name>`), **Revise** with feedback runs
the agent again on the item, **Reject** closes it. Nothing is live before an
approval. The review items are the same ones `datamill review list` shows.
"""


def build_agent_dag() -> DAG:
    with DAG(
        dag_id=AGENT_DAG_ID,
        description="Data agent: a request becomes a pipeline for human review",
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        # Runs wait for people in awaiting_input; that holds no worker slot but
        # counts as an active run, so allow several reviews in flight.
        max_active_runs=16,
        max_active_tasks=4,
        # Manual-only and nothing goes live without a person's Approve: a paused
        # agent DAG would only leave page requests queued.
        is_paused_upon_creation=False,
        default_args={"owner": "datamill", "retries": 1, "retry_delay": timedelta(seconds=15)},
        params=agent_params(),
        tags=["datamill", "agent"],
        doc_md=DOC,
    ) as dag:
        prev = AgentStartOperator(task_id="start")
        for step in PLANNER_STEPS:
            task = PlannerStepOperator(step=step, state_from=prev.task_id)
            prev >> task
            prev = task
        save = SaveRoundOperator(task_id="save", state_from=prev.task_id, retries=0)
        review = ReviewDecisionOperator(task_id="review", saved_from=save.task_id,
                                        params=review_params(), retries=0)
        prev >> save >> review
        review >> [PublishOperator(task_id="publish", retries=0),
                   ReviseOperator(task_id="revise", retries=0),
                   CloseOperator(task_id="close", retries=0)]
    return dag
