"""Incremental refresh (``source.incremental: true``): each run reads only the
files no successful run has read, and adds its documents to the published
table with one MERGE commit.

- **Ingest** (:func:`ingest_new_files`): refuses a published table that
  another pipeline (or something that is not datamill) wrote; notes the
  table's version, the *basis* every later stage of the run compares against;
  asks the manifest (``spark_jobs.manifest``) for the new and changed files and
  reads only those. A document whose id is already published (from a file
  this run does not replace) is quarantined: a refresh adds documents, it
  never overwrites one silently. For a changed file, the ids it gave before
  are recorded as *replaced* (``_system/file_docs``, action ``replaces``).
- **Dedup** (``exact_dedup``, ``minhash_dedup``): new rows are compared with
  each other and with every document earlier published runs' dedup steps
  saw, through the dedup indexes beside the table (``spark_jobs.dedup_index``);
  a published document is never removed, it is the survivor, and the ledger
  names its id.
- **Publish** (:func:`publish`): decided before the table changes (the
  runner's conservation and ownership checks, then: the table is still at
  the basis version, every id is either new or replaces a document of a
  changed file); then one MERGE: new ids inserted, ids of changed files
  updated, ids a changed file no longer has deleted (those are ``retracted``
  in the ledger, with the file). The MERGE carries Delta's idempotent-DML
  conf (``spark.databricks.delta.write.txnAppId`` / ``txnVersion``, Delta
  PR #1555, present in delta-spark 4.4.0: a retried publish, or an older run
  after a newer one, commits nothing) and the run's userMetadata marker. A
  run with nothing to insert, update or delete makes no commit at all.

The first run of an incremental pipeline (no table yet) reads everything and
publishes with the ordinary overwrite commit; its dedup steps still build the
indexes, so the next run is incremental.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from include.lakehouse import FILE_DOCS, FILE_DOCS_SCHEMA, LEDGER, LEDGER_SCHEMA, Lakehouse, now

log = logging.getLogger("datamill.incremental")
DEDUP_OPS = ("exact_dedup", "minhash_dedup")


class RefreshError(RuntimeError):
    """A refresh that must not go on (the runner turns it into a StageError)."""


@dataclass
class RefreshState:
    """What an incremental run's later stages need to know about its ingest."""

    pipeline: str
    run_id: str
    output_table: str
    basis_version: int | None       # the published version the run compares against
    replaced: int                   # earlier ids of changed files

    def replaced_ids(self, lh: Lakehouse):
        """``doc_id`` of the published documents this run's changed files replace."""
        from pyspark.sql import functions as F

        if not self.replaced or not lh.exists(FILE_DOCS):
            return lh.spark.createDataFrame([], "doc_id string")
        return (lh.read(FILE_DOCS)
                .where((F.col("pipeline") == self.pipeline) & (F.col("run_id") == self.run_id)
                       & (F.col("action") == "replaces")).select("doc_id").distinct())

    def own_ids(self, lh: Lakehouse, rows):
        """``id`` of the run's rows and of the documents its changed files
        replace: their earlier dedup-index entries are no copies of the run's rows."""
        from pyspark.sql import functions as F

        return self.replaced_ids(lh).select(F.col("doc_id").alias("id")) \
            .unionByName(rows.select("id"))

    def published_ids(self, lh: Lakehouse):
        """``id`` of the table at the basis version the run compares against."""
        return lh.read(self.output_table, self.basis_version).select("id")


def owner_error(lh: Lakehouse, pipeline: str, table: str) -> str | None:
    """Why a refresh may not write ``table`` (None if it may)."""
    if not lh.exists(table):
        return None
    owner = lh.publisher(table)
    if owner is None:
        return (f"output table {table!r} was not published by datamill (its current commit "
                "names no pipeline); a refresh merges into a table only its own pipeline wrote")
    if owner.get("pipeline") != pipeline:
        return (f"output table {table!r} is published by pipeline {owner.get('pipeline')!r}; a "
                f"refresh of {pipeline!r} may not merge into it")
    return None


def state_of(lh: Lakehouse, pipeline: str, run_id: str) -> RefreshState | None:
    """The refresh state ingest recorded (None for a run that is not incremental)."""
    from include.lakehouse import STEPS
    from include.runs import read_system

    # delta-rs, not a Spark job: every dedup step and the publish ask this.
    rows = read_system(lh.root, STEPS, pipeline=pipeline, run_ids=[run_id],
                       where={"step_index": 0}, columns=["stats"])
    info = json.loads(rows[0]["stats"] or "{}").get("incremental") if rows else None
    if not info:
        return None
    return RefreshState(pipeline, run_id, info["output_table"], info["basis_version"],
                        int(info.get("replaced_candidates", 0)))


def context_state(ctx) -> RefreshState | None:
    """For an op: the run's refresh state when its pipeline is incremental."""
    if not ctx.source.get("incremental"):
        return None
    st = state_of(Lakehouse(ctx.lake), ctx.pipeline, ctx.run_id)
    if st is None:
        raise RefreshError(f"run {ctx.run_id!r} of incremental pipeline {ctx.pipeline!r} has no "
                           "refresh state: its ingest did not run as incremental")
    return st


# -- ingest ---------------------------------------------------------------------
def ingest_new_files(spark, spec, lh: Lakehouse, run_id: str, plan=None):
    """``(rows, bad, info, finish)`` for an incremental run.

    ``rows`` carry ``_file``; ``finish(rows, bad)``, called by the runner once
    bronze and quarantine are written (both frames still cached), records the
    manifest and the file -> document map and returns the counts for the
    run summary. ``plan``: the manifest's plan when the caller made it
    (``spark_jobs.manifest.plan``), else it is made here.
    """
    from pyspark.sql import functions as F

    from spark_jobs import manifest
    from spark_jobs.ingest import ingest

    table = spec.output_table
    if (err := owner_error(lh, spec.name, table)):
        raise RefreshError(f"refresh refused: {err}")
    basis = lh.version(table) if lh.exists(table) else None
    p = plan or manifest.plan(spark, lh, spec.name, spec.source_path())
    rows, bad, info = ingest(spark, spec.source, spec.source_path(),
                             files=[s.path for s in p.to_read], with_file=True)
    if p.missing:
        gone = spark.createDataFrame(
            [(None, path, path, err) for path, err in p.missing],
            "doc_id string, source_ref string, raw string, error string")
        bad = bad.unionByName(gone)
    info["files"] = info["files"] + len(p.missing)
    info["hidden_files_skipped"] = p.hidden.get("files", 0)
    info["hidden_dirs_skipped"] = p.hidden.get("dirs", 0)

    replaces = None
    if basis is not None and p.changed and lh.exists(FILE_DOCS):
        earlier = [(path, run) for path, run in p.last_read_run.items()]
        pairs = spark.createDataFrame(earlier, "path string, run_id string")
        replaces = (lh.read(FILE_DOCS).where((F.col("pipeline") == spec.name)
                                             & (F.col("action") == "read"))
                    .join(F.broadcast(pairs), ["path", "run_id"]).select("path", "doc_id"))
        replaces = replaces.localCheckpoint()
    if basis is not None:
        published = lh.read(table, basis).select("id")
        clash = rows.join(published, "id", "left_semi")
        if replaces is not None:
            clash = clash.join(replaces.select(F.col("doc_id").alias("id")), "id", "left_anti")
        bad = bad.unionByName(clash.select(
            F.col("id").alias("doc_id"), F.col("_file").alias("source_ref"),
            F.substring(F.coalesce(*[c for c in ("text", "html") if c in rows.columns]), 1,
                        65536).alias("raw"),
            F.lit(f"id already published in {table} (version {basis}) from a file this run does "
                  "not replace; a refresh adds documents and never overwrites one").alias("error")))
        rows = rows.join(clash.select("id"), "id", "left_anti")

    def finish(rows_cached, bad_cached) -> dict[str, Any]:
        gone = {r["raw"] for r in bad_cached.where(F.col("error").startswith(manifest.MISSING))
                .select("raw").collect()}
        if gone:  # deleted after the manifest listed them: not read, read when back
            for group in (p.new, p.changed):
                for s in [s for s in group if s.path in gone]:
                    group.remove(s)
                    p.missing.append((s.path, manifest.MISSING))
            p.missing = list({path: e for path, e in p.missing}.items())
        manifest.record(lh, spec.name, run_id, p)
        docs = rows_cached.select(F.lit(spec.name).alias("pipeline"),
                                  F.lit(run_id).alias("run_id"),
                                  F.col("_file").alias("path"), F.col("id").alias("doc_id"),
                                  F.lit("read").alias("action"))
        n_replaced = 0
        if replaces is not None:
            n_replaced = replaces.count()
            docs = docs.unionByName(replaces.select(
                F.lit(spec.name).alias("pipeline"), F.lit(run_id).alias("run_id"), "path",
                "doc_id", F.lit("replaces").alias("action")))
        lh.replace_slice(docs.select(*[c.split()[0] for c in FILE_DOCS_SCHEMA.split(", ")]),
                         FILE_DOCS, spec.name, run_id)
        return {"incremental": {"output_table": table, "basis_version": basis,
                                "replaced_candidates": n_replaced, **p.counts()}}

    return rows, bad, info, finish


# -- publish --------------------------------------------------------------------
def _merge_conf(spark, app_id: str, seq: int, marker: dict[str, Any]):
    """Set Delta's idempotent-DML and commit-metadata session conf; returns the undo."""
    keys = {"spark.databricks.delta.write.txnAppId": app_id,
            "spark.databricks.delta.write.txnVersion": str(int(seq)),
            "spark.databricks.delta.commitInfo.userMetadata": json.dumps(marker, sort_keys=True)}
    for k, v in keys.items():
        spark.conf.set(k, v)

    def undo():
        for k in keys:
            spark.conf.unset(k)
    return undo


def _marker_version(lh: Lakehouse, table: str, marker: dict[str, Any]) -> tuple[int | None, int]:
    """(version this marker committed or None, the table's newest version)."""
    from include.lakehouse import _marker

    hist = lh.history(table)
    mine = [h["version"] for h in hist if _marker(h["userMetadata"]) == marker]
    return (int(mine[0]) if mine else None), int(hist[0]["version"])


def publish(spec, df, run_id: str, lh: Lakehouse, *, seq: int, marker: dict[str, Any],
            app_id: str) -> tuple[int, bool, dict[str, Any], tuple[Any, Any] | None]:
    """Publish an incremental run: ``(version, current, summary extras, changes)``.

    ``current`` is False when a run that started later has already committed
    (the runner then reports the run as superseded). ``changes``: the ids the
    MERGE added and deleted (frames with ``id``) for the trace index, None
    when the runner should diff the versions itself.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    table = spec.output_table
    st = state_of(lh, spec.name, run_id)
    if st is None:
        raise RefreshError(f"run {run_id!r}: no refresh state; its ingest was not incremental")
    if not lh.exists(table):
        if st.basis_version is not None:
            raise RefreshError(f"output table {table!r} was at version {st.basis_version} when "
                               "this run started and is gone now; nothing published")
        n = df.count()
        version, current = lh.publish(df, table, app_id=app_id, seq=seq, marker=marker)
        extras = {"rows_added": n, "rows_replaced": 0, "rows_retracted": 0,
                  "table_changed": True, "basis_version": None}
        if current:
            commit_indexes(spec, lh, run_id, version, None, build=True)
        return version, current, extras, None

    done, newest = _marker_version(lh, table, marker)
    if done is not None:  # a retry after the commit: finish the bookkeeping only
        if done == newest:
            commit_indexes(spec, lh, run_id, done, st.replaced_ids(lh),
                           build=st.basis_version is None, basis=st.basis_version)
        return done, done == newest, _commit_extras(lh, table, done, st.basis_version), None
    if (err := owner_error(lh, spec.name, table)):
        raise RefreshError(f"refresh refused: {err}")
    if st.basis_version is None or newest != st.basis_version:
        owner = lh.publisher(table) or {}
        rec = lh.run_record(spec.name, owner.get("run_id", "")) if owner.get("run_id") else None
        if rec and rec.get("seq") is not None and int(rec["seq"]) > seq:
            return newest, False, {}, None
        raise RefreshError(
            f"output table {table!r} moved from version {st.basis_version} to {newest} (run "
            f"{owner.get('run_id')!r}) after this run compared its documents against it; nothing "
            "published: the next refresh reads this run's files again and compares them with the "
            "new version")

    target = lh.read(table, st.basis_version)
    added_cols = sorted(set(df.columns) - set(target.columns))
    if added_cols:
        raise RefreshError(
            f"run {run_id!r} has column(s) {', '.join(added_cols)} that {table} lacks (the spec "
            "changed since the table was published); publish once without incremental to "
            "change the table's schema, then refresh again")
    published = target.select("id")
    new = df.select("id").persist(StorageLevel.MEMORY_AND_DISK)
    replaced = st.replaced_ids(lh).select(F.col("doc_id").alias("id"))
    present = replaced.join(published, "id", "left_semi").localCheckpoint()
    counts = new.join(published.withColumn("_pub", F.lit(True)), "id", "left") \
        .join(replaced.withColumn("_rep", F.lit(True)), "id", "left") \
        .agg(F.count(F.lit(1)).alias("n"), F.count("_pub").alias("matched"),
             F.sum(F.when(F.col("_pub") & F.col("_rep").isNull(), 1).otherwise(0)).alias("clash")
             ).collect()[0]
    if counts["clash"]:
        new.unpersist()
        raise RefreshError(f"{counts['clash']} row(s) of run {run_id!r} have ids already in "
                           f"{table} that no changed file replaces; nothing published")
    retract = present.join(new, "id", "left_anti").localCheckpoint()
    n_new, n_matched, n_retract = int(counts["n"]), int(counts["matched"] or 0), retract.count()
    extras = {"rows_added": n_new - n_matched, "rows_replaced": n_matched,
              "rows_retracted": n_retract, "basis_version": st.basis_version}
    new.unpersist()
    if n_new == 0 and n_retract == 0:
        log.info("%s run %s: nothing new; %s stays at version %s", spec.name, run_id, table,
                 st.basis_version)
        return st.basis_version, True, {**extras, "table_changed": False}, None

    if n_retract:
        _ledger_retractions(lh, spec.name, run_id, retract)
    view = f"datamill_refresh_{abs(hash((run_id, table)))}"
    src = (df.withColumn("_del", F.lit(False))
           .unionByName(retract.withColumn("_del", F.lit(True)), allowMissingColumns=True))
    src.createOrReplaceTempView(view)
    cols = [c for c in df.columns]
    set_clause = ", ".join(f"t.`{c}` = s.`{c}`" for c in cols)
    ins_cols = ", ".join(f"`{c}`" for c in cols)
    ins_vals = ", ".join(f"s.`{c}`" for c in cols)
    path = lh.table_path(table).replace("`", "``")
    undo = _merge_conf(lh.spark, app_id, seq, marker)
    try:
        lh.spark.sql(
            f"MERGE INTO delta.`{path}` t USING {view} s ON t.id = s.id "
            f"WHEN MATCHED AND s._del THEN DELETE "
            f"WHEN MATCHED THEN UPDATE SET {set_clause} "
            f"WHEN NOT MATCHED AND NOT s._del THEN INSERT ({ins_cols}) VALUES ({ins_vals})"
        ).collect()
    finally:
        undo()
        lh.spark.catalog.dropTempView(view)
    done, newest = _marker_version(lh, table, marker)
    if done is None:  # Delta skipped it: a later run's commit carries a higher txnVersion
        return newest, False, extras, None
    extras["table_changed"] = True
    if done == newest:
        commit_indexes(spec, lh, run_id, done, st.replaced_ids(lh), build=False,
                       basis=st.basis_version)
    return done, done == newest, extras, (df.select("id").join(present, "id", "left_anti"),
                                          retract)


def _commit_extras(lh: Lakehouse, table: str, version: int, basis: int | None) -> dict[str, Any]:
    """The summary's refresh counts of an earlier attempt's commit, from its
    Delta operation metrics (a retried publish finds the MERGE already made)."""
    path = lh.table_path(table).replace("`", "``")
    row = (lh.spark.sql(f"DESCRIBE HISTORY delta.`{path}`").where(f"version = {int(version)}")
           .select("operation", "operationMetrics").collect()[0])
    m = row["operationMetrics"] or {}
    if row["operation"] != "MERGE":  # the first publish: an overwrite of every row
        return {"rows_added": int(m.get("numOutputRows", 0)), "rows_replaced": 0,
                "rows_retracted": 0, "table_changed": True, "basis_version": basis}
    return {"rows_added": int(m.get("numTargetRowsInserted", 0)),
            "rows_replaced": int(m.get("numTargetRowsUpdated", 0)),
            "rows_retracted": int(m.get("numTargetRowsDeleted", 0)),
            "table_changed": True, "basis_version": basis}


def _ledger_retractions(lh: Lakehouse, pipeline: str, run_id: str, retract) -> None:
    """Ledger rows (step 0, action ``retracted``) for published ids a changed
    file no longer gives; conservation does not count them (they are not
    lines this run read)."""
    from pyspark.sql import functions as F

    docs = (lh.read(FILE_DOCS).where((F.col("pipeline") == pipeline) & (F.col("run_id") == run_id)
                                     & (F.col("action") == "replaces"))
            .select(F.col("doc_id").alias("id"), "path"))
    rows = retract.join(docs, "id", "left").groupBy("id").agg(F.min("path").alias("path"))
    ledger = rows.select(
        F.lit(pipeline).alias("pipeline"), F.lit(run_id).alias("run_id"),
        F.lit(0).alias("step_index"), F.lit("source").alias("op"), F.lit("1").alias("op_version"),
        F.lit("retracted").alias("action"), F.col("id").alias("doc_id"),
        F.lit("source_file_changed").alias("rule"),
        F.to_json(F.struct(F.col("path").alias("file"))).alias("detail"),
        F.lit(now()).cast("timestamp").alias("ts"))
    lh.replace_slice(ledger.select(*[c.split()[0] for c in LEDGER_SCHEMA.split(", ")]), LEDGER,
                     pipeline, run_id, [0])


def commit_indexes(spec, lh: Lakehouse, run_id: str, version: int, replaced_ids, build: bool,
                   basis: int | None = None) -> None:
    """Make every dedup step's index mirror the table at ``version``."""
    from spark_jobs.dedup_index import index_for_step

    for step in spec.steps:
        if step.op in DEDUP_OPS:
            index_for_step(lh, spec.output_table, step).commit(
                run_id, version, replaced_ids, build=build, basis=basis)
