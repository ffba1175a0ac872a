"""``gx_validate``: a Great Expectations gate on the rows a step hands on."""
from __future__ import annotations

import logging
from typing import Any

from include.python_ops.passthrough import passthrough
from include.quality.expectations import check, columns_of, resolve
from include.registry import Op, StepContext, apply_defaults, register_op

log = logging.getLogger("datamill.quality")

_EXPECTATION = {
    "type": "object", "required": ["type"], "additionalProperties": False,
    "properties": {"type": {"type": "string", "description": "a GX expectation type, "
                            "e.g. expect_column_values_to_not_be_null"},
                   "kwargs": {"type": "object"}, "meta": {"type": "object"}}}


@register_op(
    name="gx_validate", version="1", category="evaluate", engine="python",
    description="""Quality gate: runs Great Expectations 1.x expectations on the rows the
    previous step hands on, as Spark jobs (nothing is collected). Expectations use GX's own type
    names and kwargs, from the step's expectations list and/or a named suite in
    include/expectations/ (a step with neither runs datamill_defaults: rows present, ids not
    null and unique, text not null, not blank and within length bounds). With on_fail block
    (the default) a failed expectation stops the run before anything is published, naming each
    failed expectation with its observed value and unexpected count; with warn the run goes on.
    Every result is recorded in _system/quality and rendered into the Data Docs site under
    <lake>/_reports/data_docs/. Rows pass through unchanged.""",
    params={"type": "object", "properties": {
        "expectations": {"type": "array", "items": _EXPECTATION, "default": [],
                         "description": "expectations run after the suite's, "
                                        "[{type: expect_..., kwargs: {...}}]"},
        "suite": {"type": ["string", "null"], "default": None,
                  "description": "a suite in include/expectations/NAME.yml"},
        "on_fail": {"enum": ["block", "warn"], "default": "block",
                    "description": "block: a failure stops the run, nothing is published; "
                                   "warn: recorded, the run goes on"},
        "partial_unexpected_count": {"type": "integer", "minimum": 0, "maximum": 20,
                                     "default": 5,
                                     "description": "unexpected values kept as evidence"},
    }},
    requires=(), adds=())
class GxValidate(Op):
    @classmethod
    def columns_required(cls, params: dict[str, Any]) -> tuple[str, ...]:
        # The validator calls this before anything runs: an unknown suite,
        # expectation type or kwarg is a spec error naming the step.
        _, expectations = resolve(params)
        errs = check(expectations)
        if errs:
            raise ValueError("; ".join(errs))
        return columns_of(expectations)

    def run(self, df, params: dict[str, Any], ctx: StepContext):
        from include.quality.gate import QualityGateError, describe, validate

        params = apply_defaults(self.meta, params)
        suite, expectations = resolve(params)
        result = validate(df, expectations, lake=ctx.lake, pipeline=ctx.pipeline,
                          run_id=ctx.run_id, step_index=ctx.step_index, suite=suite,
                          on_fail=params["on_fail"],
                          partial_unexpected_count=params["partial_unexpected_count"])
        failed = result["failed"]
        blocking = [r for r in failed if r["severity"] == "critical"]
        ctx.extras["stats"] = {"suite": suite, "expectations": result["evaluated"],
                               "failed": len(failed), "data_docs": result["data_docs"],
                               "failures": [describe(r, brief=True) for r in failed[:20]]}
        if blocking and params["on_fail"] == "block":
            lines = "\n  - ".join(describe(r, brief=True) for r in blocking)
            raise QualityGateError(
                f"quality gate failed at step {ctx.step_index} (gx_validate, suite {suite}): "
                f"{len(blocking)} of {result['evaluated']} expectations failed; nothing was "
                f"published.\n  - {lines}\nResults: _system/quality; Data Docs: "
                f"{result['data_docs']}", blocking)
        for r in failed:
            log.warning("quality gate (%s, not blocking): %s", params["on_fail"], describe(r))
        return passthrough(df)
