"""Lineage: Asset URIs, the OpenLineage facets of every datamill task, and the
events read back for the Lineage page.

Engine code: no Airflow imports; OpenLineage's Python client is imported
inside the functions that build facets, so the DAG factory (which imports
:func:`asset_uri`) stays light. The operators' ``get_openlineage_facets_on_*``
methods call :func:`task_lineage` and wrap what it returns in the provider's
``OperatorLineage``.

What a task reports (the numbers come from the run's records in the
lakehouse, ``_system/steps`` / ``_system/runs`` / ``_system/quality``, read with
delta-rs through :mod:`include.runs`):

- inputs and outputs as datasets, named by the OpenLineage naming spec:
  namespace ``file`` and the absolute path for a local lakehouse, the URI's
  scheme and authority (``s3://bucket``) and the key for an object store;
- a ``schema`` facet for every Delta table (read from its Delta log);
- ``outputStatistics`` (the rows this run wrote to each output) and, for the
  published table, its Delta version (``version`` facet);
- the run facet ``datamill`` (pipeline, run id, stage and the step funnel:
  rows in, kept, removed, quarantined, added, changed per step);
- ``columnLineage`` on a stage's output where an op rewrites or derives a
  column (html -> text, text -> text for normalize / pii_redact (masking) /
  llm_rewrite, text -> lang, ...), composed through fused steps;
- the quality gate's results (``_system/quality``) as ``dataQualityAssertions``
  on the dataset the gate validated.

Events: ``make airflow`` configures the provider's file transport to append
JSONL to :func:`events_path` (``<lake>/_system/lineage/events.jsonl``);
:func:`read_events` / :func:`table_lineage` read them back.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

PRODUCER = "https://github.com/datamill/datamill"
FUNNEL_FACET_SCHEMA = "urn:datamill:facet:DatamillRunFacet:1"
EVENTS = "_system/lineage/events.jsonl"
# Ops whose output column is derived from their input columns, by category;
# filters, dedup and gates pass columns through unchanged.
DERIVING = ("parse", "rewrite", "score", "annotate", "augment")
MASKING_OPS = ("pii_redact",)


def asset_uri(lake_root: str | Path, table: str) -> str:
    """The Airflow Asset of a published table: ``delta://`` + its absolute path for a
    local lakehouse (``file://`` included), the table's own URI on an object store
    (``s3://bucket/lake/gold/x``); never a URI pressed through ``Path``."""
    root = str(lake_root)
    if root.startswith("file://"):
        root = urlparse(root).path
    elif "://" in root:
        return f"{root.rstrip('/')}/{table}"
    return "delta://" + str(Path(root).resolve() / table)


# -- dataset names --------------------------------------------------------------
def dataset_name(location: str | Path) -> tuple[str, str]:
    """(namespace, name) of a path or URI, as the OpenLineage naming spec has them."""
    loc = str(location)
    if "://" in loc and not loc.startswith("file://"):
        u = urlparse(loc)
        return f"{u.scheme}://{u.netloc}", u.path.lstrip("/") or "/"
    if loc.startswith("file://"):
        loc = urlparse(loc).path
    return "file", str(Path(loc).expanduser().resolve())


def table_location(root: str | Path, table: str) -> str:
    root = str(root)
    return f"{root.rstrip('/')}/{table}" if "://" in root else str(Path(root).resolve() / table)


def events_path(lake: str | Path | None = None) -> Path:
    from include.config import lake_root

    return lake_root(lake) / EVENTS


def transport_config(lake: str | Path | None = None) -> dict[str, Any]:
    """The provider's ``[openlineage] transport``: JSONL appended under the lakehouse."""
    return {"type": "file", "log_file_path": str(events_path(lake)), "append": True}


# -- what a task read and wrote -------------------------------------------------
def _spec_for_run(spec_path: str, root: Path, run_id: str | None):
    """The spec snapshot the run started with (with the params overridden at
    trigger time), else the spec file (a run whose ingest has not started)."""
    from include.lakehouse import RUNS
    from include.runs import read_system
    from include.spec import load_spec, parse

    spec = load_spec(spec_path)
    if run_id is None:
        return spec
    try:
        snap = read_system(root, RUNS, pipeline=spec.name, run_ids=[run_id], columns=["spec"])
        if snap and snap[0]["spec"]:
            return parse(json.loads(snap[0]["spec"]), spec_path)
    except Exception:  # noqa: BLE001 - an unreadable snapshot: the file's spec names the same tables
        pass
    return spec


def task_tables(spec, task_id: str, root: Path) -> dict[str, Any]:
    """The stage behind ``task_id``: its kind, steps, and the locations it reads and writes."""
    from include.lakehouse import LEDGER, QUARANTINE, Lakehouse
    from include.runner import _stage_input, plan_stages

    lh = Lakehouse(root)
    stages = plan_stages(spec)
    index = next(i for i, st in enumerate(stages) if st.task_id == task_id)
    stage = stages[index]
    if stage.kind == "ingest":
        inputs = [("source", spec.source_path())]
        outputs = [("bronze", lh.bronze(spec.name)), ("quarantine", QUARANTINE)]
    elif stage.kind == "publish":
        inputs = [("stage", _stage_input(spec, stages, index, lh))]
        outputs = [("output", spec.output_table)]
    else:
        last = stage.steps[-1]
        inputs = [("stage", _stage_input(spec, stages, index, lh))]
        outputs = [("stage", lh.silver(spec.name, last.index, last.op)), ("ledger", LEDGER),
                   ("quarantine", QUARANTINE)]
    return {"stage": stage, "inputs": inputs, "outputs": outputs}


def _schema_fields(location: str) -> list[tuple[str, str]] | None:
    from deltalake import DeltaTable

    try:
        if not DeltaTable.is_deltatable(location):
            return None
        schema = DeltaTable(location).schema()
    except Exception:  # noqa: BLE001 - a table being written: no schema facet this time
        return None
    out = []
    for f in schema.fields:
        t = f.type
        out.append((f.name, getattr(t, "type", None) or type(t).__name__.replace("Type", "").lower()))
    return out


def column_lineage(steps) -> dict[str, dict[str, Any]]:
    """Output column -> ``{"inputs": [input columns], "ops": [...], "masking": bool}``
    for the columns a group of steps derives, composed through the group."""
    from include.registry import get_op

    derived: dict[str, dict[str, Any]] = {}
    for step in steps:
        op = get_op(step.op)
        meta = op.meta
        if meta.category not in DERIVING:
            continue
        try:
            reads = [c for c in op.columns_required(step.params) if c != "id"]
            adds = list(op.columns_added(step.params))
        except Exception:  # noqa: BLE001 - params the validator would reject
            reads, adds = [c for c in meta.requires if c != "id"], list(meta.adds)
        targets = adds or [c for c in reads if c == "text"]
        if not targets or not reads:
            continue
        sources: list[str] = []
        ops: list[str] = []
        masking = False
        for c in reads:
            prior = derived.get(c)
            for s in (prior["inputs"] if prior else [c]):
                if s not in sources:
                    sources.append(s)
            if prior:
                ops += [o for o in prior["ops"] if o not in ops]
                masking = masking or prior["masking"]
        for t in targets:
            derived[t] = {"inputs": list(sources), "ops": ops + [f"{meta.name} v{meta.version}"],
                          "masking": masking or meta.name in MASKING_OPS}
    return derived


@functools.lru_cache(maxsize=1)
def _facet_class():
    import attr
    from openlineage.client.generated.base import RunFacet

    @attr.define
    class DatamillRunFacet(RunFacet):
        """datamill's run facet: which pipeline run and stage, and its step funnel."""

        pipeline: str
        run_id: str | None
        task: str
        stage: str
        output_table: str
        steps: list = attr.field(factory=list)
        output: dict | None = attr.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return FUNNEL_FACET_SCHEMA

    return DatamillRunFacet


def _funnel_entry(s: dict[str, Any]) -> dict[str, Any]:
    return {"step": s["step_index"], "op": s["op"], "op_version": s.get("op_version"),
            "rows_in": s["rows_in"], "kept": s["kept"], "removed": s["removed"],
            "quarantined": s["quarantined"], "added": s.get("added") or 0,
            "changed": s.get("changed") or 0}


def _assertions(rows: list[dict[str, Any]]):
    from openlineage.client.generated.data_quality_assertions_dataset import Assertion

    out = []
    for r in sorted(rows, key=lambda r: (r["step_index"], r["expectation"])):
        try:
            kwargs = json.loads(r.get("kwargs") or "{}")
        except ValueError:
            kwargs = {}
        column = kwargs.get("column") if isinstance(kwargs, dict) else None
        out.append(Assertion(
            assertion=r["expectation"], success=bool(r["success"]),
            column=column if isinstance(column, str) else None,
            severity=r.get("severity"), name=f"{r.get('suite')}:{r['expectation']}",
            expected=json.dumps(kwargs, sort_keys=True, default=str)[:2000],
            actual=None if r.get("observed_value") is None else str(r["observed_value"])[:2000],
            contentType="json", params={k: v for k, v in (r.items()) if k in
                                        ("unexpected_count", "unexpected_percent",
                                         "element_count", "on_fail") and v is not None}))
    return out


def task_lineage(spec_path: str, task_id: str, run_id: str | None, lake: str | None = None, *,
                 phase: str = "complete") -> dict[str, Any]:
    """What the task ``task_id`` of run ``run_id`` read and wrote, as OpenLineage
    objects: ``{"inputs", "outputs", "run_facets", "job_facets"}``.

    ``run_id`` None (the provider's START extraction runs before Airflow hands
    the operator its context) names the datasets from the spec file only.

    ``phase`` is ``start`` (datasets and their schemas as they are), ``complete``
    or ``failure`` (also the rows written, the funnel of the steps that ran,
    column lineage and the quality gate's assertions: a gate that blocked
    the run shows its failed expectations on the FAIL event).
    """
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.generated.column_lineage_dataset import (ColumnLineageDatasetFacet,
                                                                     Fields, InputField,
                                                                     Transformation)
    from openlineage.client.generated.data_quality_assertions_dataset import \
        DataQualityAssertionsDatasetFacet
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
    from openlineage.client.generated.output_statistics_output_dataset import \
        OutputStatisticsOutputDatasetFacet
    from openlineage.client.generated.schema_dataset import (SchemaDatasetFacet,
                                                             SchemaDatasetFacetFields)

    from include.config import lake_root
    from include.runs import quality_rows, run_record, step_rows

    root = lake_root(lake)
    spec = _spec_for_run(spec_path, root, run_id)
    plan = task_tables(spec, task_id, root)
    stage = plan["stage"]
    indices = [0] if stage.kind == "ingest" else [s.index for s in stage.steps]
    done = phase != "start" and run_id is not None
    steps = [s for s in step_rows(root, spec.name, run_id) if s["step_index"] in indices] \
        if done else []
    record = run_record(root, spec.name, run_id) if done and stage.kind == "publish" else None
    quality = quality_rows(root, spec.name, run_id, indices) if done and stage.kind == "steps" \
        else []

    def locate(kind: str, where: str) -> str:
        return where if kind == "source" else table_location(root, where)

    def schema_facet(loc: str):
        fields = _schema_fields(loc)
        return None if fields is None else SchemaDatasetFacet(
            fields=[SchemaDatasetFacetFields(name=n, type=t) for n, t in fields])

    inputs = []
    input_names: dict[str, tuple[str, str]] = {}
    for kind, where in plan["inputs"]:
        loc = locate(kind, where)
        ns, name = dataset_name(loc)
        input_names[kind] = (ns, name)
        facets: dict[str, Any] = {}
        if kind != "source" and (sf := schema_facet(loc)):
            facets["schema"] = sf
        input_facets = {}
        if quality:
            input_facets["dataQualityAssertions"] = DataQualityAssertionsDatasetFacet(
                assertions=_assertions(quality))
        inputs.append(InputDataset(namespace=ns, name=name, facets=facets,
                                   inputFacets=input_facets))

    last = steps[-1] if steps else None
    rows_written = {
        "bronze": last["kept"] if last and stage.kind == "ingest" else None,
        "stage": last["kept"] if last and stage.kind == "steps" and
        last["step_index"] == indices[-1] else None,
        "ledger": sum(s["removed"] + (s.get("changed") or 0) + (s.get("added") or 0)
                      for s in steps) if steps else None,
        "quarantine": sum(s["quarantined"] for s in steps) if steps else None,
        "output": (record or {}).get("summary", {}).get("output_rows")
        if record and record.get("status") == "success" else None,
    }
    derived = column_lineage(stage.steps) if stage.kind == "steps" else {}
    outputs = []
    for kind, where in plan["outputs"]:
        loc = locate(kind, where)
        ns, name = dataset_name(loc)
        facets = {}
        if (sf := schema_facet(loc)):
            facets["schema"] = sf
        if kind == "stage" and derived and "stage" in input_names:
            in_ns, in_name = input_names["stage"]
            facets["columnLineage"] = ColumnLineageDatasetFacet(fields={
                col: Fields(
                    inputFields=[InputField(namespace=in_ns, name=in_name, field=src,
                                            transformations=[Transformation(
                                                type="DIRECT", subtype="TRANSFORMATION",
                                                description=" -> ".join(d["ops"]),
                                                masking=d["masking"])])
                                 for src in d["inputs"]],
                    transformationDescription=" -> ".join(d["ops"]),
                    transformationType="MASKED" if d["masking"] else None)
                for col, d in derived.items()})
        output_facets = {}
        if rows_written.get(kind) is not None:
            output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
                rowCount=int(rows_written[kind]))
        if kind == "output" and record and record.get("output_version") is not None:
            facets["version"] = DatasetVersionDatasetFacet(
                datasetVersion=str(record["output_version"]))
        outputs.append(OutputDataset(namespace=ns, name=name, facets=facets,
                                     outputFacets=output_facets))

    output_summary = None
    if record:
        s = record["summary"]
        output_summary = {"status": record["status"], "table": record["output_table"],
                          "version": record["output_version"], "rows": s.get("output_rows"),
                          "source": s.get("source"), "conservation": s.get("conservation")}
    facet = _facet_class()(pipeline=spec.name, run_id=run_id, task=task_id, stage=stage.kind,
                           output_table=spec.output_table,
                           steps=[_funnel_entry(s) for s in steps], output=output_summary,
                           producer=PRODUCER)
    return {"inputs": inputs, "outputs": outputs, "run_facets": {"datamill": facet},
            "job_facets": {}}


def operator_lineage(build, log, what: str):
    """``OperatorLineage(**build())`` for an operator's ``get_openlineage_facets_*``,
    or None without the provider or when building fails: lineage must never fail
    the task, so a failure is only logged."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None
    try:
        return OperatorLineage(**build())
    except Exception:  # noqa: BLE001
        log.warning("datamill: no lineage for %s", what, exc_info=True)
        return None


def paths_lineage(inputs: list[tuple[str, Any]], outputs: list[tuple[str, Any]]
                  ) -> dict[str, Any]:
    """OperatorLineage fields for tasks whose datasets are tables and folders
    named up front rather than a pipeline's stages (the training tasks):
    ``inputs``/``outputs`` are ``(location, version or None)``; a Delta table
    gets its schema facet, a known version the dataset-version facet."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
    from openlineage.client.generated.schema_dataset import (SchemaDatasetFacet,
                                                             SchemaDatasetFacetFields)

    def facets(loc: str, version: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if (fields := _schema_fields(loc)):
            out["schema"] = SchemaDatasetFacet(
                fields=[SchemaDatasetFacetFields(name=n, type=t) for n, t in fields])
        if version is not None:
            out["version"] = DatasetVersionDatasetFacet(datasetVersion=str(version))
        return out

    return {"inputs": [InputDataset(*dataset_name(loc), facets=facets(str(loc), v))
                       for loc, v in inputs],
            "outputs": [OutputDataset(*dataset_name(loc), facets=facets(str(loc), v))
                        for loc, v in outputs],
            "run_facets": {}, "job_facets": {}}


# -- reading the events back ------------------------------------------------------
def read_events(lake: str | Path | None = None, path: str | Path | None = None,
                max_bytes: int = 64 << 20) -> list[dict[str, Any]]:
    """The events of the file transport, oldest first (the newest ``max_bytes``
    of the file; a line cut by a writer still appending is skipped)."""
    p = Path(path) if path else events_path(lake)
    if not p.is_file():
        return []
    with open(p, "rb") as fh:
        size = p.stat().st_size
        if size > max_bytes:
            fh.seek(size - max_bytes)
            fh.readline()
        raw = fh.read()
    out = []
    for line in raw.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _datasets(ds_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in ds_list or []:
        stats = (d.get("outputFacets") or {}).get("outputStatistics") or {}
        version = (d.get("facets") or {}).get("version") or {}
        dq = (d.get("inputFacets") or {}).get("dataQualityAssertions") or {}
        item = {"namespace": d.get("namespace"), "name": d.get("name")}
        if "rowCount" in stats:
            item["rows"] = stats["rowCount"]
        if version.get("datasetVersion") is not None:
            item["version"] = version["datasetVersion"]
        if dq.get("assertions"):
            a = dq["assertions"]
            item["assertions"] = {"evaluated": len(a), "failed": sum(not x.get("success") for x in a)}
        if (d.get("facets") or {}).get("columnLineage"):
            item["column_lineage"] = {
                col: [f"{f.get('field')}" for f in v.get("inputFields", [])]
                for col, v in d["facets"]["columnLineage"].get("fields", {}).items()}
        out.append(item)
    return out


def table_lineage(lake: str | Path | None = None, table: str | None = None,
                  events: list[dict[str, Any]] | None = None, limit: int = 20
                  ) -> list[dict[str, Any]]:
    """Per output table (every one, or ``table``): its pipeline runs, newest
    first, each with its tasks (state, try, datasets read and written)."""
    events = read_events(lake) if events is None else events
    dag_state: dict[str, str] = {}
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        facets = (e.get("run") or {}).get("facets") or {}
        dm = facets.get("datamill")
        if not dm:
            if facets.get("airflowDagRun") or facets.get("airflowState"):
                dag_state[e["run"]["runId"]] = e.get("eventType")
            continue
        if table and dm.get("output_table") != table:
            continue
        airflow = facets.get("airflow") or {}
        run_id = dm.get("run_id") or (airflow.get("dagRun") or {}).get("run_id")
        if not run_id:
            continue
        key = (dm["output_table"], run_id)
        run = runs.setdefault(key, {"table": dm["output_table"], "pipeline": dm["pipeline"],
                                    "run_id": run_id, "dag_id": None, "tasks": {},
                                    "first": e.get("eventTime"), "last": e.get("eventTime"),
                                    "parent": None})
        parent = (facets.get("parent") or {}).get("run", {}).get("runId")
        run["parent"] = parent or run["parent"]
        run["dag_id"] = ((facets.get("parent") or {}).get("job") or {}).get("name") or run["dag_id"]
        run["last"] = max(run["last"] or "", e.get("eventTime") or "")
        task = run["tasks"].setdefault(dm["task"], {"task": dm["task"], "stage": dm["stage"],
                                                    "events": 0, "tries": set()})
        ti = airflow.get("taskInstance") or {}
        if ti.get("try_number") is not None:
            task["tries"].add(ti["try_number"])
            task["log_url"] = ti.get("log_url")
        task["events"] += 1
        if e.get("eventType") == "START" and task.get("state") not in ("COMPLETE", "FAIL"):
            task["state"] = "START"
        elif e.get("eventType") in ("COMPLETE", "FAIL", "ABORT"):
            task["state"] = e["eventType"]
            task["time"] = e.get("eventTime")
        if e.get("eventType") != "START" or "inputs" not in task:
            task["inputs"] = _datasets(e.get("inputs"))
            task["outputs"] = _datasets(e.get("outputs"))
        if dm.get("steps") and e.get("eventType") != "START":
            task["funnel"] = dm["steps"]
    out = []
    for run in runs.values():
        run["dag_state"] = dag_state.get(run.pop("parent") or "")
        tasks = list(run["tasks"].values())
        for t in tasks:
            t["tries"] = sorted(t["tries"])
        run["tasks"] = sorted(tasks, key=lambda t: t.get("time") or "9")
        out.append(run)
    out.sort(key=lambda r: r["last"] or "", reverse=True)
    by_table: dict[str, list] = {}
    for r in out:
        if len(by_table.setdefault(r["table"], [])) < limit:
            by_table[r["table"]].append(r)
    return [{"table": t, "runs": rs} for t, rs in sorted(by_table.items())]


def document_trace(doc_id: str, lake: str | Path | None = None,
                   timeout: float = 300) -> list[dict[str, Any]]:
    """``datamill trace DOC_ID --json`` in a child process: the trace reads
    Delta with Spark, and a JVM has no place in the api-server's process."""
    import subprocess
    import sys

    from include.config import PROJECT_ROOT, lake_root

    # "--" so an id that starts with "-" is an id, not an option
    res = subprocess.run([sys.executable, "-m", "include.cli", "trace", "--json",
                          "--lake", str(lake_root(lake)), "--", doc_id], capture_output=True, text=True,
                         timeout=timeout, cwd=str(PROJECT_ROOT))
    if res.returncode not in (0, 1):
        raise RuntimeError(f"datamill trace failed: {res.stderr.strip()[-800:]}")
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
