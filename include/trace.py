"""A document's fate across runs: kept, changed, added, removed, quarantined.

``kept`` events come from the publish index ``_system/published``: every
publish records, for its table version, the ids it added and dropped (a
*delta*, or a *snapshot* of every id when the version before it is not
indexed), so finding a document reads that small table, never the published
versions themselves. A version that is not indexed (published before the
index existed, or a crash between its commit and its index row) is read
directly, that version only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from include.lakehouse import (LEDGER, LEDGER_SCHEMA, PUBLISHED, PUBLISHED_SCHEMA, QUARANTINE,
                               QUARANTINE_SCHEMA, RUNS, RUNS_SCHEMA, Lakehouse, now)


def index_publish(lh: Lakehouse, pipeline: str, table: str, version: int, run_id: str,
                  changes: tuple[Any, Any] | None = None) -> None:
    """Record what ``version`` of ``table`` added and dropped (run ``run_id``'s publish).

    ``changes``: (added ids, dropped ids) frames when the caller knows them (a
    refresh's MERGE); otherwise the ids of ``version`` are compared with the
    version before it, or, when that one is not indexed, written in full.
    Replaces the run's earlier rows, so a retried publish indexes once.
    """
    from pyspark.sql import functions as F

    spark = lh.spark
    indexed = _markers(lh, table)
    delta = (version - 1) in indexed
    if changes is not None and delta:
        added, dropped = changes
    else:
        cur = lh.read(table, version).select("id")
        if delta:
            prev = lh.read(table, version - 1).select("id")
            added, dropped = cur.join(prev, "id", "left_anti"), prev.join(cur, "id", "left_anti")
        else:
            added, dropped = cur, spark.createDataFrame([], "id string")
    ts = F.lit(now()).cast("timestamp")

    def rows(ids, action):
        return ids.select(F.lit(pipeline).alias("pipeline"), F.lit(table).alias("output_table"),
                          F.lit(int(version)).cast("long").alias("version"),
                          F.lit(run_id).alias("run_id"), F.col("id").alias("doc_id"),
                          F.lit(action).alias("action"), ts.alias("ts"))
    marker = spark.createDataFrame(
        [(pipeline, table, int(version), run_id, None, "delta" if delta else "snapshot", now())],
        PUBLISHED_SCHEMA)
    lh.replace_slice(rows(added, "added").unionByName(rows(dropped, "dropped"))
                     .unionByName(marker), PUBLISHED, pipeline, run_id)


def _markers(lh: Lakehouse, table: str) -> dict[int, str]:
    """version -> ``delta`` | ``snapshot`` for the indexed versions of ``table``."""
    from pyspark.sql import functions as F

    if not lh.exists(PUBLISHED):
        return {}
    rows = (lh.read(PUBLISHED).where((F.col("output_table") == table) & F.col("doc_id").isNull())
            .select("version", "action").collect())
    return {int(r["version"]): r["action"] for r in rows}


def _present(events: list[tuple[int, str]], markers: dict[int, str], version: int) -> bool | None:
    """Whether the document is in ``version``, from its index events; None when
    the index cannot tell (a version in the chain back to a snapshot is missing)."""
    start = version
    while True:
        kind = markers.get(start)
        if kind is None:
            return None
        if kind == "snapshot":
            break
        start -= 1
    last = [a for v, a in sorted(events) if start <= v <= version]
    return bool(last) and last[-1] == "added"


def trace(doc_id: str, root: Path) -> list[dict[str, Any]]:
    from pyspark.sql import functions as F

    lh = Lakehouse(root)
    # What training runs made of the document (training/signals.py reads them).
    from training.signals import trace_events

    events: list[dict[str, Any]] = trace_events(root, doc_id)
    if not lh.exists(RUNS) and not events:
        return []
    for r in lh.read_system(LEDGER, LEDGER_SCHEMA).where(F.col("doc_id") == doc_id).collect():
        events.append({"ts": r.ts, "pipeline": r.pipeline, "run_id": r.run_id,
                       "step": r.step_index, "op": r.op, "event": r.action, "rule": r.rule,
                       "detail": json.loads(r.detail) if r.detail and r.detail.startswith("{")
                       else r.detail})
    for r in lh.read_system(QUARANTINE, QUARANTINE_SCHEMA).where(F.col("doc_id") == doc_id).collect():
        events.append({"ts": r.ts, "pipeline": r.pipeline, "run_id": r.run_id,
                       "step": r.step_index, "op": r.op, "event": "quarantined",
                       "rule": r.error, "detail": r.source_ref})
    index = lh.read_system(PUBLISHED, PUBLISHED_SCHEMA).where(
        (F.col("doc_id") == doc_id) | F.col("doc_id").isNull()).collect()
    markers: dict[str, dict[int, str]] = {}
    mine: dict[str, list[tuple[int, str]]] = {}
    for r in index:
        if r.doc_id is None:
            markers.setdefault(r.output_table, {})[int(r.version)] = r.action
        else:
            mine.setdefault(r.output_table, []).append((int(r.version), r.action))
    for run in lh.read_system(RUNS, RUNS_SCHEMA).where(F.col("status") == "success").collect():
        if run.output_version is None:
            continue
        hit = _present(mine.get(run.output_table, []), markers.get(run.output_table, {}),
                       int(run.output_version))
        if hit is None:  # not indexed: read that version alone
            if not lh.exists(run.output_table):
                continue
            try:
                hit = lh.read(run.output_table, run.output_version).where(
                    F.col("id") == doc_id).limit(1).count() > 0
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
        detail = " " + e["summary"] if e.get("summary") else "" if e["detail"] in (None, "", {}) else " " + (
            json.dumps(e["detail"], ensure_ascii=False) if isinstance(e["detail"], dict)
            else str(e["detail"]))
        e["line"] = f"{str(e['ts'])[:19]} {e['pipeline']} run={e['run_id']} {where}: {e['event']}{why}{detail}"
    return events
