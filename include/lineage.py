"""Asset URIs for Delta tables, shared by pipeline and training DAGs."""
from __future__ import annotations

from pathlib import Path


def asset_uri(lake_root: str | Path, table: str) -> str:
    return "delta://" + str(Path(lake_root).resolve() / table)
