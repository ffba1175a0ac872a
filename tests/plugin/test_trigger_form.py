"""The trigger form a person sees in Airflow's UI (issue 9 item 2): the demo
DAG's Params grouped by step, titled, only the tunables, none required."""
from __future__ import annotations

import time

from tests.browser import AirflowServices, artefact, browser, login

DAG_ID = "datamill__stdlib_docs"


def _wait_for_dag(af: AirflowServices, dag_id: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    token = af.token()
    while time.time() < deadline:
        af.check_alive()
        status, _ = af.request("GET", f"/api/v2/dags/{dag_id}", token=token, user=None)
        if status == 200:
            return
        time.sleep(2)
    raise AssertionError(f"{dag_id} never reached the api-server:\n{af.tail('dag-processor')}")


def test_trigger_form_groups_tunables_by_step(airflow_db, tmp_path):
    with AirflowServices(tmp_path, components=("api-server", "dag-processor")) as af:
        _wait_for_dag(af, DAG_ID)
        status, details = af.request("GET", f"/api/v2/dags/{DAG_ID}/details")
        assert status == 200, details
        params = details["params"]
        assert set(params) == {
            "s1_normalize__mojibake", "s1_normalize__control_chars", "s1_normalize__nfc",
            "s1_normalize__whitespace", "s1_normalize__collapse_spaces",
            "s2_quality_filter__preset", "s2_quality_filter__min_words",
            "s2_quality_filter__max_words", "s2_quality_filter__min_mean_word_length",
            "s2_quality_filter__max_mean_word_length", "s2_quality_filter__min_alpha_words_ratio",
            "s2_quality_filter__min_stop_words", "s2_quality_filter__max_dup_line_frac",
            "s2_quality_filter__max_dup_para_frac", "s3_exact_dedup__case_sensitive",
            "s3_exact_dedup__collapse_whitespace", "s4_minhash_dedup__threshold",
            "s4_minhash_dedup__ngram"}
        for key, p in params.items():
            schema = p["schema"]
            assert schema["section"].startswith("Step "), key
            assert schema["title"] and "null" in schema["type"], key
        assert params["s2_quality_filter__min_words"]["value"] == 20  # the spec's value

        with browser(1400, 1600) as b:
            page = b.new_page()
            login(page, af, "user")
            page.goto(af.url(f"/dags/{DAG_ID}"))
            page.get_by_role("button", name="Trigger").first.click()
            page.wait_for_selector("text=Step 2: quality_filter", timeout=60_000)
            dialog = page.get_by_role("dialog")
            text = dialog.inner_text()
            for section in ("Step 1: normalize", "Step 2: quality_filter", "Step 3: exact_dedup",
                            "Step 4: minhash_dedup"):
                assert section in text
            # open one step's section, as a person would, and read its fields
            dialog.get_by_text("Step 2: quality_filter").click()
            page.wait_for_selector("text=Min words", timeout=30_000)
            text = dialog.inner_text()
            assert "Preset" in text and "Min words" in text and "in the spec: 20" in text
            for never in ("engine", "template", "workers", "concurrency"):
                assert f"__{never}" not in page.content()
            # no field of the form is marked required
            assert dialog.locator("[required], [aria-required=true]").count() == 0
            page.screenshot(path=artefact("trigger_form.png"), full_page=True)
