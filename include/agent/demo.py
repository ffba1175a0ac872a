"""The agent's part of ``datamill demo``.

With the embedded local model (SmolLM2-135M behind llama.cpp) it runs one LLM
stage (``llm_score`` on a few bundled documents, through Ray) and the LLM
planner against it; then it plans one sample request offline with a dry run
on the bundled docs and writes the review item, whose path it prints. The
model is tiny: its scores and plans show the machinery, not good judgement.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from include.config import SAMPLE_DATA_DIR

SAMPLE_REQUEST = ("Keep only English documents, remove documents with fewer than 30 words "
                  "and near-duplicates, score each with an LLM judge keeping those scoring at "
                  "least 2, and report statistics.")
LLM_REQUEST = "Remove exact duplicates and keep only English text."
DEMO_ROWS = 6


def _sample_docs(dest: Path, n: int) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    src = sorted((SAMPLE_DATA_DIR / "docs").glob("*.jsonl"))[0]
    with open(src, encoding="utf-8") as fh, open(dest / "part-0.jsonl", "w",
                                                 encoding="utf-8") as out:
        for i, line in zip(range(n), fh):
            out.write(line)
    return dest


def run_agent_demo(lake: Path) -> int:
    from include.agent.graph import plan
    from include.agent.review_store import ReviewStore
    from include.llm.local_model import LocalModelServer, available

    lines = []
    if available():
        log = lake / "_system" / "smollm2-server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with LocalModelServer(log_path=log) as srv:
            os.environ["OPENAI_BASE_URL"] = srv.url
            os.environ.setdefault("DATAMILL_LLM_MODEL", "smollm2")
            lines += _llm_stage(lake)
            st = plan(LLM_REQUEST, llm="openai", dry_run=False, max_rounds=1)
            calls = st.get("llm_calls") or []
            lines.append(f"  LLM planner    {st['status']}: "
                         + (", ".join(s["op"] for s in st["spec"]["steps"])
                            if st["status"] == "ok" else st["refusal"].splitlines()[0][:160])
                         + f" ({len(calls)} call(s) to smollm2)")
            os.environ.pop("OPENAI_BASE_URL", None)
    else:
        lines.append("  LLM stage      skipped: the local model is not installed (scripts/setup.sh)")
    st = plan(SAMPLE_REQUEST, source=str(SAMPLE_DATA_DIR / "docs"), name="agent_demo_docs",
              dry_run_rows=20)
    if st["status"] != "ok":
        print(f"datamill demo: the agent refused the sample request: {st['refusal']}")
        return 1
    item = ReviewStore().save_round(st)
    dr = st["dry_run"]
    lines.append(f"  offline plan   {', '.join(s['op'] for s in st['spec']['steps'])}; dry run "
                 f"{dr['status']} on {dr.get('rows')} records")
    lines.append(f"  review item    {item}   (plan.md, spec.yaml, dag.py, dry_run.json)")
    lines.append(f"                 approve: .venv/bin/datamill review approve {st['spec']['name']}")
    print("Data agent\n" + "\n".join(lines))
    return 0


def _llm_stage(lake: Path) -> list[str]:
    from include.runner import run_pipeline
    from include.spec import parse

    src = _sample_docs(lake / "raw" / "agent_demo_llm", DEMO_ROWS)
    spec = parse({"version": 1, "name": "agent_demo_llm",
                  "description": "One LLM stage against the local model (demo)",
                  "source": {"path": str(src), "format": "jsonl", "id_field": "id"},
                  "steps": [{"op": "llm_score", "params": {"threshold": 1, "max_tokens": 96,
                                                           "max_retries": 2, "concurrency": 2}}],
                  "output": {"table": "gold/agent_demo_llm"}})
    s = run_pipeline(spec, lake=str(lake))
    step = s["steps"][0]
    st = step.get("stats") or {}
    print(json.dumps(s))
    return [f"  LLM stage      llm_score on {DEMO_ROWS} docs with smollm2: kept {step['kept']}, "
            f"quarantined {step['quarantined']} (invalid answers), {st.get('requests')} "
            f"requests, {st.get('prompt_tokens')} prompt + {st.get('completion_tokens')} "
            f"completion tokens -> {s['output_table']}"]
