"""The "Training" page: every training run with its report, and a tab on each
DAG run that shows that run's report (loss curves, domain weights, summary).

The publish task's "Training report" extra link (operators/training.py)
points at ``/datamill/training/run?dag_id=...&run_id=...``, the same page as
the tab. Runs and reports are found by ``training.runs`` (files only, no
torch in the api-server). The report is the run's own ``report.html``
(written by training/plot.py, every value in it escaped), served with a
Content-Security-Policy that allows no script and no fetch, only its
inline style and its embedded image.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from plugins.datamill import ui

router = APIRouter()
VIEWS = [ui.nav_view("Training", "training"), ui.run_view("Training", "training")]
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


@router.get("/api/runs")
def runs() -> list[dict[str, Any]]:
    from training.runs import list_runs

    return list_runs()


@router.get("/run")
def run_report(dag_id: str = Query(..., max_length=250), run_id: str = Query(..., max_length=250)):
    from training.runs import find_run

    state, run_dir = find_run(dag_id, run_id)
    if state == "ok" and (run_dir / "report.html").is_file():
        return HTMLResponse((run_dir / "report.html").read_text(),
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                     "Content-Security-Policy": REPORT_CSP})
    why = {"not_training": f"{dag_id} is not a datamill training DAG.",
           "no_run": f"Run {run_id} of {dag_id} has not started training yet.",
           "ok": f"Run {run_id} of {dag_id} has no report yet: its publish task has not run."}[state]
    return ui.page("Training report", f"<p class=muted>{ui.esc(why)}</p>")


JS = """
(async () => {
  try {
    const rows = await dm.api('api/runs');
    if (!rows.length) { dm.text('runs', 'No training runs yet.'); return; }
    dm.clear('runs').append(dm.table([
      {label: 'config', key: 'name'},
      {label: 'run', value: r => r.has_report
        ? dm.el('a', {href: 'run?dag_id=' + encodeURIComponent(r.dag_id) + '&run_id=' + encodeURIComponent(r.run_id), text: r.run_id})
        : r.run_id},
      {label: 'strategy', key: 'strategy'},
      {label: 'steps', key: 'steps', num: true},
      {label: 'ranks', key: 'ranks', num: true},
      {label: 'complete', value: r => r.complete ? 'yes' : 'no'},
      {label: 'mean eval loss', num: true, value: r => r.mean_eval_loss == null ? '—' : r.mean_eval_loss.toFixed(4)},
      {label: 'started', key: 'started_at'},
    ], rows));
  } catch (e) { dm.fail('runs', e); }
})();
"""


@router.get("/")
def page():
    return ui.page("Training runs", "<p class=muted>Each run's loss on the evaluation split, "
                   "domain weights and summary; the same report is the <b>Training</b> tab of "
                   "the DAG run and the publish task's <b>Training report</b> link.</p>"
                   "<div id=runs class=muted>loading…</div>", script=JS)
