"""Tokenised training data: gold Delta tables -> Megatron indexed datasets.

``prepare`` reads each domain's gold table with Spark (columns ``id``,
``text``) and splits it three ways:

- ``train``: what the model trains on;
- ``val``: the *selection holdout*, which strategies and reference models
  may use (RHO-LOSS's irreducible-loss model, a validation gradient);
- ``test``: the *evaluation set*, which no strategy ever sees; the run's
  reported losses come from it alone. A domain with a separate test table
  (``data.test.domains``) is evaluated on that table, and training drops
  its documents whose id or text also occurs there.

Splits follow a hash of each document's whitespace-normalised text, so
copies of one text never straddle train and evaluation. It trains the
project's BPE on the training splits only and writes every split once as a
Megatron-Core ``IndexedDataset`` (``<dir>/<domain>.<split>.{bin,idx}``) with
its document ids beside it (``<domain>.<split>.ids.json``), which is how
training signals name the documents they came from.

The folder is ``<output.dir>/data/<key>``: ``key`` hashes the data config,
``seq_len``, the tables and their Delta versions, so new data gets new
token files (and, through the manifest's versions and tokenizer hash, a new
training fingerprint) while a later call on the same inputs reuses them
without starting Spark.

``TokenData.load`` turns the streams into fixed windows of ``seq_len + 1``
tokens, one domain per window, which is what per-domain mixing needs.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import tokenizer as bpe
from training.config import ConfigError, TrainConfig

from include.config import local_path

MANIFEST = "manifest.json"
CURRENT = "current.json"
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Gold data that cannot be trained on; the message names the domain."""


def table_path(lake: Path, table: str) -> Path:
    return local_path(lake) / table


def delta_version(path: Path) -> int:
    """Latest committed Delta version, read from the log without Spark."""
    log = path / "_delta_log"
    versions = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()]
    if not versions:
        raise DataError(f"{path} is not a Delta table (no _delta_log commits); "
                        "run the pipeline that produces it first")
    return max(versions)


def text_key(text: str) -> str:
    """Split key and overlap key: SHA-1 of the whitespace-normalised text.

    Hash order, not table order: the split does not follow any source
    ordering, is stable across rewrites that keep the texts, and puts every
    copy of a text in the same split.
    """
    return hashlib.sha1(re.sub(r"\s+", " ", text).strip().encode()).hexdigest()


def _read_table(spark, path: Path, what: str) -> tuple[list[tuple[str, str]], int]:
    df = spark.read.format("delta").load(str(path))
    missing = {"id", "text"} - set(df.columns)
    if missing:
        raise DataError(f"{what}: table {path} lacks column(s) {sorted(missing)}")
    rows = [(r["id"], r["text"]) for r in df.select("id", "text").toLocalIterator()]
    kept = [(str(i), t) for i, t in rows if t is not None and t.strip()]
    return kept, len(rows) - len(kept)


def data_root(cfg: TrainConfig) -> Path:
    return cfg.output_dir / "data"


def _key(cfg: TrainConfig, lake: Path) -> dict:
    tables = {d: table_path(lake, t) for d, t in cfg.domains.items()}
    tests = {d: table_path(lake, t) for d, t in cfg.test_tables.items()}
    for what, paths, names in (("domain", tables, cfg.domains), ("test table of", tests, cfg.test_tables)):
        for domain, path in paths.items():
            if not path.exists():
                raise DataError(f"{what} {domain}: table {names[domain]} not found at {path}; "
                                "run the pipeline that produces it first")
    return {"data": cfg.data, "seq_len": cfg.model["seq_len"],
            "tables": {d: str(p) for d, p in tables.items()},
            "versions": {d: delta_version(p) for d, p in tables.items()},
            "test_tables": {d: str(p) for d, p in tests.items()},
            "test_versions": {d: delta_version(p) for d, p in tests.items()}}


def _split(docs: list[tuple[str, str]], test_docs: list[tuple[str, str]] | None,
           val_frac: float, test_frac: float, domain: str) -> tuple[dict[str, list], int]:
    """(split -> [(id, text)], documents dropped from training for overlapping the test table)."""
    docs = sorted(docs, key=lambda r: (text_key(r[1]), r[0]))
    overlap = 0
    if test_docs is not None:
        ids = {i for i, _ in test_docs}
        keys = {text_key(t) for _, t in test_docs}
        kept = [r for r in docs if r[0] not in ids and text_key(r[1]) not in keys]
        overlap, docs, test = len(docs) - len(kept), kept, test_docs
        if not test:
            raise DataError(f"domain {domain}: its test table has no non-empty document")
    else:
        n_test = max(1, int(round(test_frac * len(docs))))
        test, docs = docs[:n_test], docs[n_test:]
    n_val = max(1, int(round(val_frac * (len(docs) + len(test)))))
    if len(docs) < n_val + 1:
        raise DataError(f"domain {domain}: {len(docs) + len(test)} non-empty document(s) "
                        f"leave none for training after the evaluation and selection holdouts; "
                        "need at least 3 (or 2 with a separate test table)")
    return {"test": test, "val": docs[:n_val], "train": docs[n_val:]}, overlap


def prepare(cfg: TrainConfig, lake: Path, log=print) -> dict:
    """Write tokenizer and indexed datasets for ``cfg`` unless already current.

    Returns the manifest: ``dir`` (the token folder), ``lake`` (the
    lakehouse read, where the run's training signals go), ``versions`` (Delta
    version of each domain table), ``test_versions``, ``tokenizer_sha256``,
    ``vocab_size``, ``eos``, ``counts`` per domain and split.
    """
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    key = _key(cfg, local_path(lake))
    key_hash = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    out = data_root(cfg) / key_hash
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == key:
            log(f"prepare: tokens current in {out}")
            _set_current(cfg, out)
            return manifest

    from spark_jobs.session import get_spark

    spark = get_spark()
    splits: dict[str, dict[str, list[tuple[str, str]]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for domain, path in key["tables"].items():
        docs, empty = _read_table(spark, Path(path), f"domain {domain}")
        test_docs, test_empty = None, 0
        if domain in key["test_tables"]:
            test_docs, test_empty = _read_table(spark, Path(key["test_tables"][domain]),
                                                f"test table of {domain}")
        parts, overlap = _split(docs, test_docs, cfg.data["validation"]["fraction"],
                                cfg.data["test"]["fraction"], domain)
        splits[domain] = parts
        counts[domain] = {"docs": len(docs), "skipped_empty_text": empty + test_empty,
                          "dropped_test_overlap": overlap,
                          **{f"{s}_docs": len(parts[s]) for s in SPLITS}}
        log(f"prepare: {domain}: {len(docs)} docs -> train {len(parts['train'])}, selection "
            f"holdout {len(parts['val'])}, evaluation {len(parts['test'])}"
            f"{' (separate table)' if test_docs is not None else ''}; {empty + test_empty} empty "
            f"skipped, {overlap} dropped for overlapping the evaluation table")

    budget = cfg.data["tokenizer"]["train_chars"]

    def bpe_corpus():
        for parts in splits.values():
            used = 0
            for _, text in parts["train"]:
                if used >= budget:
                    break
                used += len(text)
                yield text

    out.mkdir(parents=True, exist_ok=True)
    tok = bpe.train_bpe(bpe_corpus(), cfg.data["tokenizer"]["vocab_size"], out / "tokenizer.json")
    eos = bpe.eos_id(tok)
    dtype = np.uint16 if tok.get_vocab_size() < 2**16 else np.int32
    for domain, parts in splits.items():
        for split, docs in parts.items():
            prefix = str(out / f"{domain}.{split}")
            builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
            n_tokens = 0
            for enc in tok.encode_batch([t for _, t in docs]):
                ids = enc.ids + [eos]
                builder.add_document(np.asarray(ids, dtype=dtype), [len(ids)])
                n_tokens += len(ids)
            builder.finalize(prefix + ".idx")
            Path(prefix + ".ids.json").write_text(json.dumps([i for i, _ in docs]))
            counts[domain][f"{split}_tokens"] = n_tokens
    manifest = {"key": key, "key_hash": key_hash, "dir": str(out), "lake": str(local_path(lake).resolve()),
                "tables": dict(cfg.domains), "versions": key["versions"],
                "test_tables": dict(cfg.test_tables), "test_versions": key["test_versions"],
                "tokenizer_sha256": hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest(),
                "vocab_size": tok.get_vocab_size(), "eos": eos, "counts": counts}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    _set_current(cfg, out)
    log(f"prepare: wrote tokens for {len(splits)} domains to {out}")
    return manifest


def _set_current(cfg: TrainConfig, out: Path) -> None:
    (data_root(cfg) / CURRENT).write_text(json.dumps({"dir": out.name}))


def current_dir(cfg: TrainConfig) -> Path:
    """The token folder the last ``prepare`` of this config wrote or confirmed."""
    pointer = data_root(cfg) / CURRENT
    if not pointer.exists():
        raise ConfigError(f"no prepared tokens in {data_root(cfg)}: run the prepare step first")
    return data_root(cfg) / json.loads(pointer.read_text())["dir"]


def _windows(stream: np.ndarray, width: int) -> np.ndarray:
    """Non-overlapping windows of ``width`` tokens (inputs + shifted labels)."""
    if len(stream) < width:
        # A tiny split still yields one window: repeat it rather than
        # dropping the domain from evaluation.
        stream = np.tile(stream, width // len(stream) + 1)
    n = (len(stream) - 1) // (width - 1)
    idx = np.arange(n)[:, None] * (width - 1) + np.arange(width)[None, :]
    return stream[idx].astype(np.int64)


@dataclass
class DocIndex:
    """Which training document each token of a domain's stream belongs to."""

    ids: list[str]
    starts: np.ndarray   # first stream position of each document
    length: int          # stream length (windows wrap around a tiled short stream)

    def of_labels(self, windows: np.ndarray, width: int) -> np.ndarray:
        """Document index of every label token ``[n, width - 1]`` of windows ``windows``."""
        pos = (windows[:, None] * (width - 1) + 1 + np.arange(width - 1)[None, :]) % self.length
        return np.searchsorted(self.starts, pos, side="right") - 1


@dataclass
class TokenData:
    """Per-domain windows ``[n, seq_len + 1]`` for the train, val (selection
    holdout) and test (evaluation) splits, and the training documents' ids."""

    domains: list[str]
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    docs: dict[str, DocIndex]
    vocab_size: int
    eos: int
    manifest: dict

    @classmethod
    def load(cls, cfg: TrainConfig, data_dir: str | Path | None = None) -> "TokenData":
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        out = Path(data_dir) if data_dir else current_dir(cfg)
        manifest_path = out / MANIFEST
        if not manifest_path.exists():
            raise ConfigError(f"no prepared tokens in {out}: run the prepare step first")
        # The folder actually read (a copied token folder names its copy).
        manifest = {**json.loads(manifest_path.read_text()), "dir": str(out)}
        width = cfg.model["seq_len"] + 1
        splits: dict[str, dict[str, np.ndarray]] = {s: {} for s in SPLITS}
        docs = {}
        for domain in cfg.domains:
            for split in SPLITS:
                ds = IndexedDataset(str(out / f"{domain}.{split}"))
                lengths = np.asarray(ds.sequence_lengths, dtype=np.int64)
                stream = np.concatenate([ds[i] for i in range(len(ds))]) if len(ds) else np.zeros(0)
                if stream.size == 0:
                    raise DataError(f"domain {domain}: empty {split} split in {out}")
                splits[split][domain] = _windows(stream, width)
                if split == "train":
                    ids = json.loads((out / f"{domain}.train.ids.json").read_text())
                    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
                    docs[domain] = DocIndex(ids, starts, int(lengths.sum()))
        return cls(list(cfg.domains), splits["train"], splits["val"], splits["test"], docs,
                   manifest["vocab_size"], manifest["eos"], manifest)
