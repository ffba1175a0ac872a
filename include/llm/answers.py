"""What an LLM stage asks and how its answers are checked.

A ``Request`` is everything a worker needs to turn a row into chat messages
and to judge the answer: the prompt template, the answer schema (sent as
``response_format`` / guided decoding and validated with ``jsonschema``),
generation settings and the retry budget. It is a plain picklable object so
it travels to Ray workers unchanged.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from include.prompts import PromptTemplate

FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)

# Result columns every engine adds to the request rows.
RESULT_COLUMNS = {
    "_llm_key": "string", "_llm_answer": "string", "_llm_parsed": "string",
    "_llm_error": "string", "_llm_attempts": "int64", "_llm_prompt_tokens": "int64",
    "_llm_completion_tokens": "int64", "_llm_latency_ms": "double", "_llm_cached": "bool",
}


@dataclass
class Request:
    template: PromptTemplate
    schema: dict[str, Any]
    variables: dict[str, Any] = field(default_factory=dict)  # op params the template uses
    temperature: float = 0.0
    max_tokens: int = 512
    max_retries: int = 4
    timeout_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 20.0
    response_format: str = "json_schema"  # json_schema | json_object

    def messages(self, row: dict[str, Any]) -> list[dict[str, str]]:
        return self.template.render({**row, **self.variables,
                                     "schema_json": json.dumps(self.schema, sort_keys=True)})

    def params_hash(self) -> str:
        """Hash of what, besides the prompt, decides the answer."""
        blob = json.dumps({"schema": self.schema, "temperature": self.temperature,
                           "max_tokens": self.max_tokens, "format": self.response_format},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def response_format_body(self) -> dict[str, Any]:
        if self.response_format == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema",
                "json_schema": {"name": self.template.name, "schema": self.schema, "strict": True}}

    def validate(self, raw: str | None) -> tuple[Any, str | None]:
        """(parsed answer, None) or (None, why it is not acceptable)."""
        if raw is None or not raw.strip():
            return None, "empty answer"
        m = FENCE_RE.match(raw)
        text = m.group(1) if m else raw
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, f"invalid JSON: {exc.msg} at char {exc.pos}"
        error = next(_validator(json.dumps(self.schema, sort_keys=True)).iter_errors(parsed), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "answer"
            return None, f"schema violation at {where}: {error.message}"
        return parsed, None


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str):
    """A checked, compiled validator per schema (``jsonschema.validate`` rebuilds it per call)."""
    import jsonschema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def input_hash(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
