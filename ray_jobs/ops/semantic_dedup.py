"""semantic_dedup: paraphrase-level duplicates by sentence embeddings (SemDeDup)."""
from __future__ import annotations

from include.registry import Op, register_op
from ray_jobs.control import detail, with_control
from ray_jobs.embeddings import MODEL_NAME, Embedder, as_matrix
from ray_jobs.engine import to_arrow
from ray_jobs.ops._common import finish, set_column


@register_op(
    name="semantic_dedup", version="2", category="dedup", engine="ray",
    tunables=("threshold",),
    description="""Removes semantic (paraphrase-level) near-duplicates: embeds each
    document with all-MiniLM-L6-v2 (bundled, offline) on a warm Ray worker pool,
    clusters the embeddings with k-means (rows in id order, so the result does not
    depend on partitioning) and, within each cluster, marks a document as
    a duplicate of the lowest-id kept document whose cosine similarity is at least the
    threshold (SemDeDup). The ledger names the survivor and the cosine.""",
    params={"properties": {
        "threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.85,
                      "description": "cosine at or above which two texts are duplicates"},
        "cluster_size": {"type": "integer", "minimum": 2, "default": 2000,
                         "description": "target documents per k-means cluster"},
        "seed": {"type": "integer", "default": 0},
        "column": {"type": "string", "default": "text"},
        "workers": {"type": "integer", "minimum": 1, "default": 1},
        "threads": {"type": "integer", "minimum": 1, "default": 1,
                    "description": "CPU threads (and Ray CPUs) per embedding worker"},
        "batch_size": {"type": "integer", "minimum": 1, "default": 256}}},
    requires=("id", "text"), adds=("semantic_cluster",))
class SemanticDedup(Op):
    @classmethod
    def columns_required(cls, params):
        return ("id", params["column"])

    def run(self, ds, params, ctx):
        import pyarrow as pa
        import ray.data

        from ray_jobs.dedup import cluster, find_duplicates

        # Deterministic whatever order and partitioning Ray hands the rows in:
        # k-means' initialisation follows row order, and an embedding differs
        # in its last bits with the texts it is padded beside (measured: 2 of
        # 30 vectors, by up to 1e-7), so rows are sorted by id and embedded in
        # fixed batches of that order, and the vectors are sorted back by id.
        table = to_arrow(ds)
        if table.num_rows == 0:  # no model workers for no rows
            empty = set_column(table, "semantic_cluster", pa.array([], pa.int64()))
            return finish(with_control(empty), ctx)
        table, size = table.sort_by("id"), params["batch_size"]
        batches = [table.slice(i, size) for i in range(0, table.num_rows, size)]
        embedded = to_arrow(ray.data.from_arrow(batches).map_batches(
            Embedder, fn_constructor_kwargs={"text_column": params["column"],
                                             "threads": params["threads"]},
            batch_format="pyarrow", batch_size=size,
            compute=ray.data.ActorPoolStrategy(size=params["workers"]),
            num_cpus=params["threads"])).sort_by("id")
        emb = as_matrix(embedded.column("_emb"))
        ids = [str(i) for i in embedded.column("id").to_pylist()]
        labels = cluster(emb, params["cluster_size"], params["seed"])
        dups = find_duplicates(ids, emb, labels, params["threshold"])
        reason = [None] * len(ids)
        det = [None] * len(ids)
        for i, d in dups.items():
            reason[i] = "semantic_duplicate"
            det[i] = detail({"survivor": ids[d.survivor], "cosine": round(d.cosine, 4),
                             "cluster": int(labels[i]), "threshold": params["threshold"],
                             "model": MODEL_NAME})
        table = set_column(embedded.drop_columns(["_emb"]), "semantic_cluster",
                           pa.array(labels, pa.int64()))
        ctx.extras.setdefault("stats", {}).update(
            {"clusters": int(labels.max()) + 1 if len(labels) else 0, "model": MODEL_NAME})
        return finish(with_control(table, reason=reason, detail=det), ctx)
