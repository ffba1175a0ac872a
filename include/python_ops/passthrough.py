"""Rows unchanged, with the control columns an op returns (all null): for
ops that look at rows without deciding anything about them."""
from __future__ import annotations

from include.registry import CONTROL_COLUMNS


def passthrough(df):
    from pyspark.sql import functions as F

    null = F.lit(None).cast("string")
    decided = [c for c in CONTROL_COLUMNS if c != "_parent_id"]
    return df.select(*[c for c in df.columns if c not in decided],
                     *[null.alias(c) for c in decided])
