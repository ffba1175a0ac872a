"""The "Lineage" page: what the OpenLineage events say about each output
table (its pipeline runs, their tasks, the datasets each read and wrote, with
rows, versions and quality assertions), and the ``trace`` of one document's
fate across runs.

The events are the provider's file transport's JSONL under the lakehouse
(``include.lineage.events_path``; ``make airflow`` configures it), read by
``include.lineage``; a trace runs ``datamill trace`` in a child process
(``include.lineage.document_trace``), so no JVM lives in the api-server.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from plugins.datamill import ui

router = APIRouter()
VIEWS = [ui.nav_view("Lineage", "lineage")]
TABLE = r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$"   # include/lakehouse.py TABLE_RE


def _lake():
    from include.config import lake_root

    return lake_root()


@router.get("/api/tables")
def tables() -> dict[str, Any]:
    from include.lineage import events_path, table_lineage

    out = [{"table": t["table"], "runs": len(t["runs"]),
            "pipelines": sorted({r["pipeline"] for r in t["runs"]})}
           for t in table_lineage(_lake())]
    return {"events": str(events_path(_lake())), "tables": out}


@router.get("/api/lineage")
def lineage(table: str = Query(..., pattern=TABLE, max_length=300),
            limit: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
    from include.lineage import table_lineage

    found = table_lineage(_lake(), table, limit=limit)
    return {"table": table, "runs": found[0]["runs"] if found else []}


@router.get("/api/trace")
def trace(doc_id: str = Query(..., min_length=1, max_length=500)) -> dict[str, Any]:
    from include.lineage import document_trace

    try:
        events = document_trace(doc_id, _lake())
    except Exception as exc:  # noqa: BLE001 - the child's error, for the person asking
        raise HTTPException(500, str(exc)) from None
    return {"doc_id": doc_id, "events": events}


JS = r"""
const params = new URLSearchParams(location.search);
const fmt = n => (n === null || n === undefined) ? '' : Number(n).toLocaleString('en');
function dsList(list) {
  const ul = dm.el('ul', {class: 'datasets'});
  for (const d of list || []) {
    const bits = [];
    if (d.rows !== undefined) bits.push(fmt(d.rows) + ' rows');
    if (d.version !== undefined) bits.push('v' + d.version);
    if (d.assertions) bits.push('quality ' + (d.assertions.evaluated - d.assertions.failed) + '/' + d.assertions.evaluated + ' passed');
    if (d.column_lineage) bits.push('columns: ' + Object.entries(d.column_lineage).map(([c, src]) => c + ' ← ' + src.join(', ')).join('; '));
    ul.append(dm.el('li', {}, dm.el('code', {text: d.namespace + ':' + d.name}),
                    bits.length ? dm.el('span', {class: 'muted', text: ' (' + bits.join(', ') + ')'}) : null));
  }
  return ul;
}
function runCard(r) {
  const card = dm.el('div', {class: 'card lineage-run', 'data-run-id': r.run_id},
    dm.el('h3', {}, dm.el('code', {text: r.run_id}), ' ',
          dm.el('span', {class: 'muted', text: (r.dag_id || r.pipeline) + (r.dag_state ? ' · DAG run ' + r.dag_state : '')})));
  card.append(dm.table([
    {label: 'task', key: 'task'},
    {label: 'state', value: t => t.state || ''},
    {label: 'tries', value: t => t.tries.join(', ')},
    {label: 'read', value: t => dsList(t.inputs)},
    {label: 'wrote', value: t => dsList(t.outputs)},
  ], r.tasks));
  return card;
}
async function showTable(table) {
  dm.clear('runs').append(dm.el('div', {class: 'muted', text: 'loading…'}));
  try {
    const data = await dm.api('api/lineage?table=' + encodeURIComponent(table));
    const box = dm.clear('runs');
    let runs = data.runs;
    const want = params.get('run_id');
    if (want && runs.some(r => r.run_id === want)) runs = runs.filter(r => r.run_id === want);
    if (!runs.length) box.append(dm.el('div', {class: 'muted', text: 'no lineage events for this table'}));
    for (const r of runs) box.append(runCard(r));
  } catch (e) { dm.fail('runs', e); }
}
async function traceDoc(ev) {
  ev.preventDefault();
  const id = document.getElementById('doc_id').value.trim();
  if (!id) return;
  dm.clear('trace').append(dm.el('div', {class: 'muted', text: 'tracing ' + id + '… (reads the lakehouse with Spark)'}));
  try {
    const data = await dm.api('api/trace?doc_id=' + encodeURIComponent(id));
    const box = dm.clear('trace');
    if (!data.events.length) box.append(dm.el('div', {class: 'muted', text: 'no record of document ' + id}));
    else box.append(dm.table([
      {label: 'when', value: e => String(e.ts || '').slice(0, 19)},
      {label: 'pipeline', key: 'pipeline'}, {label: 'run', key: 'run_id'},
      {label: 'where', value: e => e.step !== null && e.step !== undefined ? 'step ' + e.step + ' ' + e.op : e.op},
      {label: 'event', key: 'event'}, {label: 'rule', value: e => e.rule || ''},
      {label: 'detail', value: e => typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail)},
    ], data.events));
  } catch (e) { dm.fail('trace', e); }
}
(async () => {
  document.getElementById('trace-form').onsubmit = traceDoc;
  if (params.get('doc_id')) { document.getElementById('doc_id').value = params.get('doc_id'); }
  try {
    const data = await dm.api('api/tables');
    dm.text('source', 'events: ' + data.events);
    const pick = dm.clear('pick');
    if (!data.tables.length) { pick.append(dm.el('div', {class: 'muted', text: 'no lineage events yet'})); return; }
    const sel = pick.appendChild(dm.el('select', {id: 'table'}));
    for (const t of data.tables) sel.append(dm.el('option', {value: t.table, text: t.table + ' (' + t.pipelines.join(', ') + '; ' + t.runs + (t.runs === 1 ? ' run)' : ' runs)')}));
    const want = params.get('table');
    if (want && data.tables.some(t => t.table === want)) sel.value = want;
    sel.onchange = () => showTable(sel.value);
    showTable(sel.value);
  } catch (e) { dm.fail('pick', e); }
})();
"""


@router.get("/")
def page():
    return ui.page(
        "Lineage",
        "<div id=source class=muted></div><h2>Output tables</h2><div id=pick class=muted>"
        "loading…</div><div id=runs></div><h2>A document's fate</h2>"
        "<form id=trace-form style='display:flex;gap:8px;max-width:640px'>"
        "<input type=text id=doc_id placeholder='document id' maxlength=500>"
        "<button type=submit>Trace</button></form><div id=trace></div>",
        script=JS)
