"""Training signals written back to the lakehouse (_system/training_signals):
what a run writes, that a resumed run writes each step once, the per-domain
aggregates for `datamill stats`, `datamill trace`, and the filter op on them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_cli
from training.signals import domain_aggregates, table_path, trace_events
from training.tasks import train
from training.trainer import Trainer
from training_testkit import DOMAINS


def _rows(lake: Path, run_id: str) -> list[dict]:
    from deltalake import DeltaTable
    import pyarrow.dataset as ds

    t = DeltaTable(str(table_path(lake))).to_pyarrow_dataset()
    return t.to_table(filter=ds.field("run_id") == run_id).to_pylist()


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory, prepared, gold_lake):
    """A run with a selection strategy: 6 steps, 2x candidates, signals in gold_lake."""
    import shutil

    from training.config import parse_config
    from training_testkit import base_raw

    out = tmp_path_factory.mktemp("signals")
    shutil.copytree(prepared / "data", out / "data")
    raw = base_raw(out)
    raw["name"] = "signals"
    raw["train"].update(steps=6, eval_every=3)
    raw["mixer"] = {"strategy": "loss_select"}
    cfg = parse_config(raw)
    return cfg, train(cfg, log=lambda m: None)


def test_every_trained_token_is_attributed_to_its_document(selected_run, gold_lake, spark):
    cfg, summary = selected_run
    rows = _rows(gold_lake, summary["run_id"])
    assert summary["signals_written"] == len(rows) > 0
    assert {r["config"] for r in rows} == {"signals"}
    seq, batch = cfg.model["seq_len"], cfg.train["batch_size"]
    for step in range(1, 7):
        at = [r for r in rows if r["step"] == step]
        chosen = [r for r in at if r["selected"]]
        # The chosen windows' label tokens, all attributed: batch * seq per step.
        assert sum(r["tokens"] for r in chosen) == batch * seq
        assert all(r["loss"] is not None and r["weight"] == 1.0 for r in chosen)
        passed = [r for r in at if not r["selected"]]
        assert passed and all(r["loss"] is None and r["weight"] == 0.0 for r in passed)
        assert sum(r["tokens"] for r in passed) == batch * seq      # 2x candidates
    # Ids are the gold tables' ids, each with its own domain, table and version.
    ids = {d: {r.id for r in spark.read.format("delta").load(str(gold_lake / "gold" / d))
               .select("id").collect()} for d in DOMAINS}
    for r in rows:
        assert r["doc_id"] in ids[r["domain"]]
        assert r["table"] == f"gold/{r['domain']}" and r["table_version"] == 0
    # The batch loss is the token-weighted mean of the documents' losses.
    metrics = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").open()]
    step1 = [r for r in rows if r["step"] == 1 and r["selected"]]
    mean = sum(r["loss"] * r["tokens"] for r in step1) / sum(r["tokens"] for r in step1)
    assert mean == pytest.approx(metrics[0]["loss"], rel=1e-5)
    assert 0 <= summary["signals_overhead_share"] < 1


def test_a_resumed_run_writes_each_step_once(make_config, gold_lake):
    sections = {"name": "resume_signals", "train": {"steps": 8, "eval_every": 4, "checkpoint_every": 3},
                "mixer": {"strategy": "odm"}}
    straight = train(make_config("s_straight", **sections), log=lambda m: None)
    cut_cfg = make_config("s_cut", **sections)
    Trainer(cut_cfg, log=lambda m: None, run_id="cut").run(stop_after=5)   # flushed rows 1-5
    Trainer(cut_cfg, log=lambda m: None, run_id="cut").run()               # resumes at 3
    key = lambda r: (r["step"], r["doc_id"], r["tokens"], round(r["loss"], 6))  # noqa: E731
    assert sorted(map(key, _rows(gold_lake, "cut"))) == sorted(map(key, _rows(gold_lake, straight["run_id"])))


def test_domain_aggregates_for_stats(selected_run, gold_lake):
    cfg, summary = selected_run
    aggs = domain_aggregates(gold_lake, "gold/pydoc")
    mine = [a for a in aggs if a["run_id"] == summary["run_id"]]
    assert len(mine) == 1
    a = mine[0]
    assert a["domain"] == "pydoc" and a["config"] == "signals" and a["table_versions"] == [0]
    rows = [r for r in _rows(gold_lake, summary["run_id"]) if r["domain"] == "pydoc"]
    sel = [r for r in rows if r["selected"]]
    assert a["rows"] == len(rows) and a["docs"] == len({r["doc_id"] for r in rows})
    assert a["selected_share"] == pytest.approx(len(sel) / len(rows))
    assert a["mean_loss"] == pytest.approx(sum(r["loss"] * r["tokens"] for r in sel)
                                           / sum(r["tokens"] for r in sel))
    assert a["p50_loss"] == pytest.approx(np.percentile([r["loss"] for r in sel], 50))
    assert a["never_selected_docs"] == len({r["doc_id"] for r in rows} - {r["doc_id"] for r in sel})
    assert domain_aggregates(gold_lake, "gold/pydoc", run_id="no-such-run") == []
    assert domain_aggregates(gold_lake, "gold/nope") == []


def test_datamill_stats_reports_the_signals_per_domain(selected_run, gold_lake, tmp_path):
    cfg, summary = selected_run
    done = run_cli("stats", "gold/pydoc", "--lake", str(gold_lake), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    mine = [a for a in out["training_signals"] if a["run_id"] == summary["run_id"]]
    assert mine == [a for a in domain_aggregates(gold_lake, "gold/pydoc")
                    if a["run_id"] == summary["run_id"]]
    assert mine[0]["domain"] == "pydoc" and mine[0]["docs"] > 0
    page = (tmp_path / "report.html").read_text()
    assert "Training signals" in page and summary["run_id"] in page


def test_trace_shows_training_signals_and_the_filter_uses_them(selected_run, gold_lake, spark):
    from include.registry import StepContext, get_op

    cfg, summary = selected_run
    rows = [r for r in _rows(gold_lake, summary["run_id"]) if r["selected"]]
    doc = rows[0]["doc_id"]
    events = trace_events(gold_lake, doc)
    ev = next(e for e in events if e["run_id"] == summary["run_id"])
    assert ev["event"] == "trained" and ev["pipeline"] == "train:signals"
    assert ev["detail"]["seen"] == len([r for r in _rows(gold_lake, summary["run_id"])
                                        if r["doc_id"] == doc])
    done = run_cli("trace", doc, "--lake", str(gold_lake))
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if summary["run_id"] in x)
    assert "train:signals" in line and "train: trained" in line and "loss mean" in line

    # The op on the gold table: documents above the run's median loss x1.0 go,
    # each naming this run; documents the run never saw stay.
    df = spark.read.format("delta").load(str(gold_lake / "gold" / "pydoc")).select("id", "text")
    ctx = StepContext(pipeline="p", run_id="r", step_index=1, op="training_signal_filter",
                      lake=str(gold_lake))
    out = {r["id"]: r for r in get_op("training_signal_filter")().run(
        df, {"run_id": summary["run_id"], "max_loss_ratio": 1.0}, ctx).collect()}
    assert len(out) == df.count()
    dropped = [r for r in out.values() if r["_reason"]]
    assert dropped and all(r["_reason"] == "training_loss_ratio_high" for r in dropped)
    for r in dropped:
        detail = json.loads(r["_detail"])
        assert detail["run_id"] == summary["run_id"] and detail["config"] == "signals"
        assert detail["mean_loss"] > detail["domain_median_loss"]
    seen = {r["doc_id"] for r in _rows(gold_lake, summary["run_id"]) if r["domain"] == "pydoc"}
    assert all(out[i]["_reason"] is None for i in set(out) - seen)
