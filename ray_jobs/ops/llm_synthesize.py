"""llm_synthesize: new rows from seed prompts."""
from __future__ import annotations

import hashlib

from include.registry import register_op
from ray_jobs.control import drop_internal, generated_id_format, with_control
from ray_jobs.engine import to_arrow, to_ray
from ray_jobs.llm_stage import LLMOp, build_request, llm_params
from ray_jobs.ops._common import finish
from ray_jobs.ops.llm_augment import created_rows, variants_schema


def seed_rows(seeds: list) -> list[dict[str, str]]:
    """Seeds as {seed_id, seed}; a plain string's id is a hash of it."""
    out, seen = [], set()
    for s in seeds:
        if isinstance(s, str):
            sid, prompt = hashlib.sha256(s.encode()).hexdigest()[:12], s
        else:
            sid, prompt = str(s["id"]), s["prompt"]
        if sid in seen:
            raise ValueError(f"llm_synthesize: seed id {sid!r} appears twice")
        seen.add(sid)
        out.append({"seed_id": sid, "seed": prompt})
    return out


@register_op(
    name="llm_synthesize", version="2", category="synthesize", engine="ray",
    tunables=("n",),
    description="""Creates new documents from seed prompts with an LLM (prompt template
    llm_synthesize, n examples per seed as structured JSON). Seeds are strings or
    {id, prompt} objects; each new row has the id synth:<pipeline>:s<step>:<seed id>:<i>
    (so two pipelines or steps never make the same id) and the lineage parent
    'synth:<seed id>'. Input rows pass through unchanged. A seed whose answer stays
    invalid yields one quarantined row with the raw answer.""",
    params={"properties": {
        "seeds": {"type": "array", "minItems": 1,
                  "items": {"anyOf": [
                      {"type": "string", "minLength": 1},
                      {"type": "object", "required": ["id", "prompt"],
                       "properties": {"id": {"type": "string"}, "prompt": {"type": "string"}},
                       "additionalProperties": False}]},
                  "description": "topics or instructions to write examples for"},
        "n": {"type": "integer", "minimum": 1, "maximum": 50, "default": 1,
              "description": "examples per seed"},
        "instructions": {"type": ["string", "null"], "default": None},
        **llm_params("llm_synthesize")},
        "required": ["seeds"]},
    requires=("id", "text"))
class LLMSynthesize(LLMOp):
    def run(self, ds, params, ctx):
        import pyarrow as pa

        variables = {"n": params["n"]}
        if params.get("instructions"):
            variables["instructions"] = params["instructions"]
        request = build_request(params, variables=variables)
        request.schema = variants_schema(request.schema, "items", params["n"])
        seeds = to_ray(pa.Table.from_pylist(seed_rows(params["seeds"])))
        answered = self.ask(seeds, params, ctx, request)
        original = with_control(to_arrow(ds))
        created = created_rows(answered, "items", generated_id_format("synth", ctx, "seed_id"),
                               "synth:{seed_id}",
                               {"template": request.template.id}, original.schema)
        return finish(drop_internal(pa.concat_tables([original, created])), ctx)
