"""Training checkpoints: model, optimiser, RNG, sampler and strategy state.

One file per saved step under ``<run>/checkpoints``; written to a temporary
name and renamed, so a run killed mid-write leaves the previous checkpoint
intact. The newest ``KEEP`` files are kept.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

KEEP = 2


def _dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def latest(run_dir: Path) -> Path | None:
    files = sorted(_dir(run_dir).glob("step_*.pt"))
    return files[-1] if files else None


def save(run_dir: Path, step: int, state: dict[str, Any]) -> Path:
    d = _dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step_{step:07d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(d.glob("step_*.pt"))[:-KEEP]:
        old.unlink()
    return path


def load(path: Path) -> dict[str, Any]:
    # Our own files, holding numpy generator state and strategy dicts next
    # to tensors: the full unpickler is needed.
    return torch.load(path, map_location="cpu", weights_only=False)
