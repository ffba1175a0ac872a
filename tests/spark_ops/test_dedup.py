"""exact_dedup and minhash_dedup: labelled sets, deterministic survivors, skew, long docs."""
from __future__ import annotations

import json
import random

import pytest

from include.registry import get_op
from spark_jobs import minhash

VOCAB = [f"w{i}" for i in range(20000)]


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    ws = text.lower().split()
    return {tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)}


def true_jaccard(a: str, b: str) -> float:
    """Ground truth by plain Python sets, independent of spark_jobs.minhash."""
    x, y = _shingles(a), _shingles(b)
    return len(x & y) / len(x | y)


def _edit(words: list[str], n_subs: int, rng: random.Random) -> list[str]:
    out = list(words)
    for i in rng.sample(range(len(out)), n_subs):
        out[i] = rng.choice(VOCAB)
    return out


def _run(spark, ctx, rows, params=None, parts=None):
    df = spark.createDataFrame(rows, "id string, text string")
    if parts:
        df = df.repartition(parts)
    out = get_op("minhash_dedup")().run(df, dict(params or {}), ctx).collect()
    return {r["id"]: r.asDict() for r in out}


def test_exact_dedup_lowest_id_survives(run_op):
    rows = [("b", "Hello   World"), ("a", "hello world"), ("c", "hello world "), ("d", "other"),
            ("n1", None), ("n2", None), ("e", "")]
    out = run_op("exact_dedup", rows)
    assert len(out) == 7
    assert out["a"]["_reason"] is None
    for k in ("b", "c"):
        assert out[k]["_reason"] == "exact_duplicate"
        assert json.loads(out[k]["_detail"])["survivor"] == "a"
        assert json.loads(out[k]["_detail"])["copies"] == 3
    assert all(out[k]["_reason"] is None for k in ("d", "n1", "n2", "e"))
    strict = run_op("exact_dedup", rows, {"case_sensitive": True})
    assert strict["b"]["_reason"] is None and strict["c"]["_reason"] == "exact_duplicate"


@pytest.fixture(scope="module")
def labelled():
    """40 clusters: an original, two copies at J >= 0.8 and one at J <= 0.6."""
    rng = random.Random(7)
    rows, truth = [], {}
    for c in range(40):
        base = [rng.choice(VOCAB) for _ in range(300)]
        docs = {f"c{c:02d}_a": base, f"c{c:02d}_b": _edit(base, 2, rng),
                f"c{c:02d}_c": _edit(base, 3, rng), f"c{c:02d}_far": _edit(base, 30, rng)}
        texts = {k: " ".join(v) for k, v in docs.items()}
        rows += list(texts.items())
        truth[c] = {k: true_jaccard(texts[f"c{c:02d}_a"], t) for k, t in texts.items()}
    return rows, truth


def test_minhash_labelled_pairs(spark, ctx, labelled):
    rows, truth = labelled
    out = _run(spark, ctx, rows)
    assert len(out) == len(rows)
    for c, js in truth.items():
        for doc, j in js.items():
            if doc.endswith("_a"):
                assert out[doc]["_reason"] is None
            elif j >= 0.8:
                assert out[doc]["_reason"] == "near_duplicate", (doc, j)
                d = json.loads(out[doc]["_detail"])
                assert d["survivor"] == d["cluster"] == f"c{c:02d}_a"
                assert d["jaccard"] == pytest.approx(j, abs=0.02) and d["jaccard_exact"]
            elif j <= 0.6:
                assert out[doc]["_reason"] is None, (doc, j)
    # the labelled set really has both kinds
    assert sum(j >= 0.8 for js in truth.values() for j in js.values()) >= 80
    assert sum(j <= 0.6 for js in truth.values() for j in js.values()) == 40


def test_minhash_survivors_deterministic(spark, ctx, labelled):
    rows, _ = labelled
    shuffled = list(reversed(rows))
    a = _run(spark, ctx, rows, parts=1)
    b = _run(spark, ctx, shuffled, parts=5)
    assert {k: (v["_reason"], v["_detail"]) for k, v in a.items()} == \
           {k: (v["_reason"], v["_detail"]) for k, v in b.items()}


def test_minhash_skewed_cluster_and_bad_input(spark, ctx):
    rng = random.Random(3)
    base = [rng.choice(VOCAB) for _ in range(200)]
    # 1500 near-copies share most buckets: one huge cluster, survivor = lowest id
    rows = [(f"dup{i:05d}", " ".join(_edit(base, 1, rng))) for i in range(1500)]
    big = " ".join(rng.choice(VOCAB) for _ in range(700_000))  # ~5 MB
    rows += [("big1", big), ("big2", big + " tail words here"), ("empty", ""), ("ws", "   "),
             ("null", None), ("short", "just three words"), ("cjk", "北部の河川の水質に関する年次報告書")]
    out = _run(spark, ctx, rows)
    assert len(out) == len(rows)
    removed = [k for k, v in out.items() if v["_reason"] == "near_duplicate"]
    dup_removed = [k for k in removed if k.startswith("dup")]
    assert out["dup00000"]["_reason"] is None and len(dup_removed) == 1499
    assert {json.loads(out[k]["_detail"])["survivor"] for k in dup_removed} == {"dup00000"}
    assert json.loads(out["dup00001"]["_detail"])["cluster_size"] == 1500
    # the 5 MB pair: sampled shingles, estimated Jaccard, flagged as such
    assert out["big2"]["_reason"] == "near_duplicate"
    assert json.loads(out["big2"]["_detail"])["jaccard_exact"] is False
    for k in ("big1", "empty", "ws", "null", "short", "cjk"):
        assert out[k]["_reason"] is None and out[k]["_quarantine"] is None


@pytest.mark.parametrize("driver_max_edges", [minhash.DRIVER_MAX_EDGES, 0],
                         ids=["driver", "spark_rounds"])
def test_connected_components_long_chain(spark, driver_max_edges):
    edges = spark.createDataFrame(
        [(f"n{i:03d}", f"n{i + 1:03d}") for i in range(60)] + [("z2", "z1"), ("y", "z2")],
        "a string, b string")
    roots = {r["id"]: r["root"] for r in minhash.connected_components(
        edges, driver_max_edges=driver_max_edges).collect()}
    assert len(roots) == 64
    assert {roots[f"n{i:03d}"] for i in range(61)} == {"n000"}
    assert roots["z2"] == roots["y"] == roots["z1"] == "y"


def test_connected_components_driver_and_spark_rounds_agree(spark):
    """The scipy path and the Spark rounds label a random graph alike (root = lowest id,
    non-ASCII ids included), and both agree with a plain union-find."""
    import random

    rnd = random.Random(7)
    nodes = [f"d{i:04d}" for i in range(400)] + ["é1", "Ω2", "z\u00e9"]
    pairs = [(rnd.choice(nodes), rnd.choice(nodes)) for _ in range(300)] + [("é1", "Ω2")]
    edges = spark.createDataFrame(pairs, "a string, b string")
    parent: dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x
    for a, b in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    want = {x: find(x) for a, b in pairs if a != b for x in (a, b)}
    for limit in (minhash.DRIVER_MAX_EDGES, 0):
        got = {r["id"]: r["root"] for r in minhash.connected_components(
            edges, driver_max_edges=limit).collect()}
        assert got == want, limit


def test_banding_from_threshold():
    b, r = minhash.optimal_banding(0.8, 128)
    assert b * r <= 128 and minhash.banding_recall(b, r, 0.8) >= 0.995
    assert minhash.banding_recall(b, r, 0.3) < 0.05
    with pytest.raises(ValueError, match="exceeds"):
        minhash.MinhashConfig(bands=20, rows=10).banding()


def test_shingle_cap_is_consistent_sample():
    import numpy as np

    words = np.arange(50000, dtype=np.uint64) * np.uint64(2654435761)
    sh, capped = minhash.shingles_of(words, 5, 1000)
    sh2, _ = minhash.shingles_of(words[:-10], 5, 1000)
    assert capped and len(sh) == 1000 and np.all(np.diff(sh.astype(np.int64)) > 0)
    j, exact = minhash.jaccard(sh, sh2, True, True)
    assert not exact and j > 0.95
