"""Publishing (issue 9 items 3, 4, 7): checked before the table changes, one
guarded commit per run, runs read the spec they started with, ids stay unique."""
from __future__ import annotations

import json

import pytest

from include.lakehouse import RUNS, Lakehouse
from include.registry import Op, register_op
from include.runner import (ConservationError, DuplicateIdError, SpecMismatchError, StageError,
                            StalePublishError, run_pipeline, run_stage, run_task)
from include.spec import SpecError, load_spec
from tests.helpers import clean_texts, write_spec

DOCS = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(clean_texts(8))]


@pytest.fixture
def src(tmp_path):
    p = tmp_path / "src.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    return p


def spec_at(path, src, name="pub", steps="[{op: normalize}, {op: exact_dedup}]",
            table=None):
    return write_spec(path, f"""
version: 1
name: {name}
source: {{path: {src}, format: jsonl, id_field: id}}
steps: {steps}
output: {{table: {table or 'gold/' + name}}}
""")


def _history(lh, table):
    return [h["version"] for h in lh.history(table, 1000)]


def test_a_failed_check_publishes_nothing(spark, tmp_path, lake, src):
    spec = load_spec(spec_at(tmp_path / "pub.yaml", src))
    lh = Lakehouse(lake)
    first = run_pipeline(spec, lake=str(lake), run_id="r1")
    assert first["output_version"] == 0 and first["output_rows"] == 8
    for i in range(3):  # ingest and both steps of a second run
        run_stage(spec, i, "r2", str(lake))
    # a row of r2 goes missing between the last step and publish
    path = lh.table_path("silver/pub/02_exact_dedup")
    spark.sql(f"DELETE FROM delta.`{path}` WHERE _run_id = 'r2' AND id = 'doc-3'")
    for _ in range(2):  # and a retry changes nothing
        with pytest.raises(ConservationError, match="nothing published"):
            run_stage(spec, 3, "r2", str(lake))
    assert _history(lh, "gold/pub") == [0]
    assert sorted(r.id for r in lh.read("gold/pub").collect()) == sorted(d["id"] for d in DOCS)
    status = {r.run_id: r.status for r in lh.read(RUNS).collect()}
    assert status == {"r1": "success", "r2": "conservation_failed"}


def test_a_publish_commits_once_and_never_goes_back_in_time(spark, tmp_path, lake, src):
    spec = load_spec(spec_at(tmp_path / "pub.yaml", src))
    lh = Lakehouse(lake)
    for i in range(3):  # run "old" starts first and stops before publishing
        run_stage(spec, i, "old", str(lake))
    new = run_pipeline(spec, lake=str(lake), run_id="new")
    assert _history(lh, "gold/pub") == [0]
    # the retried publish of a run that already published: no new commit
    again = run_stage(spec, 3, "new", str(lake))
    assert again["output_version"] == new["output_version"] == 0
    assert _history(lh, "gold/pub") == [0]
    # the older run's publish, arriving late, cannot replace the newer data
    with pytest.raises(StalePublishError, match="'new'"):
        run_stage(spec, 3, "old", str(lake))
    assert _history(lh, "gold/pub") == [0]
    assert lh.publisher("gold/pub") == {"pipeline": "pub", "run_id": "new"}
    status = {r.run_id: r.status for r in lh.read(RUNS).collect()}
    assert status == {"old": "superseded", "new": "success"}


def test_a_run_reads_the_spec_it_started_with(spark, tmp_path, lake, src):
    path = spec_at(tmp_path / "pub.yaml", src)
    started = load_spec(path)
    run_task(started, "ingest", "r1", str(lake))
    # The spec is edited while the run is in flight: a filter that drops everything.
    spec_at(path, src, steps="[{op: quality_filter, params: {min_words: 100000}}]")
    edited = load_spec(path)
    # Later tasks name only the pipeline (as the operators do) and run the snapshot.
    for task in ("s1_normalize", "s2_exact_dedup", "publish"):
        summary = run_task("pub", task, "r1", str(lake))
    assert summary["output_rows"] == 8 and [s["op"] for s in summary["steps"]] == [
        "normalize", "exact_dedup"]
    # a task the snapshot does not have is refused
    with pytest.raises(StageError, match="not a stage of the spec"):
        run_task("pub", "s1_quality_filter", "r1", str(lake))
    # reusing the run id with the edited spec is refused, before anything is written
    with pytest.raises(SpecMismatchError, match="use a new run id"):
        run_pipeline(edited, lake=str(lake), run_id="r1")
    assert Lakehouse(lake).read("gold/pub").count() == 8


def test_two_pipelines_may_not_share_an_output_table(spark, tmp_path, lake, src, monkeypatch):
    live = tmp_path / "live"
    live.mkdir()
    spec_at(live / "a.yaml", src, name="a", table="gold/shared")
    monkeypatch.setenv("DATAMILL_PIPELINES_DIR", str(live))
    with pytest.raises(SpecError, match="already the output of live pipeline.*a \\(a.yaml\\)"):
        load_spec(spec_at(tmp_path / "b.yaml", src, name="b", table="gold/shared"))
    load_spec(live / "a.yaml")  # a spec is no clash with itself
    # A table published by a pipeline that is not live any more is still its own.
    monkeypatch.setenv("DATAMILL_PIPELINES_DIR", str(tmp_path / "none"))
    run_pipeline(load_spec(spec_at(tmp_path / "c.yaml", src, name="c", table="gold/t")),
                 lake=str(lake))
    with pytest.raises(StageError, match="published by pipeline 'c'"):
        run_pipeline(load_spec(spec_at(tmp_path / "d.yaml", src, name="d", table="gold/t")),
                     lake=str(lake))


@pytest.fixture
def dup_row_op():
    """A test-only op that copies the first row under the same id (registered
    for this test alone: the catalogue other tests see stays the real one)."""
    from include.registry import _REGISTRY

    @register_op(name="_test_dup_row", version="1", category="augment", engine="spark",
                 description="test op: copies the first row under the same id",
                 requires=("id", "text"))
    class _DupRow(Op):
        def run(self, df, params, ctx):
            from pyspark.sql import functions as F

            first = df.orderBy("id").limit(1).withColumn("_parent_id", F.col("id"))
            return df.unionByName(first, allowMissingColumns=True)

    yield
    _REGISTRY.pop("_test_dup_row", None)


def test_duplicate_ids_fail_the_stage_naming_them(spark, tmp_path, lake, src, dup_row_op):
    spec = load_spec(spec_at(tmp_path / "dup.yaml", src, name="dup",
                             steps="[{op: normalize}, {op: _test_dup_row}]"))
    with pytest.raises(DuplicateIdError, match="'doc-0' x2"):
        run_pipeline(spec, lake=str(lake))
    assert not Lakehouse(lake).exists("gold/dup")
