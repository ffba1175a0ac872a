"""Step 5, dry run: the validated spec on a small sample of the real source.

The first ``dry_run_rows`` records of the source (lines of JSONL/CSV, rows
of Parquet, files of text/HTML, the first WARC file) are copied to a
temporary folder and the spec runs on them end to end through the real
engines (``include.runner.run_pipeline``: Spark, Ray, the LLM endpoint)
into a temporary lakehouse, which is deleted afterwards. Trained quality
models are linked in from the real lakehouse, read-only. The funnel per
step (rows in, kept, removed, quarantined, added) is what the reviewer sees.

No source (a placeholder path) gives ``no_sample``. LLM steps need an
endpoint; without one (``OPENAI_BASE_URL``, the step's ``engine``, the
Airflow connection) the steps before the first LLM step are run and the
rest are listed as not run (``partial``), rather than pretending.
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("datamill.agent")
MAX_COPY_BYTES = 50 * 1024 * 1024


def write_sample(source: dict[str, Any], dest: Path, n: int) -> int:
    """Copy the first ``n`` records of ``source`` into ``dest``; returns records copied."""
    from include.agent.understand import source_files

    fmt = source["format"]
    files = source_files(source["path"])
    dest.mkdir(parents=True, exist_ok=True)
    got = 0
    if fmt == "jsonl":
        with open(dest / "sample.jsonl", "wb") as out:
            for f in files:
                with open(f, "rb") as fh:
                    for line in fh:
                        if line.strip():
                            out.write(line if line.endswith(b"\n") else line + b"\n")
                            got += 1
                            if got >= n:
                                return got
    elif fmt == "csv":
        with open(dest / "sample.csv", "w", encoding="utf-8", newline="") as out:
            w = csv.writer(out)
            header = None
            for f in files:
                with open(f, encoding="utf-8", errors="replace", newline="") as fh:
                    r = csv.reader(fh)
                    h = next(r, None)
                    if header is None and h is not None:
                        header = h
                        w.writerow(h)
                    for row in r:
                        w.writerow(row)
                        got += 1
                        if got >= n:
                            return got
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for f in files:
            t = pq.ParquetFile(f).read_row_groups([0]) if pq.ParquetFile(f).num_row_groups else None
            if t is not None:
                tables.append(t.slice(0, n - got))
                got += tables[-1].num_rows
            if got >= n:
                break
        if tables:
            pq.write_table(pa.concat_tables(tables, promote_options="default"),
                           dest / "sample.parquet")
    elif fmt in ("text", "html"):
        for i, f in enumerate(files[:n]):
            shutil.copyfile(f, dest / f"{i:05d}_{f.name}")
            got += 1
    elif fmt == "warc":
        if files and files[0].stat().st_size <= MAX_COPY_BYTES:
            shutil.copyfile(files[0], dest / files[0].name)
            got = 1
    return got


def first_row(lake: Path, table: str) -> dict[str, Any] | None:
    try:
        from deltalake import DeltaTable

        t = DeltaTable(str(lake / table)).to_pyarrow_table()
    except Exception:  # noqa: BLE001 - no table: no sample row
        return None
    if not t.num_rows:
        return None
    row = {k: v for k, v in t.slice(0, 1).to_pylist()[0].items() if not k.startswith("_")}
    return {k: (v[:2000] if isinstance(v, str) else v) for k, v in row.items()}


def _sample_from_file(dest: Path, fmt: str) -> dict[str, Any] | None:
    if fmt != "jsonl":
        return None
    for f in dest.glob("*.jsonl"):
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                    return {"id": str(obj.get("id", "sample-1")), "text": obj["text"][:2000]}
    return None


def llm_endpoint_problem(spec: dict[str, Any]) -> str | None:
    """Why the spec's LLM steps cannot reach a model here (None when they can)."""
    from include.agent.compose import LLM_OPS
    from include.llm.credentials import LLMConfigError, resolve_engine

    for s in spec.get("steps") or []:
        if s["op"] in LLM_OPS:
            p = s.get("params") or {}
            try:
                resolve_engine(p.get("engine"), p.get("model"))
            except LLMConfigError as exc:
                return str(exc)
    return None


def dry_run_state(state: dict[str, Any]) -> dict[str, Any]:
    opts = state.get("options") or {}
    spec = state["spec"]
    u = state.get("understanding") or {}
    src = dict(spec["source"])
    placeholder = (u.get("source") or {}).get("placeholder")
    if placeholder or "://" in str(src.get("path")):
        state["dry_run"] = {"status": "no_sample", "funnel": [],
                            "message": "no sample: no source was given (placeholder path)"
                            if placeholder else "no sample: remote sources are not sampled"}
        return state
    if not opts.get("dry_run", True):
        state["dry_run"] = {"status": "skipped", "message": "dry run switched off",
                            "funnel": []}
        return state
    state["dry_run"] = run_dry(spec, int(opts.get("dry_run_rows", 20)))
    return state


def run_dry(spec: dict[str, Any], rows: int) -> dict[str, Any]:
    """Run ``spec`` on the first ``rows`` records of its source; the funnel and status."""
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="datamill-dryrun-"))
    try:
        out = _run_dry(spec, rows, tmp)
    except Exception as exc:  # noqa: BLE001 - the reviewer sees why the dry run failed
        log.exception("dry run failed")
        out = {"funnel": [], "status": "failed",
               "message": f"{type(exc).__name__}: {exc}"[:2000]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _run_dry(spec: dict[str, Any], rows: int, tmp: Path) -> dict[str, Any]:
    from include.agent.compose import LLM_OPS
    from include.config import lake_root
    from include.spec import SpecError, parse

    result: dict[str, Any] = {"funnel": [], "rows": 0}
    n = write_sample(spec["source"], tmp / "sample", rows)
    result["rows"] = n
    if n == 0:
        return {**result, "status": "no_sample",
                "message": f"no sample: the source {spec['source']['path']!r} has no "
                           "records"}
    raw = copy.deepcopy(spec)
    raw["source"]["path"] = str(tmp / "sample")
    raw["schedule"] = None
    not_run: list[str] = []
    problem = llm_endpoint_problem(raw)
    if problem:
        first = next(i for i, s in enumerate(raw["steps"]) if s["op"] in LLM_OPS)
        not_run = [s["op"] for s in raw["steps"][first:]]
        raw["steps"] = raw["steps"][:first]
    lake = tmp / "lake"
    models = lake_root() / "_system" / "models"
    if models.is_dir():
        (lake / "_system").mkdir(parents=True)
        (lake / "_system" / "models").symlink_to(models, target_is_directory=True)
    try:
        pspec = parse(raw)
    except SpecError as exc:
        return {**result, "status": "failed", "message": str(exc)}
    from include.runner import run_pipeline

    log.info("dry run of %s on %d sampled record(s)", spec["name"], n)
    summary = run_pipeline(pspec, lake=str(lake))
    result["funnel"] = [{k: s.get(k, 0) for k in ("op", "rows_in", "kept", "removed",
                                                    "quarantined", "added", "changed")}
                        for s in summary["steps"]]
    result["source_rows"] = summary["source"]["rows"]
    result["source_quarantined"] = summary["source"]["quarantined"]
    result["output_rows"] = summary["output_rows"]
    result["conservation_ok"] = summary["conservation"]["ok"]
    result["sample_row"] = first_row(lake, spec["output"]["table"]) or \
        _sample_from_file(tmp / "sample", spec["source"]["format"])
    if not_run:
        result.update(status="partial", not_run=not_run,
                      message=f"steps not dry-run ({', '.join(not_run)}): no LLM endpoint "
                              f"here ({problem}); start one with `datamill llm-server` "
                              "and set OPENAI_BASE_URL")
    else:
        result.update(status="ok", message=f"ran on {n} sampled record(s)")
    return result
