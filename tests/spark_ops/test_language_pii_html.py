"""language_filter, pii_redact, html_extract and the row-wise wrapper on real Spark."""
from __future__ import annotations

import json

import pytest

from include.registry import get_op
from spark_jobs import rowwise
from spark_ops_samples import PAGE

EN = "The committee published its annual report on water quality in the northern rivers."
FR = "Le comité a publié son rapport annuel sur la qualité de l'eau dans les rivières du nord."
JA = "委員会は北部の河川の水質に関する年次報告書を公表しました。"


def test_language_filter(run_op):
    rows = [("en", EN), ("fr", FR), ("ja", JA), ("empty", "  "), ("null", None), ("num", "12 34 56")]
    out = run_op("language_filter", rows, {"languages": ["en"], "min_confidence": 0.65})
    assert out["en"]["_reason"] is None and out["en"]["lang"] == "en"
    assert out["en"]["lang_score"] >= 0.65
    assert out["fr"]["_reason"] == "language_not_allowed" and out["fr"]["lang"] == "fr"
    assert json.loads(out["fr"]["_detail"])["allowed"] == ["en"]
    assert out["ja"]["_reason"] == "language_not_allowed" and out["ja"]["lang"] == "ja"
    assert out["empty"]["_reason"] == "empty" and out["null"]["_reason"] == "empty"
    assert out["num"]["_reason"] in ("language_not_allowed", "language_low_confidence")


def test_language_filter_confidence_and_annotate_only(run_op):
    strict = run_op("language_filter", [("en", "ok fine")], {"languages": [], "min_confidence": 0.999})
    assert strict["en"]["_reason"] == "language_low_confidence"
    loose = run_op("language_filter", [("fr", FR), ("ja", JA)], {"languages": [], "min_confidence": 0})
    assert loose["fr"]["_reason"] is None and loose["ja"]["lang"] == "ja"


PII_CASES = {
    # id: (text, expected text, kind counts)
    "email": ("Write to jane.doe+news@example.co.uk today.", "Write to <EMAIL> today.", {"email": 1}),
    "phone": ("Call +1 (415) 555-2671 or 415.555.2671 now.", "Call <PHONE> or <PHONE> now.",
              {"phone": 2}),
    "ip": ("Hosts 192.168.10.20 and 2606:4700:4700::1111 answer.",
           "Hosts <IP_ADDRESS> and <IP_ADDRESS> answer.", {"ip_address": 2}),
    "card": ("Card 4111 1111 1111 1111 on file.", "Card <CREDIT_CARD> on file.", {"credit_card": 1}),
    "iban": ("Pay GB82 WEST 1234 5698 7654 32 please.", "Pay <IBAN> please.", {"iban": 1}),
    # near misses that must stay: Luhn-invalid card, bad IBAN checksum, 999 octet,
    # version strings, dates, clock times, a year, a documentation address
    "clean": ("Ref 4111 1111 1111 1112, GB00 WEST 1234 5698 7654 32, 999.1.1.1, v1.2.3.4.5, "
              "2024-01-15 at 12:30:45 in 1999, 2001:db8::1.", None, None),
    "cjk": ("連絡先は山田です。", None, None),
}


def test_pii_redact_each_kind_and_near_misses(run_op):
    out = run_op("pii_redact", [(k, v[0]) for k, v in PII_CASES.items()])
    for key, (text, expected, counts) in PII_CASES.items():
        row = out[key]
        if expected is None:
            assert row["text"] == text and row["_changed"] is None, key
        else:
            assert row["text"] == expected, key
            assert row["_changed"] == "pii_redact" and json.loads(row["_detail"]) == counts
        assert row["_reason"] is None and row["_quarantine"] is None


def test_pii_redact_kinds_param(run_op):
    text = "mail a@b.org, call +44 20 7946 0958"
    out = run_op("pii_redact", [("1", text)], {"kinds": ["email"]})["1"]
    assert out["text"] == "mail <EMAIL>, call +44 20 7946 0958"



@pytest.mark.parametrize("extractor", ["trafilatura", "resiliparse"])
def test_html_extract(run_op, extractor):
    rows = [("page", PAGE, "https://example.org/r"), ("blank", "<html><body></body></html>", None),
            ("junk", "\x00\x01\x89PNG\r\n\x1a\n\xff\xfe" + "\x07" * 50, None), ("null", None, None),
            ("ru", "<html><body><p>" + "Это длинный русский текст о реках. " * 20 + "</p></body></html>",
             None),
            ("ctrl", PAGE.replace("annual report", "annual\x07 \x1b\x85report"), None),
            ("deep", PAGE.replace("<article>", "<div>" * 5000 + "<article>"), None)]
    out = run_op("html_extract", rows, {"extractor": extractor},
                 schema="id string, html string, url string")
    assert len(out) == 7
    page = out["page"]
    assert page["_reason"] is None and page["title"] == "River report"
    assert page["url"] == "https://example.org/r"
    assert "Nitrate levels fell" in page["text"] and "All rights reserved" not in page["text"]
    assert "Home | About" not in page["text"]
    assert out["blank"]["_reason"] == "no_text"
    assert json.loads(out["blank"]["_detail"])["chars"] == 0
    assert out["junk"]["_reason"] == "no_text" and out["junk"]["_quarantine"] is None
    assert out["null"]["_reason"] == "no_html"
    assert out["ru"]["_reason"] is None and "русский" in out["ru"]["text"]
    assert out["ru"]["title"] is None
    # control characters are not text, whichever extractor reads the page
    assert "annual report" in out["ctrl"]["text"]
    # 5000 nested elements: lxml (under trafilatura) drops what lies below 255
    # levels, resiliparse (quadratic in depth) is stopped and the ledger says so
    assert out["deep"]["_quarantine"] is None
    assert "Nitrate" not in (out["deep"]["text"] or "")
    if extractor == "resiliparse":
        assert out["deep"]["_reason"] == "no_text"
        assert json.loads(out["deep"]["_detail"])["depth_limit"] == 1000


@pytest.mark.parametrize("extractor", ["trafilatura", "resiliparse"])
def test_html_extract_without_url_column(run_op, extractor):
    out = run_op("html_extract", [("p", PAGE)], {"extractor": extractor},
                 schema="id string, html string")
    assert out["p"]["_reason"] is None and "Nitrate" in out["p"]["text"]
    assert out["p"]["title"] == "River report"


def test_html_extract_params_schema():
    prop = get_op("html_extract").meta.params["properties"]["extractor"]
    assert prop["enum"] == ["trafilatura", "resiliparse"] and prop["default"] == "trafilatura"
    assert prop["description"]


def test_rowwise_turns_exceptions_into_quarantine(spark):
    def boom(row):
        if row["text"] == "bad":
            raise ValueError("cannot parse")
        return {"_reason": "rule_x", "_detail": {"v": 1}} if row["text"] == "drop" else {}

    df = spark.createDataFrame([("1", "ok"), ("2", "bad"), ("3", "drop")], "id string, text string")
    out = {r["id"]: r for r in rowwise.map_rows(df, boom, op="t", reads=("text",)).collect()}
    assert out["1"]["_reason"] is None and out["1"]["_quarantine"] is None
    assert out["2"]["_quarantine"] == "t: ValueError: cannot parse" and out["2"]["text"] == "bad"
    assert out["3"]["_reason"] == "rule_x" and json.loads(out["3"]["_detail"]) == {"v": 1}
    counts = rowwise.counts(rowwise.map_rows(df, boom, op="t", reads=("text",)))
    assert counts == {"total": 3, "kept": 1, "dropped": 1, "quarantined": 1, "dropped_rule_x": 1}


def test_rowwise_rejects_missing_column(spark):
    df = spark.createDataFrame([("1",)], "id string")
    with pytest.raises(ValueError, match="lacks column"):
        rowwise.map_rows(df, lambda r: {}, op="t", reads=("text",))


def test_pii_long_document_every_match_redacted():
    """Chunked phone matching: nothing lost at chunk edges or past 65 535 candidates."""
    from include.registry import apply_defaults, get_op
    from spark_jobs.ops.pii_redact import _PiiRow

    unit = "Call +1 415 555 2671 or mail a@b.org now. "
    text = unit * 3000  # ~130 kB, several matcher chunks
    out = _PiiRow(apply_defaults(get_op("pii_redact").meta, {}))({"text": text})
    assert out["_detail"] == {"phone": 3000, "email": 3000}
    assert out["text"] == "Call <PHONE> or mail <EMAIL> now. " * 3000


# Real Python: slices that are valid compressed IPv6 addresses, CIDR networks,
# netmasks and documentation addresses, beside hosts that stay PII.
CODE = '''def rev(a, sparse):
    """Reverse; see ipaddress.ip_network('192.0.2.0/24') and '2001:db8::1000/124'."""
    mask = "255.255.255.0"  # or hostmask 0.0.0.255, loopback 127.0.0.1 and ::1
    return a[::-1], sparse[::2], sparse[1::2], a[ab::cd]
# host 10.1.2.3/8 and http://[2a00:1450:4001:82b::200e]:80/ are hosts
'''


def test_pii_redact_leaves_code_alone_but_not_hosts(run_op):
    out = run_op("pii_redact", [("code", CODE)], {"kinds": ["ip_address"]})["code"]
    assert out["text"] == CODE.replace("10.1.2.3", "<IP_ADDRESS>").replace(
        "2a00:1450:4001:82b::200e", "<IP_ADDRESS>")
    assert json.loads(out["_detail"]) == {"ip_address": 2}


def test_pii_redact_on_the_bundled_python_source():
    """Across the stdlib sample (1977 chunks of real source) the only IPs
    redacted are the two example host addresses its comments spell out."""
    from include.registry import apply_defaults
    from spark_jobs.ops.pii_redact import PiiRedact, _PiiRow
    from tests.helpers import ROOT

    redact = _PiiRow(apply_defaults(PiiRedact.meta, {"kinds": ["ip_address"]}))
    found = []
    with open(ROOT / "include/sample_data/code/stdlib_source.jsonl", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            found += [text[s:e] for s, e, _ in redact.spans(text)]
    assert sorted(found) == ["123.45.67.89", "123.45.67.89", "fe80::5054:ff:fe9"]


def test_rowwise_skips_rows_an_earlier_fused_step_removed(spark):
    """Before: a fused op ran its row function on every row, dead or alive."""
    def only_live(row):
        if row["text"].startswith("dead"):
            raise AssertionError("called on a dead row")
        return {"text": row["text"].upper(), "n": len(row["text"]),
                "_reason": "short" if len(row["text"]) < 5 else None}

    rows = [(f"r{i}", ("dead row" if i % 3 else "live row") if i != 9 else "tiny",
             2 if i % 3 else None) for i in range(12)]
    df = spark.createDataFrame(rows, "id string, text string, _dead int").repartition(3)
    out = {r["id"]: r.asDict() for r in rowwise.map_rows(
        df, only_live, op="t", reads=("text",), writes={"text": "string", "n": "bigint"}
    ).collect()}
    assert len(out) == 12
    for i in range(12):
        r = out[f"r{i}"]
        if i % 3:  # dead: passed through untouched, no decision
            assert (r["text"], r["n"], r["_dead"]) == ("dead row", None, 2)
            assert r["_quarantine"] is None and r["_reason"] is None
        else:
            assert r["text"] == ("LIVE ROW" if i != 9 else "TINY") and r["_quarantine"] is None
            assert r["_reason"] == ("short" if i == 9 else None)
    all_live = df.where("_dead is null")  # a frame where every row is alive
    assert {r["text"] for r in rowwise.map_rows(all_live, only_live, op="t", reads=("text",),
                                                writes={"text": "string", "n": "bigint"}
                                                ).collect()} == {"LIVE ROW", "TINY"}
