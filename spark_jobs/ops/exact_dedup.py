"""``exact_dedup``: identical (normalised) texts collapse to the copy with the lowest id."""
from __future__ import annotations

from typing import Any

from include.registry import Op, StepContext, apply_defaults, register_op


@register_op(
    name="exact_dedup", version="1", category="dedup", engine="spark", rowwise=False,
    description="""Removes exact duplicate documents. Texts are compared by SHA-256 of the text
    after whitespace runs are collapsed and ends trimmed (and lower-cased unless
    case_sensitive), so copies that differ only in spacing or case are duplicates. In every
    group of copies the document with the lowest id (string order) survives, the same on every
    rerun and at any parallelism; each removed document names its survivor and the number of
    copies. Documents with null text are never duplicates.""",
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

        params = apply_defaults(self.meta, params)
        key = F.col("text")
        if params["collapse_whitespace"]:
            key = F.trim(F.regexp_replace(key, r"\s+", " "))
        if not params["case_sensitive"]:
            key = F.lower(key)
        keyed = df.withColumn("__h", F.sha2(key, 256))
        # Aggregate then join rather than a window: partial aggregation keeps a
        # group of millions of copies from landing whole on one task.
        groups = (keyed.where(F.col("__h").isNotNull()).groupBy("__h")
                  .agg(F.min("id").alias("__survivor"), F.count(F.lit(1)).alias("__copies"))
                  .where(F.col("__copies") > 1))
        out = keyed.join(groups, "__h", "left")
        dup = F.col("__survivor").isNotNull() & (F.col("id") != F.col("__survivor"))
        detail = F.to_json(F.struct(F.col("__survivor").alias("survivor"),
                                    F.col("__copies").alias("copies"),
                                    F.col("__h").alias("sha256")))
        cols = [c for c in df.columns if c not in ("_reason", "_detail", "_changed", "_quarantine")]
        return out.select(
            *cols,
            F.when(dup, F.lit("exact_duplicate")).alias("_reason"),
            F.when(dup, detail).alias("_detail"),
            F.lit(None).cast("string").alias("_changed"),
            F.lit(None).cast("string").alias("_quarantine"))
