"""The Reports and Inspect pages and the per-run Report tab in a real Airflow
api-server, driven by Debian's Chromium: a person finds a run's report and
Data Docs, reads the funnel, and marks sampled decisions right or wrong."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from include.lakehouse import Lakehouse
from include.quality import labels, sample
from tests.browser import AirflowServices, artefact, browser, login, plugin_frame


@pytest.fixture(scope="module")
def site(airflow_db, published, tmp_path_factory):
    lake, _, summary = published
    drawn = sample.draw(Lakehouse(lake), "gold/qdocs", 3, removed=True)
    jsonl, _ = sample.write(drawn, sample.default_dir(Lakehouse(lake), drawn))
    with AirflowServices(tmp_path_factory.mktemp("af_quality"),
                         env={"DATAMILL_LAKE": str(lake)}) as af:
        yield af, lake, summary, jsonl


def test_views_are_registered_and_routes_need_a_login(site):
    af, _, summary, jsonl = site
    status, body = af.request("GET", "/api/v2/plugins")
    views = next(p for p in body["plugins"] if p["name"] == "datamill")["external_views"]
    run_view = next(v for v in views if v["url_route"] == "datamill-reports-run")
    assert run_view["destination"] == "dag_run"
    assert run_view["href"] == "/datamill/reports/run?dag_id={DAG_ID}&run_id={RUN_ID}"
    assert {"/datamill/reports/", "/datamill/inspect/"} <= {v["href"] for v in views}
    rel = str(jsonl.relative_to(lake_reports(site)))
    for method, path, body in [("GET", "/datamill/reports/api/reports", None),
                               ("GET", "/datamill/reports/file/data_docs/index.html", None),
                               ("GET", f"/datamill/inspect/api/sample?path={quote(rel)}", None),
                               ("POST", "/datamill/inspect/api/label",
                                {"sample": rel, "item": 0, "verdict": "right"})]:
        assert af.request(method, path, body, user=None)[0] in (401, 403), path
    # A viewer may read but not label; nothing outside _reports is served.
    assert af.request("POST", "/datamill/inspect/api/label",
                      {"sample": rel, "item": 0, "verdict": "right"}, user="viewer")[0] == 403
    for bad in ("../_system/runs/_delta_log/00000000000000000000.json", "%2e%2e/gold/qdocs",
                "qdocs/" + summary["run_id"] + "/missing.html"):
        assert af.request("GET", "/datamill/reports/file/" + bad)[0] == 404, bad
    status, _ = af.request("GET", f"/datamill/inspect/api/sample?path={quote('../x.jsonl')}")
    assert status == 404


def lake_reports(site):
    return site[1].resolve() / "_reports"


def test_reports_page_and_run_tab(site):
    af, lake, summary, _ = site
    with browser() as b:
        page = b.new_page()
        login(page, af, "viewer")
        page.goto(af.url("/plugin/datamill-reports"))
        frame = plugin_frame(page)
        frame.wait_for_selector(".card.run", timeout=60_000)
        card = frame.inner_text(".card.run")
        assert summary["run_id"] in card and "step5_stats_report" in card
        assert "Data Docs: qdocs__s4_datamill_defaults" in card and "sample:" in card
        page.screenshot(path=artefact("quality_reports_page.png"), full_page=True)

        # The report itself, as the page links it: self-contained, plots inline.
        href = frame.eval_on_selector(".card.run li.report a", "a => a.href")
        resp = page.goto(href)
        assert resp.status == 200 and "sandbox" in resp.headers["content-security-policy"]
        assert page.locator("img[src^='data:image/png;base64,']").count() >= 4
        assert "Dataset statistics" in page.inner_text("h1")

        # The Report tab of the run: funnel chart, gate results, links.
        page.goto(af.url(f"/datamill/reports/run?dag_id=datamill__qdocs&run_id={summary['run_id']}"))
        page.wait_for_selector(".funnel-chart .frow")
        rows = page.locator(".funnel-chart .frow")
        assert rows.count() == len(summary["steps"]) + 1  # the source, then each step
        assert "exact_dedup" in page.inner_text(".funnel-chart")
        assert "expect_column_values_to_be_unique" in page.inner_text("#run")
        widths = page.eval_on_selector_all(".fseg.removed", "els => els.map(e => e.style.width)")
        assert any(w not in ("0.00%", "") for w in widths)
        page.screenshot(path=artefact("quality_run_tab.png"), full_page=True)


def test_inspect_page_stores_labels_and_updates_agreement(site):
    af, lake, summary, jsonl = site
    rel = str(jsonl.relative_to(lake_reports(site)))
    with browser() as b:
        page = b.new_page()
        login(page, af, "user")
        page.goto(af.url("/plugin/datamill-inspect"))
        frame = plugin_frame(page)
        frame.wait_for_selector("#sample-select", timeout=60_000)
        frame.select_option("#sample-select", value=rel)
        frame.wait_for_function("() => document.querySelectorAll('.card.item').length === 6")
        before = frame.inner_text("#agreement")
        removed = frame.locator(".card.item:has(.badge.failed)").first
        kept = frame.locator(".card.item:has(.badge.success)").first
        removed.locator("button.wrong").click()
        frame.wait_for_selector(".card.item.wrong")
        kept.locator("button.right").click()
        frame.wait_for_selector(".card.item.right")
        assert "you said: wrong" in removed.inner_text()
        frame.wait_for_function("b => document.querySelector('#agreement').innerText !== b", arg=before)
        assert "kept" in frame.inner_text("#agreement")
        page.screenshot(path=artefact("quality_inspect_page.png"), full_page=True)
    mine = [x for x in labels.read(lake, "qdocs", summary["run_id"]) if x["user"] == "user"]
    assert sorted((x["decision"], x["verdict"]) for x in mine) == [("kept", "right"),
                                                                  ("removed", "wrong")]
    items = {(i["decision"], i["doc_id"]) for i in sample.load(jsonl)}
    assert {(x["decision"], x["doc_id"]) for x in mine} <= items
