"""Spark ops: importing this package registers them all."""
from spark_jobs.ops import (  # noqa: F401
    exact_dedup,
    html_extract,
    language_filter,
    minhash_dedup,
    normalize,
    pii_redact,
    quality_filter,
    training_signal_filter,
)
