"""Token preparation from gold Delta tables, and the Megatron model on CPU."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import ConfigError, parse_config
from training.data import DataError, TokenData, prepare
from training.tokenizer import load as load_tokenizer

from training_testkit import DOMAINS, base_raw


def test_prepare_splits_three_ways_with_ids(prepared, gold_lake, spark):
    """train / selection holdout / evaluation: disjoint, complete, ids beside the tokens."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from training.data import current_dir

    cfg = parse_config(base_raw(prepared))
    data = current_dir(cfg)
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["versions"] == {d: 0 for d in DOMAINS}
    assert manifest["tokenizer_sha256"] == hashlib.sha256((data / "tokenizer.json").read_bytes()).hexdigest()
    tok = load_tokenizer(data / "tokenizer.json")
    for d in DOMAINS:
        counts = manifest["counts"][d]
        assert counts["docs"] == 80
        assert (counts["test_docs"], counts["val_docs"], counts["train_docs"]) == (4, 8, 68)
        texts, ids = {}, {}
        for split in ("train", "val", "test"):
            ds = IndexedDataset(str(data / f"{d}.{split}"))
            ids[split] = json.loads((data / f"{d}.{split}.ids.json").read_text())
            assert len(ds) == len(ids[split]) == counts[f"{split}_docs"]
            texts[split] = {tok.decode(ds[i][:-1].tolist()) for i in range(len(ds))}
        table = {r.id: r.text for r in spark.read.format("delta").load(str(gold_lake / "gold" / d)).collect()}
        # Disjoint by text and by id; together exactly the table.
        assert not texts["train"] & texts["val"] and not texts["train"] & texts["test"]
        assert not texts["val"] & texts["test"]
        assert texts["train"] | texts["val"] | texts["test"] == set(table.values())
        all_ids = ids["train"] + ids["val"] + ids["test"]
        assert sorted(all_ids) == sorted(table) and len(set(all_ids)) == 80
        # The ids name the documents in order.
        train = IndexedDataset(str(data / f"{d}.train"))   # held: its arrays view its mmap
        assert tok.decode(train[0][:-1].tolist()) == table[ids["train"][0]]


def test_copies_never_straddle_splits_and_test_tables_are_kept_out(tmp_path, spark):
    from training import corpora

    lake = tmp_path / "lake"
    docs = corpora.copyrights(30)
    corpora.write_tables(spark, lake, {"lic": docs[:20] * 3 + ["   ", None]})   # each text 3 times
    corpora.write_tables(spark, lake, {"lic_test": docs[18:30]}, prefix="eval")
    raw = base_raw(tmp_path / "run")
    raw["data"]["domains"] = {"lic": {"table": "gold/lic"}}
    m = prepare(parse_config(raw), lake, log=lambda _m: None)
    c = m["counts"]["lic"]
    assert c["skipped_empty_text"] == 2                        # counted, not silently lost
    assert c["train_docs"] + c["val_docs"] + c["test_docs"] == 60
    assert c["test_docs"] % 3 == 0 and c["val_docs"] % 3 == 0  # copies move together
    data = Path(m["dir"])
    tok = load_tokenizer(data / "tokenizer.json")
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    def texts(split):
        ds = IndexedDataset(str(data / f"lic.{split}"))
        return {tok.decode(ds[i][:-1].tolist()) for i in range(len(ds))}
    assert not texts("train") & texts("test") and not texts("val") & texts("test")

    # A separate evaluation table: all of it is the test split, and training
    # drops what it shares with it (2 texts x 3 copies), counted.
    raw["data"]["test"] = {"domains": {"lic": {"table": "eval/lic_test"}}}
    m = prepare(parse_config(raw), lake, log=lambda _m: None)
    c = m["counts"]["lic"]
    assert c["test_docs"] == 12 and c["dropped_test_overlap"] == 6
    assert c["train_docs"] + c["val_docs"] == 54
    assert m["test_versions"] == {"lic": 0}
    with pytest.raises(ConfigError, match="data/test/domains names \\['nope'\\]"):
        parse_config({**raw, "data": {**raw["data"], "test": {"domains": {"nope": {"table": "x"}}}}})


def test_prepare_is_reused_and_redone_when_the_table_changes(tmp_path, spark):
    from training import corpora

    lake = tmp_path / "lake"
    docs = corpora.copyrights(14)
    corpora.write_tables(spark, lake, {"lic": docs[:10]})
    raw = base_raw(tmp_path / "run")
    raw["data"]["domains"] = {"lic": {"table": "gold/lic"}}
    cfg = parse_config(raw)
    lines = []
    first = prepare(cfg, lake, log=lines.append)
    assert first["counts"]["lic"]["docs"] == 10
    prepare(cfg, lake, log=lines.append)
    assert lines[-1].startswith("prepare: tokens current")
    corpora.write_tables(spark, lake, {"lic": docs})          # a new table version
    again = prepare(cfg, lake, log=lines.append)
    assert again["counts"]["lic"]["docs"] == 14
    # New data: a new token folder, and the old one is left for its runs.
    assert again["dir"] != first["dir"] and Path(first["dir"]).exists()
    assert again["versions"] == {"lic": 1} and first["versions"] == {"lic": 0}


def test_missing_table_and_bad_config_are_clear_errors(tmp_path, spark):
    raw = base_raw(tmp_path / "run")
    with pytest.raises(DataError, match="domain changelog: table gold/changelog not found"):
        prepare(parse_config(raw), tmp_path / "empty_lake")
    raw["model"]["heads"] = 5
    with pytest.raises(ConfigError, match="divisible by model/heads"):
        parse_config(raw)
    with pytest.raises(ConfigError, match="train: Additional properties.*'stepz'"):
        parse_config({**base_raw(tmp_path), "train": {"stepz": 3}})
    with pytest.raises(ConfigError, match="mixer/strategy"):
        parse_config({**base_raw(tmp_path), "mixer": {"strategy": 3}})
    # No mixer section: the suite's choice (README, "Which strategy").
    raw = {k: v for k, v in base_raw(tmp_path).items() if k != "mixer"}
    assert parse_config(raw).mixer["strategy"] == "loss_select"


def test_windows_are_per_domain_and_shifted(make_config):
    cfg = make_config()
    data = TokenData.load(cfg)
    width = cfg.model["seq_len"] + 1
    for d in DOMAINS:
        w = data.train[d]
        assert w.shape[1] == width
        # consecutive windows overlap by one token: labels continue the stream
        assert (w[1:, 0] == w[:-1, -1]).all()
        assert data.val[d].shape[0] >= 1 and data.test[d].shape[0] >= 1
        # Every label token maps to the training document it came from; the
        # last label of a document is its end-of-text token.
        owners = data.docs[d].of_labels(np.arange(len(w)), width)
        ends = data.docs[d].starts[1:] - 1
        labels = w[:, 1:]
        for r, c in zip(*np.nonzero(labels == data.eos)):
            pos = r * (width - 1) + 1 + c
            assert pos in set(ends.tolist()) | {data.docs[d].length - 1}
            assert data.docs[d].starts[owners[r, c]] <= pos


def test_gpt_on_cpu_uses_sdpa_and_gives_per_token_losses():
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    from training.model import SDPAttention, build_gpt, device, layer_spec, per_token_loss

    dev = device()
    assert dev.type == "cpu"
    spec = layer_spec(dev)
    assert spec.submodules.self_attention.submodules.core_attention is SDPAttention
    torch.manual_seed(0)
    model = build_gpt({"layers": 2, "hidden": 64, "heads": 4, "seq_len": 16}, 300, dev)
    attn = model.decoder.layers[0].self_attention.core_attention
    assert isinstance(attn, SDPAttention) and not isinstance(attn, DotProductAttention)
    tokens = torch.randint(0, 300, (3, 17))
    losses = per_token_loss(model, tokens)
    assert losses.shape == (3, 16)
    # Causality: changing the last input token (also the label of the
    # position before it) leaves every earlier position's loss unchanged.
    other = tokens.clone()
    other[:, -2] = (other[:, -2] + 1) % 300
    changed = per_token_loss(model, other).detach()
    np.testing.assert_allclose(changed[:, :-2], losses[:, :-2].detach(), rtol=1e-5)
    assert not torch.allclose(changed[:, -1], losses[:, -1].detach())


def test_sdpa_matches_explicit_softmax_attention():
    from megatron.core.transformer.transformer_config import TransformerConfig

    from training.model import SDPAttention

    cfg = TransformerConfig(num_layers=1, hidden_size=16, num_attention_heads=2,
                            use_cpu_initialization=True)
    attn = SDPAttention(cfg, 1, None, "self").eval()  # the default config has dropout
    s, b, n, h = 5, 2, 2, 8
    q, k, v = (torch.randn(s, b, n, h) for _ in range(3))
    out = attn(q, k, v, None)
    scores = torch.einsum("sbnh,tbnh->bnst", q, k) / h ** 0.5
    scores = scores.masked_fill(torch.triu(torch.ones(s, s, dtype=torch.bool), 1), float("-inf"))
    ref = torch.einsum("bnst,tbnh->sbnh", scores.softmax(-1), v).reshape(s, b, n * h)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
