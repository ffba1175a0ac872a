"""Dedup indexes beside a published table, so a refresh compares new rows with
the published corpus without recomputing anything about it.

One index per dedup step and settings (the settings that change its keys:
exact_dedup's text normalisation, minhash_dedup's permutations, shingling and
banding), in ``<output table>__dedup/<op>_<settings hash>/``, three Delta
tables:

- ``keys``: ``band``, ``key`` (binary), ``id``: for minhash_dedup one row per
  LSH band of each published document (the band's slice of its MinHash
  signature); for exact_dedup one row per document, the SHA-256 of its
  normalised text (band 0);
- ``docs`` (minhash_dedup only): ``id``, ``sh`` (its shingle hashes), ``capped``,
  what exact-Jaccard verification of a candidate pair needs;
- ``commits``: which runs' entries make up the index and the table version the
  index mirrors.

Entries are partitioned by the run that wrote them (``_run_id``). A run's dedup
step stages the entries of the rows it keeps; the publish commits them
(:meth:`DedupIndex.commit`): entries of rows a later step removed are deleted,
so are entries of documents a changed file replaced, and the commit row
records the new table version. Readers take only committed runs. A refresh
whose basis version is not the one the index mirrors (the table was
republished in full, the index is new, or a crash came between the table's
commit and the index's) rebuilds the index from the published table first:
the only time its cost grows with the corpus.
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
        """Committed (band, key, id) entries, without ``exclude_ids`` (column ``id``)."""
        out = self._entries(self.keys_table, state.runs)
        return out.join(exclude_ids, "id", "left_anti") if exclude_ids is not None else out

    def docs(self, state: IndexState, ids):
        """Committed (id, sh, capped) rows of the ids in ``ids`` (column ``id``)."""
        from pyspark.sql import functions as F

        return self._entries(self.docs_table, state.runs).join(F.broadcast(ids), "id",
                                                               "left_semi")

    # -- writes -----------------------------------------------------------------
    def _write(self, tag: str, keys, docs) -> None:
        self.lh.write_run(keys.select("band", "key", "id"), self.keys_table, tag)
        if self.with_docs:
            self.lh.write_run(docs.select("id", "sh", "capped"), self.docs_table, tag)

    def stage(self, run_id: str, keys, docs=None) -> None:
        """The entries of the rows a run's step keeps (replaced on a retry)."""
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

    def commit(self, run_id: str, version: int, published_ids, replaced_ids=None, *,
               build: bool, basis: int | None = None) -> None:
        """Make the run's staged entries part of the index at table ``version``.

        ``published_ids``: the ids the run published (staged entries of other
        ids are dropped). ``replaced_ids`` (``doc_id``): earlier documents the
        run's changed files replace. ``build``: the table was overwritten, so
        only this run's entries remain. An append whose index does not mirror
        ``basis`` is left out (the next refresh rebuilds the index).
        """
        from pyspark.sql import functions as F

        if not build:
            st = self.state()
            if basis is not None and st.version != basis:
                log.warning("%s: index mirrors version %s, not %s; it will be rebuilt",
                            self.base, st.version, basis)
                return
        if self.lh.exists(self.keys_table):
            staged = self.lh.read(self.keys_table).where(F.col("_run_id") == run_id) \
                .select("id").distinct()
            # Rows a later step removed: checkpointed, as the MERGE rewrites the table it reads.
            extra = staged.join(published_ids.select("id"), "id", "left_anti").localCheckpoint()
            if extra.count():
                self._delete_ids(extra, f"_run_id = {_sql_str(run_id)}")
        if build:
            self._delete(f"_run_id <> {_sql_str(run_id)}")
        elif replaced_ids is not None:
            rep = replaced_ids.select(F.col("doc_id").alias("id"))
            if rep.limit(1).count():
                self._delete_ids(rep, f"_run_id <> {_sql_str(run_id)}")
        self._record(run_id, version, "build" if build else "append")

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
    return {"v": 1, "case_sensitive": bool(params["case_sensitive"]),
            "collapse_whitespace": bool(params["collapse_whitespace"])}


def minhash_settings(params: dict[str, Any]) -> dict[str, Any]:
    from spark_jobs.ops.minhash_dedup import config_from

    cfg = config_from(params)
    bands, rows = cfg.banding()
    return {"v": 1, "num_perm": cfg.num_perm, "ngram": cfg.ngram, "bands": bands, "rows": rows,
            "max_shingles": cfg.max_shingles, "seed": cfg.seed}
