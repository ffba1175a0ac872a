"""Tokenised training data: gold Delta tables -> Megatron indexed datasets.

``prepare`` reads each domain's gold table with Spark (columns ``id``,
``text``), holds out a validation split per domain, trains the project's BPE
on the training splits and writes every split once as a Megatron-Core
``IndexedDataset`` (``<out>/data/<domain>.<split>.{bin,idx}``). A manifest
records the table versions and the data config: a later call with the same
inputs reuses the files without starting Spark.

``TokenData.load`` turns the streams into fixed windows of ``seq_len + 1``
tokens, one domain per window, which is what per-domain mixing needs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import tokenizer as bpe
from training.config import ConfigError, TrainConfig

MANIFEST = "manifest.json"


class DataError(ValueError):
    """Gold data that cannot be trained on; the message names the domain."""


def table_path(lake: Path, table: str) -> Path:
    return Path(lake) / table


def delta_version(path: Path) -> int:
    """Latest committed Delta version, read from the log without Spark."""
    log = path / "_delta_log"
    versions = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()]
    if not versions:
        raise DataError(f"{path} is not a Delta table (no _delta_log commits); "
                        "run the pipeline that produces it first")
    return max(versions)


def _split_key(doc_id: str) -> str:
    # Hash order, not table order: the split is stable across rewrites of a
    # table that keep the same ids, and does not follow any source ordering.
    return hashlib.sha1(doc_id.encode()).hexdigest()


def _read_domain(spark, path: Path, domain: str) -> tuple[list[tuple[str, str]], int]:
    df = spark.read.format("delta").load(str(path))
    missing = {"id", "text"} - set(df.columns)
    if missing:
        raise DataError(f"domain {domain}: table {path} lacks column(s) {sorted(missing)}")
    rows = [(r["id"], r["text"]) for r in df.select("id", "text").toLocalIterator()]
    kept = [(str(i), t) for i, t in rows if t is not None and t.strip()]
    return kept, len(rows) - len(kept)


def data_dir(cfg: TrainConfig) -> Path:
    return cfg.output_dir / "data"


def prepare(cfg: TrainConfig, lake: Path, log=print) -> dict:
    """Write tokenizer and indexed datasets for ``cfg`` unless already current."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    out = data_dir(cfg)
    paths = {d: table_path(lake, t) for d, t in cfg.domains.items()}
    for domain, path in paths.items():
        if not path.exists():
            raise DataError(f"domain {domain}: table {cfg.domains[domain]} not found at {path}; "
                            "run the pipeline that produces it first")
    versions = {d: delta_version(p) for d, p in paths.items()}
    key = {"data": cfg.data, "seq_len": cfg.model["seq_len"],
           "tables": {d: str(p) for d, p in paths.items()}, "versions": versions}
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == key:
            log(f"prepare: tokens current in {out}")
            return manifest

    from spark_jobs.session import get_spark

    spark = get_spark()
    frac = cfg.data["validation"]["fraction"]
    splits: dict[str, dict[str, list[str]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for domain, path in paths.items():
        docs, empty = _read_domain(spark, path, domain)
        if len(docs) < 2:
            raise DataError(f"domain {domain}: {len(docs)} non-empty document(s) in {path}; "
                            "need at least 2 (one for training, one for validation)")
        docs.sort(key=lambda r: _split_key(r[0]))
        n_val = max(1, int(round(frac * len(docs))))
        splits[domain] = {"val": [t for _, t in docs[:n_val]],
                          "train": [t for _, t in docs[n_val:]]}
        counts[domain] = {"docs": len(docs), "skipped_empty_text": empty,
                          "train_docs": len(docs) - n_val, "val_docs": n_val}
        log(f"prepare: {domain}: {len(docs)} docs ({n_val} held out), {empty} empty skipped")

    budget = cfg.data["tokenizer"]["train_chars"]

    def bpe_corpus():
        for parts in splits.values():
            used = 0
            for text in parts["train"]:
                if used >= budget:
                    break
                used += len(text)
                yield text

    out.mkdir(parents=True, exist_ok=True)
    tok = bpe.train_bpe(bpe_corpus(), cfg.data["tokenizer"]["vocab_size"], out / "tokenizer.json")
    eos = bpe.eos_id(tok)
    dtype = np.uint16 if tok.get_vocab_size() < 2**16 else np.int32
    for domain, parts in splits.items():
        for split, texts in parts.items():
            prefix = str(out / f"{domain}.{split}")
            builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
            n_tokens = 0
            for enc in tok.encode_batch(texts):
                ids = enc.ids + [eos]
                builder.add_document(np.asarray(ids, dtype=dtype), [len(ids)])
                n_tokens += len(ids)
            builder.finalize(prefix + ".idx")
            counts[domain][f"{split}_tokens"] = n_tokens
    manifest = {"key": key, "vocab_size": tok.get_vocab_size(), "eos": eos, "counts": counts}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    log(f"prepare: wrote tokens for {len(splits)} domains to {out}")
    return manifest


def _windows(stream: np.ndarray, width: int) -> np.ndarray:
    """Non-overlapping windows of ``width`` tokens (inputs + shifted labels)."""
    if len(stream) < width:
        # A tiny validation split still yields one window: repeat it rather
        # than dropping the domain from evaluation.
        stream = np.tile(stream, width // len(stream) + 1)
    n = (len(stream) - 1) // (width - 1)
    idx = np.arange(n)[:, None] * (width - 1) + np.arange(width)[None, :]
    return stream[idx].astype(np.int64)


@dataclass
class TokenData:
    """Per-domain windows ``[n, seq_len + 1]`` for the train and val splits."""

    domains: list[str]
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    vocab_size: int
    eos: int

    @classmethod
    def load(cls, cfg: TrainConfig) -> "TokenData":
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        out = data_dir(cfg)
        manifest_path = out / MANIFEST
        if not manifest_path.exists():
            raise ConfigError(f"no prepared tokens in {out}: run the prepare step first")
        manifest = json.loads(manifest_path.read_text())
        width = cfg.model["seq_len"] + 1
        train, val = {}, {}
        for domain in cfg.domains:
            for split, dest in (("train", train), ("val", val)):
                ds = IndexedDataset(str(out / f"{domain}.{split}"))
                stream = np.concatenate([ds[i] for i in range(len(ds))]) if len(ds) else np.zeros(0)
                if stream.size == 0:
                    raise DataError(f"domain {domain}: empty {split} split in {out}")
                dest[domain] = _windows(stream, width)
        return cls(list(cfg.domains), train, val, manifest["vocab_size"], manifest["eos"])
