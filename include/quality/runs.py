"""Where quality artefacts live, and which run made a table version.

    <lake>/_reports/<pipeline>/<run_id>/step<k>_stats_report.{html,json}   the op's report
    <lake>/_reports/<pipeline>/<run_id>/<table>_v<N>.{html,json}           ``datamill stats``
    <lake>/_reports/<pipeline>/<run_id>/samples/<name>.{jsonl,html}        ``datamill sample``
    <lake>/_reports/data_docs/                                            GX Data Docs site

Everything here is plain file and Delta-log reading, no Spark, so the
Airflow plugin can use it in the api-server.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from include.config import local_path

REPORTS = "_reports"
# Airflow run ids are [A-Za-z0-9_.~:+-]+: they stay as they are.
_SAFE = re.compile(r"[^A-Za-z0-9_.~:+\-]+")


def safe_name(value: str) -> str:
    """A path component from a table name or run id (``gold/x`` -> ``gold_x``)."""
    out = _SAFE.sub("_", str(value)).strip("._")
    return out or "_"


def reports_root(lake: str | Path) -> Path:
    return local_path(lake).resolve() / REPORTS


def run_dir(lake: str | Path, pipeline: str, run_id: str) -> Path:
    return reports_root(lake) / safe_name(pipeline) / safe_name(run_id)


def table_report_name(table: str, version: int | None) -> str:
    return f"{safe_name(table)}_v{version}" if version is not None else safe_name(table)


def producer(lake: str | Path, table: str, version: int) -> dict[str, Any] | None:
    """``{"pipeline", "run_id"}`` of the run whose commit made ``version`` of
    ``table``, from the commit's userMetadata (what the runner's publish
    writes), read from the Delta log itself; None if not datamill's."""
    log = local_path(lake) / table / "_delta_log" / f"{int(version):020d}.json"
    if not log.is_file():
        return None
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            info = json.loads(line).get("commitInfo")
        except ValueError:
            continue
        if info and info.get("userMetadata"):
            try:
                marker = json.loads(info["userMetadata"])
            except ValueError:
                return None
            if isinstance(marker, dict) and marker.get("pipeline") and marker.get("run_id"):
                return {"pipeline": marker["pipeline"], "run_id": marker["run_id"]}
    return None


def list_reports(lake: str | Path) -> list[dict[str, Any]]:
    """Every report, sample and Data Docs page, grouped per pipeline and run
    (newest run first): what the plugin's Reports page lists."""
    root = reports_root(lake)
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    if not root.is_dir():
        return []
    for pdir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "data_docs"):
        for rdir in sorted(p for p in pdir.iterdir() if p.is_dir()):
            entry = runs.setdefault((pdir.name, rdir.name), _run_entry(pdir.name, rdir.name))
            for html in sorted(rdir.glob("*.html")):
                meta = _json_beside(html)
                entry["reports"].append({"name": html.stem, "path": str(html.relative_to(root)),
                                         "rows": meta.get("rows"), "table": meta.get("table"),
                                         "version": meta.get("version"),
                                         "generated_at": meta.get("generated_at")})
            for html in sorted((rdir / "samples").glob("*.html")):
                entry["samples"].append({"name": html.stem, "path": str(html.relative_to(root)),
                                         "jsonl": str(html.with_suffix(".jsonl").relative_to(root))})
            entry["mtime"] = max([rdir.stat().st_mtime] + [p.stat().st_mtime for p in rdir.rglob("*")])
    docs = root / "data_docs" / "validations"
    if docs.is_dir():
        # validations/<pipeline>__s<k>_<suite>/<run_id>/<run time>/<batch>.html
        for page in sorted(docs.glob("*/*/*/*.html")):
            suite_dir, run_id = page.parent.parent.parent.name, page.parent.parent.name
            pipeline = suite_dir.split("__s", 1)[0]
            entry = runs.setdefault((safe_name(pipeline), safe_name(run_id)),
                                    _run_entry(safe_name(pipeline), safe_name(run_id)))
            entry["data_docs"].append({"suite": suite_dir, "run_time": page.parent.name,
                                       "path": str(page.relative_to(root))})
            entry["mtime"] = max(entry.get("mtime", 0), page.stat().st_mtime)
    return sorted(runs.values(), key=lambda e: (-e.get("mtime", 0), e["pipeline"], e["run_id"]))


def _run_entry(pipeline: str, run_id: str) -> dict[str, Any]:
    return {"pipeline": pipeline, "run_id": run_id, "reports": [], "samples": [],
            "data_docs": []}


def _json_beside(html: Path) -> dict[str, Any]:
    try:
        return json.loads(html.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
