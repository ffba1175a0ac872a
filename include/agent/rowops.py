"""Base classes of generated ops: a pure row function plus the shared Spark plumbing.

A generated op module (``datamill op new``) holds only its ``register_op``
metadata and ``decide(row, params)``, a pure function of one row:

- ``RowFilter``: ``decide`` returns ``(keep, reason)``; a removed row gets
  ``reason`` as its ledger rule.
- ``RowRewrite``: ``decide`` returns the new text, or ``None`` to leave the
  row unchanged.

The Spark side is ``spark_jobs.rowwise.map_rows`` (imported on use), the
same wrapper as the hand-written row-wise ops, so generated ops fuse with
them, count per reason and quarantine a row whose function raises.
"""
from __future__ import annotations

from typing import Any

from include.registry import Op, StepContext, apply_defaults


class _Decider:
    """Picklable row callable (Spark ships it to the Python workers)."""

    def __init__(self, decide, params: dict[str, Any], op: str, rewrite: bool):
        self.decide, self.params, self.op, self.rewrite = decide, params, op, rewrite

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.rewrite:
            new = self.decide(row, self.params)
            if new is None or new == row.get("text"):
                return {}
            if not isinstance(new, str):
                raise TypeError(f"{self.op}: decide returned {type(new).__name__}, not str")
            return {"text": new, "_changed": self.op}
        keep, reason = self.decide(row, self.params)
        if keep:
            return {}
        return {"_reason": str(reason or self.op), "_detail": {"rule": str(reason or self.op)}}


class RowFilter(Op):
    decide = None  # set by the generated module: staticmethod(decide)

    def run(self, df, params: dict[str, Any], ctx: StepContext):
        from spark_jobs import rowwise

        params = apply_defaults(self.meta, params)
        return rowwise.map_rows(df, _Decider(type(self).decide, params, self.meta.name, False),
                                op=self.meta.name, reads=tuple(self.meta.requires))


class RowRewrite(Op):
    decide = None

    def run(self, df, params: dict[str, Any], ctx: StepContext):
        from spark_jobs import rowwise

        params = apply_defaults(self.meta, params)
        return rowwise.map_rows(df, _Decider(type(self).decide, params, self.meta.name, True),
                                op=self.meta.name, reads=tuple(self.meta.requires),
                                writes={"text": "string"})
