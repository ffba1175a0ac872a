"""Overview page: the live pipelines (what the DAG factory builds) and the op catalogue."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from plugins.datamill import ui

router = APIRouter()
VIEWS = [ui.nav_view("Overview", "home")]


@router.get("/api/pipelines")
def pipelines() -> list[dict[str, Any]]:
    from include.pipelines_catalog import live_pipelines

    return live_pipelines()


@router.get("/api/ops")
def ops() -> list[dict[str, Any]]:
    from include.registry import all_ops

    return [m.to_json() for m in all_ops()]


JS = """
(async () => {
  try {
    const ps = await dm.api('api/pipelines');
    dm.clear('pipelines').append(dm.table([
      {label: 'pipeline', value: p => dm.el('a', {href: '/dags/' + encodeURIComponent(p.dag_id), target: '_top', text: p.name})},
      {label: 'description', key: 'description'},
      {label: 'schedule', value: p => p.schedule || '—'},
      {label: 'steps', value: p => p.steps.join(' → ') || '(ingest only)'},
      {label: 'output', key: 'output_table'},
      {label: 'status', value: p => p.error ? dm.el('span', {class: 'bad', text: p.error}) : 'valid'},
    ], ps));
  } catch (e) { dm.fail('pipelines', e); }
  try {
    const ops = await dm.api('api/ops');
    dm.clear('ops').append(dm.table([
      {label: 'op', key: 'name'}, {label: 'category', key: 'category'},
      {label: 'engine', key: 'engine'}, {label: 'version', key: 'version'},
      {label: 'description', key: 'description'},
    ], ops));
  } catch (e) { dm.fail('ops', e); }
})();
"""


@router.get("/")
def page():
    return ui.page("datamill", "<h2>Live pipelines</h2><div id=pipelines class=muted>loading…</div>"
                   "<h2>Op catalogue</h2><div id=ops class=muted>loading…</div>", script=JS)
