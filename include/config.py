"""Where things live. One place for every path the project uses.

The lakehouse root is ``--lake`` when given, else ``$DATAMILL_LAKE``, else the
project's embedded ``lakehouse/`` folder.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = PROJECT_ROOT / ".cache"
IVY_DIR = CACHE_DIR / "ivy"
PIPELINES_DIR = PROJECT_ROOT / "include" / "pipelines"
SAMPLE_DATA_DIR = PROJECT_ROOT / "include" / "sample_data"
DEFAULT_LAKE = PROJECT_ROOT / "lakehouse"


def lake_root(lake: str | os.PathLike | None = None) -> Path:
    """Resolve the lakehouse root: explicit argument, then env, then default."""
    if lake:
        return Path(lake).expanduser().resolve()
    env = os.environ.get("DATAMILL_LAKE")
    if env:
        return Path(env).expanduser().resolve()
    return DEFAULT_LAKE
