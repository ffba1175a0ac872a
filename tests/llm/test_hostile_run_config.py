"""A run config cannot reach any endpoint or secret (issue 9, security).

Hostile trigger configs go through ``dag.test()`` of a DAG the factory built,
against a real capture server that records every request; and the key
binding of ``include.llm.credentials`` is checked directly."""
from __future__ import annotations

import json

import pytest
import yaml

from include.config import PROJECT_ROOT
from include.lakehouse import Lakehouse
from include.llm.credentials import LLMConfigError, resolve_engine
from tests.helpers import CaptureServer, dag_test

pytestmark = pytest.mark.usefixtures("ray_local", "airflow_db")

SECRET = "sk-real-openai-key"
AWS = "aws-secret-value"


@pytest.fixture
def env(monkeypatch):
    for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "DATAMILL_LLM_MODEL", "AIRFLOW_CTX_DAG_ID",
              "AIRFLOW_CONN_DATAMILL_LLM", "DATAMILL_LLM_KEY_ENDPOINTS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS)
    return monkeypatch


def test_keys_only_go_to_their_own_endpoint(env):
    env.setenv("OPENAI_BASE_URL", "http://api.example:8000/v1")
    env.setenv("OPENAI_API_KEY", SECRET)
    env.setenv("DATAMILL_LLM_MODEL", "m")
    assert resolve_engine({}).api_key == SECRET
    # the same endpoint written differently still is that endpoint
    assert resolve_engine({"base_url": "http://API.example:8000/v1/"}).api_key == SECRET
    # any other endpoint gets no key at all
    for other in ("http://evil.example/v1", "http://api.example:8001/v1",
                  "https://api.example:8000/v1", "http://api.example:8000/v2"):
        assert resolve_engine({"base_url": other}).api_key == "EMPTY", other
    # a named key needs the deployer's binding, and then only goes to its endpoint
    with pytest.raises(LLMConfigError, match="not allowed"):
        resolve_engine({"base_url": "http://evil.example/v1", "api_key_env": "AWS_SECRET_ACCESS_KEY"})
    env.setenv("GROQ_KEY", "groq-secret")
    env.setenv("DATAMILL_LLM_KEY_ENDPOINTS", json.dumps({"GROQ_KEY": "https://groq.example/v1"}))
    with pytest.raises(LLMConfigError, match="belongs to https://groq.example/v1"):
        resolve_engine({"base_url": "http://evil.example/v1", "api_key_env": "GROQ_KEY"})
    cfg = resolve_engine({"api_key_env": "GROQ_KEY"})
    assert (cfg.base_url, cfg.api_key) == ("https://groq.example/v1", "groq-secret")
    with pytest.raises(LLMConfigError, match="not allowed"):
        resolve_engine({"api_key_env": "AWS_SECRET_ACCESS_KEY"})


def test_connection_password_only_goes_to_its_host(env):
    env.setenv("AIRFLOW_CTX_DAG_ID", "datamill__t")
    env.setenv("AIRFLOW_CONN_DATAMILL_LLM", json.dumps(
        {"conn_type": "http", "host": "llm.internal", "port": 8001, "password": "conn-secret",
         "extra": {"model": "conn-model"}}))
    assert resolve_engine({}).api_key == "conn-secret"
    assert resolve_engine({"base_url": "http://llm.internal:8001/v1"}).api_key == "conn-secret"
    assert resolve_engine({"base_url": "http://evil.example/v1", "model": "m"}).api_key == "EMPTY"


def test_engine_has_a_closed_schema(env):
    env.setenv("OPENAI_BASE_URL", "http://api.example/v1")
    for bad in ({"trust_remote_code": True}, {"kind": "vllm", "model": "m",
                                              "engine_kwargs": {"trust_remote_code": True}},
                {"base_url": "file:///etc/passwd"}, {"base_url": "http://u:p@host/v1"},
                {"api_key_env": "lower_case"}, {"kind": "vllm", "model": "m",
                                                "tensor_parallel_size": 64}):
        with pytest.raises(LLMConfigError):
            resolve_engine(bad, model="m")
    cfg = resolve_engine({"kind": "vllm", "model": "org/m", "tensor_parallel_size": 2,
                          "max_model_len": 8192})
    assert cfg.options == {"tensor_parallel_size": 2, "max_model_len": 8192}


def test_only_tunables_become_params():
    from include.dag_factory import dag_params
    from include.registry import NEVER_TUNABLE, RESOURCE_MAXIMUM, all_ops
    from include.spec import load_spec

    for meta in all_ops():
        assert not set(meta.tunables) & NEVER_TUNABLE, meta.name
        for pname, schema in meta.params["properties"].items():
            if pname in RESOURCE_MAXIMUM:
                assert schema["maximum"] <= RESOURCE_MAXIMUM[pname], (meta.name, pname)
    spec = load_spec(PROJECT_ROOT / "ray_jobs/examples/llm_funnel.yaml")
    keys = set(dag_params(spec))
    assert keys and all(k.split("__")[-1] not in NEVER_TUNABLE for k in keys)
    assert not any(k.endswith(("__engine", "__model", "__template", "__workers",
                               "__concurrency", "__schema", "__column")) for k in keys)


def test_an_op_cannot_declare_an_open_tunable():
    from include.registry import register_op

    for pname, schema in (("engine", {"type": "object", "default": {}}),
                          ("model", {"type": "string", "default": "m"}),
                          ("label", {"type": "string", "default": "x"}),  # unbounded text
                          ("tags", {"type": "array", "items": {"type": "string"},
                                    "default": []})):
        with pytest.raises(ValueError, match="tunable"):
            register_op(name="_open_tunable", version="1", category="filter", engine="spark",
                        description="x", params={"properties": {pname: schema}},
                        tunables=(pname,))
    with pytest.raises(ValueError, match="not one of its params"):
        register_op(name="_open_tunable", version="1", category="filter", engine="spark",
                    description="x", tunables=("missing",))


def _llm_dag(tmp_path, monkeypatch, server):
    from airflow.dag_processing.dagbag import DagBag

    rows = [{"id": f"d{i}", "text": f"document number {i} [score={1 + i % 5}]"} for i in range(10)]
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"version": 1, "name": "hostile", "output": {"table": "gold/hostile"},
            "source": {"path": str(src), "format": "jsonl", "id_field": "id"},
            "steps": [{"op": "llm_score", "params": {"threshold": 2, "model": "test-model",
                                                     "concurrency": 2, "batch_size": 4}}]}
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "hostile.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("DATAMILL_PIPELINES_DIR", str(pipelines))
    monkeypatch.setenv("DATAMILL_LAKE", str(tmp_path / "lake"))
    # The deployer's endpoint and key: what the pipeline is meant to use.
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS)
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["datamill__hostile"]
    for t in dag.tasks:
        t.retries = 0  # each hostile run must fail on its first try
    return dag, tmp_path / "lake"


def test_hostile_run_configs_reach_no_endpoint_and_no_secret(server, tmp_path, monkeypatch,
                                                             spark, capfd):
    server.configure(api_key=SECRET)  # the real endpoint wants the real key
    dag, lake = _llm_dag(tmp_path, monkeypatch, server)
    assert set(dag.params) == {"s1_llm_score__threshold"}
    with CaptureServer() as evil:
        hostile = [
            {"s1_llm_score__engine": {"base_url": evil.url}},
            {"s1_llm_score__engine": {"base_url": evil.url,
                                      "api_key_env": "AWS_SECRET_ACCESS_KEY"}},
            {"s1_llm_score__engine": {"kind": "vllm", "model": "x",
                                      "engine_kwargs": {"trust_remote_code": True}}},
            {"s1_llm_score__model": "other", "s1_llm_score__template": "llm_rewrite"},
            {"steps.1.params.engine": {"base_url": evil.url}},
            {"output.table": "gold/elsewhere"},
        ]
        for conf in hostile:
            dr = dag.test(run_conf=conf)
            assert dr.state == "failed", conf
            assert dr.get_task_instance("ingest").state == "failed", conf
        assert evil.requests == []
        assert server.stats().get("requests", 0) == 0
        assert not Lakehouse(lake).exists("gold/hostile")
        # a tunable outside its schema's bounds is refused by Airflow's Param check
        with pytest.raises(Exception, match="s1_llm_score__threshold"):
            dag.test(run_conf={"s1_llm_score__threshold": 99})

        # A tunable may be set, within its schema's bounds...
        dr = dag_test(dag, capfd, run_conf={"s1_llm_score__threshold": 4})
        assert evil.requests == []
    # Only the successful run published, and its Asset event says what it published.
    events = _asset_events(dag)
    assert len(events) == 1, events
    assert events[0]["table"] == "gold/hostile" and events[0]["rows"] == 4
    assert events[0]["run_id"] == dr.run_id and events[0]["pipeline"] == "hostile"
    assert events[0]["version"] == Lakehouse(lake).version("gold/hostile")
    # ...and then the key went only to the deployer's endpoint, which accepted it.
    assert server.stats()["requests"] == 10
    gold = Lakehouse(lake).read("gold/hostile").collect()
    assert sorted(r["llm_score"] for r in gold) == [4, 4, 5, 5]


def _asset_events(dag) -> list[dict]:
    """The ``extra`` of every Asset event the DAG's publish task emitted (Airflow's DB)."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(AssetEvent).where(AssetEvent.source_dag_id == dag.dag_id)
                               .order_by(AssetEvent.id)).all()
        return [dict(e.extra or {}) for e in rows]
