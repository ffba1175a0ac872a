"""``minhash_dedup``: near-duplicate removal, MinHash LSH + exact Jaccard + components."""
from __future__ import annotations

from typing import Any

from include.registry import Op, StepContext, apply_defaults, register_op


def config_from(params: dict[str, Any]):
    # spark_jobs.minhash imports numpy; DAG parsing reads this module's metadata only.
    from spark_jobs.minhash import MinhashConfig

    return MinhashConfig(
        threshold=params["threshold"], num_perm=params["num_perm"], ngram=params["ngram"],
        bands=params["bands"], rows=params["rows"], max_shingles=params["max_shingles"],
        bucket_window=params["bucket_window"], seed=params["seed"])


@register_op(
    name="minhash_dedup", version="1", category="dedup", engine="spark", rowwise=False,
    tunables=("threshold", "ngram"),
    description="""Removes near-duplicate documents. Lower-cased word n-gram shingles (at most
    max_shingles per document, a consistent bottom-k sample, so multi-MB documents stay
    bounded), vectorised MinHash signatures, LSH banding with bands x rows chosen from the
    threshold so that a pair at the threshold becomes a candidate with probability >= 0.995,
    every candidate verified by exact Jaccard of the shingle sets, connected components of
    the verified pairs computed in Spark (large-star/small-star), and one survivor per cluster:
    the lowest id, the same on every rerun and at any parallelism. Each removed document
    records its cluster, survivor, cluster size and measured Jaccard with the survivor. Skew
    safe: a bucket's members are compared with their next bucket_window members and the
    bucket's lowest id, never all pairs of a huge bucket. In an incremental pipeline new
    documents are also compared with every document earlier runs saw (their bands,
    shingles and survivors are kept in an index beside the published table), so only new
    rows get signatures and a near copy of an earlier removed copy is removed too; a
    published document is never removed, it is the survivor of its cluster.""",
    params={"type": "object", "properties": {
        "threshold": {"type": "number", "minimum": 0.05, "maximum": 1, "default": 0.8,
                      "description": "Jaccard similarity at or above which documents are "
                                     "duplicates"},
        "num_perm": {"type": "integer", "minimum": 8, "maximum": 1024, "default": 128,
                     "description": "MinHash permutations"},
        "ngram": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5,
                  "description": "words per shingle"},
        "bands": {"type": "integer", "minimum": 0, "default": 0,
                  "description": "LSH bands; 0 = chosen from threshold"},
        "rows": {"type": "integer", "minimum": 0, "default": 0,
                 "description": "rows per band; 0 = chosen from threshold"},
        "max_shingles": {"type": "integer", "minimum": 100, "default": 20000,
                         "description": "shingles kept per document (smallest hashes)"},
        "bucket_window": {"type": "integer", "minimum": 1, "default": 32,
                          "description": "each bucket member is compared with this many "
                                         "following members (by id) and the bucket's lowest id"},
        "seed": {"type": "integer", "default": 1, "description": "permutation seed"},
    }},
    requires=("text",), adds=())
class MinhashDedup(Op):
    def run(self, df, params: dict[str, Any], ctx: StepContext):
        from pyspark.sql import functions as F

        from spark_jobs.incremental import context_state
        from spark_jobs.minhash import (band_keys, candidate_pairs, connected_components,
                                        pair_jaccard, signatures)

        params = apply_defaults(self.meta, params)
        cfg = config_from(params)
        cfg.banding()  # reject impossible bands x rows before any Spark work
        sigs = signatures(df, cfg).localCheckpoint()
        edges = pair_jaccard(candidate_pairs(sigs, cfg), sigs, cfg.threshold)
        shingles = sigs
        refresh = context_state(ctx)
        index = earlier = None
        if refresh is not None:  # an incremental pipeline: compare with earlier runs
            index, earlier = _published_side(ctx, refresh, params, cfg, sigs)
        if earlier is not None:
            cross, old_docs, reps = earlier
            shingles = sigs.select("id", "sh", "capped").unionByName(old_docs)
            edges = edges.unionByName(pair_jaccard(cross.select("a", "b"), shingles,
                                                   cfg.threshold))
        comps = connected_components(edges.select("a", "b")).localCheckpoint()
        sizes = comps.groupBy("root").agg(F.count(F.lit(1)).alias("size"))  # root included
        survivor = F.col("root")
        if earlier is not None:
            # A component with earlier runs' documents keeps them all; its
            # survivor is the lowest published one of their survivors (else the
            # lowest of them: a later step removed it), and every new member is
            # removed.
            new_ids = sigs.select("id")
            old_root = (comps.join(new_ids, "id", "left_anti").join(reps, "id").groupBy("root")
                        .agg(F.min(F.when(F.col("rep_live"), F.col("rep"))).alias("_pub"),
                             F.min("rep").alias("_rep")))
            comps = comps.join(new_ids, "id", "left_semi").join(old_root, "root", "left")
            survivor = F.coalesce(F.col("_pub"), F.col("_rep"), F.col("root"))
        removed = (comps.where(F.col("id") != survivor).join(sizes, "root")
                   .select(survivor.alias("a"), F.col("id").alias("b"), "size",
                           F.col("root").alias("cluster"),
                           (F.col("_pub").isNotNull() if earlier is not None
                            else F.lit(None).cast("boolean")).alias("published")))
        # A left join: a survivor whose shingles are gone (its file was
        # replaced) still removes the copy, with no measured Jaccard.
        measured = removed.join(pair_jaccard(removed.select("a", "b"), shingles), ["a", "b"],
                                "left")
        fields = [F.col("cluster"), F.col("a").alias("survivor"),
                  F.col("size").alias("cluster_size"), F.round("jaccard", 4).alias("jaccard"),
                  F.col("exact").alias("jaccard_exact")]
        if earlier is not None:
            fields.append(F.col("published"))
        verdict = measured.select(F.col("b").alias("id"), F.to_json(F.struct(*fields))
                                  .alias("__detail"))
        cols = [c for c in df.columns if c not in ("_reason", "_detail", "_changed", "_quarantine")]
        out = df.join(verdict, "id", "left").select(
            *cols,
            F.when(F.col("__detail").isNotNull(), F.lit("near_duplicate")).alias("_reason"),
            F.col("__detail").alias("_detail"),
            F.lit(None).cast("string").alias("_changed"),
            F.lit(None).cast("string").alias("_quarantine"))
        if index is not None:
            # Every row's bands and shingles join the index when the run
            # publishes, a removed row's with its survivor (dedup_index.py says why).
            out = out.localCheckpoint()
            rep = out.select("id", F.coalesce(F.get_json_object("_detail", "$.survivor"),
                                              F.col("id")).alias("survivor"))
            seen = sigs.where(F.col("sig").isNotNull())
            index.stage(ctx.run_id, band_keys(seen, cfg).join(rep, "id"),
                        seen.select("id", "sh", "capped"))
            stats = ctx.extras.setdefault("stats", {})
            stats["signatures_computed"] = sigs.count()
            if earlier is not None:
                stats["published_duplicates"] = out.where(
                    F.col("_detail").contains('"published":true')).count()
        return out


def _published_side(ctx: StepContext, refresh, params: dict[str, Any], cfg, sigs):
    """(index, (cross pairs, their indexed documents and survivors' shingles,
    survivors) or None before the first publish). Only the new rows'
    signatures are computed here; the earlier side comes from the index
    (rebuilt first if it mirrors another version of the table). Survivors:
    ``id`` (an indexed document in a cross pair), ``rep`` (its survivor),
    ``rep_live`` (true if ``rep`` is in the published table)."""
    from pyspark.sql import functions as F

    from include.lakehouse import Lakehouse
    from spark_jobs.dedup_index import DedupIndex, minhash_settings
    from spark_jobs.minhash import band_keys, cross_pairs, signatures

    lh = Lakehouse(ctx.lake)
    index = DedupIndex(lh, refresh.output_table, "minhash", minhash_settings(params),
                       with_docs=True)
    if refresh.basis_version is None:
        return index, None

    def entries(published):
        s = signatures(published, cfg).where(F.col("sig").isNotNull()).localCheckpoint()
        return band_keys(s, cfg), s.select("id", "sh", "capped")

    state, rebuilt = index.ensure(refresh.basis_version,
                                  lambda: lh.read(refresh.output_table, refresh.basis_version),
                                  entries)
    cross = cross_pairs(band_keys(sigs, cfg), index.keys(state, refresh.own_ids(lh, sigs)),
                        cfg).localCheckpoint()
    live = refresh.published_ids(lh).select(F.col("id").alias("rep"),
                                            F.lit(True).alias("rep_live"))
    reps = (cross.select(F.col("b").alias("id"), F.col("b_survivor").alias("rep")).distinct()
            .join(live, "rep", "left").localCheckpoint())
    wanted = cross.select(F.col("b").alias("id")) \
        .unionByName(cross.select(F.col("b_survivor").alias("id"))).distinct()
    old_docs = index.docs(state, wanted)
    ctx.extras.setdefault("stats", {}).update({"published_version": refresh.basis_version,
                                               "index_rebuilt": rebuilt,
                                               "published_candidate_pairs": cross.count()})
    return index, (cross, old_docs, reps)
