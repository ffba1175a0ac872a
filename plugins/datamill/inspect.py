"""The "Inspect" page: a person marks each sampled decision right or wrong.

Samples are the JSONL files ``datamill sample`` writes under
``<lake>/_reports/``; a label names the sample file and the item's position,
and the server takes every field of the label (pipeline, run, document, step,
rule, decision) from that file, never from the request, so a label can only
be about a decision that was sampled. Labels go to ``_system/human_labels``
with the logged-in user's name (``include.quality.labels``, delta-rs: no JVM
in the api-server); labelling needs Airflow's DAG edit permission.
"""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from plugins.datamill import ui
from plugins.datamill.auth import CanEditDags, UserName
from plugins.datamill.reports import _lake, confined

router = APIRouter()
VIEWS = [ui.nav_view("Inspect", "inspect")]
SHOWN_CHARS = 6000


def _sample(rel: str) -> list[dict[str, Any]]:
    from include.quality.sample import load

    path = confined(rel)
    if path.suffix != ".jsonl" or path.parent.name != "samples":
        raise HTTPException(404, "not a sample file")
    return load(path)


@router.get("/api/samples")
def samples() -> list[dict[str, Any]]:
    from include.quality.runs import list_reports

    return [{"pipeline": r["pipeline"], "run_id": r["run_id"], **s}
            for r in list_reports(_lake()) for s in r["samples"]]


@router.get("/api/sample")
def sample(user: UserName, path: str = Query(..., max_length=1000)) -> dict[str, Any]:
    from include.quality.labels import agreement, read

    items = _sample(path)
    runs = {(i.get("pipeline"), i.get("run_id")) for i in items if i.get("pipeline")}
    mine: dict[tuple, str] = {}
    agree: list[dict[str, Any]] = []
    for pipeline, run_id in runs:
        for lab in read(_lake(), pipeline, run_id):
            if lab["user"] == user:
                mine[(lab["doc_id"], lab["step_index"], lab["decision"])] = lab["verdict"]
        agree += agreement(_lake(), pipeline, run_id)
    shown = []
    for i in items:
        text = i.get("text") or ""
        shown.append({**{k: i.get(k) for k in ("sample_id", "decision", "doc_id", "step_index",
                                               "op", "rule", "stratum", "detail", "text_chars",
                                               "survivor_id")},
                      "text": text[:SHOWN_CHARS], "cut": len(text) > SHOWN_CHARS,
                      "survivor_text": (i.get("survivor_text") or "")[:SHOWN_CHARS] or None,
                      "verdict": mine.get((i["doc_id"], i.get("step_index"), i["decision"]))})
    first = items[0] if items else {}
    return {"path": path, "table": first.get("table"), "version": first.get("version"),
            "pipeline": first.get("pipeline"), "run_id": first.get("run_id"), "user": user,
            "items": shown, "agreement": agree}


class Label(BaseModel):
    sample: str = Field(..., max_length=1000)
    item: int = Field(..., ge=0)
    verdict: Literal["right", "wrong"]
    note: str | None = Field(None, max_length=1000)


@router.post("/api/label", dependencies=[CanEditDags])
def label(body: Label, user: UserName) -> dict[str, Any]:
    from include.quality.labels import agreement, record

    items = _sample(body.sample)
    item = next((i for i in items if i.get("sample_id") == body.item), None)
    if item is None:
        raise HTTPException(404, f"no item {body.item} in that sample")
    if not item.get("pipeline"):
        raise HTTPException(422, "this sample's table has no recorded run to attach labels to")
    try:
        row = record(_lake(), item, body.verdict, user, body.note)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"label": {k: (str(v) if k == "ts" else v) for k, v in row.items()},
            "agreement": agreement(_lake(), item["pipeline"], item["run_id"])}


JS = r"""
const q = new URLSearchParams(location.search);
const fmt = n => (n === null || n === undefined) ? '—' : Number(n).toLocaleString('en');
function agreementTable(rows) {
  if (!rows.length) return dm.el('p', {class: 'muted', text: 'no labels yet'});
  return dm.table([
    {label: 'step', value: a => a.step === null ? '—' : a.step, num: true}, {label: 'op', value: a => a.op || '—'},
    {label: 'rule', value: a => a.rule || '—'}, {label: 'decision', key: 'decision'},
    {label: 'labelled', key: 'labelled', num: true}, {label: 'right', key: 'right', num: true},
    {label: 'wrong', key: 'wrong', num: true},
    {label: 'agreement', value: a => (100 * a.agreement).toFixed(1) + ' %', num: true},
    {label: '95 % interval', value: a => a.ci95 ? (100 * a.ci95[0]).toFixed(0) + '–' + (100 * a.ci95[1]).toFixed(0) + ' %' : '—'}], rows);
}
async function mark(path, it, verdict, card) {
  try {
    const res = await dm.api('api/label', {json: {sample: path, item: it.sample_id, verdict}});
    it.verdict = verdict;
    card.querySelector('.verdict').textContent = 'you said: ' + verdict;
    card.className = 'card item ' + verdict;
    dm.clear('agreement').append(agreementTable(res.agreement));
  } catch (e) { card.querySelector('.verdict').textContent = 'not saved: ' + e.message; }
}
async function show(path) {
  const data = await dm.api('api/sample?path=' + encodeURIComponent(path));
  dm.text('head', data.table + ' v' + data.version + ' · pipeline ' + data.pipeline + ' · run ' + data.run_id
          + ' · labelling as ' + data.user);
  dm.clear('agreement').append(agreementTable(data.agreement));
  const box = dm.clear('items');
  for (const it of data.items) {
    const title = dm.el('div', {},
      dm.el('b', {text: '#' + it.sample_id + ' ' + it.doc_id}), ' ',
      dm.el('span', {class: 'badge ' + (it.decision === 'kept' ? 'success' : 'failed'), text: it.decision}),
      it.decision === 'removed' ? ' by step ' + it.step_index + ' ' + it.op + ', rule ' + it.rule : '',
      it.stratum ? dm.el('span', {class: 'muted', text: ' · ' + it.stratum}) : null);
    const card = dm.el('div', {class: 'card item' + (it.verdict ? ' ' + it.verdict : ''), 'data-item': it.sample_id}, title);
    if (it.detail) card.append(dm.el('div', {class: 'muted', text: 'evidence: ' + JSON.stringify(it.detail)}));
    card.append(dm.el('pre', {text: it.text + (it.cut ? '\n[… ' + fmt(it.text_chars) + ' chars in all]' : '')}));
    if (it.survivor_id) card.append(dm.el('details', {}, dm.el('summary', {text: 'kept copy ' + it.survivor_id}),
      dm.el('pre', {text: it.survivor_text || ''})));
    const ask = it.decision === 'kept' ? 'Should this row have been kept?' : 'Should this row have been removed (' + it.rule + ')?';
    card.append(dm.el('div', {}, dm.el('span', {class: 'muted', text: ask + ' '}),
      dm.el('button', {class: 'right', onclick: () => mark(path, it, 'right', card), text: 'Right'}),
      dm.el('button', {class: 'wrong danger', onclick: () => mark(path, it, 'wrong', card), text: 'Wrong'}),
      dm.el('span', {class: 'verdict muted', text: it.verdict ? 'you said: ' + it.verdict : ''})));
    box.append(card);
  }
}
(async () => {
  try {
    const list = await dm.api('api/samples');
    const pick = dm.clear('pick');
    if (!list.length) { pick.append(dm.el('p', {class: 'muted', text:
      'no samples yet: run `datamill sample TABLE --n 50 --removed` to draw one'})); return; }
    const sel = dm.el('select', {id: 'sample-select'}, ...list.map(s => dm.el('option', {value: s.jsonl,
      text: s.pipeline + ' · ' + s.run_id + ' · ' + s.name})));
    if (q.get('sample') && list.some(s => s.jsonl === q.get('sample'))) sel.value = q.get('sample');
    sel.onchange = () => show(sel.value).catch(e => dm.fail('items', e));
    pick.append(sel);
    await show(sel.value);
  } catch (e) { dm.fail('pick', e); }
})();
"""

CSS = """<style>.item.right{border-left:4px solid #1a7f37}.item.wrong{border-left:4px solid #c62828}
.item pre{max-height:240px}</style>"""


@router.get("/")
def page():
    return ui.page("Inspect", CSS + "<div id=pick class=muted>loading…</div>"
                   "<div id=head class=muted></div><h2>Agreement so far</h2><div id=agreement></div>"
                   "<h2>Sampled decisions</h2><div id=items></div>", script=JS)
