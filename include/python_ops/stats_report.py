"""``stats_report``: the statistics report of the rows at this point of the run."""
from __future__ import annotations

from typing import Any

from include.python_ops.passthrough import passthrough
from include.registry import Op, StepContext, apply_defaults, register_op


@register_op(
    name="stats_report", version="1", category="stats", engine="python",
    description="""Dataset statistics report of the rows reaching this step, computed with
    Spark aggregations (only aggregates and bounded samples reach the driver): row count;
    mean, standard deviation, percentiles, min and max of lengths in characters, words and
    tokens (the project's BPE when trained, else words); the distribution of every categorical
    column (language, domain, label, source, meta keys) and every score column; the run's
    funnel and removals per step and rule from the ledger; the duplication rate (share removed
    by dedup steps, exact duplicates left, near duplicates of a sample against every row by
    MinHash); n-gram diversity of a sample; quality-gate results and human agreement per rule.
    Writes JSON and a self-contained HTML report with plots under
    <lake>/_reports/<pipeline>/<run_id>/. Rows pass through unchanged.""",
    params={"type": "object", "properties": {
        "sample_size": {"type": "integer", "minimum": 10, "maximum": 20000, "default": 1000,
                        "description": "documents sampled for the diversity measures"},
        "near_dup_sample": {"type": "integer", "minimum": 10, "maximum": 20000, "default": 1000,
                            "description": "documents checked for a near duplicate among all rows"},
        "near_dup_threshold": {"type": "number", "minimum": 0.5, "maximum": 1.0, "default": 0.8,
                               "description": "Jaccard of word 5-gram sets that counts as near "
                                              "duplicate"},
        "tokenizer": {"type": ["string", "null"], "default": None,
                      "description": "a tokenizer.json; default: the newest trained BPE"},
    }},
    requires=(), adds=())
class StatsReport(Op):
    def run(self, df, params: dict[str, Any], ctx: StepContext):
        import time

        from include.lakehouse import Lakehouse
        from include.quality import report, runs, stats

        t0 = time.time()
        params = apply_defaults(self.meta, params)
        lh = Lakehouse(ctx.lake)
        out: dict[str, Any] = {"table": None, "version": None, "step": ctx.step_index}
        out.update(stats.frame_stats(
            df, tokenizer=stats.find_tokenizer(params["tokenizer"]),
            sample_size=params["sample_size"], near_dup_sample=params["near_dup_sample"],
            near_dup_threshold=params["near_dup_threshold"]))
        out.update(stats.run_stats(lh, ctx.pipeline, ctx.run_id, upto_step=ctx.step_index))
        out["duplication_rate"] = stats.duplication_rate(out)
        out["seconds"] = round(time.time() - t0, 2)
        path = report.write(out, runs.run_dir(ctx.lake, ctx.pipeline, ctx.run_id),
                            f"step{ctx.step_index}_stats_report")
        ctx.extras["stats"] = {"report": str(path), "rows": out["rows"],
                               "mean_words": (out["length"].get("words") or {}).get("mean")}
        return passthrough(df)
