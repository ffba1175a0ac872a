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

# Packages whose modules register ops. Each package's __init__ imports its
# modules; a package whose engine is not installed is skipped with a warning
# rather than hiding the rest of the catalogue.
OP_PACKAGES = ("spark_jobs.ops", "ray_jobs.ops", "include.python_ops")


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

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["requires"] = list(self.requires)
        d["adds"] = list(self.adds)
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


def register_op(*, name: str, version: str, category: str, engine: str,
                description: str, params: dict[str, Any] | None = None,
                requires: tuple[str, ...] | list[str] = ("text",),
                adds: tuple[str, ...] | list[str] = (),
                rowwise: bool = False) -> Callable[[type[Op]], type[Op]]:
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
    meta = OpMeta(name=name, version=str(version), category=category,
                  description=" ".join(description.split()), engine=engine,
                  params=schema, requires=tuple(requires), adds=tuple(adds),
                  rowwise=rowwise)

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
