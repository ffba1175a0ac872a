"""Shared helpers for the training tests (a module, not conftest: pytest
imports every tests/ folder's conftest under the same name)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DOMAINS = ["changelog", "license", "pydoc", "junk"]


def base_raw(out_dir: Path) -> dict:
    return {
        "version": 1,
        "name": "tiny",
        "data": {"domains": {d: {"table": f"gold/{d}"} for d in DOMAINS},
                 "validation": {"fraction": 0.1}, "tokenizer": {"vocab_size": 512}},
        "model": {"layers": 2, "hidden": 64, "heads": 4, "seq_len": 32},
        "train": {"steps": 6, "batch_size": 8, "lr": 0.003, "warmup": 2, "seed": 0,
                  "eval_every": 3, "eval_samples": 16, "threads": 1},
        "mixer": {"strategy": "uniform"},
        "output": {"dir": str(out_dir)},
    }
