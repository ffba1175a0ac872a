"""semantic_dedup and embed_quality_score with the bundled all-MiniLM-L6-v2 on real Ray."""
from __future__ import annotations

import argparse
import json

import pytest
from llm_testkit import run_op

from ray_jobs import quality_model
from ray_jobs.cli import cmd_train

pytestmark = pytest.mark.usefixtures("ray_local")

# Paraphrase pairs (a/b) and texts with no near neighbour; ids chosen so that
# the survivor (lowest id) is the first of each pair.
PARAPHRASES = [
    ("p1", "The cat sat on the mat in the warm afternoon sun."),
    ("p2", "In the warm afternoon sun, the cat was sitting on the mat."),
    ("q1", "To reset your password, open the settings page and click 'Forgot password'."),
    ("q2", "Open the settings page and choose 'Forgot password' to reset your password."),
    ("r1", "The stock market fell sharply on Monday after weak economic data was released."),
    ("r2", "After the release of weak economic figures, the stock market dropped steeply "
           "on Monday."),
]
DISTINCT = [
    ("x1", "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar."),
    ("x2", "The recipe calls for two cups of flour, one egg and a pinch of salt."),
    ("x3", "Python lists are mutable, while tuples cannot be changed after they are created."),
    ("x4", "The train to Berlin leaves from platform nine at half past seven."),
    ("x5", "The cat slept on the sofa all morning."),
]


def test_semantic_dedup_removes_paraphrases_and_keeps_distinct_texts(lake):
    data = [{"id": i, "text": t, "meta": "{}"} for i, t in reversed(PARAPHRASES + DISTINCT)]
    out, ctx = run_op("semantic_dedup", data, {"threshold": 0.8}, lake)
    got = {r["id"]: r for r in out.to_pylist()}
    assert len(got) == len(data)
    removed = {k: json.loads(r["_detail"]) for k, r in got.items() if r["_reason"]}
    assert set(removed) == {"p2", "q2", "r2"}
    for k, d in removed.items():
        assert got[k]["_reason"] == "semantic_duplicate"
        assert d["survivor"] == k[0] + "1" and 0.8 <= d["cosine"] <= 1.0
    assert ctx.extras["stats"]["removed"] == 3


def test_semantic_dedup_with_several_clusters_keeps_the_lowest_id(lake):
    data = [{"id": f"{k}{n}", "text": t, "meta": "{}"}
            for n in range(3) for k, t in PARAPHRASES + DISTINCT]
    out, _ = run_op("semantic_dedup", data, {"threshold": 0.8, "cluster_size": 8}, lake)
    assert max(out.column("semantic_cluster").to_pylist()) >= 1  # k-means really split
    got = {r["id"]: r for r in out.to_pylist()}
    for k, _text in DISTINCT:  # exact copies go, each to the first copy
        assert got[f"{k}0"]["_reason"] is None
        for n in (1, 2):
            assert json.loads(got[f"{k}{n}"]["_detail"])["survivor"] == f"{k}0"
    survivors = {json.loads(r["_detail"])["survivor"] for r in got.values() if r["_reason"]}
    assert all(got[s]["_reason"] is None for s in survivors)


def test_quality_model_train_version_and_score(lake):
    args = argparse.Namespace(name="default", positive=None, negative=None, examples=None,
                              text_field="text", label_field="label", c=1.0, lake=lake)
    assert cmd_train(args) == 0 and cmd_train(args) == 0
    assert quality_model.versions(lake, "default") == [1, 2]
    model = quality_model.load(lake, "default")
    assert model.ref == "default/v2" and model.info["embedder"].endswith("all-MiniLM-L6-v2")
    data = [
        {"id": "good1", "text": "The boiling point of water falls as altitude rises, because the "
                                "air pressure above the liquid is lower."},
        {"id": "good2", "text": "A stack is a last-in, first-out data structure: push adds an item "
                                "on top and pop removes the most recently added item."},
        {"id": "bad1", "text": "FREE FREE FREE click here now!!! best casino bonus win money"},
        {"id": "bad2", "text": "Home | Blog | Shop | Contact us | Login | Cart (0)"},
    ]
    out, ctx = run_op("embed_quality_score", data, {"threshold": 0.5}, lake)
    got = {r["id"]: r for r in out.to_pylist()}
    assert {k for k, r in got.items() if r["_reason"]} == {"bad1", "bad2"}
    assert all(got[k]["quality_score"] > 0.5 for k in ("good1", "good2"))
    d = json.loads(got["bad1"]["_detail"])
    assert d["model"] == "default/v2" and d["score"] < 0.5
    assert got["bad1"]["_reason"] == "quality_score_below_threshold"


def test_missing_quality_model_is_a_clear_error(lake):
    with pytest.raises(FileNotFoundError, match="datamill quality-model train"):
        run_op("embed_quality_score", [{"id": "a", "text": "x"}], {"model": "nope"}, lake)


def test_semantic_dedup_is_the_same_whatever_the_row_order_and_partitioning(lake):
    """Before: k-means followed Ray's row order and vectors their batch-mates."""
    import random

    import pyarrow as pa
    import ray

    from include.registry import StepContext, apply_defaults, get_op
    from ray_jobs.engine import to_arrow
    from tests.helpers import ROOT

    with open(ROOT / "include/sample_data/docs/stdlib_docs.jsonl", encoding="utf-8") as fh:
        docs = [json.loads(line) for _, line in zip(range(70), fh)]
    rng = random.Random(0)
    data = [{"id": d["id"], "text": d["text"][:600], "meta": "{}"} for d in docs]
    for d in docs[:20]:  # near copies: one word dropped
        words = d["text"][:600].split()
        del words[rng.randrange(len(words))]
        data.append({"id": d["id"] + "~copy", "text": " ".join(words), "meta": "{}"})
    op = get_op("semantic_dedup")()
    params = apply_defaults(op.meta, {"threshold": 0.9, "cluster_size": 12, "batch_size": 16})

    def run(rows, block):
        ctx = StepContext(pipeline="t", run_id="r1", step_index=1, op="semantic_dedup", lake=lake)
        table = pa.Table.from_pylist(rows)
        ds = ray.data.from_arrow([table.slice(i, block) for i in range(0, len(rows), block)])
        out = to_arrow(op.run(ds, params, ctx))
        return {r["id"]: (r["_reason"], r["_detail"], r["semantic_cluster"])
                for r in out.to_pylist()}

    first = run(data, 90)
    shuffled = data[:]
    rng.shuffle(shuffled)
    assert run(shuffled, 7) == first
    assert run(list(reversed(data)), 13) == first
    assert len({c for _, _, c in first.values()}) >= 5  # several clusters, so init mattered
    assert sum(1 for r, _, _ in first.values() if r) >= 10  # and copies were removed
