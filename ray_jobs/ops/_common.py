"""Small pieces the Ray ops share."""
from __future__ import annotations

from typing import TYPE_CHECKING

from include.registry import StepContext

if TYPE_CHECKING:
    import pyarrow as pa


def set_column(table: pa.Table, name: str, arr: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, arr)
    return table.append_column(name, arr)


def finish(table: pa.Table, ctx: StepContext):
    """Count the op's decisions into the stage stats and hand the rows back to Ray."""
    import ray

    def n(col: str) -> int:
        return table.num_rows - table.column(col).null_count

    ctx.extras.setdefault("stats", {}).update({
        "removed": n("_reason"), "quarantined": n("_quarantine"), "changed": n("_changed"),
        "added": n("_parent_id")})
    return ray.data.from_arrow(table)
