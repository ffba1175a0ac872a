"""The plugin app in a real api-server: every route requires Airflow
authentication; a logged-in person sees the datamill pages in Airflow's UI."""
from __future__ import annotations

import re

import pytest

from tests.browser import AirflowServices, artefact, browser, login, plugin_frame


def _routes():
    from fastapi.routing import APIRoute

    from plugins.datamill.app import app

    out = []
    for r in app.routes:
        if isinstance(r, APIRoute):
            path = re.sub(r"\{[^}]+\}", "x", r.path)
            for m in sorted(r.methods):
                out.append((m, "/datamill" + path))
    return out


@pytest.fixture(scope="module")
def af(airflow_db, tmp_path_factory):
    with AirflowServices(tmp_path_factory.mktemp("af")) as services:
        yield services


def test_plugin_loads_with_pages(af):
    status, body = af.request("GET", "/api/v2/plugins")
    assert status == 200, body
    plugin = next(p for p in body["plugins"] if p["name"] == "datamill")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/datamill"
    assert any(v["href"] == "/datamill/home/" for v in plugin["external_views"])


def test_every_route_refuses_unauthenticated_requests(af):
    routes = _routes()
    assert ("GET", "/datamill/home/") in routes and len(routes) >= 3
    for method, path in routes:
        body = {} if method in ("POST", "PUT", "PATCH") else None
        status, _ = af.request(method, path, body, user=None)
        assert status in (401, 403), f"{method} {path} answered {status} without credentials"
        status, _ = af.request(method, path, body, user=None, token="not-a-jwt")
        assert status in (401, 403), f"{method} {path} answered {status} with a forged token"
    # And with a token the read routes answer.
    status, body = af.request("GET", "/datamill/home/api/pipelines")
    assert status == 200 and any(p["name"] == "stdlib_docs" for p in body)


def test_overview_page_in_airflow_ui(af):
    with browser() as b:
        page = b.new_page()
        login(page, af, "viewer")
        page.goto(af.url("/plugin/datamill-home"))
        frame = plugin_frame(page)
        frame.wait_for_selector("#pipelines table", timeout=60_000)
        text = frame.inner_text("#pipelines")
        assert "stdlib_docs" in text and "gold/stdlib_docs" in text
        frame.wait_for_selector("#ops table")
        assert "minhash_dedup" in frame.inner_text("#ops")
        page.screenshot(path=artefact("plugin_overview.png"), full_page=True)
