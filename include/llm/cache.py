"""The LLM answer cache: a Delta table under ``<lake>/_system/llm_cache``.

A row per validated answer, keyed by model, template (``name/vN``), a hash of
the generation params (schema, temperature, max tokens, format) and a hash of
the rendered prompt (``input_hash``). A rerun over unchanged rows finds every
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
    ("model", pa.string()), ("template", pa.string()), ("params_hash", pa.string()),
    ("input_hash", pa.string()), ("answer", pa.string()), ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()), ("created_at", pa.timestamp("us", tz="UTC")),
])


class AnswerCache:
    def __init__(self, lake: str | Path):
        self.path = str(Path(lake) / CACHE_TABLE)

    def exists(self) -> bool:
        return (Path(self.path) / "_delta_log").is_dir()

    def lookup(self, model: str, template: str, params_hash: str) -> dict[str, str]:
        """input_hash -> answer JSON for one stage's model, template and params."""
        if not self.exists():
            return {}
        import pyarrow.dataset as pds
        from deltalake import DeltaTable

        flt = ((pds.field("model") == model) & (pds.field("template") == template)
               & (pds.field("params_hash") == params_hash))
        t = DeltaTable(self.path).to_pyarrow_dataset().to_table(
            filter=flt, columns=["input_hash", "answer"])
        return dict(zip(t.column("input_hash").to_pylist(), t.column("answer").to_pylist()))

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        from deltalake import write_deltalake

        now = datetime.now(timezone.utc)
        table = pa.Table.from_pylist([{**r, "created_at": now} for r in rows], schema=SCHEMA)
        write_deltalake(self.path, table, mode="append")

    def count(self) -> int:
        if not self.exists():
            return 0
        from deltalake import DeltaTable

        return DeltaTable(self.path).to_pyarrow_dataset().count_rows()
