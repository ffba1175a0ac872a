"""embed_quality_score: a trained classifier on embeddings scores and filters rows."""
from __future__ import annotations

from typing import TYPE_CHECKING

from include.registry import Op, check_output_column, register_op
from ray_jobs import quality_model
from ray_jobs.control import detail, with_control
from ray_jobs.embeddings import Embedder, encode
from ray_jobs.engine import to_arrow
from ray_jobs.ops._common import finish, set_column

if TYPE_CHECKING:
    import pyarrow as pa


class QualityScorer(Embedder):
    """Ray actor: embeds a batch and adds the classifier's score (no vectors kept)."""

    def __init__(self, lake: str, name: str, version: int | None, column: str,
                 text_column: str, threads: int):
        super().__init__(text_column=text_column, threads=threads)
        self.clf = quality_model.load(lake, name, version)
        self.column = column

    def __call__(self, batch: pa.Table) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        emb = encode(self.model, batch.column(self.text_column).to_pylist())
        scores = self.clf.score(emb) if len(emb) else np.zeros(0)
        return batch.append_column(self.column, pa.array(scores.astype(np.float64), pa.float64()))


def decide(batch: pa.Table, column: str, threshold: float, ref: str) -> pa.Table:
    scores = batch.column(column).to_pylist()
    low = [s < threshold for s in scores]
    return with_control(
        batch, reason=["quality_score_below_threshold" if x else None for x in low],
        detail=[detail({"score": round(s, 4), "threshold": threshold, "model": ref}) if x else None
                for s, x in zip(scores, low)])


@register_op(
    name="embed_quality_score", version="1", category="score", engine="ray",
    tunables=("threshold",),
    description="""Scores each document with a quality classifier trained on
    all-MiniLM-L6-v2 embeddings of labelled good and bad examples (train it with
    `datamill quality-model train`; models are versioned in the lakehouse) and removes
    documents whose score is below the threshold, with score and model version in the
    ledger. Embedding and scoring run on a warm Ray worker pool.""",
    params={"properties": {
        "model": {"type": "string", "default": "default",
                  "description": "quality model name under <lake>/_system/models/quality"},
        "version": {"type": ["integer", "null"], "default": None,
                    "description": "model version; null = newest"},
        "threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "column": {"type": "string", "default": "quality_score"},
        "text_column": {"type": "string", "default": "text"},
        "workers": {"type": "integer", "minimum": 1, "default": 1},
        "threads": {"type": "integer", "minimum": 1, "default": 1},
        "batch_size": {"type": "integer", "minimum": 1, "default": 256}}},
    requires=("id", "text"), adds=("quality_score",))
class EmbedQualityScore(Op):
    @classmethod
    def columns_added(cls, params):
        return (check_output_column(cls.meta.name, "column", params["column"]),)

    @classmethod
    def columns_required(cls, params):
        return ("id", params["text_column"])

    def run(self, ds, params, ctx):
        import ray.data

        # Fail before starting workers when the model is missing.
        ref = quality_model.load(ctx.lake, params["model"], params["version"]).ref
        version = int(ref.rsplit("/v", 1)[1])
        ctx.extras.setdefault("stats", {}).update({"model": ref})
        if ds.count() == 0:  # no model workers for no rows
            import pyarrow as pa

            empty = set_column(to_arrow(ds), params["column"], pa.array([], pa.float64()))
            return finish(with_control(empty), ctx)
        scored = ds.map_batches(
            QualityScorer, batch_format="pyarrow", batch_size=params["batch_size"],
            fn_constructor_kwargs={"lake": ctx.lake, "name": params["model"], "version": version,
                                   "column": params["column"],
                                   "text_column": params["text_column"],
                                   "threads": params["threads"]},
            compute=ray.data.ActorPoolStrategy(size=params["workers"]), num_cpus=params["threads"])
        return scored.map_batches(decide, batch_format="pyarrow",
                                  fn_kwargs={"column": params["column"],
                                             "threshold": params["threshold"], "ref": ref})
