"""Review as files: rounds with history and diffs, feedback revisions that keep the
rest, approve/reject through the CLI, name clashes, concurrent writers, the DAG file."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest
import yaml

from include.agent.graph import plan
from include.agent.review_store import ReviewError, ReviewStore
from include.cli import main

ISSUE_REQUEST = ("Prepare a high-quality instruction-tuning dataset for mathematical reasoning. "
                 "Remove low-quality and duplicate samples, augment difficult problems, and "
                 "report basic dataset statistics.")


def test_feedback_revision_keeps_the_rest_and_the_history(tmp_path, agent_env, capsys):
    spec = tmp_path / "math.yaml"
    assert main(["plan", ISSUE_REQUEST, "--name", "math_sft", "--out", str(spec)]) == 0
    assert main(["render", str(spec)]) == 0
    item_dir = capsys.readouterr().out.strip().splitlines()[-1]
    first = yaml.safe_load(spec.read_text())

    # Revise from the review item by name, with the feedback of the issue.
    spec2 = tmp_path / "math2.yaml"
    assert main(["plan", "--from", "math_sft", "--feedback", "less augmentation on easy samples",
                 "--out", str(spec2)]) == 0
    assert main(["render", str(spec2)]) == 0
    second = yaml.safe_load(spec2.read_text())
    before = {s["op"]: s for s in first["steps"]}
    after = {s["op"]: s for s in second["steps"]}
    assert [s["op"] for s in first["steps"]] == [s["op"] for s in second["steps"]]
    # Still no source and a guessed format: the revised round says so too.
    assert {"placeholder_source", "format_inferred", "revision"} <= \
        {f["kind"] for f in ReviewStore().get("math_sft")["flags"]}
    for op in before:
        if op != "llm_augment":
            assert after[op] == before[op], op  # untouched steps: same op, params, place
    assert before["llm_augment"]["params"]["where"] == "difficulty >= 4"
    assert after["llm_augment"]["params"]["where"] == "difficulty >= 5"
    assert {k: v for k, v in second.items() if k != "steps"} == \
        {k: v for k, v in first.items() if k != "steps"}

    # A second feedback: add a step; everything else stays.
    spec3 = tmp_path / "math3.yaml"
    assert main(["plan", "--from", "math_sft", "--feedback", "also redact email addresses",
                 "--out", str(spec3)]) == 0
    assert main(["render", str(spec3)]) == 0
    third = yaml.safe_load(spec3.read_text())
    assert [s["op"] for s in third["steps"]] == ["quality_filter", "pii_redact", "exact_dedup",
                                                 "minhash_dedup", "llm_annotate",
                                                 "llm_augment", "stats_report"]
    assert third["steps"][5] == second["steps"][4]

    item = ReviewStore().get("math_sft")
    assert item["path"] == item_dir and item["status"] == "draft"
    h = item["history"]
    assert [r["kind"] for r in h] == ["request", "feedback", "feedback"]
    assert h[0]["request"] == ISSUE_REQUEST and h[0]["diff"] == ""
    assert h[1]["feedback"] == "less augmentation on easy samples"
    assert "-    where: difficulty >= 4" in h[1]["diff"] and "+    where: difficulty >= 5" in h[1]["diff"]
    assert "+- op: pii_redact" in h[2]["diff"]
    assert "less augmentation on easy samples" in item["plan_md"]  # feedback history shown
    assert ReviewStore().feedback_history("math_sft") == ["less augmentation on easy samples",
                                                          "also redact email addresses"]

    # Feedback the agent cannot act on is refused, not silently ignored.
    assert main(["plan", "--from", "math_sft", "--feedback", "make it better somehow",
                 "--out", str(tmp_path / "x.yaml")]) == 1
    assert not (tmp_path / "x.yaml").exists()


def test_approve_reject_and_clashes_through_the_cli(tmp_path, agent_env, capsys):
    live = agent_env["DATAMILL_PIPELINES_DIR"]
    spec = tmp_path / "s.yaml"
    assert main(["plan", "remove exact duplicates", "--name", "dedup_docs", "--out",
                 str(spec), "--no-dry-run"]) == 0
    assert main(["render", str(spec)]) == 0
    assert not (live / "dedup_docs.yaml").exists()  # nothing live before approval
    assert main(["review", "reject", "dedup_docs", "--feedback", "also keep only English",
                 "--by", "bob"]) == 0
    item = ReviewStore().get("dedup_docs")
    assert item["status"] == "rejected" and item["rejections"][0]["by"] == "bob"
    assert main(["review", "approve", "dedup_docs", "--by", "alice"]) == 1  # not a draft
    assert "only a draft" in capsys.readouterr().err
    # A revision from the rejected item carries its feedback and makes a new draft.
    assert main(["plan", "--from", "dedup_docs", "--feedback", "also keep only English",
                 "--out", str(spec), "--no-dry-run"]) == 0
    assert main(["render", str(spec)]) == 0
    assert ReviewStore().get("dedup_docs")["status"] == "draft"
    # A reviewer who read round 1 cannot approve round 2 unseen.
    assert main(["review", "approve", "dedup_docs", "--by", "alice", "--round", "1"]) == 1
    assert "at round 2, not round 1" in capsys.readouterr().err
    assert not (live / "dedup_docs.yaml").exists()
    assert main(["review", "approve", "dedup_docs", "--by", "alice", "--round", "2"]) == 0
    published = live / "dedup_docs.yaml"
    assert yaml.safe_load(published.read_text())["steps"][0]["op"] == "language_filter"
    item = ReviewStore().get("dedup_docs")
    assert item["status"] == "approved" and item["approvals"][0]["by"] == "alice"
    assert main(["review", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(i["name"], i["status"]) for i in listed] == [("dedup_docs", "approved")]
    assert main(["review", "show", "dedup_docs"]) == 0
    assert "approved by alice" in capsys.readouterr().out

    # The same name as a live pipeline: a new plan gets another name; a forced one is refused.
    st = plan("remove exact duplicates", name="stdlib_docs", dry_run=False)
    ReviewStore().save_round(st)
    with pytest.raises(ReviewError, match="live pipeline named 'stdlib_docs' already exists"):
        ReviewStore().approve("stdlib_docs", "alice")
    derived = plan("clean the python docs", dry_run=False)["spec"]["name"]
    assert derived not in ("stdlib_docs", "stdlib_code")
    assert main(["review", "approve", "nosuch", "--by", "x"]) == 1


def _writer(root: str, n: int, who: int) -> None:
    from include.agent.review_store import ReviewStore

    store = ReviewStore(root)
    state = json.loads((__import__("pathlib").Path(root) / "state.json").read_text())
    for i in range(n):
        state["feedback"] = f"writer {who} round {i}"
        store.save_round(state)


def test_concurrent_writers_never_lose_or_tear_a_round(tmp_path):
    st = plan("remove exact duplicates", name="busy", dry_run=False)
    root = tmp_path / "store"
    root.mkdir()
    (root / "state.json").write_text(json.dumps(st))
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(root), 5, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    item = ReviewStore(root).get("busy")
    assert [h["round"] for h in item["history"]] == list(range(1, 21))
    assert sorted(h["feedback"] for h in item["history"]) == sorted(
        f"writer {w} round {i}" for w in range(4) for i in range(5))
    assert len(list((root / "busy" / "rounds").iterdir())) == 20


def test_review_dag_file_builds_the_dag_once_approved(tmp_path, agent_env, airflow_db):
    from airflow.models import DagBag

    st = plan("remove exact duplicates and near duplicates above 0.9", name="dagcheck",
              dry_run=False)
    store = ReviewStore()
    item_dir = store.save_round(st)
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "review_dagcheck.py").write_text((item_dir / "dag.py").read_text())
    bag = DagBag(dag_folder=str(folder))
    assert not bag.import_errors and "datamill__dagcheck" not in bag.dags  # not live yet
    store.approve("dagcheck", "alice")
    bag = DagBag(dag_folder=str(folder))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["datamill__dagcheck"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "ingest", "s1_exact_dedup", "s2_minhash_dedup", "publish"]
