"""The LLM answer cache: a Delta table under ``<lake>/_system/llm_cache``.

A row per validated answer, keyed by the endpoint (engine kind and base URL,
``include.llm.engine.endpoint_id``: two servers that call different models
by one name must not share answers), model, template (``name/vN``), a hash of
the generation params (schema, temperature, max tokens, format) and a hash of
the rendered prompt (``input_hash``). Rows of a table written before the
endpoint was part of the key have none and are never served. A rerun over unchanged rows finds every
answer and sends no request; an edited template changes the rendered prompt of
exactly the rows it affects, so only those are asked again. Invalid answers
are never cached, so a rerun retries rows that were quarantined.

Written with ``deltalake`` (delta-rs) rather than Spark so that lookups and
appends work from the Ray driver without a JVM, and appends are safe from
concurrent tasks (Delta's optimistic commits). Answers are appended while a
stage runs, so a retried Airflow task resumes where the failed one stopped.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

CACHE_TABLE = "_system/llm_cache"
SCHEMA = pa.schema([
    ("endpoint", pa.string()), ("model", pa.string()), ("template", pa.string()), ("params_hash", pa.string()),
    ("input_hash", pa.string()), ("answer", pa.string()), ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()), ("created_at", pa.timestamp("us", tz="UTC")),
])


class AnswerCache:
    def __init__(self, lake: str | Path):
        from include.config import lake_path

        self.path = str(lake_path(lake, CACHE_TABLE))  # a path, or the lake's URI joined

    def exists(self) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.path)

    def lookup(self, endpoint: str, model: str, template: str,
               params_hash: str) -> dict[str, str]:
        """input_hash -> answer JSON for one stage's endpoint, model, template and params."""
        if not self.exists():
            return {}
        import pyarrow.dataset as pds
        from deltalake import DeltaTable

        table = DeltaTable(self.path)
        if "endpoint" not in table.schema().to_arrow().names:
            return {}
        flt = ((pds.field("endpoint") == endpoint) & (pds.field("model") == model) & (pds.field("template") == template)
               & (pds.field("params_hash") == params_hash))
        t = table.to_pyarrow_dataset().to_table(
            filter=flt, columns=["input_hash", "answer"])
        return dict(zip(t.column("input_hash").to_pylist(), t.column("answer").to_pylist()))

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        from deltalake import write_deltalake

        now = datetime.now(timezone.utc)
        table = pa.Table.from_pylist([{**r, "created_at": now} for r in rows], schema=SCHEMA)
        write_deltalake(self.path, table, mode="append", schema_mode="merge")

    def count(self) -> int:
        if not self.exists():
            return 0
        from deltalake import DeltaTable

        return DeltaTable(self.path).to_pyarrow_dataset().count_rows()
