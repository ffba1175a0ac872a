"""Training checkpoints: model, optimiser, RNG, sampler and strategy state.

One file per saved step under ``<run>/checkpoints``, written by rank 0 only
to a temporary name and renamed, so a run killed mid-write leaves the
previous checkpoint intact; every rank then loads the same file. The newest
``KEEP`` files are kept.

Files load with ``torch.load(weights_only=True)``: the state is tensors plus
plain Python values (:func:`plain` turns numpy scalars and arrays into
those before saving), so loading a checkpoint never runs code from it,
whoever could write the run folder. The one non-tensor object allowed is
``io.BytesIO``, which Transformer Engine layers keep as their extra state.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

KEEP = 2


def _dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def latest(run_dir: Path) -> Path | None:
    files = sorted(_dir(run_dir).glob("step_*.pt"))
    return files[-1] if files else None


def plain(value: Any) -> Any:
    """``value`` with numpy types replaced by Python ones (tensors untouched)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def save(run_dir: Path, step: int, state: dict[str, Any]) -> Path:
    d = _dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step_{step:07d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(plain(state), tmp)
    os.replace(tmp, path)
    for old in sorted(d.glob("step_*.pt"))[:-KEEP]:
        old.unlink()
    return path


def load(path: Path) -> dict[str, Any]:
    with torch.serialization.safe_globals([io.BytesIO]):
        return torch.load(path, map_location="cpu", weights_only=True)
