"""Where the LLM is (interfaces.md section 4) and the prompt templates."""
from __future__ import annotations

import json

import pytest

from include.llm.credentials import LLMConfigError, resolve_engine
from include.prompts import available, load_template


@pytest.fixture
def clean_env(monkeypatch):
    for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "DATAMILL_LLM_MODEL", "AIRFLOW_CTX_DAG_ID",
              "AIRFLOW_CONN_DATAMILL_LLM", "DATAMILL_LLM_KEY_ENDPOINTS"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_spec_engine_wins_and_keys_never_come_from_the_spec(clean_env):
    clean_env.setenv("OPENAI_BASE_URL", "http://env:1/v1")
    clean_env.setenv("MY_KEY", "secret-key")
    clean_env.setenv("DATAMILL_LLM_KEY_ENDPOINTS", json.dumps({"MY_KEY": "http://spec:2/v1/"}))
    cfg = resolve_engine({"base_url": "http://spec:2/v1", "model": "m1", "api_key_env": "MY_KEY"})
    assert (cfg.base_url, cfg.model, cfg.api_key, cfg.source) == \
        ("http://spec:2/v1", "m1", "secret-key", "spec")
    assert "secret-key" not in repr(cfg)
    with pytest.raises(LLMConfigError, match="not allowed in a spec"):
        resolve_engine({"api_key": "sk-123"})


def test_airflow_connection_then_environment(clean_env):
    clean_env.setenv("OPENAI_BASE_URL", "http://env:1/v1")
    clean_env.setenv("OPENAI_API_KEY", "env-key")
    clean_env.setenv("DATAMILL_LLM_MODEL", "env-model")
    assert resolve_engine({}).source == "env"  # outside Airflow the connection is not read
    clean_env.setenv("AIRFLOW_CTX_DAG_ID", "datamill__t")
    clean_env.setenv("AIRFLOW_CONN_DATAMILL_LLM", json.dumps(
        {"conn_type": "http", "host": "llm.local", "port": 8001, "password": "conn-key",
         "extra": {"model": "conn-model"}}))
    cfg = resolve_engine({})
    assert (cfg.base_url, cfg.api_key, cfg.model, cfg.source) == \
        ("http://llm.local:8001/v1", "conn-key", "conn-model", "airflow:datamill_llm")
    assert resolve_engine({}, model="op-model").model == "op-model"


def test_missing_endpoint_or_model_is_a_clear_error(clean_env):
    with pytest.raises(LLMConfigError, match="no LLM endpoint"):
        resolve_engine({})
    clean_env.setenv("OPENAI_BASE_URL", "http://env:1/v1")
    with pytest.raises(LLMConfigError, match="no LLM model"):
        resolve_engine({})
    with pytest.raises(LLMConfigError, match="needs engine.model"):
        resolve_engine({"kind": "vllm"})
    cfg = resolve_engine({"kind": "vllm", "model": "org/m", "tensor_parallel_size": 2})
    assert cfg.kind == "vllm" and cfg.options == {"tensor_parallel_size": 2}


def test_templates_are_versioned_and_render_strictly():
    assert set(available()) >= {"llm_score", "llm_annotate", "llm_rewrite", "llm_augment",
                                "llm_synthesize"}
    t = load_template("llm_score")
    assert t.id == "llm_score/v1" and load_template("llm_score/v1").digest == t.digest
    msgs = t.render({"text": "hello"})
    assert msgs[-1]["content"].count("hello") == 1 and "1-5" in msgs[-1]["content"]
    with pytest.raises(Exception, match="text"):
        t.render({})
    with pytest.raises(ValueError, match="known"):
        load_template("nope")
    with pytest.raises(ValueError, match="no version 9"):
        load_template("llm_score/v9")


def test_template_text_is_sandboxed_and_variables_stay_literal():
    """A template that reaches for Python internals fails with SecurityError
    (a plain jinja2 Environment runs it), and template syntax inside a
    variable (a request, a rubric, a document) is never evaluated."""
    from dataclasses import replace

    from jinja2.exceptions import SecurityError

    t = load_template("llm_score")
    hostile = replace(t, system="", user="{{ text.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        hostile.render({"text": "x"})
    mutate = replace(t, system="", user="{% set d = {} %}{{ d.update(a=1) }}")
    with pytest.raises(SecurityError):
        mutate.render({"text": "x"})
    msgs = t.render({"text": "{{ 7 * 7 }} {% raw %}x{% endraw %}"})
    assert "{{ 7 * 7 }} {% raw %}x{% endraw %}" in msgs[-1]["content"]
    assert "49" not in msgs[-1]["content"]
