"""Every source format through the real Spark ingest."""
import json

import pandas as pd

from spark_jobs.ingest import ingest
from tests.spine.test_readers import _warc


def _run(spark, fmt, path, **src):
    rows, bad, n_files = ingest(spark, {"format": fmt, **src}, str(path))
    return {r.id: r.asDict() for r in rows.collect()}, [r.asDict() for r in bad.collect()], n_files


def test_parquet(spark, tmp_path):
    pd.DataFrame({"doc": ["a", "b", "c"], "body": ["first text", None, "third text"],
                  "score": [1, 2, 3]}).to_parquet(tmp_path / "p.parquet")
    rows, bad, _ = _run(spark, "parquet", tmp_path, id_field="doc", text_field="body")
    assert set(rows) == {"a", "c"} and json.loads(rows["a"]["meta"]) == {"score": 1}
    assert bad[0]["error"] == "text field 'body' is null" and bad[0]["source_ref"].endswith(":2")


def test_csv_glob(spark, tmp_path):
    (tmp_path / "a.csv").write_text('id,text\n1,"one, with comma"\n2,two\n')
    (tmp_path / "b.csv").write_text('id,text\n3,three,extra\n')
    (tmp_path / "ignored.txt").write_text("not matched by the glob")
    rows, bad, n = _run(spark, "csv", tmp_path / "*.csv", id_field="id")
    assert n == 2 and rows["1"]["text"] == "one, with comma" and set(rows) == {"1", "2"}
    assert "row has 3 fields" in bad[0]["error"]


def test_text_html_warc(spark, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.txt").write_text("A whole file is one document.")
    (tmp_path / "t" / "b.txt").write_text("A whole file is one document.")  # same content
    rows, _, _ = _run(spark, "text", tmp_path / "t")
    assert len(rows) == 2 and any(i.endswith("-2") for i in rows)

    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "p.html").write_bytes(b"<html><body><p>Hello</p>\xff\x00</body></html>")
    rows, bad, _ = _run(spark, "html", tmp_path / "h")
    (row,) = rows.values()
    assert row["html"].startswith("<html>") and row["url"].endswith("p.html") and not bad

    (tmp_path / "w").mkdir()
    data = _warc(3)
    (tmp_path / "w" / "ok.warc").write_bytes(data)
    (tmp_path / "w" / "cut.warc").write_bytes(_warc(3)[:-60])  # new record ids
    rows, bad, _ = _run(spark, "warc", tmp_path / "w")
    assert len(rows) == 3 + 2  # the cut file's intact records are kept
    assert len(bad) == 1 and "truncated WARC" in bad[0]["error"]
