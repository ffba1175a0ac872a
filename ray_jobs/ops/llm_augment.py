"""llm_augment: new rows derived from selected rows, linked to their parents."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from include.registry import register_op
from ray_jobs.control import (detail, drop_internal, generated_id_format, new_rows,
                              with_control)
from ray_jobs.engine import to_arrow
from ray_jobs.llm_stage import LLMOp, build_request, failure_detail, llm_params, quarantine_reason
from ray_jobs.ops._common import finish

if TYPE_CHECKING:
    import pyarrow as pa


def variants_schema(schema: dict, key: str, n: int) -> dict:
    """The template's schema with exactly ``n`` items under ``key``."""
    out = json.loads(json.dumps(schema))
    out["properties"][key].update({"minItems": n, "maxItems": n})
    return out


def created_rows(parents: pa.Table, key: str, id_fmt: str, parent_fmt: str,
                 extra: dict, schema: pa.Schema) -> pa.Table:
    """One row per generated item; one quarantine row per parent whose answer failed.

    A failed generation is a row that could not be made: it goes to quarantine
    under a stable id with the raw answer, so the failure is never silent.
    """
    rows = []
    meta_cols = [c for c in ("meta",) if c in schema.names]
    for r in parents.to_pylist():
        base = {c: r.get(c) for c in meta_cols}
        pid = parent_fmt.format(**r)
        if r["_llm_parsed"] is None:
            rows.append({**base, "id": id_fmt.format(i="failed", **r), "text": "",
                         "_parent_id": pid, "_quarantine": quarantine_reason(r["_llm_error"]),
                         "_detail": failure_detail(r)})
            continue
        for i, item in enumerate(json.loads(r["_llm_parsed"])[key]):
            rows.append({**base, "id": id_fmt.format(i=i, **r), "text": item["text"],
                         "_parent_id": pid,
                         "_detail": detail({**extra, "item": i,
                                            **({"seed": r["seed"]} if "seed" in r else {})})})
    return new_rows(schema, rows)


@register_op(
    name="llm_augment", version="2", category="augment", engine="ray",
    tunables=("n",),
    description="""Creates new documents derived from selected documents with an LLM
    (prompt template llm_augment, n variants per parent as structured JSON). 'where'
    selects the parents with an expression over columns, e.g. 'difficulty >= 4'. Every
    new row gets a new id, aug:<pipeline>:s<step>:<parent>:<i> (so two pipelines or steps
    never make the same id), and its parent's id in the lineage; all input rows are
    kept. A parent whose answer stays invalid yields one quarantined row with the raw
    answer.""",
    params={"properties": {
        "where": {"type": ["string", "null"], "default": None,
                  "description": "which rows to augment, e.g. \"difficulty >= 4\"; null = all"},
        "n": {"type": "integer", "minimum": 1, "maximum": 20, "default": 1,
              "description": "variants per selected row"},
        "instructions": {"type": ["string", "null"], "default": None},
        **llm_params("llm_augment")}},
    requires=("id", "text"))
class LLMAugment(LLMOp):
    @classmethod
    def columns_required(cls, params):
        """The op's own columns plus those its ``where`` selector reads."""
        from ray_jobs.where import where_columns

        extra = sorted(where_columns(params["where"])) if params.get("where") else []
        return (*cls.meta.requires, *[c for c in extra if c not in cls.meta.requires])

    def run(self, ds, params, ctx):
        import pyarrow as pa

        from ray_jobs.where import compile_where

        variables = {"n": params["n"]}
        if params.get("instructions"):
            variables["instructions"] = params["instructions"]
        request = build_request(params, variables=variables)
        request.schema = variants_schema(request.schema, "variants", params["n"])
        original = to_arrow(ds)
        selected = ds
        if params.get("where"):
            expr = compile_where(params["where"], original.column_names)
            selected = ds.map_batches(lambda t: t.filter(expr), batch_format="pyarrow")
        answered = self.ask(selected, params, ctx, request)
        schema = with_control(original.slice(0, 0)).schema
        created = created_rows(
            answered, "variants", generated_id_format("aug", ctx, "id"), "{id}",
            {"template": request.template.id, "where": params.get("where")}, schema)
        table = pa.concat_tables([with_control(original), created])
        return finish(drop_internal(table), ctx)
