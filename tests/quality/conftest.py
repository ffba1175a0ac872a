"""One published pipeline shared by the quality tests: real docstrings from the
bundled sample (every 30th), three whitespace-changed copies, run through
normalize, quality_filter, exact_dedup, the default gate and stats_report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import ROOT, write_spec

PIPELINE = """
version: 1
name: qdocs
source: {{path: {src}, format: jsonl, id_field: id}}
steps:
  - op: normalize
  - op: quality_filter
    params: {{min_words: 20}}
  - op: exact_dedup
  - op: gx_validate
  - op: stats_report
    params: {{sample_size: 200, near_dup_sample: 50}}
output: {{table: gold/qdocs}}
"""


def source_rows() -> list[dict]:
    with open(ROOT / "include/sample_data/docs/stdlib_docs.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh][::30]
    long = [r for r in rows if len(r["text"].split()) >= 20][:3]
    rows += [dict(r, id=r["id"] + ":copy", text="  " + r["text"].replace(" ", "  ") + "\n")
             for r in long]
    return rows


@pytest.fixture(scope="session")
def published(spark, tmp_path_factory):
    """(lake, spec path, summary) of one run of PIPELINE."""
    from include.runner import run_pipeline

    base = tmp_path_factory.mktemp("quality")
    src = base / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in source_rows()), encoding="utf-8")
    spec = write_spec(base / "qdocs.yaml", PIPELINE.format(src=src))
    lake = base / "lake"
    summary = run_pipeline(str(spec), lake=str(lake))
    return Path(lake), spec, summary
