"""The "Runs" page: per pipeline, its runs with the step funnel (rows in,
kept, removed, quarantined per step), the top removal reasons, Airflow's try
numbers per task, and links to the run's report, lineage and Airflow run.

The lakehouse side (funnel, reasons, quality results) is ``include.runs``
(delta-rs, no JVM in the api-server); the try numbers come from Airflow's
metadata database (task instances and their history), read here because
this is the api-server's side. A run made by ``datamill run`` has no
Airflow tries.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from plugins.datamill import ui

router = APIRouter()
VIEWS = [ui.nav_view("Runs", "runs")]
NAME = r"^[a-z][a-z0-9_]{0,62}$"   # include/spec.py NAME_RE


def _lake():
    from include.config import lake_root

    return lake_root()


def airflow_tries(dag_id: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """run_id -> {"state", "tasks": {task_id: {"try_number", "state", "tries": [...]}}}."""
    if not run_ids:
        return {}
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.taskinstancehistory import TaskInstanceHistory as TIH
    from airflow.utils.session import create_session

    out: dict[str, dict[str, Any]] = {}
    with create_session() as session:
        for run_id, state in session.execute(select(DagRun.run_id, DagRun.state).where(
                DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids))):
            out[run_id] = {"state": str(getattr(state, "value", state)), "tasks": {}}
        for run_id, task_id, try_number, state in session.execute(
                select(TIH.run_id, TIH.task_id, TIH.try_number, TIH.state).where(
                    TIH.dag_id == dag_id, TIH.run_id.in_(run_ids))):
            task = out.setdefault(run_id, {"state": None, "tasks": {}})["tasks"].setdefault(
                task_id, {"tries": []})
            task["tries"].append({"try_number": try_number,
                                  "state": str(getattr(state, "value", state))})
        for run_id, task_id, try_number, state, start in session.execute(
                select(TI.run_id, TI.task_id, TI.try_number, TI.state, TI.queued_dttm).where(
                    TI.dag_id == dag_id, TI.run_id.in_(run_ids))):
            task = out.setdefault(run_id, {"state": None, "tasks": {}})["tasks"].setdefault(
                task_id, {"tries": []})
            task["try_number"] = try_number
            task["queued"] = start.isoformat() if start else None
            task["state"] = str(getattr(state, "value", state)) if state is not None else None
            task["tries"].append({"try_number": try_number, "state": task["state"]})
    for run in out.values():
        # in the order the tasks ran (first queued first; never-queued last)
        run["tasks"] = dict(sorted(run["tasks"].items(),
                                   key=lambda kv: kv[1].get("queued") or "9"))
        for task in run["tasks"].values():
            seen = {}
            for t in task["tries"]:
                seen[t["try_number"]] = t  # the live task instance's row wins
            task["tries"] = [seen[k] for k in sorted(seen)]
            task.setdefault("try_number", max(seen) if seen else None)
    return out


@router.get("/api/pipelines")
def pipelines() -> list[dict[str, Any]]:
    """Every pipeline that has run here, and every live spec that has not yet."""
    from include.pipelines_catalog import live_pipelines
    from include.runs import pipelines as ran

    live = {p["name"]: p for p in live_pipelines()}
    names = sorted(set(ran(_lake())) | set(live))
    return [{"name": n, "dag_id": f"datamill__{n}", "live": n in live,
             "output_table": (live.get(n) or {}).get("output_table")} for n in names]


@router.get("/api/runs")
def runs(pipeline: str = Query(..., pattern=NAME),
         limit: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
    from include.runs import list_runs

    dag_id = f"datamill__{pipeline}"
    try:
        listed = list_runs(_lake(), pipeline, limit)
    except Exception as exc:  # noqa: BLE001 - an unreadable table: say which
        raise HTTPException(500, f"cannot read the run records of {pipeline!r}: {exc}") from None
    tries = airflow_tries(dag_id, [r["run_id"] for r in listed])
    for r in listed:
        af = tries.get(r["run_id"])
        r["airflow"] = af
        r["retried"] = bool(af) and any((t.get("try_number") or 0) > 1
                                        for t in af["tasks"].values())
    return {"pipeline": pipeline, "dag_id": dag_id, "runs": listed}


JS = r"""
const params = new URLSearchParams(location.search);
const fmt = n => (n === null || n === undefined) ? '—' : Number(n).toLocaleString('en');
function runCard(dagId, r) {
  const af = r.airflow;
  const head = dm.el('h3', {},
    dm.el('span', {class: 'badge ' + (r.status === 'success' ? 'success' : (r.status === 'running' || r.status === 'incomplete') ? '' : 'failed'),
                   text: r.status}), ' ',
    dm.el('code', {text: r.run_id}), ' ',
    dm.el('span', {class: 'muted', text: (r.ts || '').slice(0, 19).replace('T', ' ')}));
  const links = dm.el('div', {class: 'links'});
  if (af) links.append(dm.el('a', {target: '_top', text: 'Airflow run',
      href: '/dags/' + encodeURIComponent(dagId) + '/runs/' + encodeURIComponent(r.run_id)}), ' · ');
  if (r.output_table) {
    links.append(dm.el('a', {class: 'report-link', text: 'report',
        href: '../reports/?pipeline=' + encodeURIComponent(r.pipeline) + '&run_id=' + encodeURIComponent(r.run_id)
              + '&table=' + encodeURIComponent(r.output_table)
              + (r.output_version !== null && r.output_version !== undefined ? '&version=' + r.output_version : '')}), ' · ');
    links.append(dm.el('a', {class: 'lineage-link', text: 'lineage',
        href: '../lineage/?table=' + encodeURIComponent(r.output_table) + '&run_id=' + encodeURIComponent(r.run_id)}));
  }
  const summary = dm.el('div', {class: 'muted'},
    'rows in ' + fmt(r.rows_in) + ' → output ' + fmt(r.output_rows)
    + (r.output_table ? ' in ' + r.output_table + (r.output_version !== null && r.output_version !== undefined ? ' v' + r.output_version : '') : '')
    + (r.seconds ? ' · ' + r.seconds + ' s' : '')
    + (r.quality ? ' · quality: ' + (r.quality.evaluated - r.quality.failed) + '/' + r.quality.evaluated + ' passed' : ''));
  const funnel = dm.table([
    {label: 'step', key: 'step_index', num: true}, {label: 'op', key: 'op'},
    {label: 'rows in', value: s => fmt(s.rows_in), num: true},
    {label: 'kept', value: s => fmt(s.kept), num: true},
    {label: 'removed', value: s => fmt(s.removed), num: true},
    {label: 'quarantined', value: s => fmt(s.quarantined), num: true},
    {label: 'added', value: s => s.added ? fmt(s.added) : '', num: true},
    {label: 'changed', value: s => s.changed ? fmt(s.changed) : '', num: true},
  ], r.steps);
  funnel.classList.add('funnel');
  const reasons = r.top_removal_reasons.length ? dm.table([
    {label: 'removed by', value: x => 'step ' + x.step + ' ' + x.op + ' / ' + (x.rule || '?')},
    {label: 'rows', value: x => fmt(x.count), num: true}], r.top_removal_reasons)
    : dm.el('div', {class: 'muted', text: 'no rows removed'});
  reasons.classList.add('reasons');
  let tries;
  if (af) {
    const tasks = Object.entries(af.tasks).map(([task, t]) => ({task, ...t}));
    tries = dm.table([
      {label: 'task', key: 'task'},
      {label: 'try', value: t => String(t.try_number), num: true},
      {label: 'state', key: 'state'},
      {label: 'tries', value: t => t.tries.map(x => x.try_number + ': ' + x.state).join(', ')},
    ], tasks);
    tries.classList.add('tries');
  } else {
    tries = dm.el('div', {class: 'muted', text: 'not an Airflow run (datamill run)'});
  }
  return dm.el('div', {class: 'card run', 'data-run-id': r.run_id}, head, links, summary,
    dm.el('div', {class: 'row'},
      dm.el('div', {}, dm.el('h3', {text: 'Funnel'}), funnel),
      dm.el('div', {}, dm.el('h3', {text: 'Top removal reasons'}), reasons,
                       dm.el('h3', {text: 'Airflow tries'}), tries)));
}
async function show(name) {
  dm.clear('runs').append(dm.el('div', {class: 'muted', text: 'loading…'}));
  try {
    const data = await dm.api('api/runs?pipeline=' + encodeURIComponent(name));
    const box = dm.clear('runs');
    if (!data.runs.length) box.append(dm.el('div', {class: 'muted', text: 'no runs yet'}));
    for (const r of data.runs) box.append(runCard(data.dag_id, r));
  } catch (e) { dm.fail('runs', e); }
}
(async () => {
  try {
    const ps = await dm.api('api/pipelines');
    const sel = dm.clear('pick').appendChild(dm.el('select', {id: 'pipeline'}));
    for (const p of ps) sel.append(dm.el('option', {value: p.name, text: p.name + (p.live ? '' : ' (no live spec)')}));
    const want = params.get('pipeline');
    if (want && ps.some(p => p.name === want)) sel.value = want;
    sel.onchange = () => show(sel.value);
    if (ps.length) show(sel.value); else dm.text('runs', 'no pipelines');
  } catch (e) { dm.fail('pick', e); }
})();
"""


@router.get("/")
def page():
    return ui.page("Runs", "<div id=pick class=muted>loading…</div><div id=runs></div>",
                   script=JS)
