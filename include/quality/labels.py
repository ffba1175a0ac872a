"""Human labels on sampled decisions, and the agreement they give each rule.

A person looks at a sampled decision (a kept row, or a row a step removed
with its rule and evidence) and marks it right or wrong. Labels are appended
to ``_system/human_labels`` (Delta, partitioned by pipeline) with who and
when; nothing is overwritten, and the newest label of a person for an item
counts. Written with ``deltalake`` (delta-rs), like the LLM cache, so the
Airflow api-server records a label without starting a JVM; Spark reads the
same table.

Agreement per (step, rule, decision) = right / labelled. For removals that is
the estimated precision of the rule (the share of its removals a person
confirms); for kept rows it is the share a person would have kept too.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from include.config import local_path
from include.quality.stats import wilson

HUMAN_LABELS = "_system/human_labels"
VERDICTS = ("right", "wrong")
DECISIONS = ("kept", "removed")
_FIELDS = ("pipeline", "run_id", "table", "version", "doc_id", "step_index", "op", "rule",
           "decision")
_MAX = 1000  # characters per stored text field


def _schema():
    import pyarrow as pa

    return pa.schema([("pipeline", pa.string()), ("run_id", pa.string()),
                      ("table", pa.string()), ("version", pa.int64()),
                      ("doc_id", pa.string()), ("step_index", pa.int32()),
                      ("op", pa.string()), ("rule", pa.string()), ("decision", pa.string()),
                      ("verdict", pa.string()), ("note", pa.string()), ("user", pa.string()),
                      ("ts", pa.timestamp("us", tz="UTC"))])


def _path(lake: str | Path) -> Path:
    return local_path(lake) / HUMAN_LABELS


def record(lake: str | Path, item: dict[str, Any], verdict: str, user: str,
           note: str | None = None) -> dict[str, Any]:
    """Append one label for a sampled ``item`` (a record of ``datamill sample``)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    if item.get("decision") not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
    for k in ("pipeline", "run_id", "doc_id"):
        if not isinstance(item.get(k), str) or not item[k]:
            raise ValueError(f"a label needs the item's {k}")
    row = {k: item.get(k) for k in _FIELDS}
    for k in ("pipeline", "run_id", "table", "doc_id", "op", "rule"):
        row[k] = None if row[k] is None else str(row[k])[:_MAX]
    row.update(verdict=verdict, note=(note or "")[:_MAX] or None, user=str(user)[:200],
               ts=datetime.now(timezone.utc))
    write_deltalake(str(_path(lake)), pa.Table.from_pylist([row], schema=_schema()),
                    mode="append", partition_by=["pipeline"])
    return row


def read(lake: str | Path, pipeline: str | None = None, run_id: str | None = None
         ) -> list[dict[str, Any]]:
    """Labels (newest per person and item), optionally of one pipeline / run."""
    from deltalake import DeltaTable

    path = _path(lake)
    if not (path / "_delta_log").is_dir():
        return []
    filters = [("pipeline", "=", pipeline)] if pipeline else None
    rows = DeltaTable(str(path)).to_pyarrow_table(filters=filters).to_pylist()
    if run_id is not None:
        rows = [r for r in rows if r["run_id"] == run_id]
    latest: dict[tuple, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["ts"]):
        key = (r["pipeline"], r["run_id"], r["doc_id"], r["step_index"], r["decision"], r["user"])
        latest[key] = r
    return list(latest.values())


def agreement(lake: str | Path, pipeline: str, run_id: str) -> list[dict[str, Any]]:
    """Per (step, op, rule, decision): labelled, right, wrong, agreement and
    its 95 % Wilson interval; for removals, the rule's estimated precision."""
    groups: dict[tuple, list[str]] = {}
    for r in read(lake, pipeline, run_id):
        key = (r["step_index"], r["op"], r["rule"], r["decision"])
        groups.setdefault(key, []).append(r["verdict"])
    out = []
    for (step, op, rule, decision), verdicts in sorted(
            groups.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, str(kv[0][2]))):
        right = verdicts.count("right")
        n = len(verdicts)
        out.append({"step": step, "op": op, "rule": rule, "decision": decision, "labelled": n,
                    "right": right, "wrong": n - right, "agreement": round(right / n, 4),
                    "ci95": wilson(right, n)})
    return out
