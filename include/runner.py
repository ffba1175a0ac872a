"""Run a pipeline spec: the one code path behind ``datamill run`` and every
Airflow task of a generated DAG.

A run is a list of stages: ``ingest`` (source -> bronze), one stage per group
of steps, ``publish`` (last stage -> output table, summary). With
``execution.fuse`` (default), consecutive row-wise Spark steps form one group
and run as one Spark job: each step's decisions are kept in per-step columns
of one frame, so nothing is materialised between them; every other step is a
group of its own, materialised to its silver table. Each stage reads its
input from Delta and replaces its own outputs for the run id, so any stage can
be retried alone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from include.config import lake_root
from include.lakehouse import (LEDGER, LEDGER_SCHEMA, QUARANTINE, QUARANTINE_SCHEMA,
                               Lakehouse, now)
from include.registry import CONTROL_COLUMNS, StepContext, get_op
from include.spec import SOURCE_COLUMNS, PipelineSpec, Step, load_spec, parse
from spark_jobs.readers import RAW_LIMIT

log = logging.getLogger("datamill.runner")


class StageError(RuntimeError):
    """A stage that must not go on; the message says why (exit 1, task fails)."""


class ConservationError(StageError):
    pass


class SpecMismatchError(StageError):
    pass


class DuplicateIdError(StageError):
    pass


class StalePublishError(StageError):
    """A run that started later has already published the output table."""


def spec_hash(raw: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stage:
    kind: str            # ingest | steps | publish
    steps: list[Step]

    @property
    def task_id(self) -> str:
        if self.kind != "steps":
            return self.kind
        return "__".join(f"s{s.index}_{s.op}" for s in self.steps)


def plan_stages(spec: PipelineSpec) -> list[Stage]:
    stages = [Stage("ingest", [])]
    group: list[Step] = []
    for step in spec.steps:
        meta = get_op(step.op).meta
        fusable = spec.fuse and meta.rowwise and meta.engine == "spark"
        if group and fusable and all(get_op(s.op).meta.rowwise for s in group) \
                and get_op(group[0].op).meta.engine == "spark":
            group.append(step)
            continue
        if group:
            stages.append(Stage("steps", group))
        group = [step]
    if group:
        stages.append(Stage("steps", group))
    stages.append(Stage("publish", []))
    return stages


def new_run_id() -> str:
    return "cli__" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _stage_input(spec: PipelineSpec, stages: list[Stage], i: int, lh: Lakehouse) -> str:
    prev = stages[i - 1]
    if prev.kind == "ingest":
        return lh.bronze(spec.name)
    last = prev.steps[-1]
    return lh.silver(spec.name, last.index, last.op)


# -- the run's spec snapshot ---------------------------------------------------
def begin_run(spec: PipelineSpec, run_id: str, lh: Lakehouse,
              on_change: str = "refuse") -> tuple[PipelineSpec, int, bool]:
    """Record the spec a run starts with; ``(spec, seq, new)``.

    The snapshot (spec after overrides, its hash, and ``seq``, the run's start
    in microseconds, which orders publishes) goes into ``_system/runs`` before
    any data moves, and every later stage reads it, so editing the YAML while
    a run is in flight cannot change that run. A run id that already has a
    snapshot with another spec is refused (``on_change="refuse"``, the CLI's
    ``--run-id``) or keeps its snapshot (``"use_snapshot"``: an Airflow retry of
    ingest after the file changed).
    """
    rec = lh.run_record(spec.name, run_id)
    h = spec_hash(spec.raw)
    if rec is not None and rec.get("seq") is not None:
        if rec["spec_hash"] == h:
            return spec, int(rec["seq"]), False
        if on_change == "use_snapshot":
            log.warning("%s run %s: the spec changed since the run started; the run keeps "
                        "the spec it started with (hash %s)", spec.name, run_id, rec["spec_hash"])
            return parse(json.loads(rec["spec"]), spec.path), int(rec["seq"]), False
        raise SpecMismatchError(
            f"run id {run_id!r} of pipeline {spec.name!r} started with another spec (hash "
            f"{rec['spec_hash']}, this one is {h}); use a new run id")
    seq = time.time_ns() // 1000
    lh.record_run(spec.name, run_id, "running", spec.output_table, None, spec.raw, {},
                  spec_hash=h, seq=seq)
    return spec, seq, True


def run_snapshot(pipeline: str, run_id: str, lh: Lakehouse) -> tuple[PipelineSpec, int]:
    """The spec (and seq) run ``run_id`` started with; what every stage after ingest runs."""
    rec = lh.run_record(pipeline, run_id)
    if rec is None or rec.get("seq") is None:
        raise StageError(f"run {run_id!r} of pipeline {pipeline!r} has no recorded start: "
                         "its ingest stage has not run")
    return parse(json.loads(rec["spec"]), None), int(rec["seq"])


# -- ingest ------------------------------------------------------------------
def run_ingest(spec: PipelineSpec, run_id: str, lh: Lakehouse,
               fresh: bool = False) -> dict[str, Any]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from spark_jobs.ingest import ingest

    t0 = time.time()
    spark = lh.spark
    finish = None  # incremental: records the file manifest once bronze is written
    if spec.source.get("incremental"):
        from spark_jobs.incremental import RefreshError, ingest_new_files

        try:
            rows, bad, source_info, finish = ingest_new_files(spark, spec, lh, run_id)
        except RefreshError as exc:
            raise StageError(str(exc)) from exc
    else:
        rows, bad, source_info = ingest(spark, spec.source, spec.source_path())
    columns = [*SOURCE_COLUMNS[spec.source["format"]], *(["_file"] if finish else [])]
    rows = rows.select(*columns).persist(StorageLevel.MEMORY_AND_DISK)
    bad = bad.persist(StorageLevel.MEMORY_AND_DISK)
    lh.write_run(rows.drop("_file"), lh.bronze(spec.name), run_id)
    n_rows, n_bad = rows.count(), bad.count()
    q = bad.select(
        F.lit(spec.name).alias("pipeline"), F.lit(run_id).alias("run_id"),
        F.lit(0).alias("step_index"), F.lit("source").alias("op"), "doc_id", "source_ref",
        "raw", "error", F.lit(now()).cast("timestamp").alias("ts"))
    if n_bad or not fresh:  # a fresh run has no earlier slice to clear
        lh.replace_slice(q, QUARANTINE, spec.name, run_id, [0])
    if finish:
        source_info.update(finish(rows, bad))
    rows.unpersist()
    bad.unpersist()
    stat = {"pipeline": spec.name, "run_id": run_id, "step_index": 0, "op": "source",
            "op_version": "1", "rows_in": n_rows + n_bad, "kept": n_rows, "removed": 0,
            "quarantined": n_bad, "added": 0, "changed": 0,
            "stats": json.dumps(source_info), "seconds": time.time() - t0, "ts": now()}
    lh.record_steps([stat], spec.name, run_id)
    return stat


# -- steps -------------------------------------------------------------------
def _ensure_control(df):
    from pyspark.sql import functions as F

    for c in CONTROL_COLUMNS:
        if c not in df.columns:
            df = df.withColumn(c, F.lit(None).cast("string"))
    return df


def run_steps(spec: PipelineSpec, stage: Stage, input_table: str, run_id: str,
              lh: Lakehouse, fresh: bool = False) -> list[dict[str, Any]]:
    """Run one group of steps over the run's rows of ``input_table``.

    All rows stay in one frame; ``_dead`` holds the step that removed or
    quarantined a row and ``_r{k}/_d{k}/_c{k}/_q{k}/_p{k}`` hold step k's
    decisions, so a fused group needs one pass and one write.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from include.engines import engine_for

    t0 = time.time()
    df = lh.read_run(input_table, run_id).withColumn("_dead", F.lit(None).cast("int")) \
        .withColumn("_born", F.lit(0))
    extras: dict[int, dict[str, Any]] = {}
    for step in stage.steps:
        k = step.index
        op_cls = get_op(step.op)
        ctx = StepContext(pipeline=spec.name, run_id=run_id, step_index=k, op=step.op,
                          lake=str(lh.root), source=dict(spec.source),
                          input_table=input_table if step is stage.steps[0] else None)
        out = _ensure_control(engine_for(op_cls.meta.engine).apply(op_cls(), df, step.params, ctx))
        extras[k] = ctx.extras.get("stats", {})
        # Rows the op created are the ones with a parent; they live from step k on.
        added = F.col("_parent_id").isNotNull()
        out = (out.withColumn("_born", F.when(added, F.lit(k)).otherwise(F.coalesce("_born", F.lit(0))))
                  .withColumn("_dead", F.when(added, F.lit(None).cast("int")).otherwise(F.col("_dead"))))
        alive = F.col("_dead").isNull()
        out = (out.withColumn(f"_r{k}", F.when(alive & F.col("_quarantine").isNull(), F.col("_reason")))
                  .withColumn(f"_q{k}", F.when(alive, F.col("_quarantine")))
                  .withColumn(f"_c{k}", F.when(alive, F.col("_changed")))
                  .withColumn(f"_d{k}", F.when(alive, F.col("_detail")))
                  .withColumn(f"_p{k}", F.when(F.col("_born") == k, F.col("_parent_id"))))
        out = out.withColumn("_dead", F.when(alive & (F.col(f"_r{k}").isNotNull()
                                                      | F.col(f"_q{k}").isNotNull()), F.lit(k))
                                        .otherwise(F.col("_dead")))
        df = out.drop(*CONTROL_COLUMNS)
    df = df.persist(StorageLevel.MEMORY_AND_DISK)

    # One aggregate for every step's counters.
    aggs = []
    for step in stage.steps:
        k = step.index
        in_k = (F.col("_born") < k) & (F.col("_dead").isNull() | (F.col("_dead") >= k))
        aggs += [F.sum(F.when(in_k, 1).otherwise(0)).alias(f"in{k}"),
                 F.count(f"_r{k}").alias(f"rm{k}"), F.count(f"_q{k}").alias(f"qu{k}"),
                 F.count(f"_c{k}").alias(f"ch{k}"), F.count(f"_p{k}").alias(f"ad{k}"),
                 F.sum(F.when(F.col("_born") == k, 1).otherwise(0)).alias(f"born{k}")]
    live = F.col("_dead").isNull()
    aggs += [F.sum(F.when(live, 1).otherwise(0)).alias("live"),
             F.count_distinct(F.when(live, F.col("id"))).alias("live_ids"),
             F.sum(F.when(live & F.col("id").isNull(), 1).otherwise(0)).alias("null_ids")]
    # sum() over no rows is null: an empty input (a refresh with nothing new) counts 0.
    counts = {k: v or 0 for k, v in df.agg(*aggs).collect()[0].asDict().items()}
    if counts["null_ids"] or (counts["live"] or 0) != (counts["live_ids"] or 0):
        df.unpersist()
        _raise_duplicate_ids(df.where(live), stage, counts)

    ledger_parts, quarantine_parts = [], []
    ts = F.lit(now()).cast("timestamp")
    for step in stage.steps:
        k, meta = step.index, get_op(step.op).meta
        base = [F.lit(spec.name).alias("pipeline"), F.lit(run_id).alias("run_id"),
                F.lit(k).alias("step_index"), F.lit(step.op).alias("op")]
        for action, col in (("removed", f"_r{k}"), ("changed", f"_c{k}"), ("added", f"_p{k}")):
            rule = F.col(col) if action != "added" else F.lit(step.op)
            detail = F.col(f"_d{k}") if action != "added" else F.to_json(
                F.struct(F.col(col).alias("parent_id"), F.col(f"_d{k}").alias("detail")))
            ledger_parts.append(df.where(F.col(col).isNotNull()).select(
                *base, F.lit(meta.version).alias("op_version"), F.lit(action).alias("action"),
                F.col("id").alias("doc_id"), rule.alias("rule"), detail.alias("detail"), ts.alias("ts")))
        raw_col = "text" if "text" in df.columns else "html"
        quarantine_parts.append(df.where(F.col(f"_q{k}").isNotNull()).select(
            *base, F.col("id").alias("doc_id"),
            F.concat(F.lit(f"{input_table}:id="), F.col("id")).alias("source_ref"),
            F.substring(F.coalesce(F.col(f"_d{k}"), F.col(raw_col)), 1, RAW_LIMIT).alias("raw"),
            F.col(f"_q{k}").alias("error"), ts.alias("ts")))
    indices = [s.index for s in stage.steps]
    # A fresh run has no earlier slice to clear, so empty slices cost no commit.
    n_ledger = sum(counts[f"{c}{s.index}"] for s in stage.steps for c in ("rm", "ch", "ad"))
    n_quar = sum(counts[f"qu{s.index}"] for s in stage.steps)
    if n_ledger or not fresh:
        lh.replace_slice(_union(ledger_parts, LEDGER_SCHEMA, lh), LEDGER, spec.name, run_id,
                         indices)
    if n_quar or not fresh:
        lh.replace_slice(_union(quarantine_parts, QUARANTINE_SCHEMA, lh), QUARANTINE, spec.name,
                         run_id, indices)

    last = stage.steps[-1]
    live = df.where(F.col("_dead").isNull())
    keep_cols = [c for c in df.columns if not c.startswith("_")]
    lh.write_run(live.select(*keep_cols), lh.silver(spec.name, last.index, last.op), run_id)
    df.unpersist()

    seconds = (time.time() - t0) / len(stage.steps)
    rows = []
    for step in stage.steps:
        k = step.index
        rows_in = int(counts[f"in{k}"])
        removed, quar, added = int(counts[f"rm{k}"]), int(counts[f"qu{k}"]), int(counts[f"born{k}"])
        rows.append({"pipeline": spec.name, "run_id": run_id, "step_index": k, "op": step.op,
                     "op_version": get_op(step.op).meta.version, "rows_in": rows_in,
                     "kept": rows_in - removed - quar + added, "removed": removed,
                     "quarantined": quar, "added": added, "changed": int(counts[f"ch{k}"]),
                     "stats": json.dumps(extras.get(k) or {}, default=str),
                     "seconds": seconds, "ts": now()})
    lh.record_steps(rows, spec.name, run_id)
    return rows


def _raise_duplicate_ids(live, stage: Stage, counts: dict[str, Any]) -> None:
    """Ids are unique after every stage: name the offenders (an op that adds
    rows must give them new ids; none may change an id)."""
    from pyspark.sql import functions as F

    if counts["null_ids"]:
        raise DuplicateIdError(f"stage {stage.task_id}: {counts['null_ids']} row(s) have a "
                               "null id")
    dups = (live.groupBy("id").count().where(F.col("count") > 1)
                .orderBy(F.col("count").desc(), "id").limit(10).collect())
    listed = ", ".join(f"{r['id']!r} x{r['count']}" for r in dups)
    raise DuplicateIdError(f"stage {stage.task_id}: ids are no longer unique "
                           f"({counts['live'] - counts['live_ids']} duplicate row(s)): {listed}")


def _union(parts, schema: str, lh: Lakehouse):
    out = lh.spark.createDataFrame([], schema)
    for p in parts:
        out = out.unionByName(p)
    return out


# -- publish -------------------------------------------------------------------
def run_publish(spec: PipelineSpec, input_table: str, run_id: str, lh: Lakehouse,
                seq: int, started: float | None = None) -> dict[str, Any]:
    """Check, then publish the run's rows in one guarded Delta commit.

    Conservation (and the quality gates, which are steps and have already
    passed by now) is decided before the table changes: a failing run
    publishes nothing. The commit itself is idempotent per run and ordered by
    the runs' start (``Lakehouse.publish``): a retried publish task commits
    once, and a run older than the table's current data never replaces it.
    """
    t0 = time.time()
    df = lh.read_run(input_table, run_id)
    output_rows = df.count()
    summary = run_summary(spec, run_id, lh, output_rows, started, t0)
    if not summary["conservation"]["ok"]:
        lh.record_run(spec.name, run_id, "conservation_failed", spec.output_table, None,
                      spec.raw, summary, spec_hash=spec_hash(spec.raw), seq=seq)
        raise ConservationError(f"conservation violated, nothing published: "
                                f"{summary['conservation']}")
    owner = lh.publisher(spec.output_table)
    if owner and owner.get("pipeline") not in (None, spec.name):
        raise StageError(f"output table {spec.output_table!r} is published by pipeline "
                         f"{owner['pipeline']!r}; two pipelines may not share an output table")
    marker = {"pipeline": spec.name, "run_id": run_id}
    app_id, changes = f"datamill:{spec.output_table}", None
    if spec.source.get("incremental"):  # one MERGE of the new rows (spark_jobs/incremental.py)
        from spark_jobs.incremental import RefreshError
        from spark_jobs.incremental import publish as publish_refresh

        try:
            version, current, extras, changes = publish_refresh(
                spec, df, run_id, lh, seq=seq, marker=marker, app_id=app_id)
        except RefreshError as exc:
            raise StageError(str(exc)) from exc
        summary.update(extras)
    else:
        version, current = lh.publish(df, spec.output_table, seq=seq, marker=marker,
                                      app_id=app_id)
    summary["output_version"] = version
    if not current:
        newer = lh.publisher(spec.output_table) or {}
        lh.record_run(spec.name, run_id, "superseded", spec.output_table, None, spec.raw,
                      summary, spec_hash=spec_hash(spec.raw), seq=seq)
        raise StalePublishError(
            f"not published: run {newer.get('run_id')!r}, which started after run {run_id!r}, "
            f"has already published {spec.output_table} (version {version})")
    if summary.get("table_changed", True):
        from include.trace import index_publish

        index_publish(lh, spec.name, spec.output_table, version, run_id, changes)
    lh.record_run(spec.name, run_id, "success", spec.output_table, version, spec.raw, summary,
                  spec_hash=spec_hash(spec.raw), seq=seq)
    from include.retention import apply_after_run

    apply_after_run(spec, lh)
    return summary


def run_summary(spec: PipelineSpec, run_id: str, lh: Lakehouse, output_rows: int,
                started: float | None, t0: float) -> dict[str, Any]:
    """The run summary (interfaces.md §3) from the recorded step counters.

    Only the steps of the spec the run started with count: rows a reused run
    id left for steps this spec does not have are not part of this run.
    """
    ops = {0: "source", **{s.index: s.op for s in spec.steps}}
    stats = [s for s in lh.step_rows(spec.name, run_id) if ops.get(s["step_index"]) == s["op"]]
    source = next(s for s in stats if s["step_index"] == 0)
    steps = []
    for s in stats:
        if s["step_index"] == 0:
            continue
        entry = {"op": s["op"], "rows_in": s["rows_in"], "kept": s["kept"],
                 "removed": s["removed"], "quarantined": s["quarantined"]}
        if s["added"]:
            entry["added"] = s["added"]
        if s["changed"]:
            entry["changed"] = s["changed"]
        extra = json.loads(s["stats"] or "{}")
        if extra:
            entry["stats"] = extra
        steps.append(entry)
    removed = sum(s["removed"] for s in steps)
    quarantined = source["quarantined"] + sum(s["quarantined"] for s in steps)
    added = sum(s.get("added", 0) for s in steps)
    seconds = (time.time() - started) if started else \
        sum(s["seconds"] for s in stats) + (time.time() - t0)
    conservation = {"input": source["rows_in"] + added,
                    "accounted": output_rows + removed + quarantined}
    conservation["ok"] = conservation["input"] == conservation["accounted"]
    return {"pipeline": spec.name, "run_id": run_id, "output_table": spec.output_table,
            "output_version": None, "output_rows": output_rows,
            "source": {"rows": source["rows_in"], "quarantined": source["quarantined"],
                       **json.loads(source["stats"] or "{}")},
            "steps": steps, "conservation": conservation, "seconds": round(seconds, 2)}


# -- entry points --------------------------------------------------------------
def run_task(spec: PipelineSpec | str, task_id: str, run_id: str, lake: str | None = None, *,
             started: float | None = None, fresh: bool = False, on_change: str = "refuse",
             seq: int | None = None) -> Any:
    """Run the stage ``task_id`` of run ``run_id``: what every Airflow task and
    each step of ``datamill run`` calls.

    Ingest starts the run from ``spec`` (``begin_run``); every later stage runs
    the spec snapshot the run started with (``spec`` may then be just the
    pipeline's name; a spec that differs from the snapshot is refused with
    ``on_change="refuse"``, else the snapshot runs). ``fresh``:
    this is the stage's first attempt (Airflow's try 1, a new CLI run), so
    there are no earlier outputs of it to replace. ``seq``: the run's
    sequence number when the caller already knows it (saves a read).
    """
    lh = Lakehouse(lake_root(lake))
    t0 = time.time()
    name = spec if isinstance(spec, str) else spec.name
    log.info("%s run %s: stage %s starting", name, run_id, task_id)
    if task_id == "ingest":
        if isinstance(spec, str):
            raise StageError("ingest starts a run: it needs the spec, not only its name")
        if seq is None:
            spec, seq, new = begin_run(spec, run_id, lh, on_change)
            fresh = fresh and new
        result = run_ingest(spec, run_id, lh, fresh=fresh)
    else:
        if seq is None:
            snap, seq = run_snapshot(name, run_id, lh)
            if isinstance(spec, str):
                spec = snap
            elif spec_hash(snap.raw) != spec_hash(spec.raw):
                if on_change == "refuse":
                    raise SpecMismatchError(f"run {run_id!r} started with another version of "
                                            f"pipeline {spec.name!r}; use a new run id")
                spec = snap
        stages = plan_stages(spec)
        index = next((i for i, st in enumerate(stages) if st.task_id == task_id), None)
        if index is None:
            raise StageError(f"task {task_id!r} is not a stage of the spec run {run_id!r} "
                             f"started with (its stages: {[st.task_id for st in stages]})")
        stage, input_table = stages[index], (_stage_input(spec, stages, index, lh)
                                             if index else None)
        if stage.kind == "publish":
            result = run_publish(spec, input_table, run_id, lh, seq, started)
        else:
            result = run_steps(spec, stage, input_table, run_id, lh, fresh=fresh)
    log.info("%s run %s: stage %s done in %.1f s: %s", spec.name, run_id, task_id,
             time.time() - t0, json.dumps(result, default=str)[:2000])
    return result


def run_stage(spec: PipelineSpec, stage_index: int, run_id: str, lake: str | None = None,
              started: float | None = None) -> Any:
    """Run stage ``stage_index`` of ``spec``'s plan (a retry of one stage, say)."""
    return run_task(spec, plan_stages(spec)[stage_index].task_id, run_id, lake, started=started)


def run_pipeline(spec: PipelineSpec | str, lake: str | None = None,
                 overrides: dict[str, Any] | list[str] | None = None,
                 run_id: str | None = None) -> dict[str, Any]:
    """Every stage in order in this process (``datamill run``). A new run id
    is fresh; a reused one (``--run-id``) replaces that run's outputs, and is
    refused if the run started with another spec."""
    started = time.time()
    if not isinstance(spec, PipelineSpec):
        spec = load_spec(spec, overrides)
    run_id = run_id or new_run_id()
    lh = Lakehouse(lake_root(lake))
    spec, seq, fresh = begin_run(spec, run_id, lh, "refuse")
    summary: Any = None
    for stage in plan_stages(spec):
        summary = run_task(spec, stage.task_id, run_id, lake, started=started, fresh=fresh,
                           seq=seq)
    return summary
