"""Dedup indexes beside a published table, so a refresh compares new rows with
the corpus earlier runs saw without recomputing anything about it.

One index per dedup step and settings (the settings that change its keys:
exact_dedup's text normalisation, minhash_dedup's permutations, shingling and
banding), in ``<output table>__dedup/<op>_<settings hash>/``, three Delta
tables:

- ``keys``: ``band``, ``key`` (binary), ``id``, ``survivor``: for minhash_dedup
  one row per LSH band of each document (the band's slice of its MinHash
  signature); for exact_dedup one row per document it kept, the SHA-256 of
  its normalised text (band 0). ``survivor`` is the document that represents
  the entry's cluster: the document itself when the step kept it, the
  survivor it was removed for otherwise;
- ``docs`` (minhash_dedup only): ``id``, ``sh`` (its shingle hashes), ``capped``,
  what exact-Jaccard verification of a candidate pair needs;
- ``commits``: which runs' entries make up the index and the table version the
  index mirrors.

The entries are those of every document the step saw in a published run, not
only of the published ones: minhash_dedup's near-duplicate relation is not
transitive, so a new document can be a near copy of a document an earlier run
removed (as a near copy of its survivor) while being too far from the survivor
itself; a full rerun puts all three in one cluster, and so does a refresh that
matches the removed document and takes its survivor. Documents a later step
removed stay too: a full rerun's dedup step sees them as well.

Entries are partitioned by the run that wrote them (``_run_id``). A run's dedup
step stages its entries; the publish commits them (:meth:`DedupIndex.commit`):
earlier entries of the same ids (a document a changed file replaced, an id a
new file reused) are deleted, and the commit row records the new table
version. Readers take only committed runs. A refresh whose basis version is not
the one the index mirrors (the table was republished in full, the index is
new, or a crash came between the table's commit and the index's) rebuilds the
index from the published table first: the only time its cost grows with the
corpus, and then the index holds the published documents only.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

from include.lakehouse import Lakehouse, _sql_str

log = logging.getLogger("datamill.dedup_index")
REBUILD = "rebuild@"


@dataclass
class IndexState:
    version: int | None          # the output version the index mirrors
    runs: list[str]              # committed runs whose entries count


class DedupIndex:
    def __init__(self, lh: Lakehouse, output_table: str, kind: str, settings: dict[str, Any],
                 with_docs: bool):
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        self.lh, self.output_table, self.with_docs = lh, output_table, with_docs
        self.base = f"{output_table}__dedup/{kind}_{digest}"
        self.keys_table, self.docs_table = f"{self.base}/keys", f"{self.base}/docs"
        self.commits_table = f"{self.base}/commits"

    # -- state ------------------------------------------------------------------
    def state(self) -> IndexState:
        from include.runs import read_system

        latest: dict[str, dict[str, Any]] = {}
        for r in sorted(read_system(self.lh.root, self.commits_table), key=lambda r: r["ts"]):
            latest[r["run_id"]] = r  # a retried commit appended its row again
        rows = sorted(latest.values(), key=lambda r: (r["output_version"], r["kind"] != "build"))
        builds = [i for i, r in enumerate(rows) if r["kind"] == "build"]
        if not builds:
            return IndexState(None, [])
        valid = rows[builds[-1]:]
        return IndexState(int(valid[-1]["output_version"]), [r["run_id"] for r in valid])

    def _entries(self, table: str, runs: list[str]):
        from pyspark.sql import functions as F

        return self.lh.read(table).where(F.col("_run_id").isin(runs)).drop("_run_id")

    def keys(self, state: IndexState, exclude_ids=None):
        """Committed (band, key, id, survivor) entries, without ``exclude_ids`` (column ``id``)."""
        out = self._entries(self.keys_table, state.runs)
        return out.join(exclude_ids, "id", "left_anti") if exclude_ids is not None else out

    def docs(self, state: IndexState, ids):
        """Committed (id, sh, capped) rows of the ids in ``ids`` (column ``id``)."""
        from pyspark.sql import functions as F

        return self._entries(self.docs_table, state.runs).join(F.broadcast(ids), "id",
                                                               "left_semi")

    # -- writes -----------------------------------------------------------------
    def _write(self, tag: str, keys, docs) -> None:
        self.lh.write_run(keys.select("band", "key", "id", "survivor"), self.keys_table, tag)
        if self.with_docs:
            self.lh.write_run(docs.select("id", "sh", "capped"), self.docs_table, tag)

    def stage(self, run_id: str, keys, docs=None) -> None:
        """The entries of the rows a run's step saw (replaced on a retry)."""
        self._write(run_id, keys, docs)

    def _tables(self) -> list[str]:
        return [self.keys_table] + ([self.docs_table] if self.with_docs else [])

    def _delete(self, where: str) -> None:
        for t in self._tables():
            if self.lh.exists(t):
                path = self.lh.table_path(t).replace("`", "``")
                self.lh.spark.sql(f"DELETE FROM delta.`{path}` WHERE {where}")

    def _delete_ids(self, ids, run_cond: str) -> None:
        """Delete entries whose id is in ``ids`` and whose run matches ``run_cond``."""
        view = f"datamill_idx_del_{abs(hash((self.base, run_cond)))}"
        ids.select("id").distinct().createOrReplaceTempView(view)
        try:
            for t in self._tables():
                if self.lh.exists(t):
                    path = self.lh.table_path(t).replace("`", "``")
                    self.lh.spark.sql(f"MERGE INTO delta.`{path}` t USING {view} s "
                                      f"ON t.id = s.id AND t.{run_cond} WHEN MATCHED THEN DELETE")
        finally:
            self.lh.spark.catalog.dropTempView(view)

    def _record(self, run_id: str, version: int, kind: str) -> None:
        """Append the commit row with delta-rs (a one-row table needs no Spark job)."""
        from datetime import datetime, timezone

        import pyarrow as pa
        from deltalake import write_deltalake

        row = pa.table({"run_id": [run_id], "output_version": pa.array([int(version)], pa.int64()),
                        "kind": [kind], "ts": pa.array([datetime.now(timezone.utc)],
                                                       pa.timestamp("us", tz="UTC"))})
        write_deltalake(self.lh.table_path(self.commits_table), row, mode="append")

    def commit(self, run_id: str, version: int, replaced_ids=None, *,
               build: bool, basis: int | None = None) -> None:
        """Make the run's staged entries part of the index at table ``version``.

        ``replaced_ids`` (``doc_id``): earlier documents the run's changed
        files replace; their earlier entries go, as do earlier entries of ids
        the run staged again. ``build``: the table was overwritten, so only
        this run's entries remain. An append whose index does not mirror
        ``basis`` is left out (the next refresh rebuilds the index).
        """
        from pyspark.sql import functions as F

        if build:
            self._delete(f"_run_id <> {_sql_str(run_id)}")
            self._record(run_id, version, "build")
            return
        st = self.state()
        if basis is not None and st.version != basis:
            log.warning("%s: index mirrors version %s, not %s; it will be rebuilt",
                        self.base, st.version, basis)
            return
        if self.lh.exists(self.keys_table):
            keys = self.lh.read(self.keys_table)
            staged = keys.where(F.col("_run_id") == run_id).select("id")
            if replaced_ids is not None:
                staged = staged.unionByName(replaced_ids.select(F.col("doc_id").alias("id")))
            # Checkpointed, as the MERGE rewrites the table it reads; no MERGE
            # (and no commit) when no earlier entry has one of these ids.
            stale = (staged.distinct().join(keys.where(F.col("_run_id").isin(st.runs))
                                            .select("id").distinct(), "id", "left_semi")
                     .localCheckpoint())
            if stale.count():
                self._delete_ids(stale, f"_run_id <> {_sql_str(run_id)}")
        self._record(run_id, version, "append")

    def ensure(self, basis: int, published: Callable[[], Any],
               build_entries: Callable[[Any], tuple[Any, Any]]) -> tuple[IndexState, bool]:
        """The index state at ``basis``, rebuilding it from the published table
        when it mirrors another version; ``(state, rebuilt)``."""
        st = self.state()
        if st.version == basis and all(self.lh.exists(t) for t in self._tables()):
            return st, False
        log.info("%s: index mirrors version %s, the table is at %s: rebuilding it from the "
                 "published documents", self.base, st.version, basis)
        tag = f"{REBUILD}{basis}"
        keys, docs = build_entries(published())
        keys = keys.withColumn("survivor", keys["id"])
        self._write(tag, keys, docs)
        self._delete(f"_run_id <> {_sql_str(tag)}")
        self._record(tag, basis, "build")
        return IndexState(basis, [tag]), True


def index_for_step(lh: Lakehouse, output_table: str, step) -> DedupIndex:
    """The index of one dedup step of a pipeline (op and key-changing params)."""
    from include.registry import apply_defaults, get_op

    params = apply_defaults(get_op(step.op).meta, step.params)
    if step.op == "exact_dedup":
        return DedupIndex(lh, output_table, "exact", exact_settings(params), with_docs=False)
    if step.op == "minhash_dedup":
        return DedupIndex(lh, output_table, "minhash", minhash_settings(params), with_docs=True)
    raise ValueError(f"op {step.op!r} has no dedup index")


def exact_settings(params: dict[str, Any]) -> dict[str, Any]:
    # v2: entries carry their survivor (v1 indexes are left alone, and rebuilt from the table)
    return {"v": 2, "case_sensitive": bool(params["case_sensitive"]),
            "collapse_whitespace": bool(params["collapse_whitespace"])}


def minhash_settings(params: dict[str, Any]) -> dict[str, Any]:
    from spark_jobs.ops.minhash_dedup import config_from

    cfg = config_from(params)
    bands, rows = cfg.banding()
    return {"v": 2, "num_perm": cfg.num_perm, "ngram": cfg.ngram, "bands": bands, "rows": rows,
            "max_shingles": cfg.max_shingles, "seed": cfg.seed}
