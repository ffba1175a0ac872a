"""llm_score: a rubric score from an LLM and a keep/drop decision with its reason."""
from __future__ import annotations

import json

from include.registry import check_output_column, register_op
from ray_jobs.control import detail, drop_internal, with_control
from ray_jobs.llm_stage import LLMOp, build_request, failure_detail, llm_params, quarantine_reason
from ray_jobs.ops._common import finish, set_column


@register_op(
    name="llm_score", version="1", category="score", engine="ray",
    tunables=("threshold",),
    description="""Scores each document with an LLM on a 1-5 rubric (prompt template
    llm_score, structured JSON answer with score and rationale) and removes documents
    scoring below the threshold, with the score and rationale in the ledger. Answers
    are cached in the lakehouse; invalid answers are retried, then quarantined.""",
    params={"properties": {
        "threshold": {"type": "number", "minimum": 1, "maximum": 5, "default": 3,
                      "description": "keep rows scoring at least this"},
        "rubric": {"type": ["string", "null"], "default": None,
                   "description": "replaces the template's default rubric"},
        "column": {"type": "string", "default": "llm_score"},
        **llm_params("llm_score")}},
    requires=("id", "text"), adds=("llm_score",))
class LLMScore(LLMOp):
    @classmethod
    def columns_added(cls, params):
        return (check_output_column(cls.meta.name, "column", params["column"]),)

    def run(self, ds, params, ctx):
        import pyarrow as pa

        variables = {"rubric": params["rubric"]} if params.get("rubric") else {}
        table = self.ask(ds, params, ctx, build_request(params, variables=variables))
        scores, reason, det, quar = [], [], [], []
        for r in table.select(["_llm_parsed", "_llm_error", "_llm_answer",
                               "_llm_attempts"]).to_pylist():
            if r["_llm_parsed"] is None:
                scores.append(None)
                reason.append(None)
                quar.append(quarantine_reason(r["_llm_error"]))
                det.append(failure_detail(r))
                continue
            answer = json.loads(r["_llm_parsed"])
            score = float(answer["score"])
            scores.append(score)
            quar.append(None)
            low = score < params["threshold"]
            reason.append("llm_score_below_threshold" if low else None)
            det.append(detail({"score": score, "rationale": answer.get("rationale"),
                               "threshold": params["threshold"]}) if low else None)
        table = set_column(drop_internal(table), params["column"], pa.array(scores, pa.float64()))
        return finish(with_control(table, reason=reason, detail=det, quarantine=quar), ctx)
