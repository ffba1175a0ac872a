"""Retention (``retention: {runs: N}``) and the trace index, through the real
runner, Spark and Delta: three runs of a small pipeline keep the bronze and
silver slices of the last two, the dropped slice's files are vacuumed, the
ledger, quarantine and run records of every run stay, and ``trace`` finds a
document's publishes from ``_system/published`` without reading any version
of the published table (it still answers with the table deleted)."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import clean_texts


def test_policy_validation():
    from include.retention import policy_errors

    assert policy_errors(None) == [] and policy_errors({"runs": 3, "days": 1.5}) == []
    assert "runs must be an integer" in policy_errors({"runs": 0})[0]
    assert "needs runs and/or days" in policy_errors({"vacuum_hours": 1})[0]
    assert "unknown key 'keep'" in policy_errors({"runs": 1, "keep": 2})[0]


def test_decide_keeps_last_runs_recent_runs_and_runs_in_flight():
    from include.retention import Policy, decide

    now = 1_000_000_000.0
    runs = [{"run_id": f"r{i}", "status": "success", "seq": int((now - (10 - i) * 86400) * 1e6)}
            for i in range(10)]
    runs[0]["status"] = "running"  # 10 days old: taken to have died
    runs[7]["status"] = "running"  # 3 days old: in flight, kept, and it sets the horizon
    drop, horizon = decide(runs, Policy(runs=2, days=4.5), now)
    assert drop == {f"r{i}" for i in range(6)} - {"r7"}
    assert horizon == pytest.approx(72.0)


@pytest.fixture(scope="module")
def three_runs(spark, tmp_path_factory):
    from include.runner import run_pipeline
    from include.spec import parse

    base = tmp_path_factory.mktemp("retention")
    (base / "src").mkdir()
    lines = [json.dumps({"id": f"t{i}", "text": t}) for i, t in enumerate(clean_texts(4))]
    lines.append("{broken")
    (base / "src" / "docs.jsonl").write_text("\n".join(lines) + "\n")
    spec = parse({"version": 1, "name": "kept_runs",
                  "source": {"path": str(base / "src"), "format": "jsonl", "id_field": "id"},
                  "steps": [{"op": "normalize"}], "output": {"table": "gold/kept_runs"},
                  "retention": {"runs": 2}})
    lake = base / "lake"
    summaries = [run_pipeline(spec, lake=str(lake)) for _ in range(3)]
    return lake, summaries


def test_retention_keeps_the_last_runs_and_every_record(three_runs):
    from deltalake import DeltaTable

    from include.lakehouse import QUARANTINE, RUNS, STEPS, Lakehouse

    lake, summaries = three_runs
    ids = [s["run_id"] for s in summaries]
    for table in ("bronze/kept_runs", "silver/kept_runs/01_normalize"):
        parts = {p["_run_id"] for p in DeltaTable(str(lake / table)).partitions()}
        assert parts == set(ids[1:]), table
        dropped = lake / table / f"_run_id={ids[0]}"
        assert not dropped.exists() or not list(dropped.glob("*.parquet")), "not vacuumed"
        assert list((lake / table / f"_run_id={ids[2]}").glob("*.parquet"))
    lh = Lakehouse(lake)
    runs = {r["run_id"]: r["status"] for r in lh.read(RUNS).collect()}
    assert runs == {i: "success" for i in ids}
    quarantined = sorted(r["run_id"] for r in lh.read(QUARANTINE).collect())
    assert quarantined == sorted(ids)  # the broken line of every run is still there
    steps = {(r["run_id"], r["step_index"]) for r in lh.read(STEPS).collect()}
    assert steps == {(i, k) for i in ids for k in (0, 1)}


def test_trace_reads_the_index_not_the_published_versions(three_runs):
    from include.trace import trace

    lake, summaries = three_runs
    before = [e["line"] for e in trace("t1", lake) if e["event"] == "kept"]
    assert len(before) == 3 and all("gold/kept_runs@v" in line for line in before)
    shutil.rmtree(lake / "gold" / "kept_runs")  # no version left to read
    after = [e["line"] for e in trace("t1", lake) if e["event"] == "kept"]
    assert after == before


def test_dry_run_lists_without_removing(three_runs):
    from deltalake import DeltaTable

    from include.lakehouse import Lakehouse
    from include.retention import Policy, apply

    lake, summaries = three_runs
    report = apply(Lakehouse(lake), "kept_runs", Policy(runs=1), dry_run=True)
    assert report["runs_dropped"] == [summaries[1]["run_id"]]
    parts = {p["_run_id"] for p in DeltaTable(str(lake / "bronze/kept_runs")).partitions()}
    assert len(parts) == 2
