"""The one Spark wrapper for row-wise ops (datatrove's ``BaseFilter`` idea).

An op's logic is a plain Python callable over one row — ``row_fn(row) ->
dict`` — that never sees Spark: filters return ``{"_reason": rule,
"_detail": {...}}`` to remove a row and ``{}`` to keep it, transforms return
the new column values plus ``_changed``. ``map_rows`` does the plumbing once
for all of them: it runs the callable inside ``mapInArrow`` (Arrow batches in,
Arrow batches out, no per-row JVM<->Python pickling), keeps every input row,
turns a per-row exception into a ``_quarantine`` message instead of a failed
job, and serialises ``_detail`` to JSON. Counters (``total/kept/dropped/
dropped_<reason>``) come from ``counts`` over the result, the same numbers the
runner's ledger records.

In a fused group the runner's frame carries ``_dead`` (null = alive: the
step that removed or quarantined the row otherwise). ``map_rows`` calls
``row_fn`` only on live rows and passes dead ones through with their values
and null decisions, which the runner ignores for them anyway: after a
language filter that drops 90 % of a crawl, the later steps do 10 % of the
work, not all of it. Only the live rows of a batch are converted to Python.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator

CONTROL_TYPES = {"_reason": "string", "_detail": "string", "_changed": "string",
                 "_quarantine": "string"}

# Spark SQL type name -> pyarrow type factory; the few types ops add.
_ARROW = {"string": "string", "double": "float64", "boolean": "bool_", "bigint": "int64",
          "int": "int32"}
DEAD = "_dead"
# benchmarks/fusion turns this off to measure what skipping dead rows saves.
SKIP_DEAD = True


def _arrow_type(spark_type: str):
    import pyarrow as pa

    return getattr(pa, _ARROW[spark_type])()


def map_rows(df, row_fn: Callable[[dict[str, Any]], dict[str, Any]], *, op: str,
             reads: tuple[str, ...], writes: dict[str, str] | None = None):
    """Apply ``row_fn`` to every row of ``df`` and return every row, annotated.

    ``reads``: columns passed to ``row_fn`` (as a dict). ``writes``: columns
    ``row_fn`` may set, name -> Spark SQL type; a written column that already
    exists keeps its place and, when ``row_fn`` does not return it, its value.
    Control columns (``_reason``, ``_detail``, ``_changed``, ``_quarantine``)
    are always (re)written; a row whose ``row_fn`` raises keeps its input
    values and gets ``_quarantine = "<op>: <Error>: <message>"``.
    """
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    writes = dict(writes or {})
    missing = [c for c in reads if c not in df.columns]
    if missing:
        raise ValueError(f"{op}: input lacks column(s) {missing}; has {df.columns}")
    in_names = [f.name for f in df.schema.fields if f.name not in CONTROL_TYPES]
    fields = [f for f in df.schema.fields if f.name not in CONTROL_TYPES]
    replaced = {n for n in writes if n in in_names}
    fields = [StructField(f.name, _parse_datatype_string(writes[f.name]), True)
              if f.name in replaced else f for f in fields]
    added = [n for n in writes if n not in in_names]
    fields += [StructField(n, _parse_datatype_string(writes[n]), True) for n in added]
    fields += [StructField(n, _parse_datatype_string(t), True) for n, t in CONTROL_TYPES.items()]
    schema = StructType(fields)
    out_types = {n: writes[n] for n in writes}
    out_types.update(CONTROL_TYPES)
    skip_dead = SKIP_DEAD and DEAD in df.columns

    def run(batches: Iterator) -> Iterator:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        for batch in batches:
            n = batch.num_rows
            live_idx = None
            if skip_dead and batch.column(DEAD).null_count < n:
                live_idx = np.flatnonzero(pc.is_null(batch.column(DEAD)).to_numpy(
                    zero_copy_only=False))
            live = batch if live_idx is None else batch.take(pa.array(live_idx))
            m = live.num_rows
            cols = {c: live.column(c).to_pylist() for c in set(reads) | replaced}
            outs: dict[str, list] = {c: ([None] * m if c not in replaced else list(cols[c]))
                                     for c in out_types}
            for i in range(m):
                row = {c: cols[c][i] for c in reads}
                try:
                    res = row_fn(row)
                except Exception as exc:  # noqa: BLE001 - one bad row must not fail the job
                    res = {"_quarantine": f"{op}: {type(exc).__name__}: {exc}"[:2000]}
                for k, v in res.items():
                    if k == "_detail" and v is not None and not isinstance(v, str):
                        v = json.dumps(v, ensure_ascii=False, sort_keys=True)
                    outs[k][i] = v
            arrays, names = [], []
            for name in schema.names:
                if name in out_types:
                    arr = pa.array(outs[name], type=_arrow_type(out_types[name]))
                    if live_idx is not None:
                        arr = _scatter(arr, live_idx, n,
                                       batch.column(name) if name in replaced else None)
                    arrays.append(arr)
                else:
                    arrays.append(batch.column(name))
                names.append(name)
            yield pa.RecordBatch.from_arrays(arrays, names=names)

    return df.mapInArrow(run, schema)


def _scatter(values, idx, n: int, base=None):
    """An ``n``-row array: ``values`` at positions ``idx``, ``base`` (or null) elsewhere."""
    import numpy as np
    import pyarrow as pa

    if base is None:
        base = pa.nulls(1, values.type)
        where = np.zeros(n, dtype=np.int64)
    else:
        base = base.cast(values.type)
        where = np.arange(n, dtype=np.int64)
    where[idx] = len(base) + np.arange(len(idx), dtype=np.int64)
    return pa.concat_arrays([base, values]).take(pa.array(where))


def counts(df) -> dict[str, int]:
    """``total``, ``kept``, ``dropped``, ``quarantined`` and ``dropped_<reason>``."""
    from pyspark.sql import functions as F

    rows = (df.groupBy(F.col("_reason"), F.col("_quarantine").isNotNull().alias("q"))
            .count().collect())
    out = {"total": 0, "kept": 0, "dropped": 0, "quarantined": 0}
    for r in rows:
        out["total"] += r["count"]
        if r["q"]:
            out["quarantined"] += r["count"]
        elif r["_reason"] is None:
            out["kept"] += r["count"]
        else:
            out["dropped"] += r["count"]
            key = f"dropped_{r['_reason']}"
            out[key] = out.get(key, 0) + r["count"]
    return out
