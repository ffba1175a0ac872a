"""llm_annotate: labels and fields from a JSON schema, filled by an LLM."""
from __future__ import annotations

import json

from include.registry import check_output_column, register_op
from ray_jobs.control import drop_internal, with_control
from ray_jobs.llm_stage import LLMOp, build_request, failure_detail, llm_params, quarantine_reason
from ray_jobs.ops._common import finish, set_column

# Arrow types (aliases) of the JSON-schema scalar types that become columns.
ARROW_TYPES = {"integer": "int64", "number": "double", "boolean": "bool", "string": "string"}


def _arrow_type(schema: dict) -> str | None:
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), None)
    if "enum" in schema and typ is None:
        typ = "string"
    return ARROW_TYPES.get(typ)


@register_op(
    name="llm_annotate", version="1", category="annotate", engine="ray",
    description="""Annotates each document with fields defined by a JSON schema (for
    example topic and difficulty), answered by an LLM with structured JSON output and
    validated against the schema. The whole answer goes to the llm_annotations column
    and each top-level scalar field becomes a column of its own (prefixed if asked), so
    later steps can select on it, e.g. llm_augment where 'difficulty >= 4'. Invalid
    answers are retried, then quarantined with the raw answer.""",
    params={"properties": {
        "schema": {"type": ["object", "null"], "default": None,
                   "description": "JSON schema of the annotation; default: topic + difficulty 1-5"},
        "instructions": {"type": ["string", "null"], "default": None},
        "prefix": {"type": "string", "default": "",
                   "description": "prefix for the flattened field columns"},
        **llm_params("llm_annotate")}},
    requires=("id", "text"), adds=("llm_annotations",))
class LLMAnnotate(LLMOp):
    @classmethod
    def columns_added(cls, params):
        """``llm_annotations`` plus one column per scalar field of the schema."""
        from include.prompts import load_template

        schema = params.get("schema") or load_template(params["template"]).schema
        fields = [check_output_column(cls.meta.name, "prefix + schema key", params["prefix"] + k)
                  for k, s in schema.get("properties", {}).items() if _arrow_type(s) is not None]
        if "llm_annotations" in fields:
            raise ValueError(f"{cls.meta.name}: prefix + schema key would overwrite the "
                             "llm_annotations column")
        return ("llm_annotations", *fields)

    def run(self, ds, params, ctx):
        import pyarrow as pa

        variables = {"instructions": params["instructions"]} if params.get("instructions") else {}
        request = build_request(params, schema=params.get("schema"), variables=variables)
        table = self.ask(ds, params, ctx, request)
        props = request.schema.get("properties", {})
        fields = {k: t for k, s in props.items() if (t := _arrow_type(s)) is not None}
        values: dict[str, list] = {k: [] for k in fields}
        whole, det, quar = [], [], []
        for r in table.select(["_llm_parsed", "_llm_error", "_llm_answer",
                               "_llm_attempts"]).to_pylist():
            answer = json.loads(r["_llm_parsed"]) if r["_llm_parsed"] is not None else None
            whole.append(r["_llm_parsed"])
            quar.append(None if answer is not None else quarantine_reason(r["_llm_error"]))
            det.append(None if answer is not None else failure_detail(r))
            for k in fields:
                values[k].append(answer.get(k) if answer is not None else None)
        table = set_column(drop_internal(table), "llm_annotations", pa.array(whole, pa.string()))
        for k, typ in fields.items():
            table = set_column(table, params["prefix"] + k,
                               pa.array(values[k], pa.type_for_alias(typ)))
        return finish(with_control(table, detail=det, quarantine=quar), ctx)
