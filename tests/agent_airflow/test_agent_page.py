"""The Data agent page in Airflow's UI (headless Debian Chromium): a person
logs in, sends a request, reads the plan, sends feedback, approves, and sees
the new pipeline's DAG in Airflow's DAG list. Screenshots of every step go to
tests/artefacts/agent_*.png. Also: who may do what on the page's API."""
from __future__ import annotations

import time

from agent_testkit import AGENT, dag_listed, wait_for
from tests.browser import artefact, browser, login, plugin_frame

REQUEST = ("Clean the Python documentation: remove low-quality and duplicate documents and "
           "keep only English text. <img src=x onerror=alert(1)>")
FEEDBACK = "Also redact PII such as e-mail addresses."
NAME = "page_docs"


def _shot(page, frame, name: str, selector: str | None = None) -> None:
    if selector:
        frame.locator(selector).first.scroll_into_view_if_needed()
    page.screenshot(path=artefact(name))


def test_viewer_cannot_request_or_decide(agent_af):
    wait_for("the agent DAG to be parsed", lambda: dag_listed(agent_af, AGENT), agent_af, 300)
    for path in ("/datamill/agent/api/plan", "/datamill/agent/api/items/page_docs/approve",
                 "/datamill/agent/api/items/page_docs/reject",
                 "/datamill/agent/api/items/page_docs/feedback"):
        body = {"request": "dedup"} if path.endswith("/plan") else {"feedback": "x"}
        status, answer = agent_af.request("POST", path, body, user="viewer")
        assert status == 403, (path, status, answer)
    status, body = agent_af.request("GET", "/datamill/agent/api/items", user="viewer")
    assert status == 200 and body["dag"]["present"], body
    # Bad input is refused with a message before any run starts.
    status, body = agent_af.request("POST", "/datamill/agent/api/plan",
                                    {"request": "dedup", "output_table": "../../etc"})
    assert status == 400 and "output_table" in str(body), body
    status, body = agent_af.request("POST", "/datamill/agent/api/plan",
                                    {"request": "dedup", "run": "rm -rf /"})
    assert status == 422, body


def test_request_feedback_approve_in_the_browser(agent_af):
    t0 = time.time()
    with browser(height=1000) as b:
        page = b.new_page()
        login(page, agent_af, "user")
        page.goto(agent_af.url("/plugin/datamill-agent"))
        frame = plugin_frame(page)
        frame.wait_for_selector("#runs", timeout=60_000)

        # 1. The request.
        frame.fill("#request", REQUEST)
        frame.fill("#name", NAME)
        frame.click("#submit")
        frame.wait_for_function("() => document.querySelector('#submit-msg').textContent"
                                ".includes('planning in agent run')", timeout=60_000)
        _shot(page, frame, "agent_1_request.png")

        # While the agent plans: a question to the project's documents.
        frame.fill("#question", "How does minhash_dedup decide that two documents are "
                                "near-duplicates?")
        frame.click("#ask")
        frame.wait_for_selector("#answer .passage", timeout=240_000)
        assert "minhash" in frame.inner_text("#answer").lower()
        _shot(page, frame, "agent_2_ask.png", "#ask-card")

        # 2. The plan, once the agent run waits for a review.
        frame.wait_for_function(
            "() => (document.querySelector('#item') || {}).textContent?.includes("
            "'waits for your decision')", timeout=600_000)
        plan = frame.inner_text("#item pre.plan")
        assert "quality_filter" in plan and "Steps and why" in plan
        assert "<img src=x onerror=alert(1)>" in frame.inner_text("#item")  # shown as text
        assert frame.locator("#item img").count() == 0
        # No source given (a Spark dry run of a sample takes minutes on a loaded 2-core
        # machine): the plan says so, and the page shows the dry run's status.
        assert "no_sample" in frame.inner_text("#funnel")
        assert "datamill__page_docs" in frame.inner_text("#item pre.dag-py")
        _shot(page, frame, "agent_3_plan.png", "#item")

        # 3. Feedback: a new agent run revises the item and keeps the other steps.
        frame.fill("#feedback", FEEDBACK)
        frame.click("#send-feedback")
        frame.wait_for_function("() => document.querySelector('#action-msg').textContent"
                                ".includes('Revise sent')", timeout=60_000)
        frame.wait_for_function(
            "() => { const h = document.querySelector('#history'); const i = "
            "document.querySelector('#item'); return h && h.textContent.includes('Round 2') && "
            "i.textContent.includes('waits for your decision'); }", timeout=600_000)
        history = frame.inner_text("#history")
        assert FEEDBACK in history and "+- op: pii_redact" in history
        _shot(page, frame, "agent_4_feedback.png", "#history")

        # The same decision waits in Airflow's own Required Actions.
        status, item = agent_af.request("GET", f"/datamill/agent/api/items/{NAME}")
        assert status == 200 and item["waiting"], item
        ra = b.new_page()
        ra.goto(agent_af.url(f"/dags/{AGENT}/runs/{item['waiting']['run_id']}/tasks/review/"
                             "required_actions"))
        ra.wait_for_selector(f"text=Review datamill pipeline '{NAME}' (round 2)", timeout=60_000)
        ra.wait_for_load_state("networkidle")
        ra.screenshot(path=artefact("agent_4b_required_action.png"), full_page=True)
        ra.close()

        # 4. Approve: the run's review step publishes the spec.
        frame.click("#approve")
        frame.wait_for_function(
            "() => document.querySelector('#item h2 .badge')?.textContent === 'approved'",
            timeout=300_000)
        decisions = frame.inner_text("#item")
        assert "approved" in decisions and "user" in decisions
        _shot(page, frame, "agent_5_approved.png", "#item")

        # 5. The new DAG in Airflow's DAG list.
        wait_for("datamill__page_docs in Airflow",
                 lambda: dag_listed(agent_af, f"datamill__{NAME}"), agent_af, 300)
        page.goto(agent_af.url("/dags"))
        page.wait_for_selector(f"text=datamill__{NAME}", timeout=60_000)
        page.screenshot(path=artefact("agent_6_dag_list.png"))
    print(f"\nbrowser test: {time.time() - t0:.0f} s (load average "
          f"{open('/proc/loadavg').read().split()[0]})")


def test_item_made_by_the_cli_is_decided_on_the_page(agent_af, tmp_path):
    """No agent run waits on an item written by ``datamill render``: the page
    decides it in the same review store, and the CLI sees the decision."""
    import json

    from include.agent.graph import state_from_spec
    from include.agent.review_store import ReviewStore
    from tests.helpers import run_cli

    store = ReviewStore(agent_af.dirs["review"])
    for name in ("cli_keep", "cli_drop"):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(f"version: 1\nname: {name}\ndescription: written by hand\n"
                        f"source: {{path: include/sample_data/docs/, format: jsonl}}\n"
                        f"steps: [{{op: exact_dedup}}]\noutput: {{table: gold/{name}}}\n")
        state = state_from_spec(spec, dry_run=False)
        assert state["status"] == "ok", state.get("refusal")
        store.save_round(state)
    status, body = agent_af.request("GET", "/datamill/agent/api/items/cli_keep", user="viewer")
    assert status == 200 and body["waiting"] is None and "path" not in body
    # A decision names the round its reviewer read: a stale one is refused.
    status, body = agent_af.request("POST", "/datamill/agent/api/items/cli_keep/approve",
                                    {"round": 2}, user="user")
    assert status == 409 and "not round 2" in str(body), body
    status, body = agent_af.request("POST", "/datamill/agent/api/items/cli_keep/approve",
                                    {"round": 1}, user="user")
    assert status == 200 and body["via"] == "store", body
    status, body = agent_af.request("POST", "/datamill/agent/api/items/cli_drop/reject",
                                    {"feedback": "not this one"}, user="admin")
    assert status == 200 and body["via"] == "store", body
    status, body = agent_af.request("POST", "/datamill/agent/api/items/cli_keep/approve", {},
                                    user="user")
    assert status == 409 and "only a draft" in str(body), body
    assert (agent_af.dirs["pipelines"] / "cli_keep.yaml").is_file()
    for name, status_, by in (("cli_keep", "approved", "user"), ("cli_drop", "rejected", "admin")):
        r = run_cli("review", "show", name, "--json", env=agent_af.env_overrides)
        item = json.loads(r.stdout.strip().splitlines()[-1])
        assert item["status"] == status_
        assert (item["approvals"] or item["rejections"])[-1]["by"] == by
