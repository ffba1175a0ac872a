"""Training signals back to the lakehouse: ``_system/training_signals``.

A training run records, for every document in every batch, what the model
made of it: one row per (step, document segment of a training window) with
the run that produced it, the document id, its domain and gold table (and
that table's Delta version), the step, the mean next-token loss over the
document's tokens in that window, the per-sample loss weight the strategy
gave (1 when none reweights), the domain's mixture weight at that step,
and whether the sample was selected for the gradient step (selection
strategies also record the candidates they passed over, with ``selected =
false`` and no loss).

Writes go through delta-rs (``deltalake``), the library made for appending
to Delta from a process without a JVM: rows are buffered in columns and
written every ``FLUSH_EVERY`` steps as one commit, on a writer thread so the
commit overlaps training, which keeps the cost inside the 3% step-time
budget (the trainer measures it: ``signals_overhead_share`` in the run
summary, every wait for the writer included). Rows not yet written are
part of the checkpoint, and a run that starts (or resumes) at step ``s``
first deletes its own rows after ``s``, so a killed and resumed run ends
with each step's rows exactly once.

Readers (Spark-free, so ``trace`` and ``stats`` stay cheap):
:func:`doc_signals`, :func:`trace_events` (``datamill trace``) and
:func:`domain_aggregates` (``datamill stats``).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from include.config import local_path
from include.lakehouse import TRAINING_SIGNALS as TABLE

FLUSH_EVERY = 50
COLUMNS = ("run_id", "config", "doc_id", "domain", "table", "table_version", "step", "loss",
           "tokens", "weight", "domain_weight", "selected", "ts")


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("run_id", pa.string()), ("config", pa.string()), ("doc_id", pa.string()),
        ("domain", pa.string()), ("table", pa.string()), ("table_version", pa.int64()),
        ("step", pa.int64()), ("loss", pa.float64()), ("tokens", pa.int64()),
        ("weight", pa.float64()), ("domain_weight", pa.float64()), ("selected", pa.bool_()),
        ("ts", pa.timestamp("us", tz="UTC")),
    ])


def table_path(lake: str | Path) -> Path:
    return local_path(lake) / TABLE


def _sql(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class SignalWriter:
    """Buffers signal rows and appends them to the lakehouse in batches.

    ``tables``: domain -> gold table; ``versions``: domain -> its Delta
    version. ``enabled=False`` makes every call a no-op (``output.signals``).
    """

    def __init__(self, lake: str | Path, run_id: str, config: str, tables: dict[str, str],
                 versions: dict[str, int], enabled: bool = True, flush_every: int = FLUSH_EVERY):
        self.path = table_path(lake)
        self.run_id, self.config = run_id, config
        self.tables, self.versions = tables, versions
        self.enabled = enabled
        self.flush_every = flush_every
        self.rows: dict[str, list] = {c: [] for c in COLUMNS}
        self.written = 0
        self.seconds = 0.0
        self._since_flush = 0
        self._pool = None
        self._inflight = None
        if enabled:
            import deltalake  # noqa: F401 - imported once here, not inside the first step

    def start_at(self, step: int) -> None:
        """Drop this run's rows after ``step``, and those of rows still pending
        (restored from a checkpoint, maybe written after it): they are about
        to be redone or rewritten."""
        if not self.enabled or not (self.path / "_delta_log").is_dir():
            return
        if self.rows["step"]:
            step = min(step, min(self.rows["step"]) - 1)
        t = time.perf_counter()
        from deltalake import DeltaTable

        DeltaTable(str(self.path)).delete(
            f"config = {_sql(self.config)} AND run_id = {_sql(self.run_id)} AND step > {int(step)}")
        self.seconds += time.perf_counter() - t

    def add(self, step: int, doc_ids: list[str], domains: list[str], losses: list,
            tokens: list[int], weights: list[float], domain_weights: list[float],
            selected: list[bool]) -> None:
        if not self.enabled:
            return
        t = time.perf_counter()
        n = len(doc_ids)
        ts = datetime.now(timezone.utc)
        r = self.rows
        r["run_id"] += [self.run_id] * n
        r["config"] += [self.config] * n
        r["doc_id"] += doc_ids
        r["domain"] += domains
        r["table"] += [self.tables[d] for d in domains]
        r["table_version"] += [self.versions.get(d) for d in domains]
        r["step"] += [int(step)] * n
        r["loss"] += losses
        r["tokens"] += tokens
        r["weight"] += weights
        r["domain_weight"] += domain_weights
        r["selected"] += selected
        r["ts"] += [ts] * n
        self._since_flush += 1
        self.seconds += time.perf_counter() - t
        if self._since_flush >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows to the writer thread as one Delta commit.

        The commit runs beside training (delta-rs releases the GIL); a
        previous commit still running is waited for first, and that wait,
        like building the Arrow table, counts in ``seconds``.
        """
        if not self.enabled or not self.rows["doc_id"]:
            self._since_flush = 0
            return
        t = time.perf_counter()
        import pyarrow as pa

        self._drain()
        batch = pa.Table.from_pydict(self.rows, schema=_schema())
        self.rows = {c: [] for c in COLUMNS}
        self._since_flush = 0
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signals")
        self._inflight = (self._pool.submit(self._commit, batch), batch.num_rows)
        self.seconds += time.perf_counter() - t

    def _commit(self, batch) -> None:
        from deltalake import write_deltalake

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_deltalake(str(self.path), batch, mode="append", partition_by=["config"])

    def _drain(self) -> None:
        if self._inflight is not None:
            future, n = self._inflight
            self._inflight = None
            future.result()                   # a failed commit fails the run, loudly
            self.written += n

    def close(self) -> None:
        """Write what is buffered and wait until it is committed."""
        t = time.perf_counter()
        self.flush()
        self._drain()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.seconds += time.perf_counter() - t

    # Pending rows travel in the checkpoint (plain lists; timestamps as ISO
    # text); a commit in flight is finished first, so none is in neither.
    def state_dict(self) -> dict[str, Any]:
        t = time.perf_counter()
        self._drain()
        self.seconds += time.perf_counter() - t
        rows = dict(self.rows)
        rows["ts"] = [t.isoformat() for t in rows["ts"]]
        return {"rows": rows, "written": self.written}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rows = {c: list(state["rows"].get(c, [])) for c in COLUMNS}
        rows["ts"] = [datetime.fromisoformat(t) for t in rows["ts"]]
        self.rows = rows
        self.written = int(state.get("written", 0))


# -- readers -----------------------------------------------------------------

def _dataset(lake: str | Path):
    path = table_path(lake)
    if not (path / "_delta_log").is_dir():
        return None
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_dataset()


def doc_signals(lake: str | Path, doc_id: str) -> list[dict[str, Any]]:
    """Every signal row of one document, ordered by run and step."""
    import pyarrow.dataset as ds

    data = _dataset(lake)
    if data is None:
        return []
    rows = data.to_table(filter=ds.field("doc_id") == doc_id).to_pylist()
    return sorted(rows, key=lambda r: (str(r["ts"]), r["run_id"], r["step"]))


def trace_events(lake: str | Path, doc_id: str) -> list[dict[str, Any]]:
    """One ``datamill trace`` event per training run that saw ``doc_id``.

    ``detail`` holds the aggregate (times seen, mean / first / last loss,
    times selected, mean weight) and, under ``signals``, every row.
    """
    by_run: dict[tuple[str, str], list[dict]] = {}
    for r in doc_signals(lake, doc_id):
        by_run.setdefault((r["config"], r["run_id"]), []).append(r)
    events = []
    for (config, run_id), rows in by_run.items():
        losses = [r["loss"] for r in rows if r["loss"] is not None]
        detail = {
            "domain": rows[0]["domain"], "table": rows[0]["table"],
            "table_version": rows[0]["table_version"], "seen": len(rows),
            "selected": sum(1 for r in rows if r["selected"]),
            "steps": [r["step"] for r in rows],
            "mean_loss": round(sum(losses) / len(losses), 4) if losses else None,
            "first_loss": round(losses[0], 4) if losses else None,
            "last_loss": round(losses[-1], 4) if losses else None,
            "mean_weight": round(sum(r["weight"] for r in rows) / len(rows), 4),
            "signals": [{k: r[k] for k in ("step", "loss", "tokens", "weight", "domain_weight",
                                           "selected")} for r in rows],
        }
        events.append({"ts": rows[0]["ts"].replace(tzinfo=None), "pipeline": f"train:{config}",
                       "run_id": run_id, "step": None, "op": "train", "event": "trained",
                       "rule": None, "detail": detail, "summary":
                       f"seen {detail['seen']}x at steps {_steps(detail['steps'])}, selected "
                       f"{detail['selected']}x, loss mean {detail['mean_loss']} "
                       f"(first {detail['first_loss']}, last {detail['last_loss']}), "
                       f"weight mean {detail['mean_weight']}"})
    return events


def _steps(steps: list[int]) -> str:
    return ",".join(map(str, steps)) if len(steps) <= 8 else \
        ",".join(map(str, steps[:4])) + ",...," + ",".join(map(str, steps[-2:]))


def domain_aggregates(lake: str | Path, table: str, *, run_id: str | None = None
                      ) -> list[dict[str, Any]]:
    """Per-domain aggregates of the training signals of documents from ``table``.

    ``domain_aggregates(lake, table, *, run_id=None) -> list[dict]``

    ``lake``: the lakehouse root; ``table``: a gold table (e.g.
    ``"gold/web"``), matched against the ``table`` each training domain
    read; ``run_id``: only that training run (default: every run). One
    entry per (training config, run, domain), newest run first, each with:
    ``config``, ``run_id``, ``domain``, ``table``, ``table_versions``
    (sorted list), ``rows`` (signal rows), ``docs`` (distinct documents
    seen), ``steps`` ([first, last]), ``mean_loss``, ``p50_loss``,
    ``p90_loss`` (over selected rows, token-weighted for the mean),
    ``mean_weight``, ``selected_share`` (of all rows),
    ``never_selected_docs`` (seen only as passed-over candidates).
    An empty list when no run has written signals for ``table``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    data = _dataset(lake)
    if data is None:
        return []
    filt = ds.field("table") == table
    if run_id is not None:
        filt = filt & (ds.field("run_id") == run_id)
    t = data.to_table(filter=filt, columns=["config", "run_id", "domain", "table_version",
                                            "doc_id", "step", "loss", "tokens", "weight",
                                            "selected", "ts"])
    if t.num_rows == 0:
        return []
    keys = ["config", "run_id", "domain"]
    sel = t.column("selected")
    t = t.append_column("sel_loss", pc.if_else(sel, t.column("loss"), pa.scalar(None, pa.float64())))
    t = t.append_column("sel_ltok", pc.if_else(sel, pc.multiply(t.column("loss"),
                                                                pc.cast(t.column("tokens"), pa.float64())),
                                               pa.scalar(None, pa.float64())))
    t = t.append_column("sel_tok", pc.if_else(sel, t.column("tokens"), pa.scalar(None, pa.int64())))
    t = t.append_column("sel_n", pc.cast(sel, pa.int64()))
    g = t.group_by(keys).aggregate([
        ("doc_id", "count"), ("doc_id", "count_distinct"), ("step", "min"), ("step", "max"),
        ("sel_ltok", "sum"), ("sel_tok", "sum"), ("sel_n", "sum"), ("weight", "mean"),
        ("sel_loss", "tdigest", pc.TDigestOptions(q=[0.5, 0.9])), ("ts", "max"),
        ("table_version", "distinct")]).to_pylist()
    per_doc = t.group_by(keys + ["doc_id"]).aggregate([("sel_n", "sum")])
    never = per_doc.filter(pc.equal(per_doc.column("sel_n_sum"), 0)).group_by(keys).aggregate(
        [("doc_id", "count")]).to_pylist()
    never_by = {tuple(r[k] for k in keys): r["doc_id_count"] for r in never}
    out = []
    for r in sorted(g, key=lambda r: (r["ts_max"], r["run_id"], r["domain"]), reverse=True):
        q = r["sel_loss_tdigest"] or [None, None]
        out.append({
            "config": r["config"], "run_id": r["run_id"], "domain": r["domain"], "table": table,
            "table_versions": sorted(int(v) for v in r["table_version_distinct"] if v is not None),
            "rows": r["doc_id_count"], "docs": r["doc_id_count_distinct"],
            "steps": [r["step_min"], r["step_max"]],
            "mean_loss": r["sel_ltok_sum"] / r["sel_tok_sum"] if r["sel_tok_sum"] else None,
            "p50_loss": q[0], "p90_loss": q[1],
            "mean_weight": r["weight_mean"],
            "selected_share": r["sel_n_sum"] / r["doc_id_count"],
            "never_selected_docs": never_by.get(tuple(r[k] for k in keys), 0),
        })
    return out
