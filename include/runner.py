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
from include.spec import SOURCE_COLUMNS, PipelineSpec, Step, load_spec
from spark_jobs.readers import RAW_LIMIT

log = logging.getLogger("datamill.runner")


class ConservationError(RuntimeError):
    pass


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


# -- ingest ------------------------------------------------------------------
def run_ingest(spec: PipelineSpec, run_id: str, lh: Lakehouse) -> dict[str, Any]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from spark_jobs.ingest import ingest

    t0 = time.time()
    spark = lh.spark
    rows, bad, n_files = ingest(spark, spec.source, spec.source_path())
    rows = rows.select(*SOURCE_COLUMNS[spec.source["format"]]).persist(StorageLevel.MEMORY_AND_DISK)
    bad = bad.persist(StorageLevel.MEMORY_AND_DISK)
    lh.write_run(rows, lh.bronze(spec.name), run_id)
    q = bad.select(
        F.lit(spec.name).alias("pipeline"), F.lit(run_id).alias("run_id"),
        F.lit(0).alias("step_index"), F.lit("source").alias("op"), "doc_id", "source_ref",
        "raw", "error", F.lit(now()).cast("timestamp").alias("ts"))
    lh.replace_slice(q, QUARANTINE, spec.name, run_id, [0])
    n_rows, n_bad = rows.count(), bad.count()
    rows.unpersist()
    bad.unpersist()
    stat = {"pipeline": spec.name, "run_id": run_id, "step_index": 0, "op": "source",
            "op_version": "1", "rows_in": n_rows + n_bad, "kept": n_rows, "removed": 0,
            "quarantined": n_bad, "added": 0, "changed": 0,
            "stats": json.dumps({"files": n_files}), "seconds": time.time() - t0, "ts": now()}
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
              lh: Lakehouse) -> list[dict[str, Any]]:
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
                          lake=str(lh.root), source=dict(spec.source))
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
    counts = df.agg(*aggs).collect()[0].asDict()

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
    lh.replace_slice(_union(ledger_parts, LEDGER_SCHEMA, lh), LEDGER, spec.name, run_id, indices)
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


def _union(parts, schema: str, lh: Lakehouse):
    out = lh.spark.createDataFrame([], schema)
    for p in parts:
        out = out.unionByName(p)
    return out


# -- publish -------------------------------------------------------------------
def run_publish(spec: PipelineSpec, input_table: str, run_id: str, lh: Lakehouse,
                started: float | None = None) -> dict[str, Any]:
    t0 = time.time()
    df = lh.read_run(input_table, run_id)
    version = lh.publish(df, spec.output_table)
    output_rows = lh.read(spec.output_table, version).count()
    stats = lh.step_rows(spec.name, run_id)
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
    summary = {"pipeline": spec.name, "run_id": run_id, "output_table": spec.output_table,
               "output_version": version, "output_rows": output_rows,
               "source": {"rows": source["rows_in"], "quarantined": source["quarantined"],
                          "files": json.loads(source["stats"] or "{}").get("files")},
               "steps": steps,
               "conservation": {"input": source["rows_in"] + added,
                                "accounted": output_rows + removed + quarantined},
               "seconds": round(seconds, 2)}
    ok = summary["conservation"]["input"] == summary["conservation"]["accounted"]
    summary["conservation"]["ok"] = ok
    lh.record_run(spec.name, run_id, "success" if ok else "conservation_failed",
                  spec.output_table, version, spec.raw, summary)
    if not ok:
        raise ConservationError(f"conservation violated: {summary['conservation']}")
    return summary


# -- entry points --------------------------------------------------------------
def run_stage(spec: PipelineSpec, stage_index: int, run_id: str, lake: str | None = None,
              started: float | None = None) -> Any:
    """Run one stage of the plan; what Airflow tasks call."""
    lh = Lakehouse(lake_root(lake))
    stages = plan_stages(spec)
    stage = stages[stage_index]
    t0 = time.time()
    log.info("%s run %s: stage %s starting", spec.name, run_id, stage.task_id)
    if stage.kind == "ingest":
        result = run_ingest(spec, run_id, lh)
    elif stage.kind == "publish":
        result = run_publish(spec, _stage_input(spec, stages, stage_index, lh), run_id, lh, started)
    else:
        result = run_steps(spec, stage, _stage_input(spec, stages, stage_index, lh), run_id, lh)
    log.info("%s run %s: stage %s done in %.1f s: %s", spec.name, run_id, stage.task_id,
             time.time() - t0, json.dumps(result, default=str)[:2000])
    return result


def run_pipeline(spec: PipelineSpec | str, lake: str | None = None,
                 overrides: dict[str, Any] | list[str] | None = None,
                 run_id: str | None = None) -> dict[str, Any]:
    started = time.time()
    if not isinstance(spec, PipelineSpec):
        spec = load_spec(spec, overrides)
    run_id = run_id or new_run_id()
    stages = plan_stages(spec)
    summary: Any = None
    for i in range(len(stages)):
        summary = run_stage(spec, i, run_id, lake, started)
    return summary
