"""Parse one source file into records or quarantine entries.

Pure Python, no Spark: ``spark_jobs.ingest`` runs these inside Spark tasks,
one file per call. Each yielded record is a dict with keys
``line`` (1-based record number in the file), ``id``, ``text``, ``html``,
``url``, ``meta`` (JSON of the other fields), ``id_generated``, ``error`` and
``skipped``; a record with ``error`` set goes to quarantine with ``raw``.

Every line of a line-based file yields exactly one record, so lines read =
rows + quarantined: a blank or whitespace-only line is quarantined as
``blank line``, a CSV field over Python's field limit and JSON nested deeper
than the parser's recursion limit are quarantined with their reason instead
of failing the task. A record that is not a document by design (a WARC
request, metadata or warcinfo record) yields a ``skipped`` marker with its
kind, which the ingest counts for the run summary and drops.

Why our own parsing rather than Spark's JSON/CSV readers: we need a reason per
bad line (invalid UTF-8, broken JSON, non-string text), and Spark's readers
either replace bad bytes silently or collapse a bad row into nulls.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from typing import Any, Iterator

RAW_LIMIT = 65536  # bytes of a bad line kept in quarantine; the ref names the rest


def content_id(text: str) -> str:
    """Stable content-hash id for sources without ids."""
    return "h" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _raw(b: bytes | str) -> str:
    if isinstance(b, bytes):
        return b[:RAW_LIMIT].decode("utf-8", "replace")
    return b[:RAW_LIMIT]


def _err(line: int, error: str, raw: bytes | str, doc_id: str | None = None) -> dict[str, Any]:
    return {"line": line, "id": doc_id, "text": None, "html": None, "url": None, "meta": None,
            "id_generated": False, "error": error, "raw": _raw(raw), "skipped": None}


def _skip(line: int, kind: str) -> dict[str, Any]:
    """A record that is no document by design; counted, never stored."""
    return {"line": line, "id": None, "text": None, "html": None, "url": None, "meta": None,
            "id_generated": False, "error": None, "raw": None, "skipped": kind}


def _record(line: int, doc_id: str, generated: bool, text=None, html=None, url=None,
            meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"line": line, "id": doc_id, "text": text, "html": html, "url": url,
            "meta": json.dumps(meta or {}, ensure_ascii=False, sort_keys=True, default=str),
            "id_generated": generated, "error": None, "raw": None, "skipped": None}


BLANK = "blank line"


def _too_deep() -> str:
    return f"JSON nested deeper than the parser allows (recursion limit {sys.getrecursionlimit()})"


def _id_from(obj: dict[str, Any], id_field: str | None, text: str) -> tuple[str | None, bool, str | None]:
    """(id, generated, error)."""
    if not id_field or obj.get(id_field) is None:
        return content_id(text), True, None
    v = obj[id_field]
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        return None, False, f"id field {id_field!r} is {type(v).__name__}, expected string or integer"
    v = str(v)
    if not v.strip():
        return content_id(text), True, None
    return v, False, None


def _from_mapping(line: int, obj: Any, id_field: str | None, text_field: str, raw) -> dict[str, Any]:
    if not isinstance(obj, dict):
        return _err(line, f"record is {type(obj).__name__}, expected a JSON object", raw)
    given = obj.get(id_field) if id_field else None
    given = str(given) if isinstance(given, (str, int)) and not isinstance(given, bool) else None
    if text_field not in obj:
        return _err(line, f"missing text field {text_field!r}", raw, given)
    text = obj[text_field]
    if text is None:
        return _err(line, f"text field {text_field!r} is null", raw, given)
    if not isinstance(text, str):
        return _err(line, f"text field {text_field!r} is {type(text).__name__}, expected string",
                    raw, given)
    doc_id, generated, error = _id_from(obj, id_field, text)
    if error:
        return _err(line, error, raw)
    meta = {k: v for k, v in obj.items() if k not in (text_field, id_field)}
    return _record(line, doc_id, generated, text=text, meta=meta)


def parse_jsonl(content: bytes, id_field: str | None, text_field: str, **_) -> Iterator[dict[str, Any]]:
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline that ends the last line starts no line
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            yield _err(n, BLANK, raw)
            continue
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield _err(n, f"invalid UTF-8 at byte {exc.start}", raw)
            continue
        try:
            obj = json.loads(s)
            yield _from_mapping(n, obj, id_field, text_field, raw)
        except json.JSONDecodeError as exc:
            yield _err(n, f"invalid JSON: {exc.msg} at column {exc.colno}", raw)
        except RecursionError:  # raised by loads, or by dumps of a mapping's meta
            yield _err(n, _too_deep(), raw)


def parse_csv(content: bytes, id_field: str | None, text_field: str, options=None, **_):
    opts = options or {}
    text = content.decode("utf-8", "surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=opts.get("delimiter", ","))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield _err(1, f"unreadable CSV header: {exc}",
                   _line(text, 1).encode("utf-8", "surrogateescape"))
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # Over csv.field_size_limit() (128 KiB), most often a quote never
            # closed; the reader goes on at the next line.
            n = reader.line_num
            yield _err(n, f"unreadable CSV record: {exc}",
                       _line(text, n).encode("utf-8", "surrogateescape"))
            continue
        n = reader.line_num
        raw = ",".join(row)
        if not row or (len(row) == 1 and not row[0].strip()):  # an empty or blank line
            yield _err(n, BLANK, raw)
            continue
        if any("\udc80" <= ch <= "\udcff" for cell in row for ch in cell):
            yield _err(n, "invalid UTF-8", raw.encode("utf-8", "surrogateescape"))
            continue
        if len(row) != len(header):
            yield _err(n, f"row has {len(row)} fields, header has {len(header)}", raw)
            continue
        yield _from_mapping(n, dict(zip(header, row)), id_field, text_field, raw)


def _line(text: str, n: int) -> str:
    """Line ``n`` (1-based) of ``text``, cut to what quarantine keeps."""
    start = 0
    for _ in range(n - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start:end if end >= 0 and end - start < RAW_LIMIT else start + RAW_LIMIT]


def parse_text(content: bytes, path: str, **_):
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield _err(1, f"invalid UTF-8 at byte {exc.start}", content)
        return
    yield _record(1, content_id(text), True, text=text, meta={"path": path})


def _decode_html(content: bytes) -> str:
    # HTML declares its own charset often wrongly; the extractor copes with
    # replacement characters, and binary junk is judged by html_extract.
    return content.decode("utf-8", "replace")


def parse_html(content: bytes, path: str, **_):
    html = _decode_html(content)
    yield _record(1, content_id(html), True, html=html, url=path, meta={"path": path})


def parse_warc(content: bytes, path: str, id_field: str | None = None, **_):
    """Response records become documents; truncation is reported, not hidden.

    warcio stops quietly at a cut-off record, so we check that each payload
    was read to its declared length and that no bytes are left after the last
    record it returned.
    """
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    stream = ArchiveIterator(io.BytesIO(content))
    try:
        for rec in stream:
            n += 1
            uri = rec.rec_headers.get_header("WARC-Target-URI")
            rid = (rec.rec_headers.get_header("WARC-Record-ID") or "").strip("<>")
            body = rec.content_stream().read()
            if getattr(rec.raw_stream, "limit", 0):
                yield _err(n, f"truncated WARC record: {rec.raw_stream.limit} bytes missing",
                           f"{path} record {n} {uri}", rid or None)
                continue
            if rec.rec_type != "response":
                yield _skip(n, f"warc_{rec.rec_type}")  # request/metadata/warcinfo: no document
                continue
            ctype = (rec.http_headers.get_header("Content-Type") if rec.http_headers else "") or ""
            meta = {"path": path, "warc_date": rec.rec_headers.get_header("WARC-Date"),
                    "content_type": ctype}
            html = _decode_html(body)
            yield _record(n, rid or content_id(html), not rid, html=html, url=uri, meta=meta)
    except Exception as exc:  # noqa: BLE001 - corrupt archive: the rest is unreadable
        yield _err(n + 1, f"corrupt WARC after record {n}: {exc}", f"{path} after record {n}")
        return
    if content[stream.offset:].strip():
        yield _err(n + 1, f"truncated WARC: {len(content) - stream.offset} unparsed bytes after "
                   f"record {n}", f"{path} after record {n}")


PARSERS = {"jsonl": parse_jsonl, "csv": parse_csv, "text": parse_text,
           "html": parse_html, "warc": parse_warc}


def parse_file(fmt: str, content: bytes, path: str, id_field: str | None,
               text_field: str, options: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    return PARSERS[fmt](content, path=path, id_field=id_field, text_field=text_field,
                        options=options)
