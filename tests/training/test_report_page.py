"""A training run's report inside Airflow: the plugin page behind Airflow's
login, reached by the DAG run id (the publish task's extra link and the
run's tab), fitting a 1300-px-wide window with its legends visible."""
from __future__ import annotations

import urllib.request
from urllib.parse import quote

import pytest
import yaml

from tests.browser import AirflowServices, artefact, browser, login, plugin_frame
from training.tasks import publish, train

RUN_ID = "manual__2026-12-01T10:00:00.123456+00:00"   # what Airflow names a DAG run


@pytest.fixture(scope="module")
def report_af(airflow_db, tmp_path_factory, prepared):
    import shutil

    from training.config import parse_config
    from training_testkit import base_raw

    out = tmp_path_factory.mktemp("page")
    shutil.copytree(prepared / "data", out / "data")
    raw = base_raw(out)
    raw["name"] = "pagecheck"
    raw["train"].update(steps=6, eval_every=2)
    raw["mixer"] = {"strategy": "aioli", "params": {"warmup": 0, "update_steps": 5, "lp_steps": 1}}
    cfg = parse_config(raw)
    summary = train(cfg, log=lambda m: None, run_id=RUN_ID)
    publish(cfg, summary["run_dir"], log=lambda m: None)
    configs = tmp_path_factory.mktemp("page_configs")
    (configs / "pagecheck.yaml").write_text(yaml.safe_dump(cfg.raw))
    with AirflowServices(tmp_path_factory.mktemp("page_af"),
                         env={"DATAMILL_TRAINING_CONFIGS_DIR": str(configs)}) as af:
        yield af, summary


def _path(run_id: str = RUN_ID) -> str:
    return f"/datamill/training/run?dag_id=datamill__train__pagecheck&run_id={quote(run_id)}"


def test_report_requires_login_and_is_found_by_dag_run(report_af):
    af, summary = report_af
    status, _ = af.request("GET", _path(), user=None)
    assert status in (401, 403)
    req = urllib.request.Request(af.url(_path()), headers={"Authorization": f"Bearer {af.token('viewer')}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body, csp = r.read().decode(), r.headers["Content-Security-Policy"]
    assert "data:image/png;base64," in body and "pagecheck" in body and "script-src" not in csp
    assert "default-src 'none'" in csp
    status, body = af.request("GET", _path("manual__other"), user="viewer")
    assert status == 200 and "has not started training yet" in body
    status, body = af.request("GET", "/datamill/training/run?dag_id=datamill__stdlib_docs&run_id=x",
                              user="viewer")
    assert status == 200 and "is not a datamill training DAG" in body
    status, rows = af.request("GET", "/datamill/training/api/runs", user="viewer")
    assert status == 200 and [r["run_id"] for r in rows] == [RUN_ID] and rows[0]["has_report"]


def test_report_fits_a_1300_px_window_with_legends(report_af):
    af, _ = report_af
    with browser(width=1300, height=900) as b:
        page = b.new_page()
        login(page, af, "viewer")
        page.goto(af.url(_path()))
        page.wait_for_selector("img")
        page.wait_for_function("() => document.querySelector('img').complete")
        fit = page.evaluate("""() => {
            const img = document.querySelector('img'), r = img.getBoundingClientRect();
            return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
                    left: r.left, right: r.right, natural: img.naturalWidth, shown: r.width};
        }""")
        page.screenshot(path=artefact("training_report_1300.png"), full_page=True)
        # No horizontal scrolling; the whole image (legends are inside it) on screen.
        assert fit["scroll"] <= fit["inner"] == 1300, fit
        assert fit["left"] >= 0 and fit["right"] <= fit["inner"], fit
        assert fit["natural"] >= 800                   # a real figure, not a thumbnail

        page.goto(af.url("/plugin/datamill-training"))
        frame = plugin_frame(page)
        frame.wait_for_selector("#runs table", timeout=60_000)
        assert RUN_ID in frame.inner_text("#runs") and "aioli" in frame.inner_text("#runs")
        page.screenshot(path=artefact("training_runs_page.png"), full_page=True)
