"""SemDeDup-style near-duplicate detection on unit-length embeddings.

Following SemDeDup (Abbas et al., 2023): cluster the embeddings with k-means
(scikit-learn), then compare documents only within their cluster. Within a
cluster documents are visited in id order and a document is a duplicate of
the first kept document (lowest id) whose cosine similarity reaches the
threshold, so the survivor is deterministic and every duplicate is within the
threshold of its survivor. Pairs split across clusters are not compared (the
method's known trade-off for near-linear cost).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Duplicate:
    survivor: int
    cosine: float


def cluster(emb: np.ndarray, cluster_size: int, seed: int) -> np.ndarray:
    n = len(emb)
    k = max(1, math.ceil(n / max(1, cluster_size)))
    if k == 1 or n < 2:
        return np.zeros(n, dtype=np.int64)
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, random_state=seed, n_init=3).fit_predict(emb).astype(np.int64)


def find_duplicates(ids: list[str], emb: np.ndarray, labels: np.ndarray,
                    threshold: float) -> dict[int, Duplicate]:
    """Row index -> its survivor and cosine, for every duplicate row."""
    out: dict[int, Duplicate] = {}
    for c in np.unique(labels):
        members = sorted(np.flatnonzero(labels == c).tolist(), key=lambda i: ids[i])
        if len(members) < 2:
            continue
        sims = emb[members] @ emb[members].T
        kept = np.zeros(len(members), dtype=bool)
        for j in range(len(members)):
            hits = np.flatnonzero(kept[:j] & (sims[:j, j] >= threshold))
            if hits.size:
                out[members[j]] = Duplicate(members[int(hits[0])], float(sims[hits[0], j]))
            else:
                kept[j] = True
    return out
