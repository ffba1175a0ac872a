"""End-to-end runs on real Spark + Delta: bad input, conservation, idempotent retries."""
import json
import os

import pytest

from include.lakehouse import LEDGER, QUARANTINE, STEPS, Lakehouse
from include.runner import plan_stages, run_pipeline, run_stage
from include.spec import load_spec
from tests.helpers import clean_texts, run_cli, write_spec

GOOD = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(clean_texts(12))]


@pytest.fixture
def bad_source(tmp_path):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    lines = [json.dumps(d).encode() for d in GOOD]
    lines += [
        b'{"id": "broken", "text": "no end',
        b'{"id": "latin1", "text": "caf\xe9"}',
        b'{"id": "null", "text": null}',
        b'{"id": "num", "text": 7}',
        b'{"id": "nested", "text": {"a": 1}}',
        json.dumps({"id": "short", "text": "too short"}).encode(),
        json.dumps({"id": "doc-0", "text": "a duplicate id"}).encode(),
        json.dumps({"text": GOOD[1]["text"]}).encode(),
        json.dumps({"text": GOOD[1]["text"]}).encode(),  # same content twice: two distinct ids
        json.dumps({"id": "big", "text": "\n\n".join(clean_texts(30)) * 230}).encode(),  # ~5 MB
    ]
    (src / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (src / "nested" / "empty.jsonl").write_bytes(b"")
    os.symlink(tmp_path / "does-not-exist", src / "nested" / "dangling.jsonl")
    return src


def spec_for(tmp_path, src, fuse=True, name="bad"):
    return write_spec(tmp_path / f"{name}.yaml", f"""
version: 1
name: {name}
source: {{path: {src}, format: jsonl, id_field: id}}
steps:
  - op: normalize
  - op: quality_filter
    params: {{min_words: 40, max_words: 10000000, preset: gopher, max_dup_para_frac: 1.0, max_dup_para_char_frac: 1.0, max_dup_line_frac: 1.0, max_dup_line_char_frac: 1.0, max_top_2gram_frac: 1.0, max_top_3gram_frac: 1.0, max_top_4gram_frac: 1.0, max_dup_5gram_frac: 1.0, max_dup_6gram_frac: 1.0, max_dup_7gram_frac: 1.0, max_dup_8gram_frac: 1.0, max_dup_9gram_frac: 1.0, max_dup_10gram_frac: 1.0}}
execution: {{fuse: {str(fuse).lower()}}}
output: {{table: gold/{name}}}
""")


def test_bad_input_is_accounted_for(spark, tmp_path, lake, bad_source):
    s = run_pipeline(str(spec_for(tmp_path, bad_source)), lake=str(lake))
    # 22 records + 1 unreadable file; the empty file and blank lines add nothing.
    assert s["source"]["rows"] == 23
    assert s["conservation"]["ok"]
    assert s["source"]["rows"] == s["output_rows"] + sum(x["removed"] for x in s["steps"]) \
        + s["source"]["quarantined"] + sum(x["quarantined"] for x in s["steps"])
    lh = Lakehouse(lake)
    q = {r.doc_id or r.source_ref: r.error for r in lh.read(QUARANTINE).collect()}
    errors = sorted(q.values())
    assert any(e.startswith("invalid JSON") for e in errors)
    assert any(e.startswith("invalid UTF-8") for e in errors)
    assert q["null"] == "text field 'text' is null"
    assert q["num"] == "text field 'text' is int, expected string"
    assert q["nested"] == "text field 'text' is dict, expected string"
    assert q["doc-0"].startswith("duplicate id (first at ")
    assert any(e.startswith("unreadable file") for e in errors)
    ledger = {r.doc_id: r for r in lh.read(LEDGER).where("action = 'removed'").collect()}
    assert ledger["short"].rule == "min_words" and ledger["short"].op == "quality_filter"
    gold = {r.id: r.text for r in lh.read("gold/bad").collect()}
    assert "doc-0" in gold and gold["doc-0"].startswith("Metaclass for defining")
    assert "big" in gold and len(gold["big"]) > 5_000_000
    hashed = [i for i in gold if i.startswith("h")]
    assert len(hashed) == 2 and any(i.endswith("-2") for i in hashed)


def test_fused_and_materialised_runs_agree(spark, tmp_path, bad_source):
    a = run_pipeline(str(spec_for(tmp_path, bad_source, fuse=True, name="fa")), lake=str(tmp_path / "l1"))
    b = run_pipeline(str(spec_for(tmp_path, bad_source, fuse=False, name="fa")), lake=str(tmp_path / "l2"))
    assert a["steps"] == b["steps"] and a["output_rows"] == b["output_rows"]
    rows = lambda p: sorted((r.id, r.text) for r in Lakehouse(p).read("gold/fa").collect())
    assert rows(tmp_path / "l1") == rows(tmp_path / "l2")
    assert len(plan_stages(load_spec(spec_for(tmp_path, bad_source, fuse=True, name="fa")))) == 3
    assert len(plan_stages(load_spec(spec_for(tmp_path, bad_source, fuse=False, name="fa")))) == 4


def test_retried_stage_never_duplicates_or_drops(spark, tmp_path, lake, bad_source):
    spec = load_spec(spec_for(tmp_path, bad_source, fuse=False, name="retry"))
    first = run_pipeline(spec, lake=str(lake), run_id="r1")
    lh = Lakehouse(lake)
    counts = lambda: (lh.read(LEDGER).count(), lh.read(QUARANTINE).count(), lh.read(STEPS).count(),
                      lh.read("bronze/retry").count(), lh.read("silver/retry/02_quality_filter").count())
    before = counts()
    for i in range(len(plan_stages(spec))):  # every task retried once
        run_stage(spec, i, "r1", str(lake))
    assert counts() == before
    again = run_pipeline(spec, lake=str(lake), run_id="r1")
    assert again["steps"] == first["steps"] and again["output_rows"] == first["output_rows"]
    assert counts() == before


def test_cli_run_export_trace(tmp_path, lake, bad_source):
    spec = spec_for(tmp_path, bad_source, name="cli")
    r = run_cli("run", str(spec), "--lake", str(lake), "--set", "quality_filter.min_words=12")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["conservation"]["ok"] and summary["pipeline"] == "cli"
    out = tmp_path / "gold.jsonl"
    r = run_cli("export", "gold/cli", "--lake", str(lake), "--format", "jsonl", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    exported = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(exported) == summary["output_rows"] and {"id", "text", "meta"} <= set(exported[0])
    r = run_cli("trace", "short", "--lake", str(lake))
    assert r.returncode == 0 and "quality_filter: removed (min_words)" in r.stdout
    r = run_cli("trace", "null", "--lake", str(lake))
    assert "quarantined (text field 'text' is null)" in r.stdout


def test_missing_source_writes_nothing(tmp_path, lake):
    spec = write_spec(tmp_path / "m.yaml", f"version: 1\nname: m\nsource: {{path: {tmp_path}/nope, "
                      "format: jsonl}\nsteps: []\noutput: {table: gold/m}\n")
    r = run_cli("run", str(spec), "--lake", str(lake))
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert list(lake.iterdir()) == []
