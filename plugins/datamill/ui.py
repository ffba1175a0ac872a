"""Shared page shell for the plugin's pages: one stylesheet, one tiny JS helper.

Pages are server-rendered HTML with a little vanilla JS; no build step. The
JS helper ``dm`` fetches the page's JSON API (same origin, the Airflow session
cookie goes along) and builds DOM with ``textContent`` only, so untrusted text
(requests, LLM answers, documents) is never parsed as HTML.
"""
from __future__ import annotations

import html
from typing import Any

from fastapi.responses import HTMLResponse

PREFIX = "/datamill"

CSS = """
:root { --fg:#1d2733; --muted:#5b6877; --line:#d9dee4; --bg:#f7f9fb; --accent:#0f6cbd;
        --ok:#1a7f37; --bad:#c62828; --warn:#9a6700; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; padding: 16px 20px; background: #fff; }
h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 18px 0 8px; }
h3 { font-size: 14px; margin: 12px 0 6px; }
.muted { color: var(--muted); } .ok { color: var(--ok); } .bad { color: var(--bad); }
.warn { color: var(--warn); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left;
         vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre, code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { background: var(--bg); border: 1px solid var(--line); padding: 8px; overflow: auto;
      max-height: 420px; white-space: pre-wrap; word-break: break-word; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; margin: 8px 0; }
.row { display: flex; gap: 16px; flex-wrap: wrap; } .row > * { flex: 1 1 320px; min-width: 0; }
textarea, input[type=text], select { width: 100%; font: inherit; padding: 6px; border: 1px solid
      var(--line); border-radius: 4px; }
textarea { min-height: 70px; }
button { font: inherit; padding: 5px 12px; border-radius: 4px; border: 1px solid var(--accent);
         background: var(--accent); color: #fff; cursor: pointer; margin: 4px 6px 4px 0; }
button.secondary { background: #fff; color: var(--accent); }
button.danger { background: var(--bad); border-color: var(--bad); }
button:disabled { opacity: .5; cursor: default; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 12px;
         background: var(--bg); border: 1px solid var(--line); }
.badge.approved, .badge.success { color: var(--ok); border-color: var(--ok); }
.badge.rejected, .badge.failed { color: var(--bad); border-color: var(--bad); }
.bar { height: 14px; background: var(--accent); border-radius: 2px; }
.error { color: var(--bad); white-space: pre-wrap; }
a { color: var(--accent); }
"""

JS = """
const dm = {
  async api(path, opts = {}) {
    const init = {credentials: 'same-origin', headers: {'Accept': 'application/json'}, ...opts};
    if (opts.json !== undefined) {
      init.method = init.method || 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.json);
    }
    const r = await fetch(path, init);
    const text = await r.text();
    let body; try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
    if (!r.ok) {
      const d = body && body.detail !== undefined ? body.detail : body;
      throw new Error(typeof d === 'string' ? d : JSON.stringify(d));
    }
    return body;
  },
  el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'onclick' || k === 'onchange' || k === 'onsubmit') e[k] = v;
      else if (k === 'text') e.textContent = v;
      else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  },
  text(id, value) { document.getElementById(id).textContent = value; },
  clear(id) { const e = document.getElementById(id); e.replaceChildren(); return e; },
  table(columns, rows) {
    const head = dm.el('tr', {}, ...columns.map(c => dm.el('th', {class: c.num ? 'num' : null}, c.label)));
    const body = rows.map(r => dm.el('tr', {}, ...columns.map(c => {
      const v = typeof c.value === 'function' ? c.value(r) : r[c.key];
      return dm.el('td', {class: c.num ? 'num' : null}, v);
    })));
    return dm.el('table', {}, dm.el('thead', {}, head), dm.el('tbody', {}, ...body));
  },
  fail(id, err) { const e = dm.clear(id); e.append(dm.el('div', {class: 'error', text: String(err.message || err)})); },
};
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, script: str = "") -> HTMLResponse:
    """A whole page: ``body`` is trusted markup written by the page module
    (escape any data in it with :func:`esc`); ``script`` runs after ``dm``."""
    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
           f"<meta name=viewport content='width=device-width, initial-scale=1'>"
           f"<title>{esc(title)} · datamill</title><style>{CSS}</style></head>"
           f"<body><h1>{esc(title)}</h1>{body}<script>{JS}\n{script}</script></body></html>")
    return HTMLResponse(doc, headers={"Cache-Control": "no-store",
                                      "X-Content-Type-Options": "nosniff"})


def nav_view(name: str, module: str, **extra: Any) -> dict[str, Any]:
    """An Airflow nav entry for a page served at ``/datamill/<module>/``."""
    return {"name": name, "href": f"{PREFIX}/{module}/", "destination": "nav",
            "url_route": f"datamill-{module}", "category": "datamill", **extra}


def run_view(name: str, module: str, path: str = "run", **extra: Any) -> dict[str, Any]:
    """A tab on each DAG run (``destination="dag_run"``); Airflow fills in the ids."""
    return {"name": name, "destination": "dag_run", "url_route": f"datamill-{module}-{path}",
            "href": f"{PREFIX}/{module}/{path}?dag_id={{DAG_ID}}&run_id={{RUN_ID}}", **extra}
