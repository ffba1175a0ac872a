"""Ops drafted by ``datamill op new`` that a person approved and whose tests passed.

The folder is ``$DATAMILL_GENERATED_OPS_DIR`` (default: this package's own
folder). ``approved.json`` lists each approved module with the SHA-256 of its
text at approval; importing this package (the registry's ``load_all`` does)
imports exactly those modules, so a file dropped here without approval, or
changed after it, is never imported (it is skipped with a warning).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from pathlib import Path

MANIFEST = "approved.json"


def ops_dir() -> Path:
    return Path(os.environ.get("DATAMILL_GENERATED_OPS_DIR") or Path(__file__).resolve().parent)


def approved() -> dict[str, str]:
    f = ops_dir() / MANIFEST
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except ValueError:
        warnings.warn(f"generated ops: {f} is not valid JSON; none loaded")
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and k.isidentifier()}


def load() -> list[str]:
    loaded = []
    folder = ops_dir()
    if str(folder) not in __path__:
        __path__.append(str(folder))
    for name, digest in sorted(approved().items()):
        f = folder / f"{name}.py"
        if not f.is_file():
            warnings.warn(f"generated op {name}: {f} is missing")
            continue
        if hashlib.sha256(f.read_bytes()).hexdigest() != digest:
            warnings.warn(f"generated op {name}: {f} changed after approval; not loaded")
            continue
        importlib.import_module(f"{__name__}.{name}")
        loaded.append(name)
    return loaded


load()
