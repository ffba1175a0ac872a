"""The "Reports" page: every statistics report, sample and GX Data Docs page
in the lake, per pipeline and run; and the "Report" tab on each DAG run
(``destination="dag_run"``) with the run's funnel as a chart, its quality-gate
results and links to its reports.

Files are listed by ``include.quality.runs`` and run records read by
``include.runs`` (delta-rs): no Spark in the api-server. Report files are
served from ``<lake>/_reports/`` only (paths resolved and confined there),
under a Content-Security-Policy ``sandbox``: our reports have no scripts and
need nothing but inline styles and data: images; GX's Data Docs pages run
their scripts in an opaque origin, so nothing in a served file can act as the
logged-in user.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse

from plugins.datamill import ui

router = APIRouter()
VIEWS = [ui.nav_view("Reports", "reports"), ui.run_view("Report", "reports")]
NAME = r"^[a-z][a-z0-9_]{0,62}$"   # include/spec.py NAME_RE
SERVED = {".html": "text/html; charset=utf-8", ".json": "application/json",
          ".jsonl": "application/x-ndjson", ".png": "image/png", ".css": "text/css",
          ".ico": "image/x-icon", ".svg": "image/svg+xml", ".gif": "image/gif"}
CSP_REPORT = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
              "base-uri 'none'; form-action 'none'")
CSP_DATA_DOCS = "sandbox allow-scripts allow-popups; base-uri 'none'; form-action 'none'"


def _lake() -> Path:
    from include.config import lake_root

    return lake_root()


def _root() -> Path:
    from include.quality.runs import reports_root

    return reports_root(_lake()).resolve()


def confined(rel: str) -> Path:
    """``<lake>/_reports/<rel>`` if it is a file inside that folder, else 404."""
    root = _root()
    try:
        path = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        raise HTTPException(404, "no such report file") from None
    if root not in path.parents or not path.is_file() or path.suffix not in SERVED:
        raise HTTPException(404, "no such report file")
    return path


@router.get("/api/reports")
def reports(pipeline: str | None = Query(None, pattern=NAME),
            run_id: str | None = Query(None, max_length=250),
            table: str | None = Query(None, max_length=250),
            version: int | None = Query(None, ge=0)) -> dict[str, Any]:
    """Reports, samples and Data Docs per pipeline and run, newest first."""
    from include.quality.runs import list_reports, safe_name, table_report_name

    runs = list_reports(_lake())
    if pipeline:
        runs = [r for r in runs if r["pipeline"] == safe_name(pipeline)]
    if run_id:
        runs = [r for r in runs if r["run_id"] == safe_name(run_id)]
    if table:
        want = table_report_name(table, version) if version is not None else None
        for r in runs:
            r["matches_table"] = any(x.get("table") == table and
                                     (want is None or x["name"].endswith(want))
                                     for x in r["reports"])
    return {"lake": str(_lake()), "runs": runs}


@router.get("/api/run")
def run(dag_id: str = Query(..., max_length=250),
        run_id: str = Query(..., max_length=250)) -> dict[str, Any]:
    """One DAG run: its funnel, quality results and reports."""
    from include.quality.runs import list_reports, safe_name
    from include.runs import quality_rows, run_record, step_rows

    if not dag_id.startswith("datamill__") or dag_id.startswith("datamill__train__"):
        return {"pipeline": None, "message": f"{dag_id} is not a datamill pipeline"}
    pipeline = dag_id.removeprefix("datamill__")
    lake = _lake()
    steps = step_rows(lake, pipeline, run_id)
    record = run_record(lake, pipeline, run_id)
    quality = [{k: (str(v) if k == "ts" else v) for k, v in q.items()}
               for q in quality_rows(lake, pipeline, run_id)]
    files = next((r for r in list_reports(lake) if r["pipeline"] == safe_name(pipeline)
                  and r["run_id"] == safe_name(run_id)), None)
    return {"pipeline": pipeline, "run_id": run_id,
            "status": record["status"] if record else ("incomplete" if steps else None),
            "summary": record["summary"] if record else None,
            "steps": [{k: s.get(k) for k in ("step_index", "op", "rows_in", "kept", "removed",
                                             "quarantined", "added")} for s in steps],
            "quality": sorted(quality, key=lambda q: (q["step_index"], q["expectation"])),
            "files": files}


@router.get("/file/{rel:path}")
def file(rel: str):
    path = confined(rel)
    data_docs = path.is_relative_to(_root() / "data_docs")
    return FileResponse(path, media_type=SERVED[path.suffix], headers={
        "Content-Security-Policy": CSP_DATA_DOCS if data_docs else CSP_REPORT,
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer"})


LIST_JS = r"""
const q = new URLSearchParams(location.search);
const file = p => 'file/' + p.split('/').map(encodeURIComponent).join('/');
function link(p, text) { return dm.el('a', {href: file(p), target: '_blank', rel: 'noopener', text}); }
(async () => {
  try {
    const args = new URLSearchParams();
    for (const k of ['pipeline', 'run_id', 'table', 'version']) if (q.get(k)) args.set(k, q.get(k));
    const data = await dm.api('api/reports?' + args);
    const box = dm.clear('reports');
    if (q.get('table')) box.append(dm.el('div', {class: 'muted', text:
      'table ' + q.get('table') + (q.get('version') ? ' v' + q.get('version') : '')
      + ': its statistics report is made by `datamill stats ' + q.get('table')
      + (q.get('version') ? ' --version ' + q.get('version') : '') + '`'}));
    if (!data.runs.length) { box.append(dm.el('p', {class: 'muted', text: 'no reports yet in ' + data.lake})); return; }
    for (const r of data.runs) {
      const card = dm.el('div', {class: 'card run' + (r.matches_table ? ' match' : '')},
        dm.el('h3', {}, r.pipeline + ' · ', dm.el('code', {text: r.run_id}), ' · ',
          dm.el('a', {class: 'run-link', text: 'funnel and gate results',
                      href: 'run?dag_id=' + encodeURIComponent('datamill__' + r.pipeline)
                            + '&run_id=' + encodeURIComponent(r.run_id)})));
      const list = dm.el('ul');
      for (const x of r.reports) list.append(dm.el('li', {class: 'report'}, link(x.path, x.name),
        dm.el('span', {class: 'muted', text: (x.table ? ' · ' + x.table + ' v' + x.version : '')
          + (x.rows !== null && x.rows !== undefined ? ' · ' + Number(x.rows).toLocaleString('en') + ' rows' : '')
          + (x.generated_at ? ' · ' + x.generated_at : '')})));
      for (const d of r.data_docs) list.append(dm.el('li', {class: 'data-docs'},
        link(d.path, 'Data Docs: ' + d.suite), dm.el('span', {class: 'muted', text: ' · ' + d.run_time})));
      for (const s of r.samples) list.append(dm.el('li', {class: 'sample'}, link(s.path, 'sample: ' + s.name), ' · ',
        dm.el('a', {href: '../inspect/?sample=' + encodeURIComponent(s.jsonl), text: 'inspect'})));
      card.append(list);
      box.append(card);
    }
    box.append(dm.el('p', {}, dm.el('a', {href: file('data_docs/index.html'), target: '_blank', rel: 'noopener',
      text: 'Great Expectations Data Docs (all runs)'})));
  } catch (e) { dm.fail('reports', e); }
})();
"""

RUN_JS = r"""
const q = new URLSearchParams(location.search);
const fmt = n => (n === null || n === undefined) ? '—' : Number(n).toLocaleString('en');
const file = p => 'file/' + p.split('/').map(encodeURIComponent).join('/');
function funnelChart(steps) {
  const max = Math.max(1, ...steps.map(s => s.rows_in || 0));
  const chart = dm.el('div', {class: 'funnel-chart'});
  for (const s of steps) {
    const w = n => (100 * (n || 0) / max).toFixed(2) + '%';
    const kept = (s.kept || 0) - (s.added || 0);
    chart.append(dm.el('div', {class: 'frow'},
      dm.el('div', {class: 'flabel', text: (s.step_index ? s.step_index + '. ' + s.op : 'source')}),
      dm.el('div', {class: 'ftrack'},
        dm.el('div', {class: 'fseg kept', style: 'width:' + w(kept), title: 'kept ' + fmt(s.kept)}),
        dm.el('div', {class: 'fseg removed', style: 'width:' + w(s.removed), title: 'removed ' + fmt(s.removed)}),
        dm.el('div', {class: 'fseg quarantined', style: 'width:' + w(s.quarantined), title: 'quarantined ' + fmt(s.quarantined)})),
      dm.el('div', {class: 'fnum', text: fmt(s.kept) + ' of ' + fmt(s.rows_in)})));
  }
  chart.append(dm.el('div', {class: 'muted'}, dm.el('span', {class: 'key kept'}), ' kept ',
    dm.el('span', {class: 'key removed'}), ' removed ', dm.el('span', {class: 'key quarantined'}), ' quarantined'));
  return chart;
}
(async () => {
  try {
    const r = await dm.api('api/run?dag_id=' + encodeURIComponent(q.get('dag_id') || '')
                           + '&run_id=' + encodeURIComponent(q.get('run_id') || ''));
    const box = dm.clear('run');
    if (!r.pipeline) { box.append(dm.el('p', {class: 'muted', text: r.message})); return; }
    box.append(dm.el('div', {class: 'muted'}, 'pipeline ' + r.pipeline + ' · run ', dm.el('code', {text: r.run_id}),
      ' · ', dm.el('span', {class: 'badge ' + (r.status === 'success' ? 'success' : 'failed'), text: r.status || 'no record'})));
    if (r.steps.length) { box.append(dm.el('h2', {text: 'Funnel'}), funnelChart(r.steps)); }
    else box.append(dm.el('p', {class: 'muted', text: 'no step of this run has finished yet'}));
    if (r.quality.length) {
      box.append(dm.el('h2', {text: 'Quality gate'}), dm.table([
        {label: 'step', key: 'step_index', num: true}, {label: 'expectation', key: 'expectation'},
        {label: 'kwargs', key: 'kwargs'},
        {label: 'result', value: x => dm.el('span', {class: x.success ? 'ok' : 'bad', text: x.success ? 'pass' : 'FAIL'})},
        {label: 'observed', value: x => (x.exception || x.observed_value || '').slice(0, 160)},
        {label: 'unexpected', value: x => fmt(x.unexpected_count), num: true},
        {label: 'on fail', key: 'on_fail'}], r.quality));
    }
    box.append(dm.el('h2', {text: 'Reports'}));
    const list = dm.el('ul');
    const f = r.files || {reports: [], data_docs: [], samples: []};
    for (const x of f.reports) list.append(dm.el('li', {class: 'report'}, dm.el('a', {href: file(x.path), target: '_blank', rel: 'noopener', text: x.name})));
    for (const d of f.data_docs) list.append(dm.el('li', {class: 'data-docs'}, dm.el('a', {href: file(d.path), target: '_blank', rel: 'noopener', text: 'Data Docs: ' + d.suite})));
    for (const s of f.samples) list.append(dm.el('li', {class: 'sample'}, dm.el('a', {href: '../inspect/?sample=' + encodeURIComponent(s.jsonl), text: 'inspect ' + s.name})));
    if (!list.children.length) list.append(dm.el('li', {class: 'muted', text: 'none yet: add a stats_report step, or run datamill stats on the output table'}));
    box.append(list);
  } catch (e) { dm.fail('run', e); }
})();
"""

FUNNEL_CSS = """<style>
.funnel-chart{max-width:900px}.frow{display:flex;align-items:center;gap:10px;margin:4px 0}
.flabel{flex:0 0 210px;font-size:13px}.ftrack{flex:1;display:flex;height:18px;background:#f1f3f5;
border-radius:3px;overflow:hidden}.fseg{height:100%}.fnum{flex:0 0 150px;font-size:12px;
text-align:right;font-variant-numeric:tabular-nums}.kept{background:#1a7f37}.removed{background:#c62828}
.quarantined{background:#9a6700}.key{display:inline-block;width:10px;height:10px;margin-left:8px}
.card.match{border-color:#0f6cbd}</style>"""


@router.get("/")
def page():
    return ui.page("Reports", FUNNEL_CSS + "<div id=reports class=muted>loading…</div>",
                   script=LIST_JS)


@router.get("/run")
def run_page():
    return ui.page("Run report", FUNNEL_CSS + "<div id=run class=muted>loading…</div>",
                   script=RUN_JS)
