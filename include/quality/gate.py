"""The quality gate: Great Expectations 1.x on a Spark DataFrame.

GX's core API, as its docs lay it out: an ephemeral context (analytics off,
progress bars off, no temporary docs site; its suite and result stores are
JSON files in ``<lake>/_system/gx/``), a Spark data source with a
whole-dataframe batch definition, an ExpectationSuite, and a Checkpoint
whose ``UpdateDataDocsAction`` renders into datamill's own Data Docs site,
``<lake>/_reports/data_docs/`` (an absolute ``base_directory``; the ephemeral
context's default site is a temporary folder). GX computes its metrics as
Spark jobs on the DataFrame; nothing is collected to pandas, and only counts
and at most ``partial_unexpected_count`` sample values per expectation reach
the driver. Those values are documents: they are HTML-escaped before GX
renders them (its renderer does not escape).

Results go to ``_system/quality``, one row per expectation, replacing that
step's rows of the run, so a retried task leaves one set. Whether a failure
blocks is the caller's decision (the ``gx_validate`` op).
"""
from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path
from typing import Any

from include.config import local_path
from include.quality.expectations import catalogue

log = logging.getLogger("datamill.quality")

QUALITY = "_system/quality"
QUALITY_SCHEMA = ("pipeline string, run_id string, step_index int, op string, suite string, "
                  "expectation string, kwargs string, severity string, success boolean, "
                  "observed_value string, "
                  "unexpected_count long, unexpected_percent double, element_count long, "
                  "exception string, on_fail string, data_docs string, ts timestamp")
SITE = "datamill"
GX_STORE = "_system/gx"   # GX's own suite and validation-result stores (JSON files)
_SAMPLE_CHARS = 200


class QualityGateError(RuntimeError):
    """A blocking quality gate failed; ``failures`` holds the failed results."""

    def __init__(self, message: str, failures: list[dict[str, Any]]):
        super().__init__(message)
        self.failures = failures


def data_docs_dir(lake: str | Path) -> Path:
    return local_path(lake).resolve() / "_reports" / "data_docs"


def _context(lake: str | Path):
    """An ephemeral context whose suites and validation results persist in
    ``<lake>/_system/gx/`` (so the Data Docs index lists every run, not only
    this one) and whose checkpoints and validation definitions stay in memory."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, ProgressBarsConfig

    root = local_path(lake).resolve()

    def files(folder: Path) -> dict[str, str]:
        return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)}

    memory = {"class_name": "InMemoryStoreBackend"}
    stores = {
        "expectations_store": {"class_name": "ExpectationsStore",
                               "store_backend": files(root / GX_STORE / "expectations")},
        "validation_results_store": {"class_name": "ValidationResultsStore",
                                     "store_backend": files(root / GX_STORE / "validations")},
        "checkpoint_store": {"class_name": "CheckpointStore", "store_backend": memory},
        "validation_definition_store": {"class_name": "ValidationDefinitionStore",
                                        "store_backend": memory},
    }
    site = {"class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": files(data_docs_dir(lake)),
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}
    config = DataContextConfig(
        stores=stores, expectations_store_name="expectations_store",
        validation_results_store_name="validation_results_store",
        checkpoint_store_name="checkpoint_store", analytics_enabled=False,
        data_docs_sites={SITE: site},
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False))
    return gx.get_context(project_config=config, mode="ephemeral")


def build_expectations(expectations: list[dict[str, Any]]):
    """GX expectation objects; GX's own (pydantic) validation of every kwarg."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations.expectations as gxe

    out = []
    for i, exp in enumerate(expectations, start=1):
        entry = catalogue()["types"].get(exp["type"])
        if entry is None:
            raise ValueError(f"expectation {i}: unknown expectation type {exp['type']!r}")
        try:
            out.append(getattr(gxe, entry["class"])(**(exp.get("kwargs") or {}),
                                                   **({"meta": exp["meta"]} if exp.get("meta") else {})))
        except Exception as exc:  # pydantic's ValidationError, GX's own checks
            raise ValueError(f"expectation {i} ({exp['type']}): {exc}") from None
    return out


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _SAMPLE_CHARS:
        return value[:_SAMPLE_CHARS] + f"... ({len(value)} chars)"
    if isinstance(value, list):
        return [_short(v) for v in value]
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value


def _observed(result: dict[str, Any]) -> Any:
    """What an expectation saw: the aggregate's value, else the sample of unexpected values."""
    if "observed_value" in result:
        return _short(result["observed_value"])
    if result.get("partial_unexpected_list"):
        return {"unexpected_sample": _short(result["partial_unexpected_list"])}
    return None


def _exception(info: Any) -> str | None:
    """The error message of an expectation that could not be computed, if any.

    GX reports either one ``{raised_exception, exception_message}`` or one
    such mapping per failed metric."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        return (info.get("exception_message") or "raised")[:2000] if info["raised_exception"] \
            else None
    msgs = [m for m in (_exception(v) for v in info.values()) if m]
    return "; ".join(dict.fromkeys(msgs))[:2000] or None


def _severity(config) -> str:
    sev = getattr(config, "severity", None)
    return str(getattr(sev, "value", sev) or "critical")


def describe(row: dict[str, Any], brief: bool = False) -> str:
    """One failed (or passed) expectation as a line for people (``brief``: the
    observed value cut to 160 characters)."""
    kwargs = json.loads(row["kwargs"] or "{}")
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    parts = [f"{row['expectation']}({args})"]
    if row["exception"]:
        parts.append(f"raised {row['exception']}")
    observed = row["observed_value"]
    if brief and observed and len(observed) > 160:
        observed = observed[:160] + "..."
    parts.append(f"observed {observed}")
    if row["unexpected_count"] is not None:
        pct = row["unexpected_percent"] or 0.0
        parts.append(f"unexpected {row['unexpected_count']} of {row['element_count']} rows "
                     f"({pct:.2f}%)")
    return "; ".join(parts)


def run_suite(df, expectations: list[dict[str, Any]], *, lake: str | Path, name: str,
              asset: str, run_id: str, partial_unexpected_count: int = 5):
    """Run the expectations with a GX Checkpoint: (context, result key, result)."""
    from pyspark import StorageLevel

    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    objs = build_expectations(expectations)
    ctx = _context(lake)
    batch_def = ctx.data_sources.add_spark(name="datamill").add_dataframe_asset(name=asset) \
        .add_batch_definition_whole_dataframe("run")
    # add_or_update: the suite of a step is stored once per pipeline step and
    # replaced by each run (with the expectations that run used).
    gx_suite = ctx.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=objs))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def,
                                                                suite=gx_suite))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name=name, validation_definitions=[vd], actions=[],
        result_format={"result_format": "BASIC",
                       "partial_unexpected_count": partial_unexpected_count}))
    # GX runs one Spark job per metric batch: keep the rows in memory meanwhile.
    data = df.select(*[c for c in df.columns if not c.startswith("_")]) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    try:
        cp_result = checkpoint.run(batch_parameters={"dataframe": data},
                                   run_id=RunIdentifier(run_name=run_id))
    finally:
        data.unpersist()
    (key, vresult), = cp_result.run_results.items()
    return ctx, key, vresult


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value, quote=True)
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def render_docs(ctx, key, vresult) -> str | None:
    """Render the result into the Data Docs site; the page's path.

    GX 1.24's renderer writes observed and unexpected values into the page
    as raw HTML, and those values are documents (untrusted): every string in
    the results is HTML-escaped before rendering, so a document holding
    markup shows as text instead of running in the page.
    """
    for r in vresult.results:
        r.result = _escaped(r.result or {})
    ctx.validation_results_store.set(key, vresult)
    ctx.build_data_docs(site_names=[SITE], resource_identifiers=[key])
    docs = ctx.get_docs_sites_urls(resource_identifier=key, site_name=SITE)
    return docs[0]["site_url"].removeprefix("file://") if docs else None


def validate(df, expectations: list[dict[str, Any]], *, lake: str | Path, pipeline: str,
             run_id: str, step_index: int, suite: str, on_fail: str = "block",
             partial_unexpected_count: int = 5) -> dict[str, Any]:
    """Run the expectations on ``df``; record and return the results.

    Returns ``{"success", "suite", "evaluated", "failed": [rows], "rows": [rows],
    "data_docs": path}``; never raises for failed expectations (GX's
    ``catch_exceptions`` turns an expectation that errors into a failure
    with its message).
    """
    from include.lakehouse import Lakehouse, now

    ctx, key, vresult = run_suite(df, expectations, lake=lake,
                                  name=f"{pipeline}__s{step_index}_{suite}", asset=pipeline,
                                  run_id=run_id,
                                  partial_unexpected_count=partial_unexpected_count)
    rows, ts = [], now()
    for r in vresult.results:
        res = r.result or {}
        kwargs = {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"}
        rows.append({
            "pipeline": pipeline, "run_id": run_id, "step_index": step_index,
            "op": "gx_validate", "suite": suite, "expectation": r.expectation_config.type,
            "kwargs": json.dumps(kwargs, default=str, sort_keys=True),
            "severity": _severity(r.expectation_config),
            "success": bool(r.success),
            "observed_value": (None if (obs := _observed(res)) is None
                               else json.dumps(obs, default=str)),
            "unexpected_count": res.get("unexpected_count"),
            "unexpected_percent": res.get("unexpected_percent"),
            "element_count": res.get("element_count"),
            "exception": _exception(r.exception_info),
            "on_fail": on_fail, "ts": ts})
    docs_path = render_docs(ctx, key, vresult)
    for row in rows:
        row["data_docs"] = docs_path
    lh = Lakehouse(lake)
    lh.replace_slice(lh.spark.createDataFrame(rows, QUALITY_SCHEMA), QUALITY, pipeline, run_id,
                     [step_index])
    failed = [r for r in rows if not r["success"]]
    log.info("%s run %s step %d: %d of %d expectations passed (suite %s); Data Docs %s",
             pipeline, run_id, step_index, len(rows) - len(failed), len(rows), suite, docs_path)
    return {"success": bool(vresult.success), "suite": suite, "evaluated": len(rows),
            "failed": failed, "rows": rows, "data_docs": docs_path}
