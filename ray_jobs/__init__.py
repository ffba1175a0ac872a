"""Model-heavy ops on Ray: LLM scoring, annotation, rewriting, augmentation,
synthesis, semantic dedup and embedding quality scores (``ray_jobs.ops``), the
engine that moves a step's rows between Spark and Ray (``ray_jobs.engine``)
and the ``datamill quality-model`` command (``ray_jobs.cli``)."""
