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
    description="""Removes near-duplicate documents. Lower-cased word n-gram shingles (at most
    max_shingles per document, a consistent bottom-k sample, so multi-MB documents stay
    bounded), vectorised MinHash signatures, LSH banding with bands x rows chosen from the
    threshold so that a pair at the threshold becomes a candidate with probability >= 0.995,
    every candidate verified by exact Jaccard of the shingle sets, connected components of
    the verified pairs computed in Spark (large-star/small-star), and one survivor per cluster:
    the lowest id, the same on every rerun and at any parallelism. Each removed document
    records its cluster, survivor, cluster size and measured Jaccard with the survivor. Skew
    safe: a bucket's members are compared with their next bucket_window members and the
    bucket's lowest id, never all pairs of a huge bucket.""",
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
        from spark_jobs.minhash import (candidate_pairs, connected_components, pair_jaccard,
                                        signatures)

        from pyspark.sql import functions as F

        cfg = config_from(apply_defaults(self.meta, params))
        cfg.banding()  # reject impossible bands x rows before any Spark work
        sigs = signatures(df, cfg).localCheckpoint()
        edges = pair_jaccard(candidate_pairs(sigs, cfg), sigs, cfg.threshold)
        comps = connected_components(edges.select("a", "b")).localCheckpoint()
        sizes = comps.groupBy("root").agg(F.count(F.lit(1)).alias("size"))  # root included
        removed = (comps.where(F.col("id") != F.col("root")).join(sizes, "root")
                   .select(F.col("root").alias("a"), F.col("id").alias("b"), "size"))
        measured = pair_jaccard(removed.select("a", "b"), sigs).join(removed, ["a", "b"])
        verdict = measured.select(
            F.col("b").alias("id"),
            F.to_json(F.struct(F.col("a").alias("cluster"), F.col("a").alias("survivor"),
                               F.col("size").alias("cluster_size"),
                               F.round("jaccard", 4).alias("jaccard"),
                               F.col("exact").alias("jaccard_exact"))).alias("__detail"))
        cols = [c for c in df.columns if c not in ("_reason", "_detail", "_changed", "_quarantine")]
        out = df.join(verdict, "id", "left")
        return out.select(
            *cols,
            F.when(F.col("__detail").isNotNull(), F.lit("near_duplicate")).alias("_reason"),
            F.col("__detail").alias("_detail"),
            F.lit(None).cast("string").alias("_changed"),
            F.lit(None).cast("string").alias("_quarantine"))
