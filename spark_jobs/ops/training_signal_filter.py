"""``training_signal_filter``: drop documents by what a training run made of them.

Reads the lakehouse's ``_system/training_signals`` (written by training runs,
see training/signals.py), aggregates one training run's rows per document and
joins them to the pipeline's rows by ``id``. Rules, each off unless set:

- ``max_mean_loss``: the document's token-weighted mean loss is above this
  (reason ``training_loss_high``: noise, boilerplate, mis-extracted text the
  model cannot learn);
- ``min_mean_loss``: below this (``training_loss_low``: trivial or repeated
  text the model already predicts);
- ``max_loss_ratio``: above this multiple of its domain's median document
  loss in that run (``training_loss_ratio_high``: the same idea, independent
  of the tokenizer's scale);
- ``drop_never_selected``: a selection strategy saw it as a candidate and
  never trained on it (``training_never_selected``).

Loss rules judge only documents with at least ``min_seen`` trained rows; a
document with no signals is kept (no evidence). Every removal's detail names
the training run (``config``, ``run_id``) whose signals decided it, with the
measured values and the threshold.
"""
from __future__ import annotations

from typing import Any

from include.registry import Op, StepContext, apply_defaults, register_op

RULES = ("training_loss_high", "training_loss_low", "training_loss_ratio_high",
         "training_never_selected")
_NAME = {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_.:+\\-]+$", "maxLength": 200}


@register_op(
    name="training_signal_filter", version="1", category="filter", engine="spark", rowwise=False,
    tunables=("max_mean_loss", "min_mean_loss", "max_loss_ratio", "drop_never_selected", "min_seen"),
    description="""Removes documents by the training signals a training run wrote back to the
    lakehouse (_system/training_signals: per document and step its loss, weight and whether a
    selection strategy trained on it), joined by document id. One run's signals decide: the
    given run_id, else the latest run (of the given training config, if any). Rules: mean loss
    above max_mean_loss (training_loss_high: noise the model cannot learn), below
    min_mean_loss (training_loss_low: text it already predicts), above max_loss_ratio times the
    domain's median (training_loss_ratio_high), or offered as a candidate but never selected
    (training_never_selected). Documents without signals are kept. Each removal names the
    training run that produced the signal.""",
    params={"type": "object", "properties": {
        "run_id": {**_NAME, "default": None,
                   "description": "training run whose signals decide (default: the latest)"},
        "config": {**_NAME, "default": None,
                   "description": "only runs of this training config (its name)"},
        "max_mean_loss": {"type": ["number", "null"], "minimum": 0, "default": None,
                          "description": "drop documents whose mean loss (nats/token) is above"},
        "min_mean_loss": {"type": ["number", "null"], "minimum": 0, "default": None,
                          "description": "drop documents whose mean loss is below"},
        "max_loss_ratio": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": None,
                           "description": "drop documents above this multiple of their "
                                          "domain's median document loss"},
        "drop_never_selected": {"type": "boolean", "default": False,
                                "description": "drop candidates a selection strategy never chose"},
        "min_seen": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1,
                     "description": "trained rows a document needs before loss rules judge it"},
    }},
    requires=(), adds=())
class TrainingSignalFilter(Op):
    def run(self, df, params: dict[str, Any], ctx: StepContext):
        from pyspark.sql import functions as F

        from include.lakehouse import TRAINING_SIGNALS, Lakehouse

        p = apply_defaults(self.meta, params)
        cols = [c for c in df.columns if c not in ("_reason", "_detail", "_changed", "_quarantine")]
        lh = Lakehouse(ctx.lake)
        if not lh.exists(TRAINING_SIGNALS):
            if p["run_id"]:
                raise ValueError(f"training_signal_filter: no training signals in {ctx.lake} "
                                 f"(run_id {p['run_id']!r} asked for)")
            return df.select(*cols, *[F.lit(None).cast("string").alias(c) for c in
                                      ("_reason", "_detail", "_changed", "_quarantine")])
        sig = lh.read(TRAINING_SIGNALS)
        if p["config"]:
            sig = sig.where(F.col("config") == p["config"])
        if p["run_id"]:
            sig = sig.where(F.col("run_id") == p["run_id"])
        latest = (sig.groupBy("config", "run_id").agg(F.max("ts").alias("last"))
                  .orderBy(F.col("last").desc(), F.col("run_id").desc()).limit(1).collect())
        if not latest:
            raise ValueError(f"training_signal_filter: no signals for run_id={p['run_id']!r} "
                             f"config={p['config']!r} in {ctx.lake}")
        config, run_id = latest[0]["config"], latest[0]["run_id"]
        sig = sig.where((F.col("config") == config) & (F.col("run_id") == run_id))

        trained = F.col("selected") & F.col("loss").isNotNull()
        per_doc = sig.groupBy("doc_id").agg(
            F.first("domain").alias("__domain"),
            F.count(F.lit(1)).alias("__rows"),
            F.sum(F.when(trained, 1).otherwise(0)).alias("__seen"),
            (F.sum(F.when(trained, F.col("loss") * F.col("tokens")))
             / F.sum(F.when(trained, F.col("tokens")))).alias("__loss"))
        medians = (per_doc.where(F.col("__seen") > 0).groupBy("__domain")
                   .agg(F.percentile_approx("__loss", 0.5, 10000).alias("__median")))
        per_doc = per_doc.join(medians, "__domain", "left")
        out = df.join(per_doc, df["id"] == per_doc["doc_id"], "left")

        judged = F.col("__seen") >= p["min_seen"]
        ratio = F.col("__loss") / F.col("__median")
        checks = []
        if p["max_mean_loss"] is not None:
            checks.append((judged & (F.col("__loss") > p["max_mean_loss"]), RULES[0], p["max_mean_loss"]))
        if p["min_mean_loss"] is not None:
            checks.append((judged & (F.col("__loss") < p["min_mean_loss"]), RULES[1], p["min_mean_loss"]))
        if p["max_loss_ratio"] is not None:
            checks.append((judged & (ratio > p["max_loss_ratio"]), RULES[2], p["max_loss_ratio"]))
        if p["drop_never_selected"]:
            checks.append(((F.col("__rows") > 0) & (F.col("__seen") == 0), RULES[3], None))
        reason = F.lit(None).cast("string")
        threshold = F.lit(None).cast("double")
        for cond, rule, value in reversed(checks):          # the first listed rule wins
            reason = F.when(cond, F.lit(rule)).otherwise(reason)
            threshold = F.when(cond, F.lit(value).cast("double")).otherwise(threshold)
        detail = F.to_json(F.struct(
            F.lit(config).alias("config"), F.lit(run_id).alias("run_id"),
            F.col("__domain").alias("domain"), F.round("__loss", 5).alias("mean_loss"),
            F.round("__median", 5).alias("domain_median_loss"), F.col("__seen").alias("trained"),
            F.col("__rows").alias("signals"), threshold.alias("threshold")))
        return out.select(
            *cols,
            reason.alias("_reason"),
            F.when(reason.isNotNull(), detail).alias("_detail"),
            F.lit(None).cast("string").alias("_changed"),
            F.lit(None).cast("string").alias("_quarantine"))
