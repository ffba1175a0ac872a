"""Ray ops; importing this package registers them all."""
from ray_jobs.ops import (  # noqa: F401
    embed_quality_score,
    llm_annotate,
    llm_augment,
    llm_rewrite,
    llm_score,
    llm_synthesize,
    semantic_dedup,
)
