"""Token preparation from gold Delta tables, and the Megatron model on CPU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.config import ConfigError, parse_config
from training.data import DataError, TokenData, prepare
from training.tokenizer import load as load_tokenizer

from training_testkit import DOMAINS, base_raw


def test_prepare_writes_indexed_datasets_with_held_out_validation(prepared, gold_lake, spark):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    data = prepared / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    tok = load_tokenizer(data / "tokenizer.json")
    for d in DOMAINS:
        counts = manifest["counts"][d]
        assert counts["docs"] == 80 and counts["val_docs"] == 8 and counts["train_docs"] == 72
        train = IndexedDataset(str(data / f"{d}.train"))
        val = IndexedDataset(str(data / f"{d}.val"))
        assert (len(train), len(val)) == (72, 8)
        assert sum(len(train[i]) for i in range(len(train))) == counts["train_tokens"]
        # Held out: no validation document is also a training document, and
        # every document decodes back to a row of the table.
        train_docs = {tok.decode(train[i][:-1].tolist()) for i in range(len(train))}
        val_docs = {tok.decode(val[i][:-1].tolist()) for i in range(len(val))}
        table = {r.text for r in spark.read.format("delta").load(str(gold_lake / "gold" / d)).collect()}
        assert not train_docs & val_docs
        assert train_docs | val_docs == table


def test_prepare_is_reused_and_redone_when_the_table_changes(tmp_path, gold_lake, spark):
    from training import corpora

    lake = tmp_path / "lake"
    docs = corpora.copyrights(12)
    corpora.write_tables(spark, lake, {"lic": docs[:10] + ["   ", None]})
    raw = base_raw(tmp_path / "run")
    raw["data"]["domains"] = {"lic": {"table": "gold/lic"}}
    cfg = parse_config(raw)
    lines = []
    first = prepare(cfg, lake, log=lines.append)
    assert first["counts"]["lic"]["skipped_empty_text"] == 2   # counted, not silently lost
    assert first["counts"]["lic"]["docs"] == 10
    prepare(cfg, lake, log=lines.append)
    assert lines[-1].startswith("prepare: tokens current")
    corpora.write_tables(spark, lake, {"lic": docs})          # a new table version
    again = prepare(cfg, lake, log=lines.append)
    assert again["counts"]["lic"]["docs"] == 12


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


def test_windows_are_per_domain_and_shifted(make_config):
    cfg = make_config()
    data = TokenData.load(cfg)
    for d in DOMAINS:
        w = data.train[d]
        assert w.shape[1] == cfg.model["seq_len"] + 1
        # consecutive windows overlap by one token: labels continue the stream
        assert (w[1:, 0] == w[:-1, -1]).all()
        assert data.val[d].shape[0] >= 1


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
