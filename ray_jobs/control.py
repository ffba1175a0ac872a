"""Control columns on Arrow tables (the op contract of include/registry.py).

Ops decide per row; these helpers attach the decisions as typed string
columns (never Arrow's null type, which Spark cannot take back) and build the
rows an op creates with exactly the input's schema. pyarrow is imported
inside the functions: op modules import this one and DAG parsing loads them.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from include.registry import CONTROL_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa


def detail(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def with_control(table: pa.Table, **columns: list[str | None]) -> pa.Table:
    """``table`` with every control column present; given ones are replaced.

    Keys are the control names without the underscore: ``reason=[...]``.
    """
    import pyarrow as pa

    for name in CONTROL_COLUMNS:
        values = columns.get(name.lstrip("_"))
        if values is None and name in table.column_names:
            col = table.column(name)
            if col.type == pa.string():
                continue
            values = col.cast(pa.string()) if col.type != pa.null() else [None] * table.num_rows
        arr = pa.array(values if values is not None else [None] * table.num_rows, pa.string())
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, arr)
        else:
            table = table.append_column(name, arr)
    return table


def generated_id_format(kind: str, ctx: Any, key: str) -> str:
    """The ``str.format`` pattern of the ids an op creates:
    ``<kind>:<pipeline>:s<step>:<key>:<i>``. Pipeline and step make ids from two
    pipelines, or two steps of one, distinct; pipeline names hold no ':' (the
    spec's name rule), so the prefix cannot be mistaken for another's."""
    prefix = f"{kind}:{ctx.pipeline}:s{ctx.step_index}:".replace("{", "{{").replace("}", "}}")
    return prefix + "{" + key + "}:{i}"


def new_rows(schema: pa.Schema, rows: list[dict[str, Any]]) -> pa.Table:
    """Created rows with ``schema`` (columns they do not set are null)."""
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema)


def drop_internal(table: pa.Table, prefix: str = "_llm_") -> pa.Table:
    return table.drop_columns([c for c in table.column_names if c.startswith(prefix)])
