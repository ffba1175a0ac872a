"""Steps 6 and 7, explain and render: ``plan.md``, the spec YAML and the DAG file.

``plan.md`` tells the reviewer why each step is there (the request's words
or the retrieved skill that put it there), which skills were retrieved for
each part of the request (with their scores and low matches), what the
validator said in each repair round, the prompt each LLM step will send for
one sample row, the dry-run funnel, and every flag (placeholder source,
inferred format, a path outside the data roots, ignored instructions).

The DAG file comes from one fixed template (``templates/review_dag.py.tmpl``)
whose only variable is the pipeline name, checked against the spec's name
rule before substitution: no text from a request, a feedback or an LLM
answer becomes code.
"""
from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent / "templates" / "review_dag.py.tmpl"


def dag_file(name: str) -> str:
    from include.spec import NAME_RE

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"pipeline name {name!r} is not valid; no DAG file is made")
    return string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(name=name)


def spec_yaml(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)


def fence(text: str, lang: str = "") -> str:
    """A code fence longer than any backtick run in ``text`` (so text cannot close it)."""
    ticks = max([len(m) for m in re.findall(r"`+", text)] + [2]) + 1
    return f"{'`' * ticks}{lang}\n{text.rstrip()}\n{'`' * ticks}"


def quote(text: str) -> str:
    return "\n".join("> " + line for line in (text or "").splitlines() or [""])


def explain_state(state: dict[str, Any]) -> dict[str, Any]:
    from include.agent.compose import render_prompts
    from include.registry import UnknownOpError, get_op

    spec = state["spec"]
    notes = state.get("draft_notes") or []
    steps = []
    for i, s in enumerate(spec.get("steps") or [], start=1):
        note = next((n for n in notes if n.get("op") == s["op"]), {})
        try:
            meta = get_op(s["op"]).meta
            cost, category, engine = meta.cost, meta.category, meta.engine
        except UnknownOpError:
            cost = category = engine = "?"
        skills = [{"part": r["part"], "score": sk["score"]}
                  for r in state.get("retrieved") or [] for sk in r["skills"]
                  if sk["name"] == s["op"]]
        steps.append({"index": i, "op": s["op"], "params": s.get("params") or {},
                      "why": note.get("why") or "kept from the previous round",
                      "category": category, "engine": engine, "cost": cost,
                      "skills": skills[:3]})
    sample = (state.get("dry_run") or {}).get("sample_row")
    state["prompts"] = render_prompts(spec, sample)
    state["explanation"] = {"steps": steps, "flags": state.get("flags") or []}
    return state


def _funnel_table(dr: dict[str, Any]) -> list[str]:
    rows = ["| step | op | rows in | kept | removed | quarantined | added |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    if "source_rows" in dr:
        rows.append(f"| 0 | source | {dr['source_rows']} | "
                    f"{dr['source_rows'] - dr.get('source_quarantined', 0)} | 0 | "
                    f"{dr.get('source_quarantined', 0)} | 0 |")
    for i, f in enumerate(dr.get("funnel") or [], start=1):
        rows.append(f"| {i} | {f['op']} | {f['rows_in']} | {f['kept']} | {f['removed']} | "
                    f"{f['quarantined']} | {f.get('added', 0)} |")
    for op in dr.get("not_run") or []:
        rows.append(f"| - | {op} | not run | | | | |")
    return rows


def plan_md(state: dict[str, Any]) -> str:
    from include.runner import plan_stages
    from include.spec import parse

    spec = state["spec"]
    ex = state.get("explanation") or {"steps": [], "flags": []}
    out = [f"# Plan: `{spec['name']}` (dag_id `datamill__{spec['name']}`)", "",
           "Nothing in this review item is live. Approving it copies `spec.yaml` into the "
           "pipelines folder, where the DAG factory builds the DAG.", "",
           "## Request", "", quote(state.get("request") or "(none)"), ""]
    history = [f for f in state.get("feedback_history") or [] if f]
    if state.get("feedback"):
        history.append(state["feedback"])
    if history:
        out += ["## Feedback (oldest first)", ""]
        out += [f"{i}. " + " ".join(f.split()) for i, f in enumerate(history, start=1)] + [""]
    flags = ex.get("flags") or []
    out += ["## Flags for the reviewer", ""]
    if flags:
        for f in flags:
            mark = " **(needs your explicit confirmation to approve)**" if f.get("confirm") else ""
            out.append(f"- **{f['kind']}**: {f['message']}{mark}")
    else:
        out.append("- none")
    src = spec["source"]
    out += ["", "## Pipeline", "",
            f"- source: `{src['path']}` ({src['format']})",
            f"- output table: `{spec['output']['table']}`",
            f"- schedule: `{spec.get('schedule')}`" if spec.get("schedule") else
            "- schedule: none (runs when triggered)",
            f"- planner: {state.get('planner', '?')} (`--llm {state.get('llm', 'none')}`)", "",
            "## Steps and why", "",
            "| # | op | category | cost | params | why |", "| --- | --- | --- | --- | --- | --- |"]
    for s in ex["steps"]:
        params = json.dumps(s["params"], ensure_ascii=False) if s["params"] else "defaults"
        if len(params) > 160:
            params = params[:157] + "..."
        why = s["why"].replace("|", "\\|").replace("\n", " ")
        out.append(f"| {s['index']} | `{s['op']}` | {s['category']} | {s['cost']} | "
                   f"{params.replace('|', '/')} | {why} |")
    if not ex["steps"]:
        out.append("| - | (no steps: the source is ingested and published) | | | | |")
    try:
        stages = [st.task_id for st in plan_stages(parse(spec))]
        out += ["", "Airflow tasks: " + " >> ".join(f"`{t}`" for t in stages)]
    except Exception:  # noqa: BLE001 - the spec was validated; this is only a view
        pass
    out += ["", "## Skills retrieved (the planner saw only these)", ""]
    for r in state.get("retrieved") or []:
        low = " **low match**" if r.get("low_match") else ""
        skills = ", ".join(f"`{s['name']}` {s['score']:.2f} (lexical {s['lexical']:.2f}, "
                           f"embedding {s['embedding']:.2f})" for s in r["skills"][:4])
        out.append(f"- {json.dumps(r['part'], ensure_ascii=False)}{low}: {skills}")
    if not state.get("retrieved"):
        out.append("- none (the spec was not planned from a request)")
    out += ["", "## Validation", ""]
    for rnd in state.get("validation") or []:
        if rnd["messages"]:
            out.append(f"- round {rnd['round']}: " + "; ".join(rnd["messages"]))
            for a in rnd.get("actions") or []:
                out.append(f"  - repair: {a}")
        else:
            out.append(f"- round {rnd['round']}: valid")
    out.append(f"- repair rounds used: {state.get('rounds_used', 0)}")
    prompts = state.get("prompts") or []
    if prompts:
        out += ["", "## Prompts, rendered for one sample row", ""]
        for p in prompts:
            out.append(f"### step {p['step']} `{p['op']}` (template `{p['template']}`"
                       + (f", where `{p['where']}`" if p.get("where") else "") + ")")
            out.append("")
            if p.get("error"):
                out.append(f"Could not render: {p['error']}")
            for m in p["messages"]:
                out += [f"**{m['role']}** (sample row `{p['sample_id']}`):", "",
                        fence(m["content"]), ""]
    dr = state.get("dry_run") or {}
    out += ["", "## Dry run", "", f"- status: **{dr.get('status', '?')}**"
            + (f" ({dr['message']})" if dr.get("message") else "")]
    if dr.get("seconds") is not None:
        out.append(f"- {dr.get('rows', 0)} sampled record(s), {dr['seconds']} s")
    if dr.get("funnel") or dr.get("source_rows") is not None:
        out += ["", *_funnel_table(dr)]
        if dr.get("output_rows") is not None:
            out.append(f"\nrows published in the dry run: {dr['output_rows']}; conservation "
                       f"ok: {dr.get('conservation_ok')}")
    out += ["", "## Spec", "", fence(spec_yaml(spec), "yaml"), ""]
    return "\n".join(out)


def render_state(state: dict[str, Any]) -> dict[str, Any]:
    spec = state["spec"]
    state["rendered"] = {"spec_yaml": spec_yaml(spec), "dag_py": dag_file(spec["name"]),
                         "plan_md": plan_md(state)}
    return state
