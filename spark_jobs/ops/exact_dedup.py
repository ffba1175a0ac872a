"""``exact_dedup``: identical (normalised) texts collapse to the copy with the lowest id."""
from __future__ import annotations

from typing import Any

from include.registry import Op, StepContext, apply_defaults, register_op


def text_hash(params: dict[str, Any]):
    """SHA-256 (hex) of the normalised text, the key copies share."""
    from pyspark.sql import functions as F

    key = F.col("text")
    if params["collapse_whitespace"]:
        key = F.trim(F.regexp_replace(key, r"\s+", " "))
    if not params["case_sensitive"]:
        key = F.lower(key)
    return F.sha2(key, 256)


@register_op(
    name="exact_dedup", version="1", category="dedup", engine="spark", rowwise=False,
    tunables=("case_sensitive", "collapse_whitespace"),
    description="""Removes exact duplicate documents. Texts are compared by SHA-256 of the text
    after whitespace runs are collapsed and ends trimmed (and lower-cased unless
    case_sensitive), so copies that differ only in spacing or case are duplicates. In every
    group of copies the document with the lowest id (string order) survives, the same on every
    rerun and at any parallelism; each removed document names its survivor and the number of
    copies. Documents with null text are never duplicates. In an incremental pipeline new
    documents are also compared with the documents earlier runs kept (through a hash index
    beside the published table): a published copy is always the survivor and is never
    removed.""",
    params={"type": "object", "properties": {
        "case_sensitive": {"type": "boolean", "default": False,
                           "description": "compare case as well"},
        "collapse_whitespace": {"type": "boolean", "default": True,
                                "description": "treat runs of whitespace as one space"},
    }},
    requires=("text",), adds=())
class ExactDedup(Op):
    def run(self, df, params: dict[str, Any], ctx: StepContext):
        from pyspark.sql import functions as F

        from spark_jobs.incremental import context_state

        params = apply_defaults(self.meta, params)
        keyed = df.withColumn("__h", text_hash(params))
        # Aggregate then join rather than a window: partial aggregation keeps a
        # group of millions of copies from landing whole on one task.
        groups = (keyed.where(F.col("__h").isNotNull()).groupBy("__h")
                  .agg(F.min("id").alias("__survivor"), F.count(F.lit(1)).alias("__copies"))
                  .where(F.col("__copies") > 1))
        out = keyed.join(groups, "__h", "left")
        survivor, copies, published = F.col("__survivor"), F.col("__copies"), None
        refresh = context_state(ctx)
        index = None
        if refresh is not None:  # an incremental pipeline: compare with earlier runs
            index, pub = _published_hashes(ctx, refresh, params, keyed)
            if pub is not None:
                out = out.join(pub, "__h", "left")
                published = F.col("__pub_live").isNotNull()
                survivor = F.coalesce(F.col("__pub_live"), F.col("__pub"), survivor)
                copies = F.coalesce(copies, F.lit(1)) + F.coalesce(F.col("__pub_copies"), F.lit(0))
        dup = survivor.isNotNull() & (F.col("id") != survivor)
        fields = [survivor.alias("survivor"), copies.alias("copies"), F.col("__h").alias("sha256")]
        if published is not None:
            fields.append(published.alias("published"))
        detail = F.to_json(F.struct(*fields))
        cols = [c for c in df.columns if c not in ("_reason", "_detail", "_changed", "_quarantine")]
        out = out.select(
            *cols, "__h",
            F.when(dup, F.lit("exact_duplicate")).alias("_reason"),
            F.when(dup, detail).alias("_detail"),
            F.lit(None).cast("string").alias("_changed"),
            F.lit(None).cast("string").alias("_quarantine"))
        if index is not None:
            # The kept rows' hashes join the index when the run publishes (a
            # removed copy's hash is its survivor's).
            out = out.localCheckpoint()
            index.stage(ctx.run_id, out.where(F.col("_reason").isNull() & F.col("__h").isNotNull())
                        .select(F.lit(0).alias("band"), F.unhex("__h").alias("key"), "id",
                                F.col("id").alias("survivor")))
            if refresh.basis_version is not None:
                ctx.extras.setdefault("stats", {})["published_duplicates"] = out.where(
                    F.col("_detail").contains('"published":true')).count()
        return out.drop("__h")


def _published_hashes(ctx: StepContext, refresh, params: dict[str, Any], keyed):
    """(index, earlier copies of the new rows' hashes or None before the first
    publish): ``__h`` -> ``__pub_live`` (the lowest published id), ``__pub``
    (the lowest id of any earlier run's copy: a later step may have removed
    it), ``__pub_copies``."""
    from pyspark.sql import functions as F

    from include.lakehouse import Lakehouse
    from spark_jobs.dedup_index import DedupIndex, exact_settings

    lh = Lakehouse(ctx.lake)
    index = DedupIndex(lh, refresh.output_table, "exact", exact_settings(params), with_docs=False)
    if refresh.basis_version is None:
        return index, None

    def entries(published):
        return (published.where(F.col("text").isNotNull())
                .select(F.lit(0).alias("band"), F.unhex(text_hash(params)).alias("key"), "id"),
                None)

    state, rebuilt = index.ensure(refresh.basis_version,
                                  lambda: lh.read(refresh.output_table, refresh.basis_version),
                                  entries)
    ctx.extras.setdefault("stats", {}).update({"published_version": refresh.basis_version,
                                               "index_rebuilt": rebuilt})
    wanted = keyed.where(F.col("__h").isNotNull()).select("__h").distinct()
    live = refresh.published_ids(lh).withColumn("_live", F.lit(True))
    pub = (index.keys(state, refresh.own_ids(lh, keyed)).select(F.lower(F.hex("key")).alias("__h"), "id")
           .join(wanted, "__h", "left_semi").join(live, "id", "left")
           .groupBy("__h").agg(F.min(F.when(F.col("_live"), F.col("id"))).alias("__pub_live"),
                               F.min("id").alias("__pub"),
                               F.count(F.lit(1)).alias("__pub_copies")))
    return index, pub
