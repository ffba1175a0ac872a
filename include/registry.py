"""The op catalogue: one registry read by the CLI, validator, DAG factory,
docs, the agent and the UI.

Each op is one small module that declares its metadata beside its
implementation with ``@register_op(...)`` (dolma-style registry: duplicates
are rejected, a miss lists the valid names). ``load_all()`` imports every op
package so all ops register; only implemented ops are ever registered.

The op contract (engine code, no Airflow imports):

``run(df, params, ctx) -> df``
    ``df`` holds the live rows of the pipeline (columns ``id``, ``text`` and
    whatever earlier steps added). The op returns **every input row** (plus
    any rows it creates), annotated with control columns, never dropping one:

    - ``_reason``     removal rule name, null = kept
    - ``_detail``     JSON string with evidence for the ledger (measured
                      value, survivor id, Jaccard, cluster, raw LLM answer...)
    - ``_changed``    rule that changed the row's content, null = unchanged
    - ``_quarantine`` error message: the row goes to quarantine
    - ``_parent_id``  id of the row an added row was derived from

    Missing control columns are treated as null. ``params`` are validated and
    defaulted against the op's JSON schema before ``run`` is called.

For ``engine="spark"`` ``df`` is a Spark DataFrame. For ``engine="ray"`` it is
a ``ray.data.Dataset`` (the Ray engine moves data between Delta and Ray). For
``engine="python"`` it is a Spark DataFrame and the op may collect it.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

CATEGORIES = (
    "acquire", "parse", "filter", "dedup", "score", "annotate", "rewrite",
    "augment", "synthesize", "evaluate", "stats", "publish",
)
ENGINES = ("spark", "ray", "python")
CONTROL_COLUMNS = ("_reason", "_detail", "_changed", "_quarantine", "_parent_id")
# Columns a param (``column``, ``prefix``, schema keys) may not name as an op's
# output: the document's identity and source columns. Names starting with "_"
# are the op contract's and the runner's bookkeeping and are refused too.
RESERVED_COLUMNS = ("id", "text", "html", "url", "meta")


def check_output_column(op: str, param: str, name: str, allow: tuple[str, ...] = ()) -> str:
    """``name`` if an op may write it when ``param`` chooses it, else ValueError."""
    if name.startswith("_") or (name in RESERVED_COLUMNS and name not in allow):
        reserved = ", ".join(c for c in RESERVED_COLUMNS if c not in allow)
        raise ValueError(f"{op}: {param} would write column {name!r}, which is reserved "
                         f"({reserved} and names starting with '_')")
    return name

# Packages whose modules register ops. Each package's __init__ imports its
# modules; a package whose engine is not installed is skipped with a warning
# rather than hiding the rest of the catalogue.
# include.generated_ops holds ops drafted by ``datamill op new``; it loads only
# modules a person approved (their tests passed), see include/agent/opgen.py.
OP_PACKAGES = ("spark_jobs.ops", "ray_jobs.ops", "include.python_ops", "include.generated_ops")
COSTS = ("scan", "model")


@dataclass(frozen=True)
class OpMeta:
    name: str
    version: str
    category: str
    description: str
    engine: str
    params: dict[str, Any]
    requires: tuple[str, ...] = ()
    adds: tuple[str, ...] = ()
    # Row-wise ops decide each row alone, so consecutive row-wise Spark ops
    # can be fused into one Spark job without materialising in between.
    rowwise: bool = False
    # Params a person triggering the DAG may override (Airflow Params): the
    # allow-list of harmless tunables (thresholds, presets, languages, sizes).
    # Everything else (engines, endpoints, models, templates, schemas, column
    # names, worker counts) is fixed by the reviewed spec.
    tunables: tuple[str, ...] = ()
    # What running it costs, for the agent's choice between equally fitting ops:
    # "scan" (rules over rows, Spark/Python) or "model" (an embedder or an LLM).
    cost: str = "scan"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["requires"] = list(self.requires)
        d["adds"] = list(self.adds)
        d["tunables"] = list(self.tunables)
        return d


@dataclass
class StepContext:
    """What an op may know about where it runs."""

    pipeline: str
    run_id: str
    step_index: int
    op: str
    lake: str
    source: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    # The Delta table (name in the lakehouse) whose run slice is the step's
    # input, when the step is the first of its stage; engines that read the
    # input themselves (the Ray engine, in its workers) use it.
    input_table: str | None = None


class Op:
    """Base class for ops; subclasses set ``meta`` via ``register_op``."""

    meta: OpMeta

    @classmethod
    def columns_added(cls, params: dict[str, Any]) -> tuple[str, ...]:
        """Columns this op adds with these (defaulted) params; the validator
        uses it. Most ops add a fixed set, ``meta.adds``; an op whose columns
        depend on its params (e.g. fields of a schema) overrides this."""
        return cls.meta.adds

    @classmethod
    def columns_required(cls, params: dict[str, Any]) -> tuple[str, ...]:
        """Columns this op reads with these params (``meta.requires`` plus,
        e.g., the columns of a ``where`` expression); may raise ValueError
        for a param the JSON schema cannot judge."""
        return cls.meta.requires

    def run(self, df, params: dict[str, Any], ctx: StepContext):  # pragma: no cover
        raise NotImplementedError


_REGISTRY: dict[str, type[Op]] = {}


class UnknownOpError(KeyError):
    pass


# Never a run-time Param, whatever an op declares: where data and secrets go,
# what code/prompt runs, and how much capacity a run may take.
NEVER_TUNABLE = frozenset({
    "engine", "base_url", "model", "api_key_env", "template", "schema", "column",
    "text_column", "prefix", "workers", "threads", "concurrency", "batch_size",
    "rate_limit_rps", "cache", "seeds", "instructions", "rubric", "where", "placeholder",
    "timeout_s", "max_retries", "backoff_base_s", "backoff_cap_s", "max_tokens",
})


# Upper bounds on params that size what a run takes (processes, requests in
# flight, memory per row); applied to every op that has such a param, so a spec
# (hand-written or the agent's) cannot ask for an unbounded amount.
RESOURCE_MAXIMUM = {
    "workers": 32, "threads": 16, "concurrency": 256, "batch_size": 4096, "n": 50,
    "bucket_window": 1024, "cluster_size": 100_000, "max_html_chars": 20_000_000,
    "max_shingles": 1_000_000, "max_chars": 1_000_000, "bands": 1024, "rows": 1024,
    "max_tokens": 32_768, "timeout_s": 600, "max_retries": 10, "backoff_base_s": 60,
    "backoff_cap_s": 600, "rate_limit_rps": 10_000, "num_perm": 1024,
}


def _bound_resources(schema: dict[str, Any]) -> None:
    for pname, pschema in schema.get("properties", {}).items():
        bound = RESOURCE_MAXIMUM.get(pname)
        if bound is not None:
            pschema["maximum"] = min(pschema.get("maximum", bound), bound)


def _tunable_error(name: str, pname: str, pschema: dict[str, Any]) -> str | None:
    """Why ``pname`` cannot be a tunable, or None. Tunables are closed values:
    numbers, booleans, enums, bounded strings and bounded lists of those."""
    if pname in NEVER_TUNABLE:
        return f"op {name}: param {pname!r} may never be a run-time tunable"
    types = pschema.get("type")
    types = {types} if isinstance(types, str) else set(types or [])
    types.discard("null")
    if "enum" in pschema or types <= {"number", "integer", "boolean"} and types:
        return None
    if types == {"string"} and ("pattern" in pschema and "maxLength" in pschema):
        return None
    if types == {"array"} and "maxItems" in pschema:
        items = pschema.get("items") or {}
        if "enum" in items or ("pattern" in items and "maxLength" in items):
            return None
    return (f"op {name}: tunable {pname!r} must be a number, boolean, enum, or a string/list "
            "bounded by pattern, maxLength/maxItems")


def register_op(*, name: str, version: str, category: str, engine: str,
                description: str, params: dict[str, Any] | None = None,
                requires: tuple[str, ...] | list[str] = ("text",),
                adds: tuple[str, ...] | list[str] = (),
                rowwise: bool = False, cost: str | None = None,
                tunables: tuple[str, ...] | list[str] = ()) -> Callable[[type[Op]], type[Op]]:
    if category not in CATEGORIES:
        raise ValueError(f"op {name}: category {category!r} not in {CATEGORIES}")
    if engine not in ENGINES:
        raise ValueError(f"op {name}: engine {engine!r} not in {ENGINES}")
    schema = params or {"type": "object", "properties": {}}
    schema.setdefault("type", "object")
    schema.setdefault("additionalProperties", False)
    for pname, pschema in schema.get("properties", {}).items():
        if "default" not in pschema and pname not in schema.get("required", []):
            raise ValueError(f"op {name}: param {pname!r} needs a default or must be required")
    _bound_resources(schema)
    for pname in tunables:
        if pname not in schema.get("properties", {}):
            raise ValueError(f"op {name}: tunable {pname!r} is not one of its params")
        if (err := _tunable_error(name, pname, schema["properties"][pname])):
            raise ValueError(err)
    meta = OpMeta(name=name, version=str(version), category=category,
                  description=" ".join(description.split()), engine=engine,
                  params=schema, requires=tuple(requires), adds=tuple(adds),
                  rowwise=rowwise, cost=cost or ("model" if engine == "ray" else "scan"),
                  tunables=tuple(tunables))
    if meta.cost not in COSTS:
        raise ValueError(f"op {name}: cost {meta.cost!r} not in {COSTS}")

    def deco(cls: type[Op]) -> type[Op]:
        if name in _REGISTRY and _REGISTRY[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"op {name!r} registered twice")
        cls.meta = meta
        _REGISTRY[name] = cls
        return cls

    return deco


_LOADED = False


def load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    import warnings

    for pkg in OP_PACKAGES:
        try:
            importlib.import_module(pkg)
        except ModuleNotFoundError as exc:
            if exc.name and pkg.startswith(exc.name):
                continue  # package not present yet
            warnings.warn(f"ops in {pkg} unavailable: {exc}")
    _LOADED = True


def get_op(name: str) -> type[Op]:
    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownOpError(
            f"unknown op {name!r}; known ops: {', '.join(sorted(_REGISTRY))}") from None


def all_ops() -> list[OpMeta]:
    load_all()
    return [cls.meta for _, cls in sorted(_REGISTRY.items())]


def catalogue_json() -> str:
    return json.dumps([m.to_json() for m in all_ops()], indent=2)


def apply_defaults(meta: OpMeta, params: dict[str, Any] | None) -> dict[str, Any]:
    """Params with schema defaults filled in (validation is in include.spec)."""
    out = {k: v.get("default") for k, v in meta.params.get("properties", {}).items()
           if "default" in v}
    out.update(params or {})
    return out
