"""What the lakehouse records about runs, read without Spark.

The runner writes ``_system/steps`` (per-step counters), ``_system/runs`` (one
row per finished run), ``_system/ledger`` (removed/changed/added documents) and
the quality gate ``_system/quality``; this module reads them with delta-rs
(``deltalake``), so the plugin's pages and the lineage facets never start a
JVM. Filters on ``pipeline`` prune partitions (the system tables are
partitioned by pipeline); ``run_id`` filters use the Parquet statistics.

Used by the Runs page (``plugins/datamill/runs.py``), the lineage facets
(``include/lineage.py``) and anything else that shows a run's funnel.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from include.lakehouse import LEDGER, RUNS, STEPS

QUALITY = "_system/quality"  # written by include/quality/gate.py
FUNNEL_KEYS = ("step_index", "op", "op_version", "rows_in", "kept", "removed", "quarantined",
               "added", "changed", "seconds")


def table_uri(root: str | Path, table: str) -> str:
    root = str(root)
    return f"{root.rstrip('/')}/{table}" if "://" in root else str(Path(root) / table)


def read_system(root: str | Path, table: str, *, pipeline: str | None = None,
                run_ids: Iterable[str] | None = None, where: dict[str, Any] | None = None,
                columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a system table (empty if it does not exist yet) as dicts."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    uri = table_uri(root, table)
    if not DeltaTable.is_deltatable(uri):
        return []
    dataset = DeltaTable(uri).to_pyarrow_dataset()
    cond = None

    def _and(c, e):
        return e if c is None else c & e

    if pipeline is not None:
        cond = _and(cond, ds.field("pipeline") == pipeline)
    if run_ids is not None:
        ids = list(run_ids)
        if not ids:
            return []
        cond = _and(cond, ds.field("run_id").isin(ids))
    for k, v in (where or {}).items():
        cond = _and(cond, ds.field(k) == v)
    names = set(dataset.schema.names)
    cols = [c for c in columns if c in names] if columns else None
    return dataset.to_table(columns=cols, filter=cond).to_pylist()


def _iso(ts: Any) -> str | None:
    return ts.isoformat() if isinstance(ts, datetime) else (str(ts) if ts is not None else None)


def step_rows(root: str | Path, pipeline: str, run_id: str) -> list[dict[str, Any]]:
    """The run's per-step counters, in step order (step 0 is the source)."""
    rows = read_system(root, STEPS, pipeline=pipeline, run_ids=[run_id])
    return sorted(rows, key=lambda r: r["step_index"])


def run_record(root: str | Path, pipeline: str, run_id: str) -> dict[str, Any] | None:
    """The ``_system/runs`` row of a finished run, its summary parsed; None if unfinished."""
    rows = read_system(root, RUNS, pipeline=pipeline, run_ids=[run_id],
                       columns=["pipeline", "run_id", "status", "output_table",
                                "output_version", "summary", "ts"])
    if not rows:
        return None
    row = max(rows, key=lambda r: str(r["ts"]))
    row["summary"] = json.loads(row["summary"] or "{}")
    return row


def quality_rows(root: str | Path, pipeline: str, run_id: str,
                 step_indices: Iterable[int] | None = None) -> list[dict[str, Any]]:
    rows = read_system(root, QUALITY, pipeline=pipeline, run_ids=[run_id])
    if step_indices is not None:
        keep = set(step_indices)
        rows = [r for r in rows if r["step_index"] in keep]
    return rows


def removal_reasons(root: str | Path, pipeline: str, run_ids: list[str],
                    top: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Per run, the ``top`` removal reasons as ``{step, op, rule, count}``."""
    rows = read_system(root, LEDGER, pipeline=pipeline, run_ids=run_ids,
                       where={"action": "removed"}, columns=["run_id", "step_index", "op", "rule"])
    counts: dict[str, Counter] = {}
    for r in rows:
        counts.setdefault(r["run_id"], Counter())[(r["step_index"], r["op"], r["rule"])] += 1
    return {rid: [{"step": k[0], "op": k[1], "rule": k[2], "count": n}
                  for k, n in c.most_common(top)] for rid, c in counts.items()}


def pipelines(root: str | Path) -> list[str]:
    """Every pipeline that has run in this lakehouse."""
    names = {r["pipeline"] for r in read_system(root, STEPS, columns=["pipeline"])}
    names |= {r["pipeline"] for r in read_system(root, RUNS, columns=["pipeline"])}
    return sorted(names)


def list_runs(root: str | Path, pipeline: str, limit: int = 20) -> list[dict[str, Any]]:
    """A pipeline's runs, newest first: status, funnel, top removal reasons,
    quality results and output table version.

    A run that has not (or not successfully) reached publish has step rows
    but no run record: it is listed as ``incomplete`` with the steps it did.
    """
    steps = read_system(root, STEPS, pipeline=pipeline)
    records = read_system(root, RUNS, pipeline=pipeline,
                          columns=["run_id", "status", "output_table", "output_version",
                                   "summary", "ts"])
    by_run: dict[str, dict[str, Any]] = {}
    for s in steps:
        run = by_run.setdefault(s["run_id"], {"run_id": s["run_id"], "steps": [], "ts": None})
        run["steps"].append({k: s.get(k) for k in FUNNEL_KEYS})
        run["ts"] = max(filter(None, [run["ts"], s["ts"]]), default=None)
    for r in records:
        run = by_run.setdefault(r["run_id"], {"run_id": r["run_id"], "steps": [], "ts": None})
        if run.get("record_ts") and str(run["record_ts"]) > str(r["ts"]):
            continue
        summary = json.loads(r["summary"] or "{}")
        run.update(status=r["status"], output_table=r["output_table"],
                   output_version=r["output_version"], output_rows=summary.get("output_rows"),
                   seconds=summary.get("seconds"), record_ts=r["ts"],
                   conservation=summary.get("conservation"))
        run["ts"] = max(filter(None, [run["ts"], r["ts"]]), default=None)
    runs = sorted(by_run.values(), key=lambda r: str(r["ts"] or ""), reverse=True)[:limit]
    reasons = removal_reasons(root, pipeline, [r["run_id"] for r in runs])
    quality = read_system(root, QUALITY, pipeline=pipeline, run_ids=[r["run_id"] for r in runs],
                          columns=["run_id", "step_index", "expectation", "success", "severity"])
    for run in runs:
        run["pipeline"] = pipeline
        run.setdefault("status", "incomplete")
        run["steps"].sort(key=lambda s: s["step_index"])
        source = next((s for s in run["steps"] if s["step_index"] == 0), None)
        run["rows_in"] = source["rows_in"] if source else None
        run["top_removal_reasons"] = reasons.get(run["run_id"], [])
        q = [x for x in quality if x["run_id"] == run["run_id"]]
        run["quality"] = {"evaluated": len(q), "failed": sum(not x["success"] for x in q)} if q \
            else None
        run["ts"] = _iso(run["ts"])
        run.pop("record_ts", None)
    return runs
