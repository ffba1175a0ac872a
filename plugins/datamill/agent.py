"""The "Data agent" page: requests, review items, decisions, document Q&A.

A request from the page **triggers a run of the agent DAG** (``datamill__agent``,
``operators/agent.py``) rather than planning inside the api-server, because a
careful Airflow user expects that: the planner loads an embedding model and
the dry run starts Spark on a sample of the real source, which do not belong
in a web server's worker; as a DAG run it is queued, retried, logged, and
attributed to the person who asked (``triggering_user_name``), and it ends in
Airflow's own Human-in-the-loop step, so Required Actions and this page show
the same decision.

Decisions (approve, reject, feedback) on an item whose agent run is waiting
in that step **answer the step** (Airflow's own HITL response code, as
``PATCH .../hitlDetails`` does), so the run publishes, closes or revises the
item and Airflow records who answered; an item with no waiting run (made by
``datamill plan``/``render``) is decided in the review store directly, and
feedback on it starts a new agent run. Either way the review store
(``include.agent.review_store``) is the one the CLI reads.

Permissions: reading needs Airflow's plugin view (global, ``auth.CanView``);
a request needs permission to trigger the agent DAG; approving, rejecting and
feedback need DAG edit rights (``auth.CanEditDags``) plus the right to answer
the agent DAG's HITL steps. All bodies are JSON; all output is escaped by the
page (``textContent`` only).
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from plugins.datamill import ui
from plugins.datamill.auth import CanEditDags, User, user_name
from operators.agent import (AGENT_DAG_ID, ANSWER_SETTLE_S, APPROVE, MAX_TEXT, REJECT, REVISE,
                             InputError, validate_inputs)

router = APIRouter()
VIEWS = [ui.nav_view("Data agent", "agent")]

CanRequest = Depends(requires_access_dag(method="POST", access_entity=DagAccessEntity.RUN,
                                         param_dag_id=AGENT_DAG_ID))
CanAnswer = Depends(requires_access_dag(method="PUT", access_entity=DagAccessEntity.HITL_DETAIL,
                                        param_dag_id=AGENT_DAG_ID))
REVIEW_TASK, SAVE_TASK, RENDER_TASK = "review", "save", "render"
DECISION_TASK_OF = {"publish": APPROVE, "revise": REVISE, "close": REJECT}
TASK_ORDER = ("start", "understand", "retrieve", "draft", "validate_repair", "dry_run",
              "explain", "render", "save", "review", "publish", "revise", "close")


def _store():
    from include.agent.review_store import ReviewStore

    return ReviewStore()


def _review_error(exc: Exception) -> HTTPException:
    msg = str(exc)
    return HTTPException(404 if msg.startswith("no review item") else 409, msg)


# -- what Airflow knows about agent runs ------------------------------------------------
def _xcoms(session, run_ids: list[str], task_id: str, key: str = "return_value") -> dict:
    from sqlalchemy import select

    from airflow.models.xcom import XComModel

    if not run_ids:
        return {}
    rows = session.execute(select(XComModel.run_id, XComModel.value).where(
        XComModel.dag_id == AGENT_DAG_ID, XComModel.run_id.in_(run_ids),
        XComModel.task_id == task_id, XComModel.key == key, XComModel.map_index == -1))
    return {r.run_id: XComModel.deserialize_value(r) for r in rows}


def agent_status(session, limit: int = 15) -> dict[str, Any]:
    """The agent DAG's presence and its recent runs, each with its current
    step, the item it made and, when it waits for a person, that it does."""
    from sqlalchemy import select

    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI

    dm = session.scalar(select(DagModel).where(DagModel.dag_id == AGENT_DAG_ID))
    dag = {"dag_id": AGENT_DAG_ID, "present": bool(dm and not dm.is_stale),
           "paused": bool(dm and dm.is_paused),
           "import_errors": bool(dm and dm.has_import_errors)}
    runs = list(session.scalars(select(DagRun).where(DagRun.dag_id == AGENT_DAG_ID)
                                .order_by(DagRun.id.desc()).limit(limit)))
    ids = [r.run_id for r in runs]
    tis: dict[str, dict[str, str | None]] = {}
    if ids:
        for run_id, task_id, state in session.execute(
                select(TI.run_id, TI.task_id, TI.state).where(TI.dag_id == AGENT_DAG_ID,
                                                              TI.run_id.in_(ids))):
            tis.setdefault(run_id, {})[task_id] = _value(state)
    saved = _xcoms(session, ids, SAVE_TASK)
    out = []
    for r in runs:
        states = tis.get(r.run_id, {})
        failed = next((t for t in TASK_ORDER if states.get(t) in ("failed", "upstream_failed")),
                      None)
        current = next((t for t in TASK_ORDER if states.get(t) in
                        ("running", "queued", "scheduled", "up_for_retry", "awaiting_input",
                         "deferred", "restarting", None) and t in states), None)
        conf = r.conf or {}
        item = saved.get(r.run_id) or {}
        out.append({
            "run_id": r.run_id, "state": _value(r.state), "start": _iso(r.start_date),
            "end": _iso(r.end_date), "by": r.triggering_user_name,
            "request": str(conf.get("request") or "")[:300],
            "previous_item": conf.get("previous_item"), "feedback": conf.get("feedback"),
            "item": item.get("name"), "round": item.get("round"),
            "waiting": states.get(REVIEW_TASK) in ("awaiting_input", "deferred"),
            "current": current, "failed_task": failed,
            "decision": next((DECISION_TASK_OF[t] for t in DECISION_TASK_OF
                              if states.get(t) == "success"), None)})
    refused = [r["run_id"] for r in out if r["failed_task"] == SAVE_TASK]
    for run_id, state in _xcoms(session, refused, RENDER_TASK).items():
        for r in out:
            if r["run_id"] == run_id and isinstance(state, dict):
                r["refusal"] = state.get("refusal")
    return {"dag": dag, "runs": out}


def _iso(ts) -> str | None:
    return ts.isoformat() if ts else None


def _value(state) -> str | None:
    return getattr(state, "value", state)


def waiting_runs(session) -> dict[str, dict[str, Any]]:
    """Item name -> the agent run whose review step waits for an answer on it."""
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance as TI

    run_ids = list(session.scalars(select(TI.run_id).where(
        TI.dag_id == AGENT_DAG_ID, TI.task_id == REVIEW_TASK,
        TI.state.in_(("awaiting_input", "deferred")))))
    out = {}
    for run_id, saved in _xcoms(session, run_ids, SAVE_TASK).items():
        if isinstance(saved, dict) and saved.get("name"):
            out[saved["name"]] = {"run_id": run_id, "round": saved.get("round")}
    return out


def trigger_agent(conf: dict[str, Any], by: str) -> str:
    """A new agent run with ``conf`` (validated against the DAG's Params by
    Airflow too), attributed to ``by``; returns its run id."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, ParamValidationError
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType

    with create_session() as session:
        dm = session.get(DagModel, AGENT_DAG_ID)
        if dm is None or dm.is_stale:
            raise HTTPException(503, f"the agent DAG {AGENT_DAG_ID} is not loaded yet: is the "
                                "dag-processor running?")
        if dm.has_import_errors:
            raise HTTPException(503, f"the agent DAG {AGENT_DAG_ID} has import errors (see "
                                "Airflow's DAG import errors)")
        try:
            run = trigger_dag(AGENT_DAG_ID, triggered_by=DagRunTriggeredByType.UI,
                              triggering_user_name=by, conf=conf, session=session)
        except ParamValidationError as exc:
            raise HTTPException(400, f"invalid request: {exc}") from None
        except DagNotFound as exc:
            raise HTTPException(503, str(exc)) from None
        return run.run_id




def answer_review(run_id: str, option: str, user, feedback: str = "",
                  confirm_source: bool = False) -> None:
    """Answer the run's HITL review step as ``user``: Airflow's own response
    code (the body of ``PATCH .../hitlDetails``), so its checks apply (one
    answer only, valid options, assigned users) and the task resumes."""
    import time

    from sqlalchemy import select

    from airflow._shared.timezones import timezone
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session

    with create_session() as session:
        created = session.scalar(select(HITLDetail.created_at).join(
            TI, TI.id == HITLDetail.ti_id).where(TI.dag_id == AGENT_DAG_ID, TI.run_id == run_id,
                                                 TI.task_id == REVIEW_TASK))
    if created is not None:
        age = (timezone.utcnow() - created).total_seconds()
        if age < ANSWER_SETTLE_S:  # see operators/agent.py
            time.sleep(ANSWER_SETTLE_S - age)
    payload = UpdateHITLDetailPayload(chosen_options=[option], params_input={
        "review_feedback": feedback or "", "confirm_source": bool(confirm_source)})
    with create_session() as session:
        update_hitl_detail(dag_id=AGENT_DAG_ID, dag_run_id=run_id, task_id=REVIEW_TASK,
                           update_hitl_detail_payload=payload, user=user, session=session,
                           map_index=-1)


# -- JSON API ----------------------------------------------------------------------------
class PlanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: str = Field(min_length=1, max_length=MAX_TEXT)
    source_path: str | None = Field(None, max_length=1024)
    source_format: str | None = None
    output_table: str | None = Field(None, max_length=200)
    name: str | None = Field(None, max_length=63)
    llm: str = "none"


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feedback: str | None = Field(None, max_length=MAX_TEXT)
    confirm_source: bool = False
    # The round the reviewer read; a decision on an item revised meanwhile is refused.
    round: int | None = Field(None, ge=1)


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)


@router.get("/api/items")
def items() -> dict[str, Any]:
    """Review items (newest first) with the agent run waiting on each, and
    the agent DAG's recent runs."""
    from airflow.utils.session import create_session

    with create_session() as session:
        status = agent_status(session)
        waiting = waiting_runs(session)
    listed = _store().list()
    for it in listed:
        it["waiting"] = waiting.get(it["name"])
    return {"items": listed, **status}


@router.get("/api/items/{name}")
def item(name: str) -> dict[str, Any]:
    from airflow.utils.session import create_session

    from include.agent.review_store import ReviewError

    try:
        out = _store().get(name)
    except ReviewError as exc:
        raise _review_error(exc) from None
    out.pop("path", None)  # a server path is no business of the browser
    with create_session() as session:
        out["waiting"] = waiting_runs(session).get(name)
    return out


@router.post("/api/plan", dependencies=[CanRequest])
def plan(body: PlanBody, user: User) -> dict[str, Any]:
    """Start an agent run for a request; the item appears when it is planned."""
    try:
        conf = validate_inputs(body.model_dump())
    except InputError as exc:
        raise HTTPException(400, str(exc)) from None
    conf = {k: v for k, v in conf.items() if v is not None}
    run_id = trigger_agent(conf, user_name(user))
    return {"run_id": run_id, "dag_id": AGENT_DAG_ID}


def _decide(name: str, user, option: str, body: DecisionBody) -> dict[str, Any]:
    from airflow.utils.session import create_session

    from include.agent.review_store import ReviewError, check_round

    store = _store()
    try:
        current = store.get(name)
        # Also before an answer goes to a waiting run's HITL step, which the store never sees.
        check_round(name, current, body.round)
    except ReviewError as exc:
        raise _review_error(exc) from None
    if current.get("kind", "pipeline") != "pipeline":
        raise HTTPException(409, f"{name!r} is a generated op: decide it with `datamill review`")
    feedback = (body.feedback or "").strip()
    if option == REVISE and not feedback:
        raise HTTPException(400, "feedback is empty: say what should change")
    if option == APPROVE and current.get("confirm_needed") and not body.confirm_source:
        raise HTTPException(400, "confirm first: " + "; ".join(current["confirm_needed"]))
    with create_session() as session:
        waiting = waiting_runs(session).get(name)
    if waiting and waiting["round"] == len(current.get("history") or []):
        answer_review(waiting["run_id"], option, user, feedback, body.confirm_source)
        return {"via": "airflow", "run_id": waiting["run_id"], "option": option,
                "message": f"{option} sent to the agent run's review step "
                           f"({waiting['run_id']}); it carries it out in a moment"}
    by = user_name(user)
    try:
        if option == APPROVE:
            store.approve(name, by=by, confirm_source=body.confirm_source,
                          note="Data agent page", expected_round=body.round)
            return {"via": "store", "option": option, "message": f"approved by {by}: "
                    f"{current['dag_id']} goes live when the dag-processor reads it"}
        if option == REJECT:
            store.reject(name, by=by, feedback=feedback or None, expected_round=body.round)
            return {"via": "store", "option": option, "message": f"rejected by {by}"}
    except ReviewError as exc:
        raise HTTPException(409, str(exc)) from None
    conf = {"request": current.get("request") or name, "previous_item": name,
            "feedback": feedback}
    try:
        validate_inputs(conf)
    except InputError as exc:
        raise HTTPException(400, str(exc)) from None
    run_id = trigger_agent(conf, by)
    return {"via": "airflow", "run_id": run_id, "option": option,
            "message": f"revision started: agent run {run_id}"}


@router.post("/api/items/{name}/approve", dependencies=[CanEditDags, CanAnswer])
def approve(name: str, body: DecisionBody, user: User) -> dict[str, Any]:
    return _decide(name, user, APPROVE, body)


@router.post("/api/items/{name}/reject", dependencies=[CanEditDags, CanAnswer])
def reject(name: str, body: DecisionBody, user: User) -> dict[str, Any]:
    return _decide(name, user, REJECT, body)


@router.post("/api/items/{name}/feedback", dependencies=[CanEditDags, CanAnswer, CanRequest])
def feedback(name: str, body: DecisionBody, user: User) -> dict[str, Any]:
    return _decide(name, user, REVISE, body)


@router.post("/api/ask")
def ask(body: AskBody) -> dict[str, Any]:
    """Answers from the project's own documents, with citations (``datamill ask``)."""
    from include.agent.ask import AskError, ask as ask_docs

    try:
        return ask_docs(body.question, llm="none")
    except AskError as exc:
        raise HTTPException(400, str(exc)) from None


# -- the page ----------------------------------------------------------------------------
BODY = """
<style>
 .fields { gap: 10px; } .fields > * { flex: 1 1 150px; }
 label { display: block; margin: 6px 0 2px; }
 .passage pre { max-height: 160px; }
 pre.diff span.ok { color: var(--ok); } pre.diff span.bad { color: var(--bad); }
 .round { padding: 6px 10px; }
</style>
<div class=row>
 <div class=card id=new-request>
  <h2>New request</h2>
  <label for=request>What should the pipeline do?</label>
  <textarea id=request maxlength=4000 placeholder="e.g. Prepare a high-quality instruction-tuning
 dataset for mathematical reasoning. Remove low-quality and duplicate samples."></textarea>
  <div class='row fields'>
   <div><label for=source_path>Source path <span class=muted>(optional)</span></label>
        <input type=text id=source_path maxlength=1024 placeholder="include/sample_data/..."></div>
   <div><label for=source_format>Format</label>
        <select id=source_format><option value="">infer</option><option>jsonl</option>
        <option>parquet</option><option>csv</option><option>text</option><option>html</option>
        <option>warc</option></select></div>
  </div>
  <div class='row fields'>
   <div><label for=output_table>Output table <span class=muted>(optional)</span></label>
        <input type=text id=output_table maxlength=200 placeholder="gold/..."></div>
   <div><label for=name>Pipeline name <span class=muted>(optional)</span></label>
        <input type=text id=name maxlength=63 placeholder="math_sft"></div>
   <div><label for=llm>Planner</label>
        <select id=llm><option value=none>offline (no model)</option>
        <option value=openai>LLM (OpenAI-compatible)</option></select></div>
  </div>
  <button id=submit>Plan it</button> <span id=submit-msg class=muted></span>
 </div>
 <div class=card id=ask-card>
  <h2>Ask the docs</h2>
  <input type=text id=question maxlength=2000 placeholder="e.g. How does minhash_dedup decide?">
  <button id=ask class=secondary>Ask</button>
  <div id=answer></div>
 </div>
</div>
<h2>Agent runs <span id=dag-state class=muted></span></h2>
<div id=runs class=muted>loading…</div>
<h2>Review items</h2>
<div id=items class=muted>loading…</div>
<div id=item></div>
"""

JS = r"""
const $ = id => document.getElementById(id);
let selected = new URLSearchParams(location.search).get('item');
let shownKey = null;
const badge = s => dm.el('span', {class: 'badge ' + (s || ''), text: s || '—'});
const ts = v => v ? v.replace('T', ' ').replace(/\.\d+/, '').replace('+00:00', 'Z') : '';
const runLink = r => dm.el('a', {href: '/dags/datamill__agent/runs/' + encodeURIComponent(r.run_id),
                                 target: '_top', text: r.run_id});

async function refresh() {
  let data;
  try { data = await dm.api('api/items'); } catch (e) { dm.fail('items', e); return; }
  const d = data.dag;
  dm.text('dag-state', d.present ? (d.paused ? '(the agent DAG is paused: unpause it to plan)' :
      (d.import_errors ? '(the agent DAG has import errors)' : '')) : '(agent DAG not loaded yet)');
  dm.clear('runs').append(data.runs.length ? dm.table([
    {label: 'run', value: runLink},
    {label: 'state', value: r => badge(r.waiting ? 'awaiting review' : r.state)},
    {label: 'step', value: r => r.failed_task ? 'failed at ' + r.failed_task : (r.current || (r.decision ? r.decision : ''))},
    {label: 'by', key: 'by'},
    {label: 'request / feedback', value: r => r.feedback ? 'feedback on ' + r.previous_item + ': ' + r.feedback : r.request},
    {label: 'item', value: r => r.item ? dm.el('a', {href: '#', text: r.item + ' (round ' + r.round + ')', onclick: ev => { ev.preventDefault(); select(r.item); }}) : (r.refusal ? dm.el('span', {class: 'bad', text: 'refused: ' + r.refusal}) : '')},
    {label: 'started', value: r => ts(r.start)},
  ], data.runs) : dm.el('span', {text: 'no agent runs yet'}));
  dm.clear('items').append(data.items.length ? dm.table([
    {label: 'item', value: i => dm.el('a', {href: '#', text: i.name, class: 'item-link', 'data-name': i.name, onclick: ev => { ev.preventDefault(); select(i.name); }})},
    {label: 'status', value: i => badge(i.status)},
    {label: 'review', value: i => i.waiting ? 'waiting in run ' + i.waiting.run_id : ''},
    {label: 'rounds', key: 'rounds', num: true},
    {label: 'updated', value: i => ts(i.updated)},
    {label: 'request', key: 'request'},
  ], data.items) : dm.el('span', {text: 'no review items yet: send a request above'}));
  if (selected) {
    const it = data.items.find(i => i.name === selected);
    const key = it ? [it.updated, it.status, JSON.stringify(it.waiting)].join('|') : null;
    if (key !== shownKey) { shownKey = key; await showItem(selected); }
  }
}

function select(name) { selected = name; shownKey = null; refresh(); }

function pre(text, cls) { return dm.el('pre', {class: cls || null, text: text || ''}); }

function diffPre(text) {
  const p = dm.el('pre', {class: 'diff'});
  for (const line of (text || '').split('\n')) {
    const cls = line.startsWith('+') && !line.startsWith('+++') ? 'ok' :
                line.startsWith('-') && !line.startsWith('---') ? 'bad' : null;
    p.append(dm.el('span', {class: cls, text: line + '\n'}));
  }
  return p;
}

function funnel(dr) {
  if (!dr) return dm.el('p', {class: 'muted', text: 'no dry run'});
  const box = dm.el('div', {id: 'funnel'},
    dm.el('p', {text: 'status: ' + (dr.status || '?') + (dr.rows != null ? ', sample rows: ' + dr.rows : '') + (dr.message ? ' — ' + dr.message : '')}));
  if ((dr.funnel || []).length) box.append(dm.table([
    {label: 'step', value: (s) => s.op}, {label: 'rows in', key: 'rows_in', num: true},
    {label: 'kept', key: 'kept', num: true}, {label: 'removed', key: 'removed', num: true},
    {label: 'quarantined', key: 'quarantined', num: true}], dr.funnel));
  return box;
}

async function showItem(name) {
  let it;
  try { it = await dm.api('api/items/' + encodeURIComponent(name)); } catch (e) { dm.fail('item', e); return; }
  const box = dm.clear('item');
  box.className = 'card';
  box.append(dm.el('h2', {}, 'Item ', dm.el('span', {id: 'item-name', text: it.name}), ' ', badge(it.status)));
  box.append(dm.el('p', {class: 'muted', text: 'DAG ' + it.dag_id + ' · ' + (it.history || []).length + ' round(s)' +
    (it.waiting ? ' · agent run ' + it.waiting.run_id + ' waits for your decision' : '')}));
  // Decisions
  const acts = dm.el('div', {id: 'actions'});
  const fb = dm.el('textarea', {id: 'feedback', maxlength: 4000, placeholder: 'Feedback: what should change? (needed for "Send feedback", kept with "Reject")'});
  acts.append(fb);
  const needs = it.confirm_needed || [];
  let confirm = null;
  if (needs.length) {
    confirm = dm.el('input', {type: 'checkbox', id: 'confirm_source'});
    acts.append(dm.el('label', {class: 'warn'}, confirm, ' I checked: ' + needs.join('; ')));
  }
  const msg = dm.el('div', {id: 'action-msg', class: 'muted'});
  const act = (verb) => async () => {
    msg.className = 'muted'; msg.textContent = 'sending…';
    try {
      const r = await dm.api('api/items/' + encodeURIComponent(it.name) + '/' + verb,
                             {json: {feedback: fb.value || null, confirm_source: !!(confirm && confirm.checked),
                                     round: (it.history || []).length || null}});
      msg.className = 'ok'; msg.textContent = r.message;
      shownKey = null; setTimeout(refresh, 500);
    } catch (e) { msg.className = 'error'; msg.textContent = String(e.message || e); }
  };
  const draft = it.status === 'draft';
  acts.append(
    dm.el('button', {id: 'approve', onclick: act('approve'), disabled: !draft}, 'Approve'),
    dm.el('button', {id: 'send-feedback', class: 'secondary', onclick: act('feedback')}, 'Send feedback'),
    dm.el('button', {id: 'reject', class: 'danger', onclick: act('reject'), disabled: it.status === 'approved' || it.status === 'rejected'}, 'Reject'),
    msg);
  box.append(acts);
  if ((it.flags || []).length) {
    box.append(dm.el('h3', {text: 'Flags'}), dm.el('ul', {id: 'flags'},
      ...it.flags.map(f => dm.el('li', {class: f.confirm ? 'warn' : null, text: '[' + f.kind + '] ' + f.message}))));
  }
  const decided = [...(it.approvals || []).map(a => ['approved', a]), ...(it.rejections || []).map(r => ['rejected', r])];
  if (decided.length) box.append(dm.el('h3', {text: 'Decisions'}), dm.table([
    {label: 'decision', value: d => d[0]}, {label: 'by', value: d => d[1].by},
    {label: 'when', value: d => ts(d[1].ts)}, {label: 'round', value: d => d[1].round},
    {label: 'feedback / note', value: d => d[1].feedback || d[1].note || ''}], decided));
  box.append(dm.el('div', {class: 'row'},
    dm.el('div', {}, dm.el('h3', {text: 'Plan'}), pre(it.plan_md, 'plan')),
    dm.el('div', {}, dm.el('h3', {text: 'Spec'}), pre(it.spec_yaml, 'spec'),
                     dm.el('h3', {text: 'Dry run'}), funnel(it.dry_run))));
  box.append(dm.el('h3', {text: 'DAG file'}), pre(it.dag_py, 'dag-py'));
  const hist = dm.el('div', {id: 'history'});
  for (const h of (it.history || []).slice().reverse()) {
    hist.append(dm.el('div', {class: 'card round'},
      dm.el('strong', {text: 'Round ' + h.round}), ' ',
      dm.el('span', {class: 'muted', text: ts(h.ts) + ' · ' + (h.kind || '') + (h.repair_rounds != null ? ' · repair rounds ' + h.repair_rounds : '') + (h.dry_run ? ' · dry run ' + h.dry_run : '')}),
      h.feedback ? dm.el('p', {}, dm.el('em', {text: 'Feedback: '}), h.feedback) : dm.el('p', {}, dm.el('em', {text: 'Request: '}), h.request || ''),
      h.diff ? diffPre(h.diff) : dm.el('p', {class: 'muted', text: 'first round'})));
  }
  box.append(dm.el('h3', {text: 'Round history'}), hist);
}

$('submit').onclick = async () => {
  const v = id => $(id).value.trim() || null;
  const body = {request: $('request').value, source_path: v('source_path'), source_format: v('source_format'),
                output_table: v('output_table'), name: v('name'), llm: $('llm').value};
  const msg = $('submit-msg'); msg.className = 'muted'; msg.textContent = 'starting…';
  try {
    const r = await dm.api('api/plan', {json: body});
    msg.className = 'ok'; msg.textContent = 'planning in agent run ' + r.run_id;
    if (body.name) selected = body.name;
    refresh();
  } catch (e) { msg.className = 'error'; msg.textContent = String(e.message || e); }
};

$('ask').onclick = async () => {
  const box = dm.clear('answer'); box.append(dm.el('p', {class: 'muted', text: 'searching…'}));
  try {
    const a = await dm.api('api/ask', {json: {question: $('question').value}});
    box.replaceChildren();
    if (a.answer) box.append(dm.el('p', {class: 'answer', text: a.answer}));
    for (const p of (a.passages || [])) {
      box.append(dm.el('div', {class: 'passage'},
        dm.el('strong', {text: '[' + p.n + '] ' + p.source + (p.section ? ' § ' + p.section : '')}),
        dm.el('pre', {text: p.text || ''})));
    }
    if (!box.childNodes.length) box.append(dm.el('p', {class: 'muted', text: 'nothing found'}));
  } catch (e) { dm.fail('answer', e); }
};

refresh();
setInterval(refresh, 3000);
"""


@router.get("/")
def page():
    return ui.page("Data agent", BODY, script=JS)
