"""Every source format through the real Spark ingest."""
import json

import pandas as pd

from spark_jobs.ingest import ingest
from tests.spine.test_readers import _warc


def _run(spark, fmt, path, **src):
    rows, bad, info = ingest(spark, {"format": fmt, **src}, str(path))
    return ({r.id: r.asDict() for r in rows.collect()}, [r.asDict() for r in bad.collect()],
            info["files"])


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


def test_every_line_and_every_skipped_file_is_accounted_for(spark, tmp_path):
    """A 414-line file with a whitespace-only line used to come out as 413."""
    import csv

    src = tmp_path / "src"
    (src / "_logs").mkdir(parents=True)
    (src / "_logs" / "x.jsonl").write_text('{"id": "hidden", "text": "never read"}\n')
    (src / "_SUCCESS").write_text("")
    (src / ".part-0.crc").write_text("crc")
    lines = [json.dumps({"id": f"d{i}", "text": f"line {i}"}) for i in range(410)]
    lines[100] = "   "  # whitespace only
    lines[200] = ""  # empty
    lines[300] = json.dumps({"id": "deep", "text": "t", "x": [[[[]]]]}).replace(
        "[[[[]]]]", "[" * 50_000 + "]" * 50_000)
    lines += ["\t", json.dumps({"id": "d410", "text": "line"}), "{broken", " "]
    (src / "a.jsonl").write_text("\n".join(lines) + "\n")
    assert len(lines) == 414
    rows, bad, info = ingest(spark, {"format": "jsonl", "id_field": "id"}, str(src))
    n_rows, bad = rows.count(), bad.collect()
    assert n_rows + len(bad) == 414
    assert sorted(e.error for e in bad if e.error == "blank line") == ["blank line"] * 4
    assert any(e.error.startswith("JSON nested deeper") for e in bad)
    assert info == {"files": 1, "hidden_files_skipped": 2, "hidden_dirs_skipped": 1,
                    "blank_lines": 4}

    (tmp_path / "c.csv").write_text("id,text\n1,a\n2," + "x" * (csv.field_size_limit() + 5)
                                    + "\n3,c\n")
    rows, bad, _ = _run(spark, "csv", tmp_path / "c.csv", id_field="id")
    assert set(rows) == {"1", "3"} and "field larger than field limit" in bad[0]["error"]


def test_warc_records_that_are_not_responses_are_reported(spark, tmp_path):
    import io

    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=False)
    w.write_record(w.create_warcinfo_record("crawl.warc", {"software": "test"}))
    for i in range(2):
        w.write_record(w.create_warc_record(f"http://example.test/{i}", "request",
                                            payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n")))
    (tmp_path / "c.warc").write_bytes(buf.getvalue() + _warc(3))
    rows, bad, info = ingest(spark, {"format": "warc"}, str(tmp_path / "c.warc"))
    assert rows.count() == 3 and bad.count() == 0
    assert info["warc_records_skipped"] == {"request": 2, "warcinfo": 1}


def test_run_summary_reports_blank_lines_and_hidden_files(spark, tmp_path):
    from include.runner import run_pipeline
    from tests.helpers import write_spec

    src = tmp_path / "src"
    src.mkdir()
    (src / "_SUCCESS").write_text("")
    (src / "a.jsonl").write_text('{"id": "a", "text": "one"}\n \n{"id": "b", "text": "two"}\n')
    spec = write_spec(tmp_path / "s.yaml", f"version: 1\nname: blanks\nsource: {{path: {src}, "
                      "format: jsonl, id_field: id}\nsteps: []\noutput: {table: gold/blanks}\n")
    s = run_pipeline(str(spec), lake=str(tmp_path / "lake"))
    assert s["source"]["rows"] == 3 and s["source"]["quarantined"] == 1
    assert s["output_rows"] == 2 and s["conservation"]["ok"]
    assert s["source"]["blank_lines"] == 1 and s["source"]["hidden_files_skipped"] == 1
