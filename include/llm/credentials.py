"""Where the LLM is (interfaces.md section 4), resolved once on the driver.

Order: the op's own ``engine`` params from the spec; the Airflow connection
``datamill_llm`` (only inside an Airflow task; Airflow is imported lazily);
else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``. The model comes from
``engine.model``, the op's ``model`` param, the connection's extra ``model``,
then ``DATAMILL_LLM_MODEL``. Secrets never come from the spec: a spec may name
the environment variable holding the key (``engine.api_key_env``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

ENGINE_KINDS = ("openai", "vllm")
CONNECTION_ID = "datamill_llm"


class LLMConfigError(ValueError):
    pass


@dataclass(frozen=True)
class EngineConfig:
    kind: str
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def _airflow_connection() -> dict[str, Any] | None:
    if not os.environ.get("AIRFLOW_CTX_DAG_ID"):
        return None
    try:
        from airflow.sdk import BaseHook  # type: ignore
    except ImportError:
        return None
    try:
        conn = BaseHook.get_connection(CONNECTION_ID)
    except Exception:  # noqa: BLE001 - connection not defined: fall through to env
        return None
    host = conn.host or ""
    if host and "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    if conn.port:
        host = f"{host}:{conn.port}"
    extra = conn.extra_dejson or {}
    path = extra.get("path", "/v1" if host and not host.rstrip("/").endswith("/v1") else "")
    return {"base_url": (host.rstrip("/") + path) if host else None,
            "api_key": conn.password or None, "extra": extra}


def resolve_engine(engine: dict[str, Any] | None, model: str | None = None) -> EngineConfig:
    engine = dict(engine or {})
    if "api_key" in engine:
        raise LLMConfigError("engine.api_key is not allowed in a spec: put the key in the "
                             f"Airflow connection {CONNECTION_ID!r} or an environment variable "
                             "and name it with engine.api_key_env")
    kind = engine.pop("kind", None) or "openai"
    if kind not in ENGINE_KINDS:
        raise LLMConfigError(f"engine.kind {kind!r} not in {ENGINE_KINDS}")
    key_env = engine.pop("api_key_env", None)
    base_url = engine.pop("base_url", None)
    chosen_model = engine.pop("model", None) or model or None
    api_key = os.environ.get(key_env) if key_env else None
    if key_env and api_key is None:
        raise LLMConfigError(f"engine.api_key_env names {key_env!r}, which is not set")

    if kind == "vllm":
        chosen_model = chosen_model or os.environ.get("DATAMILL_LLM_MODEL")
        if not chosen_model:
            raise LLMConfigError("engine kind vllm needs engine.model (a Hugging Face model "
                                 "id or local path)")
        return EngineConfig("vllm", chosen_model, options=engine, source="spec")

    source = "spec"
    if not base_url:
        conn = _airflow_connection()
        if conn and conn["base_url"]:
            base_url, source = conn["base_url"], f"airflow:{CONNECTION_ID}"
            api_key = api_key or conn["api_key"]
            chosen_model = chosen_model or conn["extra"].get("model")
    if not base_url:
        base_url, source = os.environ.get("OPENAI_BASE_URL"), "env"
    if not base_url:
        raise LLMConfigError("no LLM endpoint: set engine.base_url in the step, the Airflow "
                             f"connection {CONNECTION_ID!r}, or OPENAI_BASE_URL")
    if api_key is None:
        api_key = os.environ.get("OPENAI_API_KEY")
    chosen_model = chosen_model or os.environ.get("DATAMILL_LLM_MODEL")
    if not chosen_model:
        raise LLMConfigError("no LLM model: set the op's model param, engine.model, the "
                             f"connection {CONNECTION_ID!r} extra 'model', or DATAMILL_LLM_MODEL")
    # Local OpenAI-compatible servers accept any key; the client library needs one.
    return EngineConfig("openai", chosen_model, base_url=base_url, api_key=api_key or "EMPTY",
                        options=engine, source=source)
