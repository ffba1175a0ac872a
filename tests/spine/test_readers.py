"""Per-line parsing: every bad line becomes a record with a reason."""
import io
import json

from spark_jobs.readers import content_id, parse_file


def parse(fmt, content, id_field="id", text_field="text", path="/x/f"):
    return list(parse_file(fmt, content, path, id_field, text_field, {}))


def test_jsonl_good_and_bad_lines():
    lines = [
        b'{"id": 1, "text": "numeric id becomes a string", "lang": "en"}',
        b'{"id": "a", "text": "broken',
        b'{"id": "b", "text": "caf\xe9"}',
        b'{"id": "c", "text": null}',
        b'{"id": "d", "text": 42}',
        b'{"id": "e", "text": {"nested": true}}',
        b'[1, 2]',
        b'',
        b'{"text": "no id here"}',
        b'{"id": {"x": 1}, "text": "nested id"}',
        b'{"id": "f"}',
    ]
    recs = parse("jsonl", b"\n".join(lines))
    assert len(recs) == 11  # one record per line, the blank one included
    ok = [r for r in recs if not r["error"]]
    assert [r["id"] for r in ok] == ["1", content_id("no id here")]
    assert json.loads(ok[0]["meta"]) == {"lang": "en"}
    assert ok[1]["id_generated"] is True
    errs = {r["line"]: r["error"] for r in recs if r["error"]}
    assert errs[2].startswith("invalid JSON")
    assert errs[3].startswith("invalid UTF-8")
    assert errs[4] == "text field 'text' is null"
    assert errs[5] == "text field 'text' is int, expected string"
    assert errs[6] == "text field 'text' is dict, expected string"
    assert errs[7] == "record is list, expected a JSON object"
    assert errs[8] == "blank line"
    assert "id field 'id' is dict" in errs[10]
    assert errs[11] == "missing text field 'text'"
    # Errors keep the given id, so `datamill trace` finds quarantined documents.
    assert [r["id"] for r in recs if r["line"] == 4] == ["c"]


def test_five_megabyte_document_parses_whole():
    big = "word " * 1_000_000
    recs = parse("jsonl", json.dumps({"id": "big", "text": big}).encode())
    assert recs[0]["text"] == big and not recs[0]["error"]


def test_empty_file_yields_nothing():
    assert parse("jsonl", b"") == [] and parse("csv", b"") == []


def test_csv_rows_and_bad_rows():
    content = b'id,text\n1,"hello, world"\n2,too,many\n3,caf\xe9\n'
    recs = parse("csv", content)
    assert recs[0]["text"] == "hello, world" and recs[0]["id"] == "1"
    assert "row has 3 fields" in recs[1]["error"]
    assert recs[2]["error"] == "invalid UTF-8"


def test_text_and_html_whole_file():
    assert parse("text", "Some plain text.".encode())[0]["text"] == "Some plain text."
    assert parse("text", b"\xff\xfe bad")[0]["error"].startswith("invalid UTF-8")
    h = parse("html", b"<html><body><p>x</p>\x00\x01junk</body></html>", path="/p/a.html")[0]
    assert h["html"].startswith("<html>") and h["url"] == "/p/a.html" and h["text"] is None


def _warc(n=2) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=False)
    for i in range(n):
        body = f"<html><body><p>page {i}</p></body></html>".encode()
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(f"http://example.test/{i}", "response",
                                            payload=io.BytesIO(body), http_headers=http))
    return buf.getvalue()


def test_warc_records_and_truncation():
    data = _warc(2)
    recs = parse("warc", data)
    assert [r["url"] for r in recs] == ["http://example.test/0", "http://example.test/1"]
    assert all(r["html"] and not r["error"] for r in recs)
    for missing in (40, 100, 300):  # cut inside the payload, the headers, the first record
        cut = parse("warc", data[: len(data) - missing])
        assert cut[0]["url"] == "http://example.test/0" and not cut[0]["error"]
        assert len(cut) == 2 and "truncated WARC" in cut[-1]["error"]


def test_every_line_is_one_record_blank_ones_included():
    """Before, whitespace-only lines vanished: 5 lines in, 3 accounted for."""
    content = b'{"id": "a", "text": "x"}\n   \n\t\r\n{"id": "b", "text": "y"}\r\n\n'
    recs = parse("jsonl", content)
    assert [(r["line"], r["id"], r["error"]) for r in recs] == [
        (1, "a", None), (2, None, "blank line"), (3, None, "blank line"), (4, "b", None),
        (5, None, "blank line")]
    assert len(parse("jsonl", b'{"id": "a", "text": "x"}\n')) == 1  # a final newline ends a line
    csv_recs = parse("csv", b"id,text\n1,one\n\n   \n2,two\n")
    assert [r["error"] for r in csv_recs] == [None, "blank line", "blank line", None]


def test_json_nested_deeper_than_the_parser_allows_is_quarantined():
    deep = b'{"id": "d", "text": "t", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    recs = parse("jsonl", deep + b'\n{"id": "e", "text": "next line"}')
    assert recs[0]["error"].startswith("JSON nested deeper than the parser allows")
    assert recs[0]["raw"] and recs[1]["id"] == "e" and not recs[1]["error"]


def test_csv_field_over_the_field_limit_is_quarantined():
    import csv

    big = "x" * (csv.field_size_limit() + 1)
    content = f'id,text\n1,before\n2,{big}\n3,after\n4,"unclosed\n'.encode()
    recs = parse("csv", content)
    assert [(r["id"], r["error"]) for r in recs[:1] + recs[2:3]] == [("1", None), ("3", None)]
    assert recs[1]["line"] == 3 and "field larger than field limit" in recs[1]["error"]
    assert recs[1]["raw"].startswith("2,xxx")
    assert len(recs) == 4 and recs[3]["id"] == "4"  # an unclosed quote runs to the end


def test_warc_non_response_records_are_counted_not_dropped():
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=False)
    w.write_record(w.create_warcinfo_record("crawl.warc", {"software": "test"}))
    w.write_record(w.create_warc_record("http://example.test/0", "request",
                                        payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n")))
    recs = parse("warc", buf.getvalue() + _warc(1))
    assert [r["skipped"] for r in recs] == ["warc_warcinfo", "warc_request", None]
    assert recs[2]["url"] == "http://example.test/0" and not recs[2]["error"]
