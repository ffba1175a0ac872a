"""normalize and quality_filter as Spark ops: every row comes back, annotated."""
from __future__ import annotations

import json

from include.registry import get_op
from spark_ops_samples import GOOD


def test_normalize_fixes_and_records_each(run_op):
    rows = [
        ("moji", "The caf\u00c3\u00a9 sells \u00e2\u20ac\u0153good\u00e2\u20ac\u009d bread."),
        ("ctrl", "bell\x07 and\x00 nul"),
        ("nfc", "Cafe\u0301"),
        ("ws", "  a   b\t\tc  \r\n\r\n\r\n\r\nend \u00a0 "),
        ("code", "def f():\n    return 1"),
        ("same", "Already clean text."),
        ("null", None),
        ("cjk", "日本語のテキスト。"),
    ]
    out = run_op("normalize", rows)
    assert len(out) == len(rows)
    assert out["moji"]["text"] == "The café sells “good” bread."
    assert out["moji"]["_changed"] == "mojibake"
    assert json.loads(out["moji"]["_detail"])["ftfy"]
    assert out["ctrl"]["text"] == "bell and nul" and out["ctrl"]["_changed"] == "control_chars"
    assert out["nfc"]["text"] == "Caf\u00e9" and out["nfc"]["_changed"] == "nfc"
    assert out["ws"]["text"] == "a b c\n\nend" and out["ws"]["_changed"] == "whitespace"
    assert out["code"]["text"] == "def f():\n    return 1" and out["code"]["_changed"] is None
    for k in ("same", "null", "cjk"):
        assert out[k]["text"] == dict(rows)[k] and out[k]["_changed"] is None
    assert all(r["_reason"] is None and r["_quarantine"] is None for r in out.values())


def test_normalize_switches(run_op):
    out = run_op("normalize", [("1", "Cafe\u0301  x")], {"nfc": False, "whitespace": False})
    assert out["1"]["text"] == "Cafe\u0301  x" and out["1"]["_changed"] is None


def test_quality_filter_gopher_reasons_and_kept(run_op):
    rows = [("good", GOOD), ("short", "Too short to keep."), ("empty", ""), ("ws", "  \n "),
            ("hash", GOOD + " #x" * 40), ("null", None)]
    out = run_op("quality_filter", rows, {"preset": "gopher"})
    assert len(out) == len(rows)
    assert out["good"]["_reason"] is None and out["good"]["text"] == GOOD
    assert out["short"]["_reason"] == "min_words"
    assert json.loads(out["short"]["_detail"]) == {
        "rule": "min_words", "value": 4, "threshold": 50, "preset": "gopher"}
    assert out["hash"]["_reason"] == "max_hash_word_ratio"
    for k in ("empty", "ws", "null"):
        assert out[k]["_reason"] == "empty"


def test_quality_filter_min_words_override(run_op):
    text = "The cat sat on the mat with the dog and that was that."
    assert run_op("quality_filter", [("1", text)], {"min_words": 20})["1"]["_reason"] == "min_words"
    assert run_op("quality_filter", [("1", text)], {"min_words": 5})["1"]["_reason"] is None


def test_quality_filter_c4_drops_lines(run_op):
    text = GOOD + "\nPlease enable JavaScript to view this page.\nHome"
    out = run_op("quality_filter", [("1", text)], {"preset": "c4"})["1"]
    assert out["_reason"] is None and out["_changed"] == "c4_line_filter"
    assert out["text"] == GOOD
    kept = run_op("quality_filter", [("1", text)], {"preset": "c4", "c4_drop_lines": False})["1"]
    assert kept["text"] == text and kept["_changed"] is None


def test_quality_filter_fineweb_and_big_doc(run_op):
    big = ("Lorem " * 900_000)[:5_000_000]
    rows = [("good", GOOD), ("list", "\n".join(f"entry {i}" for i in range(50))), ("big", big)]
    out = run_op("quality_filter", rows, {"preset": "fineweb"})
    assert out["good"]["_reason"] is None
    assert out["list"]["_reason"] == "min_line_punct_ratio"
    assert out["big"]["_reason"] is not None and out["big"]["_quarantine"] is None


def test_metadata_is_complete():
    for name in ("normalize", "quality_filter"):
        meta = get_op(name).meta
        assert meta.engine == "spark" and meta.rowwise and meta.description
        assert meta.requires == ("text",)
    props = get_op("quality_filter").meta.params["properties"]
    assert props["preset"]["default"] == "gopher" and "min_words" in props
