"""Where the LLM is (interfaces.md section 4), resolved once on the driver.

Order: the op's own ``engine`` params from the spec; the Airflow connection
``datamill_llm`` (only inside an Airflow task; Airflow is imported lazily);
else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``. The model comes from
``engine.model``, the op's ``model`` param, the connection's extra ``model``,
then ``DATAMILL_LLM_MODEL``.

A secret only ever goes to the endpoint it belongs to:

- ``OPENAI_API_KEY`` to ``OPENAI_BASE_URL``;
- the ``datamill_llm`` connection's password to that connection's host;
- a key named by ``engine.api_key_env`` only if the deployer bound that
  variable to an endpoint in ``$DATAMILL_LLM_KEY_ENDPOINTS`` (JSON
  ``{"VAR": "https://host/v1"}``), and only to that endpoint.

Any other base URL (a spec pointing at a local server, say) gets no key at
all. Endpoints are compared by scheme, host, port and path. ``engine`` has a
closed schema (:data:`ENGINE_SCHEMA`): no free-form engine kwargs reach vLLM
(``trust_remote_code`` and the like cannot be switched on from a spec).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

ENGINE_KINDS = ("openai", "vllm")
CONNECTION_ID = "datamill_llm"
KEY_ENDPOINTS_ENV = "DATAMILL_LLM_KEY_ENDPOINTS"
# vLLM engine settings a spec may choose (everything else stays vLLM's default).
VLLM_OPTIONS = ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len",
                "gpu_memory_utilization", "dtype", "enable_prefix_caching")

ENGINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "where the model is: {kind: openai|vllm, base_url, model, api_key_env, "
                   "and for vllm: tensor_parallel_size, max_model_len, ...}; no secrets",
    "properties": {
        "kind": {"enum": list(ENGINE_KINDS)},
        "base_url": {"type": "string", "maxLength": 500,
                     "pattern": r"^https?://[^\s/?#@]+(/[^\s?#]*)?$"},
        "model": {"type": "string", "minLength": 1, "maxLength": 300},
        "api_key_env": {"type": "string", "pattern": r"^[A-Z][A-Z0-9_]{0,127}$"},
        "tensor_parallel_size": {"type": "integer", "minimum": 1, "maximum": 8},
        "pipeline_parallel_size": {"type": "integer", "minimum": 1, "maximum": 8},
        "max_model_len": {"type": "integer", "minimum": 128, "maximum": 262_144},
        "gpu_memory_utilization": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.98},
        "dtype": {"enum": ["auto", "bfloat16", "float16"]},
        "enable_prefix_caching": {"type": "boolean"},
    },
}


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


def endpoint_key(url: str | None) -> str | None:
    """What identifies an endpoint: scheme, host, port (default ports made
    explicit) and path, without user info, query or trailing slash."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}{parts.path.rstrip('/')}"


def _key_endpoints() -> dict[str, str]:
    raw = os.environ.get(KEY_ENDPOINTS_ENV, "").strip()
    if not raw:
        return {}
    try:
        table = json.loads(raw)
    except ValueError:
        raise LLMConfigError(f"${KEY_ENDPOINTS_ENV} must be a JSON object "
                             '{"ENV_VAR": "https://endpoint/v1"}') from None
    if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and endpoint_key(v) for k, v in table.items()):
        raise LLMConfigError(f"${KEY_ENDPOINTS_ENV} must map variable names to http(s) URLs")
    return table


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


def _check_schema(engine: dict[str, Any]) -> None:
    import jsonschema

    if "api_key" in engine:
        raise LLMConfigError("engine.api_key is not allowed in a spec: put the key in the "
                             f"Airflow connection {CONNECTION_ID!r} or an environment variable "
                             f"bound to its endpoint in ${KEY_ENDPOINTS_ENV}")
    errors = sorted(jsonschema.Draft202012Validator(ENGINE_SCHEMA).iter_errors(engine),
                    key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.path)
        raise LLMConfigError(f"engine{'.' + where if where else ''}: {e.message}")


def _named_key(key_env: str, base_url: str | None) -> tuple[str, str]:
    """(key, endpoint) for ``engine.api_key_env``, refusing any other endpoint."""
    bound = _key_endpoints().get(key_env)
    if bound is None:
        raise LLMConfigError(f"engine.api_key_env {key_env!r} is not allowed: the deployer "
                             f"binds key variables to their endpoints in ${KEY_ENDPOINTS_ENV}")
    if base_url and endpoint_key(base_url) != endpoint_key(bound):
        raise LLMConfigError(f"engine.api_key_env {key_env!r} belongs to {bound}, not to "
                             f"{base_url}: a key is only sent to its own endpoint")
    key = os.environ.get(key_env)
    if key is None:
        raise LLMConfigError(f"engine.api_key_env names {key_env!r}, which is not set")
    return key, base_url or bound


def resolve_engine(engine: dict[str, Any] | None, model: str | None = None) -> EngineConfig:
    engine = dict(engine or {})
    _check_schema(engine)
    kind = engine.pop("kind", None) or "openai"
    key_env = engine.pop("api_key_env", None)
    base_url = engine.pop("base_url", None)
    chosen_model = engine.pop("model", None) or model or None

    if kind == "vllm":
        chosen_model = chosen_model or os.environ.get("DATAMILL_LLM_MODEL")
        if not chosen_model:
            raise LLMConfigError("engine kind vllm needs engine.model (a Hugging Face model "
                                 "id or local path)")
        options = {k: engine[k] for k in VLLM_OPTIONS if k in engine}
        return EngineConfig("vllm", chosen_model, options=options, source="spec")

    api_key: str | None = None
    source = "spec"
    if key_env:
        api_key, base_url = _named_key(key_env, base_url)
    elif base_url:
        # A spec's own URL gets the key of whichever configured endpoint it is.
        target = endpoint_key(base_url)
        conn = _airflow_connection()
        if conn and conn["base_url"] and endpoint_key(conn["base_url"]) == target:
            api_key = conn["api_key"]
            chosen_model = chosen_model or conn["extra"].get("model")
        elif target == endpoint_key(os.environ.get("OPENAI_BASE_URL")):
            api_key = os.environ.get("OPENAI_API_KEY")
    else:
        conn = _airflow_connection()
        if conn and conn["base_url"]:
            base_url, source = conn["base_url"], f"airflow:{CONNECTION_ID}"
            api_key = conn["api_key"]
            chosen_model = chosen_model or conn["extra"].get("model")
        elif os.environ.get("OPENAI_BASE_URL"):
            base_url, source = os.environ["OPENAI_BASE_URL"], "env"
            api_key = os.environ.get("OPENAI_API_KEY")
    if not base_url:
        raise LLMConfigError("no LLM endpoint: set engine.base_url in the step, the Airflow "
                             f"connection {CONNECTION_ID!r}, or OPENAI_BASE_URL")
    if endpoint_key(base_url) is None:
        raise LLMConfigError(f"LLM endpoint {base_url!r} is not an http(s) URL")
    chosen_model = chosen_model or os.environ.get("DATAMILL_LLM_MODEL")
    if not chosen_model:
        raise LLMConfigError("no LLM model: set the op's model param, engine.model, the "
                             f"connection {CONNECTION_ID!r} extra 'model', or DATAMILL_LLM_MODEL")
    # Local OpenAI-compatible servers accept any key; the client library needs one.
    return EngineConfig("openai", chosen_model, base_url=base_url, api_key=api_key or "EMPTY",
                        options={}, source=source)
