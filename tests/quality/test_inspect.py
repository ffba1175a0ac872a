"""Human inspection: `datamill sample` draws kept and removed decisions with
their evidence; labels in _system/human_labels change the report's agreement."""
import json

from include.lakehouse import Lakehouse
from include.quality import labels, report, sample, stats
from tests.helpers import run_cli


def test_sample_stratified_with_removed_rows_and_evidence(published, tmp_path):
    lake, _, summary = published
    r = run_cli("sample", "gold/qdocs", "--n", "8", "--stratify", "meta.kind", "--removed",
                "--lake", str(lake))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    items = sample.load(out["jsonl"])
    assert out["jsonl"].startswith(str(lake / "_reports" / "qdocs" / summary["run_id"] / "samples"))
    kept = [i for i in items if i["decision"] == "kept"]
    removed = [i for i in items if i["decision"] == "removed"]
    assert len(kept) == 8 and len({i["stratum"] for i in kept}) >= 3  # equal shares per kind
    assert {i["rule"] for i in removed} >= {"exact_duplicate"}
    assert all(i["run_id"] == summary["run_id"] and i["text"] for i in items)
    dup = next(i for i in removed if i["rule"] == "exact_duplicate")
    assert dup["op"] == "exact_dedup" and dup["detail"]["survivor"] == dup["survivor_id"]
    assert dup["survivor_text"].split() == dup["text"].split()  # a whitespace-changed copy
    qf = [i for i in removed if i["op"] == "quality_filter"]
    assert qf and all(i["detail"] for i in qf)
    html = open(out["html"]).read()
    assert dup["doc_id"] in html and "evidence" in html
    # the same sample on every call
    again = sample.draw(Lakehouse(lake), "gold/qdocs", 8, stratify="meta.kind", removed=True)
    assert [(i["decision"], i["doc_id"]) for i in again["items"]] == \
        [(i["decision"], i["doc_id"]) for i in items]


def test_human_labels_change_the_agreement_in_the_report(published, tmp_path):
    lake, _, summary = published
    lh = Lakehouse(lake)
    s = sample.draw(lh, "gold/qdocs", 4, removed=True)
    qf = [i for i in s["items"] if i["op"] == "quality_filter"]
    kept = [i for i in s["items"] if i["decision"] == "kept"]
    assert len(qf) >= 2 and len(kept) == 4
    rule = qf[0]["rule"]
    same_rule = [i for i in qf if i["rule"] == rule]
    for i, item in enumerate(same_rule):
        labels.record(lake, item, "right" if i else "wrong", user="alice")
    for item in kept[:3]:
        labels.record(lake, item, "right", user="alice")

    def agreement():
        return {(a["op"], a["rule"], a["decision"]): a
                for a in stats.run_stats(lh, "qdocs", summary["run_id"])["agreement"]}

    a = agreement()
    n = len(same_rule)
    assert a[("quality_filter", rule, "removed")]["labelled"] == n
    assert a[("quality_filter", rule, "removed")]["agreement"] == round((n - 1) / n, 4)
    assert a[(None, None, "kept")]["agreement"] == 1.0
    # alice changes her mind (the newest label counts) and bob disagrees
    labels.record(lake, same_rule[0], "right", user="alice")
    labels.record(lake, kept[0], "wrong", user="bob", note="boilerplate")
    b = agreement()
    assert b[("quality_filter", rule, "removed")]["agreement"] == 1.0
    assert b[(None, None, "kept")] | {"ci95": None} == {
        "step": None, "op": None, "rule": None, "decision": "kept", "labelled": 4, "right": 3,
        "wrong": 1, "agreement": 0.75, "ci95": None}
    out = stats.table_stats(lh, "gold/qdocs", sample_size=50, near_dup_sample=10)
    html = report.render(out, tmp_path)
    assert "Human agreement" in html and "0.75" in html
    assert labels.read(lake, "qdocs", summary["run_id"])[0]["user"] in ("alice", "bob")


def test_bad_labels_and_samples_are_refused(published):
    import pytest

    lake, _, _ = published
    item = {"pipeline": "qdocs", "run_id": "r", "doc_id": "d", "decision": "kept"}
    with pytest.raises(ValueError, match="verdict must be one of right, wrong"):
        labels.record(lake, item, "maybe", user="u")
    with pytest.raises(ValueError, match="decision must be one of kept, removed"):
        labels.record(lake, {**item, "decision": "lost"}, "right", user="u")
    lh = Lakehouse(lake)
    with pytest.raises(sample.SampleError, match="no column 'nope' to stratify by"):
        sample.draw(lh, "gold/qdocs", 3, stratify="nope")
    with pytest.raises(sample.SampleError, match="no Delta table 'gold/none'"):
        sample.draw(lh, "gold/none", 3)
