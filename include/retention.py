"""Retention: how long a pipeline keeps its runs' bronze and silver slices.

A spec may say

    retention:
      runs: 3            # keep the slices of the last 3 runs
      days: 7            # and of every run that started in the last 7 days
      vacuum_hours: 0    # extra age a removed file must reach before it is deleted

A run's slices are kept while it is among the last ``runs`` runs (by start)
or started within ``days`` (either rule alone when only one is given); every
run still in flight is kept. The others' slices are deleted from each bronze
and silver table (one Delta DELETE per table, partition by partition), then
the table is vacuumed: ``VACUUM ... LITE``, which deletes only the files the
transaction log has removed, never a file a writer has written but not yet
committed, with a horizon of ``vacuum_hours`` or the age of the oldest run in
flight, whichever is longer (a run in flight may hold a snapshot of the
table; its own slice is never removed). Bronze and silver are read only by
the run that wrote them, so a horizon of 0 is the default.

What is never touched: the ledger, quarantine, steps and run records (the
account of every document), the published tables and their versions (time
travel, training manifests), and the dedup indexes. ``datamill retention``
applies a pipeline's policy by hand (``--dry-run`` lists what would go, and
``--full`` also runs a full ``VACUUM`` with Delta's 7-day horizon, which
collects files left by crashed writers).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("datamill.retention")
KEYS = {"runs", "days", "vacuum_hours"}
# A run still marked running after this long is taken to have died.
STALE_HOURS = 168.0


@dataclass(frozen=True)
class Policy:
    runs: int | None = None
    days: float | None = None
    vacuum_hours: float = 0.0


def policy_errors(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return ["retention must be a mapping with runs and/or days"]
    errs = [f"retention: unknown key {k!r} (allowed: {', '.join(sorted(KEYS))})"
            for k in sorted(set(raw) - KEYS)]
    runs, days, hours = raw.get("runs"), raw.get("days"), raw.get("vacuum_hours", 0)
    if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 1):
        errs.append(f"retention.runs must be an integer >= 1, got {runs!r}")
    for k, v in (("days", days), ("vacuum_hours", hours)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            errs.append(f"retention.{k} must be a number >= 0, got {v!r}")
    if runs is None and days is None:
        errs.append("retention needs runs and/or days")
    return errs


def policy_of(spec) -> Policy | None:
    raw = spec.raw.get("retention")
    if not raw:
        return None
    return Policy(raw.get("runs"), raw.get("days"), float(raw.get("vacuum_hours") or 0))


def run_tables(lh, pipeline: str) -> list[str]:
    """The pipeline's bronze and every silver table any of its recorded runs wrote."""
    import json

    from include.lakehouse import RUNS
    from include.runner import plan_stages
    from include.spec import parse
    from pyspark.sql import functions as F

    tables = {lh.bronze(pipeline)}
    if lh.exists(RUNS):
        for r in lh.read(RUNS).where(F.col("pipeline") == pipeline).select("spec").distinct() \
                .collect():
            try:
                spec = parse(json.loads(r["spec"]))
            except Exception:  # noqa: BLE001 - a snapshot of a spec that no longer parses
                continue
            for st in plan_stages(spec):
                if st.kind == "steps":
                    last = st.steps[-1]
                    tables.add(lh.silver(pipeline, last.index, last.op))
    return sorted(t for t in tables if lh.exists(t))


def decide(runs: list[dict[str, Any]], policy: Policy, now_s: float) -> tuple[set[str], float]:
    """(run ids whose slices go, safe horizon in hours) from the run records."""
    def started(r):  # seconds since the epoch
        return (r["seq"] / 1e6) if r.get("seq") is not None else r["ts"].timestamp()

    ordered = sorted(runs, key=started, reverse=True)
    keep = set()
    if policy.runs:
        keep |= {r["run_id"] for r in ordered[:policy.runs]}
    if policy.days is not None:
        keep |= {r["run_id"] for r in ordered if now_s - started(r) <= policy.days * 86400}
    inflight = [r for r in ordered if r["status"] == "running"
                and now_s - started(r) <= STALE_HOURS * 3600]
    keep |= {r["run_id"] for r in inflight}
    horizon = max([policy.vacuum_hours] + [(now_s - started(r)) / 3600 for r in inflight])
    return {r["run_id"] for r in ordered} - keep, horizon


def _slices(lh, table: str) -> set[str]:
    """The ``_run_id`` partitions a table holds, from its Delta log (delta-rs, no scan)."""
    from deltalake import DeltaTable

    return {p["_run_id"] for p in DeltaTable(lh.table_path(table)).partitions()}


def _sql_list(values) -> str:
    from include.lakehouse import _sql_str

    return ", ".join(_sql_str(v) for v in sorted(values))


def vacuum(lh, table: str, hours: float, full: bool = False) -> None:
    """``VACUUM`` (LITE unless ``full``) with ``hours`` as the horizon; Delta's
    check against horizons under its 7-day default is lifted for this call only."""
    spark = lh.spark
    path = lh.table_path(table).replace("`", "``")
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    spark.conf.set(check, "false")
    try:
        spark.sql(f"VACUUM delta.`{path}` {'' if full else 'LITE '}RETAIN {float(hours)} HOURS")
    finally:
        spark.conf.unset(check)


def apply(lh, pipeline: str, policy: Policy, *, dry_run: bool = False,
          full: bool = False) -> dict[str, Any]:
    """Apply ``policy`` to the pipeline's bronze and silver; what was removed."""
    from include.lakehouse import RUNS
    from pyspark.sql import functions as F

    if not lh.exists(RUNS):
        return {"pipeline": pipeline, "runs_dropped": [], "tables": {}}
    runs = [r.asDict() for r in lh.read(RUNS).where(F.col("pipeline") == pipeline)
            .select("run_id", "status", "seq", "ts").collect()]
    drop, horizon = decide(runs, policy, time.time())
    report: dict[str, Any] = {"pipeline": pipeline, "horizon_hours": round(horizon, 3),
                              "tables": {}}
    known = {r["run_id"] for r in runs}
    dropped: set[str] = set()
    for table in run_tables(lh, pipeline):
        present = _slices(lh, table)
        # Slices of run ids with no run record (an ingest is always recorded
        # first) belong to no run that can still need them.
        victims = sorted((present & drop) | (present - known))
        report["tables"][table] = victims
        dropped |= set(victims)
        if dry_run:
            continue
        if victims:
            path = lh.table_path(table).replace("`", "``")
            lh.spark.sql(f"DELETE FROM delta.`{path}` WHERE _run_id IN ({_sql_list(victims)})")
        if victims:
            try:
                vacuum(lh, table, horizon)
            except Exception:  # noqa: BLE001 - LITE needs the log since the last vacuum
                log.warning("%s: VACUUM LITE failed; the removed files go with the next full "
                            "vacuum (datamill retention --full)", table, exc_info=True)
        if full:
            vacuum(lh, table, max(horizon, STALE_HOURS), full=True)
    report["runs_dropped"] = sorted(dropped)
    return report


def apply_after_run(spec, lh) -> dict[str, Any] | None:
    """The spec's policy after a successful publish; never fails the run."""
    policy = policy_of(spec)
    if policy is None:
        return None
    try:
        report = apply(lh, spec.name, policy)
    except Exception:  # noqa: BLE001 - retention is housekeeping; the run has published
        log.warning("%s: retention failed (the run itself succeeded)", spec.name, exc_info=True)
        return None
    if report["runs_dropped"]:
        log.info("%s: retention removed the bronze/silver slices of %d run(s)", spec.name,
                 len(report["runs_dropped"]))
    return report


# -- datamill retention -----------------------------------------------------------
def cmd_retention(args) -> int:
    import json
    import sys

    from include.config import lake_root
    from include.lakehouse import Lakehouse
    from include.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    policy = policy_of(spec)
    if args.runs is not None or args.days is not None:
        policy = Policy(args.runs, args.days, policy.vacuum_hours if policy else 0.0)
    if policy is None:
        print(f"error: {args.spec} has no retention policy; give --runs and/or --days",
              file=sys.stderr)
        return 1
    report = apply(Lakehouse(lake_root(args.lake)), spec.name, policy, dry_run=args.dry_run,
                   full=args.full)
    print(json.dumps(report))
    return 0


def register(sub) -> None:
    s = sub.add_parser("retention", help="drop old runs' bronze/silver slices and vacuum them")
    s.add_argument("spec")
    s.add_argument("--lake")
    s.add_argument("--runs", type=int, help="keep the last N runs (overrides the spec)")
    s.add_argument("--days", type=float, help="keep runs of the last D days (overrides the spec)")
    s.add_argument("--dry-run", action="store_true", help="list what would be removed")
    s.add_argument("--full", action="store_true",
                   help="also a full VACUUM (7-day horizon) for files crashed writers left")
    s.set_defaults(func=cmd_retention)
