"""llm_rewrite: an LLM rewrites the text; the original goes to the ledger."""
from __future__ import annotations

import json

from include.registry import check_output_column, register_op
from ray_jobs.control import detail, drop_internal, with_control
from ray_jobs.llm_stage import LLMOp, build_request, failure_detail, llm_params, quarantine_reason
from ray_jobs.ops._common import finish, set_column


@register_op(
    name="llm_rewrite", version="1", category="rewrite", engine="ray",
    description="""Rewrites each document's text with an LLM (prompt template llm_rewrite,
    structured JSON answer {text}); a changed document is marked changed and its original
    text is kept in the ledger. Invalid answers are retried, then quarantined with the
    raw answer; the text is never replaced by an invalid answer.""",
    params={"properties": {
        "instructions": {"type": ["string", "null"], "default": None,
                         "description": "what to do to the text; default: clarify, keep meaning"},
        "column": {"type": "string", "default": "text"},
        **llm_params("llm_rewrite")}},
    requires=("id", "text"))
class LLMRewrite(LLMOp):
    @classmethod
    def columns_required(cls, params):
        """``id`` and the column rewritten in place (``text`` or one an earlier step added)."""
        return ("id", check_output_column(cls.meta.name, "column", params["column"],
                                          allow=("text",)))

    def run(self, ds, params, ctx):
        import pyarrow as pa

        variables = {"instructions": params["instructions"]} if params.get("instructions") else {}
        column = params["column"]
        table = self.ask(ds, params, ctx, build_request(params, variables=variables))
        texts, changed, det, quar = [], [], [], []
        for r in table.select([column, "_llm_parsed", "_llm_error", "_llm_answer",
                               "_llm_attempts"]).to_pylist():
            before = r[column]
            if r["_llm_parsed"] is None:
                texts.append(before)
                changed.append(None)
                quar.append(quarantine_reason(r["_llm_error"]))
                det.append(failure_detail(r))
                continue
            after = json.loads(r["_llm_parsed"])["text"]
            texts.append(after)
            quar.append(None)
            changed.append("llm_rewrite" if after != before else None)
            det.append(detail({"before": before}) if after != before else None)
        table = set_column(drop_internal(table), column, pa.array(texts, pa.string()))
        return finish(with_control(table, changed=changed, detail=det, quarantine=quar), ctx)
