"""A document's fate across runs: kept, changed, added, removed, quarantined."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from include.lakehouse import (LEDGER, LEDGER_SCHEMA, QUARANTINE, QUARANTINE_SCHEMA, RUNS,
                               RUNS_SCHEMA, Lakehouse)


def trace(doc_id: str, root: Path) -> list[dict[str, Any]]:
    from pyspark.sql import functions as F

    lh = Lakehouse(root)
    if not lh.exists(RUNS):
        return []
    events: list[dict[str, Any]] = []
    for r in lh.read_system(LEDGER, LEDGER_SCHEMA).where(F.col("doc_id") == doc_id).collect():
        events.append({"ts": r.ts, "pipeline": r.pipeline, "run_id": r.run_id,
                       "step": r.step_index, "op": r.op, "event": r.action, "rule": r.rule,
                       "detail": json.loads(r.detail) if r.detail and r.detail.startswith("{")
                       else r.detail})
    for r in lh.read_system(QUARANTINE, QUARANTINE_SCHEMA).where(F.col("doc_id") == doc_id).collect():
        events.append({"ts": r.ts, "pipeline": r.pipeline, "run_id": r.run_id,
                       "step": r.step_index, "op": r.op, "event": "quarantined",
                       "rule": r.error, "detail": r.source_ref})
    for run in lh.read_system(RUNS, RUNS_SCHEMA).where(F.col("status") == "success").collect():
        if run.output_version is None or not lh.exists(run.output_table):
            continue
        try:
            hit = lh.read(run.output_table, run.output_version).where(F.col("id") == doc_id).limit(1).count()
        except Exception:  # noqa: BLE001 - version vacuumed away
            continue
        if hit:
            events.append({"ts": run.ts, "pipeline": run.pipeline, "run_id": run.run_id,
                           "step": None, "op": "publish", "event": "kept",
                           "rule": None, "detail": f"{run.output_table}@v{run.output_version}"})
    events.sort(key=lambda e: (str(e["ts"]), e["step"] if e["step"] is not None else 10**6))
    for e in events:
        where = f"step {e['step']} {e['op']}" if e["step"] is not None else e["op"]
        why = f" ({e['rule']})" if e["rule"] else ""
        detail = "" if e["detail"] in (None, "", {}) else " " + (
            json.dumps(e["detail"], ensure_ascii=False) if isinstance(e["detail"], dict)
            else str(e["detail"]))
        e["line"] = f"{str(e['ts'])[:19]} {e['pipeline']} run={e['run_id']} {where}: {e['event']}{why}{detail}"
    return events
