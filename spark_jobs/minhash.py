"""MinHash near-duplicate detection in Spark, in four stages sharing one config.

1. ``signatures``: word n-gram shingles hashed to 32 bits and MinHash
   signatures, vectorised with numpy per Arrow batch (``mapInArrow``).
2. ``candidate_pairs``: LSH banding; each bucket's members, sorted by id, are
   paired with the next ``bucket_window`` members and with the bucket's lowest
   id, so a bucket of 50 000 near-copies yields ~50 000 x window pairs, not
   10^9 (all pairs for buckets up to window + 1 members). For a refresh,
   ``cross_pairs`` joins the new rows' bands with the bands of earlier runs'
   documents kept in the refresh index (spark_jobs/dedup_index.py).
3. ``verified_edges``: exact Jaccard of the candidates' shingle sets.
4. ``connected_components``: every node ends pointing at the lowest id of
   its component, which is the survivor. A graph of up to ``DRIVER_MAX_EDGES``
   verified edges is labelled on the driver with scipy; a larger one by
   alternating large-star / small-star rounds (Kiveris et al., "Connected
   Components in MapReduce and Beyond", 2014) as DataFrame joins, so such an
   edge list is never collected.

Memory per document is bounded: at most ``max_shingles`` shingles are kept,
the ones with the smallest hash values (a consistent bottom-k sample, so two
copies of a long document keep the same sample); Jaccard on sampled documents
uses the bottom-k estimator and is marked as estimated.

Hashing is written here rather than taken from datasketch/datatrove because
both hash one document at a time in Python; this hashes a whole Arrow batch of
words with one ``pandas.util.hash_array`` call (SipHash, fixed key, so stable
across processes and reruns) and combines n-grams with numpy arithmetic.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\w+")
_MASK32 = np.uint64(0xFFFFFFFF)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_GRAM_MULT = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                       0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
                       0x2545F4914F6CDD1D, 0x9FB21C651E98DF25, 0xA0761D6478BD642F,
                       0xE7037ED1A0B428DB], dtype=np.uint64)


@dataclass(frozen=True)
class MinhashConfig:
    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    bands: int = 0        # 0 = chosen from threshold and num_perm
    rows: int = 0
    max_shingles: int = 20000
    bucket_window: int = 32
    seed: int = 1

    def banding(self) -> tuple[int, int]:
        if self.bands and self.rows:
            if self.bands * self.rows > self.num_perm:
                raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds "
                                 f"num_perm = {self.num_perm}")
            return self.bands, self.rows
        return optimal_banding(self.threshold, self.num_perm)

    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        a = rng.integers(1, 2**63, size=self.num_perm, dtype=np.uint64) | np.uint64(1)
        b = rng.integers(0, 2**63, size=self.num_perm, dtype=np.uint64)
        return a, b


def optimal_banding(threshold: float, num_perm: int, recall_at_threshold: float = 0.995
                    ) -> tuple[int, int]:
    """(bands, rows) with the fewest expected false candidates among those that
    put a pair at exactly ``threshold`` in a shared bucket with probability at
    least ``recall_at_threshold``.

    datasketch's ``_optimal_param`` weighs false positives and negatives alike
    and gives 0.95 at J = 0.8 for 128 permutations; here every candidate is
    verified by exact Jaccard, so a false candidate costs one comparison while
    a missed one is a duplicate kept, and recall is fixed first.
    """
    s = np.linspace(0.0, threshold, 1001)
    best, best_fp = None, float("inf")
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if banding_recall(b, r, threshold) < recall_at_threshold:
            continue
        fp = np.trapezoid(1.0 - (1.0 - s ** r) ** b, s)
        if fp < best_fp:
            best, best_fp = (b, r), fp
    if best is None:
        raise ValueError(f"no banding of {num_perm} permutations reaches recall "
                         f"{recall_at_threshold} at Jaccard {threshold}; use more permutations")
    return best


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX[0]
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX[1]
    return x ^ (x >> np.uint64(31))


def shingles_of(word_hashes: np.ndarray, ngram: int, max_shingles: int) -> tuple[np.ndarray, bool]:
    """Sorted unique 32-bit shingle hashes, bottom-``max_shingles``; (hashes, capped)."""
    n = len(word_hashes)
    if n == 0:
        return np.empty(0, dtype=np.uint32), False
    k = min(ngram, n)
    m = n - k + 1
    acc = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            acc += word_hashes[j:j + m] * _GRAM_MULT[j % len(_GRAM_MULT)]
        sh = (_mix64(acc) >> np.uint64(32)).astype(np.uint32)
    sh = np.unique(sh)
    capped = len(sh) > max_shingles
    return (sh[:max_shingles] if capped else sh), capped


def signature(sh: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """MinHash signature (uint32 per permutation) by multiply-shift hashing."""
    sig = np.full(len(a), 0xFFFFFFFF, dtype=np.uint64)
    x = sh.astype(np.uint64)
    with np.errstate(over="ignore"):
        for i in range(0, len(x), chunk):
            h = (x[i:i + chunk, None] * a[None, :] + b[None, :]) >> np.uint64(32)
            np.minimum(sig, h.min(axis=0), out=sig)
    return sig.astype(np.uint32)


def jaccard(a: np.ndarray, b: np.ndarray, a_capped: bool, b_capped: bool) -> tuple[float, bool]:
    """(Jaccard, exact?) of two sorted unique shingle arrays."""
    if len(a) == 0 or len(b) == 0:
        return 0.0, True
    if not (a_capped or b_capped):
        inter = len(np.intersect1d(a, b, assume_unique=True))
        return inter / (len(a) + len(b) - inter), True
    # bottom-k estimator: of the k smallest hashes of the union, the share in both
    k = min(len(a), len(b))
    union_k = np.union1d(a, b)[:k]
    both = np.intersect1d(a, b, assume_unique=True)
    return len(np.intersect1d(union_k, both, assume_unique=True)) / k, False


def signature_batches(batches, cfg: MinhashConfig):
    """mapInArrow body: (id, text) batches -> (id, sig, sh, capped) batches."""
    import pandas as pd
    import pyarrow as pa

    a, b = cfg.permutations()
    for batch in batches:
        ids = batch.column("id")
        texts = batch.column("text").to_pylist()
        words_per_doc = [_WORD.findall(t.lower()) if t else [] for t in texts]
        flat = [w for ws in words_per_doc for w in ws]
        hashes = (pd.util.hash_array(np.asarray(flat, dtype=object), categorize=True)
                  if flat else np.empty(0, dtype=np.uint64))
        sigs, shs, capped_col = [], [], []
        pos = 0
        for ws in words_per_doc:
            wh = hashes[pos:pos + len(ws)]
            pos += len(ws)
            sh, capped = shingles_of(wh, cfg.ngram, cfg.max_shingles)
            if len(sh) == 0:
                sigs.append(None)
                shs.append(None)
            else:
                sigs.append(signature(sh, a, b).tobytes())
                shs.append(sh.tobytes())
            capped_col.append(capped)
        yield pa.RecordBatch.from_arrays(
            [ids, pa.array(sigs, pa.binary()), pa.array(shs, pa.binary()),
             pa.array(capped_col, pa.bool_())], names=["id", "sig", "sh", "capped"])


def signatures(df, cfg: MinhashConfig):
    return df.select("id", "text").mapInArrow(
        lambda it: signature_batches(it, cfg),
        "id string, sig binary, sh binary, capped boolean")


def band_keys(sigs, cfg: MinhashConfig):
    """(band, key, id): each signature cut into its LSH bands (key = the band's
    slice of the signature). What the refresh index stores per document."""
    from pyspark.sql import functions as F

    bands, rows = cfg.banding()
    width = rows * 4
    return sigs.where(F.col("sig").isNotNull()).select(
        "id", F.explode(F.array(*[
            F.struct(F.lit(i).alias("band"),
                     F.substring("sig", i * width + 1, width).alias("key"))
            for i in range(bands)])).alias("bk")).select("bk.band", "bk.key", "id")


def candidate_pairs(sigs, cfg: MinhashConfig):
    """Distinct (a, b) id pairs, a < b, that share an LSH bucket in some band."""
    from pyspark.sql import functions as F

    buckets = (band_keys(sigs, cfg).groupBy("band", "key")
               .agg(F.array_sort(F.collect_list("id")).alias("m"))
               .where(F.size("m") > 1))
    w = cfg.bucket_window
    # Member i pairs with members i+1..i+w and with member 0 (the bucket's
    # lowest id): linear in bucket size, all pairs for small buckets.
    pairs = buckets.select("m", F.posexplode("m").alias("i", "a")).select(
        F.explode(F.array_union(
            F.transform(F.sequence(F.lit(1), F.least(F.lit(w), F.size("m") - F.col("i") - 1)),
                        lambda o: F.struct(F.col("a").alias("a"),
                                           F.try_element_at("m", F.col("i") + o + 1).alias("b"))),
            F.when(F.col("i") > 0, F.array(F.struct(F.element_at("m", 1).alias("a"),
                                                    F.col("a").alias("b"))))
             .otherwise(F.array().cast("array<struct<a:string,b:string>>"))
        )).alias("p"))
    # For the last member sequence(1, 0) counts down to index past the end:
    # try_element_at gives null there and the a < b filter drops it.
    return pairs.select("p.a", "p.b").where(F.col("a") < F.col("b")).distinct()


def cross_pairs(new_keys, published_keys, cfg: MinhashConfig):
    """Distinct (a = new id, b = indexed id, b_survivor) pairs sharing an LSH bucket.

    ``new_keys`` is a ``band_keys`` frame, ``published_keys`` the index's
    (band, key, id, survivor). Only the indexed buckets that some new row falls
    into are read further, and in each of them the new rows meet at most
    ``bucket_window + 1`` indexed members, the lowest ids (the index holds
    earlier runs' removed copies too, so a bucket of near-copies is bounded).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    wanted = new_keys.select("band", "key").distinct()
    hit = published_keys.join(wanted, ["band", "key"], "left_semi")
    rank = F.row_number().over(Window.partitionBy("band", "key").orderBy("id"))
    hit = hit.withColumn("_rank", rank).where(F.col("_rank") <= cfg.bucket_window + 1)
    return (new_keys.join(hit.select("band", "key", F.col("id").alias("b"),
                                     F.col("survivor").alias("b_survivor")), ["band", "key"])
            .select(F.col("id").alias("a"), "b", "b_survivor").distinct())


def _jaccard_batches(batches, threshold: float | None):
    import pyarrow as pa

    for batch in batches:
        a_sh = batch.column("a_sh").to_pylist()
        b_sh = batch.column("b_sh").to_pylist()
        a_cap = batch.column("a_capped").to_pylist()
        b_cap = batch.column("b_capped").to_pylist()
        js, exact = [], []
        for x, y, cx, cy in zip(a_sh, b_sh, a_cap, b_cap):
            j, e = jaccard(np.frombuffer(x, dtype=np.uint32), np.frombuffer(y, dtype=np.uint32),
                           cx, cy)
            js.append(j)
            exact.append(e)
        out = pa.RecordBatch.from_arrays(
            [batch.column("a"), batch.column("b"), pa.array(js, pa.float64()),
             pa.array(exact, pa.bool_())], names=["a", "b", "jaccard", "exact"])
        if threshold is not None:
            import pyarrow.compute as pc

            out = out.filter(pc.greater_equal(out.column("jaccard"), threshold))
        yield out


def pair_jaccard(pairs, sigs, threshold: float | None = None):
    """(a, b, jaccard, exact) for each pair; only pairs >= threshold when given."""
    from pyspark.sql import functions as F

    sh = sigs.select("id", "sh", "capped")
    joined = (pairs.join(sh.select(F.col("id").alias("a"), F.col("sh").alias("a_sh"),
                                   F.col("capped").alias("a_capped")), "a")
              .join(sh.select(F.col("id").alias("b"), F.col("sh").alias("b_sh"),
                              F.col("capped").alias("b_capped")), "b"))
    return joined.select("a", "b", "a_sh", "b_sh", "a_capped", "b_capped").mapInArrow(
        lambda it: _jaccard_batches(it, threshold),
        "a string, b string, jaccard double, exact boolean")


# Graphs up to this many edges are labelled on the driver (scipy); larger ones by
# the Spark rounds below. 2M edges of two ~10-character ids are ~100 MB of Arrow.
DRIVER_MAX_EDGES = 2_000_000


def connected_components(edges, max_rounds: int = 64,
                         driver_max_edges: int = DRIVER_MAX_EDGES):
    """(id, root) for every node in ``edges`` (a, b); root = lowest id of its component."""
    from pyspark.sql import functions as F

    e = edges.select(F.least("a", "b").alias("u"), F.greatest("a", "b").alias("v")) \
        .where(F.col("u") != F.col("v")).distinct().localCheckpoint()
    n_edges = e.count()
    if n_edges <= driver_max_edges:
        return _components_on_driver(e)
    for _ in range(max_rounds):
        # large-star: every neighbour larger than u attaches to min(N(u) + u)
        both = e.union(e.select(F.col("v").alias("u"), F.col("u").alias("v")))
        m = both.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
        large = (both.join(m, "u").where(F.col("v") > F.col("u"))
                 .select(F.col("v").alias("x"), F.col("m").alias("y")))
        large = large.select(F.least("x", "y").alias("u"), F.greatest("x", "y").alias("v")) \
            .where(F.col("u") != F.col("v")).distinct()
        # small-star: u and its smaller neighbours attach to the smallest of them
        # (edges are stored as (smaller, larger), so N<=(v) are the u's of v)
        m2 = large.groupBy("v").agg(F.min("u").alias("m"))
        small = (large.join(m2, "v").select(F.col("u").alias("x"), F.col("m").alias("y"))
                 .union(m2.select(F.col("v").alias("x"), F.col("m").alias("y"))))
        new = small.select(F.least("x", "y").alias("u"), F.greatest("x", "y").alias("v")) \
            .where(F.col("u") != F.col("v")).distinct().localCheckpoint()
        # Both are distinct edge sets: equal iff same size and new within old.
        n_new = new.count()
        same = n_new == n_edges and new.join(e, ["u", "v"], "left_anti").limit(1).count() == 0
        e, n_edges = new, n_new
        if same:
            break
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    # converged: a star per component, centre = its minimum
    roots = e.groupBy("v").agg(F.min("u").alias("root"))
    centres = e.select(F.col("u").alias("v")).distinct().join(roots, "v", "left_anti") \
        .select("v", F.col("v").alias("root"))
    return roots.union(centres).select(F.col("v").alias("id"), "root")


def _components_on_driver(e):
    """``connected_components`` for a graph that fits in the driver's memory:
    scipy's ``csgraph.connected_components`` over the collected edge list.

    The Spark rounds cost a few Spark jobs each (1-3 s apiece even on a few
    thousand edges, 4+ rounds), which dominated a refresh's dedup; scipy labels
    a million edges in under a second. Same answer: root = the component's
    lowest id (Python's str order is Spark's: UTF-8 byte order = code points).
    """
    import numpy as np
    import pyarrow as pa
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as label

    t = e.toArrow()
    n_e = t.num_rows
    ends = np.concatenate([t.column("u").to_numpy(zero_copy_only=False),
                           t.column("v").to_numpy(zero_copy_only=False)])
    ids, idx = np.unique(ends, return_inverse=True)      # ids sorted ascending
    graph = coo_matrix((np.ones(n_e, dtype=np.int8), (idx[:n_e], idx[n_e:])),
                       shape=(len(ids), len(ids)))
    _, labels = label(graph, directed=False)
    lowest = np.full(labels.max() + 1 if len(ids) else 0, len(ids))
    np.minimum.at(lowest, labels, np.arange(len(ids)))  # first sorted id per label
    out = pa.table({"id": pa.array(ids.tolist(), pa.string()),
                    "root": pa.array(ids[lowest[labels]].tolist(), pa.string())})
    return e.sparkSession.createDataFrame(out)


def banding_recall(bands: int, rows: int, s: float) -> float:
    """Probability that a pair with Jaccard ``s`` shares at least one bucket."""
    return 1.0 - (1.0 - s ** rows) ** bands
