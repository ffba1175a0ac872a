"""The statistics report: one self-contained HTML file (plots embedded as PNG
data URIs, no scripts, no external resources) beside its JSON."""
from __future__ import annotations

import html
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from include.quality import plots

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2733;
     margin:0 auto;padding:18px 24px;max-width:1180px}
h1{font-size:21px;margin:0 0 4px}h2{font-size:16px;margin:26px 0 8px;border-bottom:1px solid #d9dee4;
   padding-bottom:4px}.muted{color:#5b6877}.ok{color:#1a7f37}.bad{color:#c62828}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #d9dee4;border-radius:6px;padding:8px 12px;min-width:150px}
.card b{display:block;font-size:18px}.card span{color:#5b6877;font-size:12px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border-bottom:1px solid #e3e7eb;padding:3px 9px;text-align:left;vertical-align:top}
th{background:#f7f9fb}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;margin:4px 0}.grid{display:flex;flex-wrap:wrap;gap:14px}
.grid>div{flex:0 1 520px}.note{background:#fff8e1;border:1px solid #f0d58c;padding:6px 10px;
border-radius:4px;margin:6px 0}code{font-size:12px}
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f"<td class=n>{_e(_fmt(c))}</td>" if i in numeric else f"<td>{_e(_fmt(c))}</td>"
        for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(uri: str | None, alt: str) -> str:
    return f"<img src='{uri}' alt='{_e(alt)}'>" if uri else ""


def _card(value: str, label: str) -> str:
    return f"<div class=card><b>{_e(value)}</b><span>{_e(label)}</span></div>"


def render(stats: dict[str, Any], where: Path) -> str:
    """The report for ``stats``; links are relative to ``where`` (its folder)."""
    title = (f"{stats['table']} v{stats['version']}" if stats.get("table") and
             stats.get("version") is not None else
             f"{stats.get('pipeline')} run {stats.get('run_id')}, step {stats.get('step')}")
    made_by = (f"made by pipeline <b>{_e(stats['pipeline'])}</b>, run <code>{_e(stats['run_id'])}</code>"
               if stats.get("pipeline") else "no datamill run recorded")
    L = stats.get("length") or {}
    dup = stats.get("duplication_rate") or {}
    div = stats.get("diversity") or {}
    ret = (stats.get("retained") or {}).get("share")
    parts = [f"<h1>Dataset statistics: {_e(title)}</h1>",
             f"<div class=muted>{made_by} · generated {_e(stats.get('generated_at'))}"
             f" · {_e(stats.get('seconds'))} s</div>"]
    parts.append("<div class=cards>" + "".join([
        _card(_fmt(stats.get("rows")), "rows"),
        _card(_fmt((L.get("chars") or {}).get("mean")), "mean length, chars"),
        _card(_fmt((L.get("words") or {}).get("mean")), "mean length, words"),
        _card(_fmt((L.get("tokens") or {}).get("mean")),
              "mean length, tokens" + ("" if str((L.get("tokens") or {}).get("unit", "")).startswith("bpe")
                                       else " (= words)")),
        _card(_pct(ret), "of input rows retained"),
        _card(_pct(dup.get("removed_by_dedup")), "removed by dedup steps"),
        _card(_pct(dup.get("exact_in_table")), "exact duplicates left"),
        _card(_pct(dup.get("near_in_table")), "rows with a near duplicate left"),
        _card(_fmt(div.get("distinct_2")), "distinct-2 (sample)"),
    ]) + "</div>")
    for note in stats.get("notes") or []:
        parts.append(f"<div class=note>{_e(note)}</div>")

    if L:
        parts.append("<h2>Lengths</h2>")
        keys = ["mean", "std", "min", "p5", "p25", "p50", "p75", "p95", "p99", "max", "total"]
        parts.append(_table(["unit", *keys], [[u, *[L[u].get(k) for k in keys]] for u in L],
                            set(range(1, len(keys) + 1))))
        tok = (L.get("tokens") or {}).get("unit", "words")
        parts.append(f"<div class=muted>tokens: {_e(tok if tok != 'words' else 'no BPE trained yet, counted as words')}"
                     f"; null text {_fmt(stats.get('text_null'))}, blank text {_fmt(stats.get('text_blank'))}</div>")
        parts.append(_img(plots.length_histograms(stats), "length histograms"))

    if stats.get("funnel"):
        src = stats.get("source") or {}
        parts.append("<h2>Funnel</h2>")
        parts.append(f"<div class=muted>source rows {_fmt(src.get('rows'))}, quarantined at "
                     f"ingest {_fmt(src.get('quarantined'))}</div>")
        parts.append(_img(plots.funnel(stats), "funnel chart"))
        parts.append(_table(["step", "op", "rows in", "kept", "removed", "quarantined", "added"],
                            [[s["step"], s["op"], s["rows_in"], s["kept"], s["removed"],
                              s["quarantined"], s.get("added", 0)] for s in stats["funnel"]],
                            {0, 2, 3, 4, 5, 6}))
    if stats.get("removed_by_reason"):
        parts.append("<h2>Removals by step and rule</h2>")
        parts.append(_img(plots.removals(stats), "removals by rule"))
        parts.append(_table(["step/rule", "rows"], list(stats["removed_by_reason"].items()), {1}))
    if stats.get("quarantined_by_step"):
        parts.append("<h3>Quarantined by step</h3>")
        parts.append(_table(["step", "rows"], list(stats["quarantined_by_step"].items()), {1}))

    gate = stats.get("quality_gate") or []
    if gate:
        parts.append("<h2>Quality gate (Great Expectations)</h2>")
        docs = sorted({g["data_docs"] for g in gate if g.get("data_docs")})
        for d in docs:
            rel = os.path.relpath(d, where) if os.path.isabs(d) else d
            parts.append(f"<div><a href='{_e(rel)}'>Data Docs: {_e(Path(d).parent.parent.parent.name)}</a></div>")
        parts.append(_table(["step", "expectation", "kwargs", "success", "observed", "unexpected",
                             "unexpected %"],
                            [[g["step_index"], g["expectation"], g["kwargs"],
                              "pass" if g["success"] else "FAIL",
                              (g.get("exception") or g.get("observed_value") or "")[:160],
                              g.get("unexpected_count"), g.get("unexpected_percent")]
                             for g in gate], {0, 5, 6}))

    parts.append("<h2>Human agreement with the automatic decisions</h2>")
    agree = stats.get("agreement") or []
    if agree:
        parts.append("<div class=muted>agreement = share of labelled decisions a person marked "
                     "right; for removals, the rule's estimated precision (95 % Wilson interval)</div>")
        parts.append(_table(["step", "op", "rule", "decision", "labelled", "right", "wrong",
                             "agreement", "95 % interval"],
                            [[a["step"], a["op"], a["rule"], a["decision"], a["labelled"],
                              a["right"], a["wrong"], a["agreement"],
                              f"{a['ci95'][0]:.2f}–{a['ci95'][1]:.2f}" if a.get("ci95") else None]
                             for a in agree], {0, 4, 5, 6, 7}))
    else:
        parts.append("<div class=muted>no labels yet: draw a sample with <code>datamill sample "
                     "TABLE --n 50 --removed</code> and mark it on the Inspect page</div>")

    signals = stats.get("training_signals") or []
    if signals:
        parts.append("<h2>Training signals</h2><div class=muted>what training runs measured on "
                     "this table's documents (<code>_system/training_signals</code>); loss over "
                     "the windows a run trained on, token-weighted</div>")
        parts.append(_table(["config", "run", "domain", "table versions", "docs", "steps",
                             "mean loss", "p50 loss", "p90 loss", "selected share",
                             "never selected docs"],
                            [[a["config"], a["run_id"], a["domain"],
                              ", ".join(map(str, a["table_versions"])), a["docs"],
                              f"{a['steps'][0]}–{a['steps'][1]}", a["mean_loss"], a["p50_loss"],
                              a["p90_loss"], a["selected_share"], a["never_selected_docs"]]
                             for a in signals], {4, 6, 7, 8, 9, 10}))

    if stats.get("by"):
        parts.append("<h2>Categorical columns</h2><div class=grid>")
        imgs = dict(plots.categorical(stats))
        for col, counts in stats["by"].items():
            more = (stats.get("by_other") or {}).get(col)
            parts.append(f"<div><h3>{_e(col)}</h3>{_img(imgs.get(col), col)}"
                         + _table(["value", "rows"], list(counts.items()), {1})
                         + (f"<div class=muted>(other) = {more} more values</div>" if more else "")
                         + "</div>")
        parts.append("</div>")
    if stats.get("scores"):
        parts.append("<h2>Score columns</h2><div class=grid>")
        imgs = dict(plots.scores(stats))
        keys = ["n", "nulls", "mean", "std", "min", "p5", "p50", "p95", "max"]
        parts.append("</div>" + _table(["column", *keys], [[c, *[s.get(k) for k in keys]]
                                                         for c, s in stats["scores"].items()],
                                       set(range(1, len(keys) + 1))))
        parts.append("<div class=grid>" + "".join(f"<div>{_img(u, c)}</div>" for c, u in imgs.items())
                     + "</div>")

    dd = stats.get("duplication") or {}
    if dd:
        parts.append("<h2>Duplication and diversity</h2>")
        ex, near = dd.get("exact") or {}, dd.get("near") or {}
        rows = [["removed by the pipeline's dedup steps (of the rows reaching the first)",
                 _pct(dup.get("removed_by_dedup"))]]
        rows += [[f"removed by {k}", _pct(v)] for k, v in (dup.get("removed_by_step") or {}).items()]
        rows += [["exact duplicates left in the table (" + str(ex.get("compared", "")) + ")",
                  f"{_fmt(ex.get('duplicates'))} ({_pct(ex.get('share'))})"],
                 [f"rows with a near duplicate (J ≥ {near.get('threshold')}), sample of "
                  f"{_fmt(near.get('sample'))} against every row",
                  f"{_pct(near.get('share'))}" + (f" (95 %: {_pct(near['ci95'][0])}–{_pct(near['ci95'][1])})"
                                                  if near.get("ci95") else "")]]
        parts.append(_table(["measure", "value"], rows))
        if div:
            parts.append(_table(["diversity (sample of %s docs, %s words)" % (_fmt(div.get("sample")),
                                                                             _fmt(div.get("words"))),
                                 "value"],
                                [[f"distinct-{n}", div.get(f"distinct_{n}")] for n in (1, 2, 3, 4)]
                                + [["unique 5-gram share", div.get("unique_5gram_share")]], {1}))
    parts.append("<h2>Columns</h2><div class=muted>" + _e(", ".join(stats.get("columns") or []))
                 + "</div>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)} · "
            f"datamill statistics</title><style>{CSS}</style></head><body>{''.join(parts)}"
            "</body></html>")


def write(stats: dict[str, Any], folder: Path, name: str) -> Path:
    """Write ``name``.html and ``name``.json into ``folder``; sets ``stats["report"]``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.html"
    stats["report"] = str(path)
    stats.setdefault("generated_at", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    (folder / f"{name}.json").write_text(json.dumps(stats, default=str, indent=1), encoding="utf-8")
    path.write_text(render(stats, folder), encoding="utf-8")
    return path
