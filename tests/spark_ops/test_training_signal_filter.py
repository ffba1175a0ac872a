"""training_signal_filter: rules over a training run's signals, joined by id;
every removal names the run; documents without signals stay. Signals are
written with the trainer's own writer (training.signals.SignalWriter) into a
real Delta table; one pipeline run goes through the runner to the ledger."""
from __future__ import annotations

import json

import pytest

from include.registry import StepContext, get_op
from training.signals import SignalWriter

DOCS = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 9.0}   # doc -> loss in run "new"


def _write(lake, run_id, config, losses, never=(), steps=(1, 2)):
    w = SignalWriter(lake, run_id, config, {"web": "gold/web"}, {"web": 3}, flush_every=10**6)
    for step in steps:
        ids = list(losses) + list(never)
        w.add(step, ids, ["web"] * len(ids),
              [losses[i] for i in losses] + [None] * len(never),
              [10] * len(losses) + [10] * len(never), [1.0] * len(losses) + [0.0] * len(never),
              [0.25] * len(ids), [True] * len(losses) + [False] * len(never))
    w.close()


@pytest.fixture(scope="module")
def signal_lake(tmp_path_factory):
    lake = tmp_path_factory.mktemp("siglake")
    _write(lake, "old", "cfgA", {d: 5.0 for d in DOCS})
    _write(lake, "new", "cfgA", DOCS, never=("n",))
    _write(lake, "other", "cfgB", {"a": 99.0}, steps=(1,))
    return lake


def _run(spark, lake, params, ids=("a", "b", "c", "d", "n", "unseen")):
    df = spark.createDataFrame([(i, f"text {i}") for i in ids], "id string, text string")
    ctx = StepContext(pipeline="p", run_id="r", step_index=1, op="training_signal_filter", lake=str(lake))
    out = get_op("training_signal_filter")().run(df, dict(params), ctx).collect()
    assert len(out) == len(ids)                        # every row comes back, annotated
    return {r["id"]: (r["_reason"], json.loads(r["_detail"]) if r["_detail"] else None) for r in out}


def test_metadata():
    m = get_op("training_signal_filter").meta
    assert (m.category, m.engine, m.version, m.rowwise) == ("filter", "spark", "1", False)
    assert "max_mean_loss" in m.tunables and "run_id" not in m.tunables


def test_loss_rules_on_the_latest_run_of_a_config(spark, signal_lake):
    out = _run(spark, signal_lake, {"config": "cfgA", "max_mean_loss": 5.0, "min_mean_loss": 1.5})
    assert out["d"][0] == "training_loss_high" and out["a"][0] == "training_loss_low"
    assert out["b"][0] is None and out["c"][0] is None
    assert out["n"][0] is None and out["unseen"][0] is None       # no evidence: kept
    detail = out["d"][1]
    assert detail["run_id"] == "new" and detail["config"] == "cfgA"   # the run is named
    assert detail["mean_loss"] == 9.0 and detail["threshold"] == 5.0 and detail["trained"] == 2
    # The same rules on the older run: everything at 5.0, nothing above 5.0.
    old = _run(spark, signal_lake, {"run_id": "old", "max_mean_loss": 5.0})
    assert all(r[0] is None for r in old.values())


def test_ratio_never_selected_and_min_seen(spark, signal_lake):
    out = _run(spark, signal_lake, {"config": "cfgA", "max_loss_ratio": 2.0,
                                    "drop_never_selected": True})
    # median of the run's document losses (1, 2, 3, 9) is ~2; only d is above 2x.
    assert out["d"][0] == "training_loss_ratio_high" and out["d"][1]["domain_median_loss"] in (2.0, 3.0)
    assert out["n"][0] == "training_never_selected" and out["n"][1]["run_id"] == "new"
    assert {k for k, v in out.items() if v[0]} == {"d", "n"}
    # Two trained rows per document: min_seen 3 judges none of them.
    out = _run(spark, signal_lake, {"config": "cfgA", "max_mean_loss": 0.5, "min_seen": 3})
    assert all(v[0] is None for v in out.values())


def test_default_is_the_latest_run_and_bad_run_ids_fail(spark, signal_lake, tmp_path):
    out = _run(spark, signal_lake, {"max_mean_loss": 50.0})       # latest overall: cfgB/other
    assert out["a"][0] == "training_loss_high" and out["a"][1]["run_id"] == "other"
    with pytest.raises(ValueError, match="no signals for run_id='nope'"):
        _run(spark, signal_lake, {"run_id": "nope"})
    # A lake without signals: everything kept, unless a run was asked for.
    assert all(v[0] is None for v in _run(spark, tmp_path, {"max_mean_loss": 0.1}).values())
    with pytest.raises(ValueError, match="no training signals"):
        _run(spark, tmp_path, {"run_id": "new"})


def test_a_pipeline_removes_by_signals_into_the_ledger(spark, signal_lake, tmp_path):
    import shutil

    from include.runner import run_pipeline
    from include.trace import trace

    lake = tmp_path / "lake"
    shutil.copytree(signal_lake, lake)
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"document {i} " * 5}) + "\n" for i in DOCS))
    spec = tmp_path / "sig.yaml"
    spec.write_text("version: 1\nname: sigfilter\nsource: {path: %s, format: jsonl, id_field: id, text_field: text}\n"
                    "steps:\n  - op: training_signal_filter\n    params: {config: cfgA, max_mean_loss: 5.0}\n"
                    "output: {table: gold/sigfilter}\n" % src)
    summary = run_pipeline(str(spec), lake=str(lake))
    assert summary["output_rows"] == 3 and summary["steps"][0]["removed"] == 1
    events = trace("d", lake)
    removed = next(e for e in events if e["event"] == "removed")
    assert removed["rule"] == "training_loss_high" and removed["detail"]["run_id"] == "new"
    trained = [e for e in events if e["event"] == "trained"]
    assert {e["run_id"] for e in trained} == {"old", "new"}
    assert "seen 2x" in next(e["line"] for e in trained if e["run_id"] == "new")
