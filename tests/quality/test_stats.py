"""Dataset statistics: the stats_report op, `datamill stats` and the edge
cases (typed categorical columns, null scores, BPE tokens, empty and missing
tables), on real Spark + Delta."""
import json
import re

import pytest

from include.lakehouse import Lakehouse
from include.quality import report, stats
from tests.helpers import run_cli

LENGTH_KEYS = {"mean", "std", "min", "p50", "p95", "max"}


def _images(html: str) -> int:
    return len(re.findall(r"<img src='data:image/png;base64,[A-Za-z0-9+/=]{200,}'", html))


def test_stats_report_op_writes_json_and_html_under_the_run(published):
    lake, _, summary = published
    folder = lake / "_reports" / "qdocs" / summary["run_id"]
    out = json.loads((folder / "step5_stats_report.json").read_text())
    assert out["rows"] == summary["output_rows"]
    assert [s["op"] for s in out["funnel"]] == ["normalize", "quality_filter", "exact_dedup",
                                                "gx_validate"]
    assert out["quality_gate"] and all(g["success"] for g in out["quality_gate"])
    html = (folder / "step5_stats_report.html").read_text()
    assert _images(html) >= 4 and "<script" not in html and "http" not in html.split("<style>")[0]
    step = next(s for s in summary["steps"] if s["op"] == "stats_report")
    assert step["stats"]["report"] == str(folder / "step5_stats_report.html")


def test_datamill_stats_prints_the_documented_keys(published, tmp_path):
    lake, _, summary = published
    r = run_cli("stats", "gold/qdocs", "--lake", str(lake), "--out", str(tmp_path / "rep"),
                "--near-dup-sample", "60")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"table", "version", "rows", "length", "by", "funnel", "removed_by_reason",
            "duplication_rate", "report"} <= set(out)
    assert (out["table"], out["version"], out["rows"]) == ("gold/qdocs", 0, summary["output_rows"])
    for unit in ("chars", "words", "tokens"):
        assert LENGTH_KEYS <= set(out["length"][unit])
    words = out["length"]["words"]
    assert words["min"] >= 20 and words["min"] <= words["p50"] <= words["p95"] <= words["max"]
    assert out["by"]["meta.kind"] and sum(out["by"]["meta.kind"].values()) == out["rows"]
    assert [(s["op"], s["rows_in"], s["kept"]) for s in out["funnel"]] == \
        [(s["op"], s["rows_in"], s["kept"]) for s in summary["steps"]]
    copies = summary["steps"][2]["removed"]
    assert copies >= 1 and out["removed_by_reason"]["exact_dedup/exact_duplicate"] == copies
    assert sum(v for k, v in out["removed_by_reason"].items() if k.startswith("quality_filter/")) \
        == summary["steps"][1]["removed"]
    dup = out["duplication_rate"]
    reached = summary["steps"][2]["rows_in"]
    assert dup["removed_by_dedup"] == round(copies / reached, 4)
    assert dup["exact_in_table"] == 0.0 and dup["near_sample"] == out["rows"]
    assert out["diversity"]["distinct_1"] < out["diversity"]["distinct_2"] < 1
    assert out["pipeline"] == "qdocs" and out["run_id"] == summary["run_id"]
    html = (tmp_path / "rep" / "report.html").read_text()
    assert out["report"] == str(tmp_path / "rep" / "report.html")
    assert _images(html) >= 5  # lengths, funnel, removals, one per categorical column


def test_typed_columns_null_scores_and_bpe_tokens(spark, tmp_path):
    from training.tokenizer import train_bpe
    from tests.helpers import clean_texts

    texts = clean_texts(12)
    tok = tmp_path / "tokenizer.json"
    train_bpe(texts, 300, tok)
    rows = [(f"d{i}", t, ["en", "de", None][i % 3], i % 4, i % 2 == 0,
             None if i % 3 == 0 else 1 + i % 5, None if i < 6 else i / 12.0)
            for i, t in enumerate(texts)] + [("d99", texts[0], "en", 1, True, 2, 0.5)]
    df = spark.createDataFrame(rows, "id string, text string, lang string, label int, "
                                     "flag boolean, llm_score int, quality_score double")
    out = stats.frame_stats(df, tokenizer=tok, sample_size=50, near_dup_sample=20)
    assert out["rows"] == 13
    assert out["by"]["lang"] == {"en": 5, "de": 4, "(null)": 4}
    assert out["by"]["label"] == {"0": 3, "1": 4, "2": 3, "3": 3}
    assert set(out["by"]["flag"]) == {"true", "false"}
    assert out["scores"]["llm_score"]["nulls"] == 4 and out["scores"]["llm_score"]["n"] == 9
    assert out["scores"]["quality_score"]["nulls"] == 6
    assert sum(out["scores"]["quality_score"]["histogram"]["counts"]) == 7
    assert sum(out["histograms"]["length.chars"]["counts"]) == 13
    toks, words = out["length"]["tokens"], out["length"]["words"]
    assert toks["unit"] == f"bpe:{tok}" and toks["mean"] > words["mean"]  # a 300-token BPE splits words
    assert out["duplication"]["exact"]["duplicates"] == 1
    near = out["duplication"]["near"]
    # d0 and d99 are copies, each the other's near duplicate; all 13 rows are sampled
    assert (near["with_near_duplicate"], near["sample"]) == (2, 13)
    html = report.render(out, tmp_path)
    assert "llm_score" in html and "bpe" in html


def test_empty_table_gives_a_report_saying_so(spark, tmp_path):
    lh = Lakehouse(tmp_path / "lake")
    spark.createDataFrame([], "id string, text string").write.format("delta") \
        .save(lh.table_path("gold/empty"))
    out = stats.table_stats(lh, "gold/empty")
    assert out["rows"] == 0 and "the table is empty: no rows to describe" in out["notes"]
    assert out["length"]["chars"]["mean"] is None
    path = report.write(out, tmp_path / "rep", "empty")
    assert "the table is empty" in path.read_text()
    with pytest.raises(LookupError, match="has versions 0 to 0, not 3"):
        stats.table_stats(lh, "gold/empty", 3)


def test_stats_on_a_missing_table_exits_1(tmp_path):
    r = run_cli("stats", "gold/nope", "--lake", str(tmp_path))
    assert r.returncode == 1
    assert f"error: no Delta table 'gold/nope' in {tmp_path}" in r.stderr
    assert "Traceback" not in r.stderr
