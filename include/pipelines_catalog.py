"""The live pipeline specs: the YAML files in ``$DATAMILL_PIPELINES_DIR``
(default ``include/pipelines/``) that the DAG factory builds into DAGs.

One place that lists them for the DAG factory, the validator (two specs may
not share an output table), the agent (approved specs are skills) and the
plugin's pages.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from include.config import PIPELINES_DIR


def pipelines_dir() -> Path:
    return Path(os.environ.get("DATAMILL_PIPELINES_DIR", PIPELINES_DIR))


def spec_files(folder: str | Path | None = None) -> list[Path]:
    return sorted(Path(folder or pipelines_dir()).glob("*.y*ml"))


def read_raw(path: Path) -> dict[str, Any] | None:
    """The YAML mapping of a spec file, or None when it is not one (the
    validator reports why when that spec itself is validated)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return raw if isinstance(raw, dict) else None


def output_owners(folder: str | Path | None = None) -> dict[str, list[tuple[str, Path]]]:
    """output table -> [(pipeline name, spec path)] over the live specs."""
    owners: dict[str, list[tuple[str, Path]]] = {}
    for path in spec_files(folder):
        raw = read_raw(path)
        table = ((raw or {}).get("output") or {}).get("table") if raw else None
        if isinstance(table, str):
            owners.setdefault(table, []).append((str(raw.get("name")), path))
    return owners


def live_pipelines(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """A summary per live spec (name, dag_id, description, schedule, steps,
    output table, and the validation error if the spec is broken)."""
    from include.spec import SpecError, load_spec

    out = []
    for path in spec_files(folder):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            raw = read_raw(path) or {}
            out.append({"name": str(raw.get("name") or path.stem), "path": str(path),
                        "dag_id": f"datamill__{raw.get('name') or path.stem}",
                        "description": str(raw.get("description") or ""), "schedule": None,
                        "steps": [], "output_table": None, "error": "; ".join(exc.errors)})
            continue
        out.append({"name": spec.name, "path": str(path), "dag_id": spec.dag_id,
                    "description": spec.description.strip(), "schedule": spec.schedule,
                    "steps": [s.op for s in spec.steps], "output_table": spec.output_table,
                    "error": None})
    return out
