"""The LLM planner against the real local OpenAI-compatible HTTP server with faults,
document Q&A, and generated ops under review."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from include.agent.graph import plan
from include.agent.llm_planner import answer_schema
from include.agent.review_store import ReviewError, ReviewStore
from include.cli import main
from include.testing.openai_server import OpenAIServer
from tests.helpers import ROOT

REQUESTS = ["Remove duplicates and keep only English text",
            "Score each sample with an LLM judge and keep those scoring at least 4",
            "Redact personal data, then augment difficult problems with 2 variants each"]


@pytest.fixture
def server(monkeypatch):
    with OpenAIServer() as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.url)
        monkeypatch.setenv("DATAMILL_AGENT_LLM_RETRIES", "6")
        yield s


def test_answer_schema_is_derived_from_the_retrieved_catalogue():
    schema = answer_schema(["exact_dedup", "llm_score"])
    branches = schema["properties"]["steps"]["items"]["anyOf"]
    assert [b["properties"]["op"]["const"] for b in branches] == ["exact_dedup", "llm_score"]
    score = branches[1]["properties"]["params"]
    assert score["additionalProperties"] is False
    assert score["properties"]["threshold"] == {"type": "number", "minimum": 1, "maximum": 5}
    assert "engine" not in score["properties"] and "concurrency" not in score["properties"]


def test_llm_planner_ends_in_a_valid_spec_or_a_clean_refusal_under_faults(server):
    from include.spec import validate_raw

    server.configure(rate_429=0.25, retry_after_s=0.01, rate_500=0.2, rate_malformed=0.2, seed=3)
    outcomes = []
    for req in REQUESTS:
        st = plan(req, llm="openai", dry_run=False)
        if st["status"] == "ok":
            assert validate_raw(st["spec"]) == [] and st["valid"]
            ops = {s["op"] for s in st["spec"]["steps"]}
            assert ops <= set(st["llm_ops"])  # the model only saw (and used) retrieved ops
        else:
            assert st["refusal"] and not st.get("rendered")
        outcomes.append(st["status"])
        assert st["llm_calls"] and st["llm_calls"][0]["template"] == "agent_plan/v1"
    stats = server.stats()
    assert stats.get("429") and stats.get("500") and stats.get("malformed")
    # Temperature 0 and the answer cache: the same request again sends nothing.
    server.configure(rate_429=0, rate_500=0, rate_malformed=0)
    first = plan(REQUESTS[0], llm="openai", dry_run=False)
    before = server.stats()["requests"]
    again = plan(REQUESTS[0], llm="openai", dry_run=False)
    assert server.stats()["requests"] == before
    assert all(c.get("cached") for c in again["llm_calls"])
    assert again.get("spec") == first.get("spec")


def test_endpoint_failing_is_a_clean_refusal_exit_1(server, tmp_path, capsys):
    server.configure(rate_500=1.0)
    out = tmp_path / "s.yaml"
    assert main(["plan", "remove duplicates", "--llm", "openai", "--out", str(out),
                 "--no-dry-run"]) == 1
    assert "HTTP 500" in capsys.readouterr().err and not out.exists()


def test_no_endpoint_is_a_clear_message(tmp_path, capsys):
    assert main(["plan", "remove duplicates", "--llm", "openai", "--out",
                 str(tmp_path / "s.yaml")]) == 1
    assert "needs an OpenAI-compatible endpoint" in capsys.readouterr().err


def test_ask_cites_file_and_section(server, capsys):
    assert main(["ask", "which ops remove near-duplicate documents?", "--json"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert ans["passages"] and all(p["source"] and p["section"] for p in ans["passages"])
    assert any("minhash_dedup" in p["section"] or "minhash" in p["text"]
               for p in ans["passages"])
    assert main(["ask", "how is a spec validated?", "--llm", "openai", "--json"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert "Sources: [" in ans["answer"] and ans["passages"]
    assert main(["ask", ""]) == 1


def test_op_new_is_checked_reviewed_tested_and_only_then_registered(agent_env, capsys):
    from include.agent.opgen import draft_op, static_checks

    genops = agent_env["DATAMILL_GENERATED_OPS_DIR"]
    assert main(["op", "new", "remove documents containing 'lorem ipsum' or 'click here'",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    name = out["name"]
    assert out["checks"]["ok"] and name == "keyword_filter"
    assert not list(genops.glob("*.py"))  # nothing registered before approval
    item = ReviewStore().get(f"op-{name}")
    assert item["status"] == "draft" and "register_op" in item["module_py"]

    # The store refuses an edited module at approval (static checks run again).
    mod = genops.parent / "review" / f"op-{name}" / f"{name}.py"
    good = mod.read_text()
    mod.write_text(good.replace("from include.agent.rowops", "import os\nfrom include.agent.rowops")
                   .replace("text = row.get(\"text\") or \"\"", "text = os.popen('id').read()"))
    with pytest.raises(ReviewError, match="import os is not allowed"):
        ReviewStore().approve(f"op-{name}", "alice")
    mod.write_text(good)
    path = ReviewStore().approve(f"op-{name}", "alice")
    assert path == genops / f"{name}.py"
    assert "2 passed" in (mod.parent / "test_output.txt").read_text()
    # A fresh interpreter's registry loads it from the generated-ops folder; a file
    # dropped there without approval is not imported.
    (genops / "sneaky.py").write_text("raise SystemExit('imported!')\n")
    code = ("from include.registry import all_ops; print(sorted(m.name for m in all_ops() "
            "if m.name in ('keyword_filter', 'sneaky')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(ROOT), timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "['keyword_filter']", p.stderr[-2000:]

    bad = draft_op("drop texts where more than 30% of characters are digits")
    assert bad["checks"]["ok"]
    evil = bad["module"].replace("def decide(row, params):",
                                 "def decide(row, params):\n    __import__('os').system('id')")
    problems = static_checks(evil)["problems"]
    assert any("__import__" in p for p in problems)
    evil2 = bad["module"].replace("return True, None", "return row.__class__, None", 1)
    assert any("dunder attribute" in p for p in static_checks(evil2)["problems"])
    assert main(["op", "new", "make the data better"]) == 1  # no template fits: clear message

    # The planner drafts one when asked to, for the part of a request no op fits.
    st = plan("Remove documents mentioning the words 'buy now' or 'free money'",
              dry_run=False, draft_ops=True)
    assert st["status"] == "refused" and "drafted for review: op-keyword_filter_2" in st["refusal"]
    assert ReviewStore().get("op-keyword_filter_2")["status"] == "draft"


UPPER_DECIDE = '''def decide(row, params):
    text = row.get("text") or ""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True, None
    share = sum(c.isupper() for c in letters) / len(letters)
    if share > params["max_upper"]:
        return False, "upper-case share %.2f" % share
    return True, None
'''


def _op_answer(decide: str) -> str:
    return json.dumps({
        "category": "filter", "slug": "shouting_filter",
        "summary": "Drops texts where most letters are capitals (shouting).",
        "decide": decide,
        "params": {"max_upper": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5}},
        "examples": [{"text": "BUY NOW THIS IS ALL SHOUTING", "keep": False},
                     {"text": "A calm sentence about NASA and the moon.", "keep": True}]})


def test_op_new_with_an_llm_is_checked_reviewed_tested_and_only_then_registered(
        agent_env, capsys, monkeypatch):
    """``op new --llm openai``: free-form code from a model (a real HTTP endpoint scripted
    with the answer) goes through the same static checks, review, tests and registration."""
    from tests.helpers import CaptureServer

    genops = agent_env["DATAMILL_GENERATED_OPS_DIR"]
    desc = "drop texts where more than half of the letters are capitals"
    with CaptureServer(content=_op_answer(UPPER_DECIDE)) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        assert main(["op", "new", desc, "--llm", "openai", "--json"]) == 0
        sent = json.loads(srv.requests[-1]["body"])
    out = json.loads(capsys.readouterr().out)
    assert out["checks"]["ok"] and out["name"] == "shouting_filter", out
    # The description went to the model as a template variable, with the answer schema.
    assert sent["temperature"] == 0 and desc in json.dumps(sent["messages"])
    assert sent["response_format"]["type"] == "json_schema"
    item = ReviewStore().get("op-shouting_filter")
    assert item["status"] == "draft" and "LLM draft" in item["module_py"]
    assert not list(genops.glob("*.py"))  # nothing imported or registered yet
    assert ReviewStore().approve("op-shouting_filter", "alice") == genops / "shouting_filter.py"
    assert "2 passed" in (genops.parent / "review" / "op-shouting_filter" /
                          "test_output.txt").read_text()
    code = ("from include.registry import get_op, apply_defaults; op = get_op('shouting_filter')();"
            "p = apply_defaults(op.meta, {}); "
            "print([op.decide({'text': t, 'meta': '{}'}, p)[0] for t in ('HELLO WORLD', 'Hi there')])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(ROOT), timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "[False, True]", p.stderr[-2000:]

    # A model that writes I/O: the checks fail before anyone reviews it, exit 1,
    # and approval is refused; nothing is registered.
    evil = UPPER_DECIDE.replace('text = row.get("text") or ""',
                                'text = open("/etc/passwd").read()')
    with CaptureServer(content=_op_answer(evil)) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        assert main(["op", "new", desc, "--llm", "openai", "--name", "shouting_2"]) == 1
    assert "open" in capsys.readouterr().err
    with pytest.raises(ReviewError, match="static checks"):
        ReviewStore().approve("op-shouting_2", "alice")
    assert not (genops / "shouting_2.py").exists()
