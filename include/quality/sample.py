"""Samples of automatic decisions for people to judge (``datamill sample``).

Kept rows come from the table version; removed rows (``removed=True``) from
the ledger of the run that published that version, each with its step, rule
and evidence (the ledger's detail: measured value, survivor and Jaccard...)
and its text as it entered the removing step's stage (the run's previous
materialised table, or its bronze rows), plus the survivor's text for
duplicates. Strata get equal shares of ``n`` (a small stratum's unused share
goes to the others), so rare languages or rules are seen at all; rows within
a stratum are the ones with the smallest hash of (id, seed), the same on
every call. Only the sampled rows reach the driver.
"""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from include.quality.runs import run_dir, safe_name, table_report_name

TEXT_CHARS = 20_000   # text kept per sampled item
MAX_STRATA = 200


class SampleError(ValueError):
    pass


def quotas(sizes: dict[Any, int], n: int) -> dict[Any, int]:
    """Equal allocation of ``n`` over strata, capped by their sizes."""
    left, out = n, {k: 0 for k in sizes}
    open_ = {k for k, v in sizes.items() if v > 0}
    while left > 0 and open_:
        share = max(1, left // len(open_))
        for k in sorted(open_, key=lambda k: (sizes[k], str(k))):
            take = min(share, sizes[k] - out[k], left)
            out[k] += take
            left -= take
            if out[k] >= sizes[k]:
                open_.discard(k)
            if left == 0:
                break
    return out


def _pick(df, key_cols: list[str], quota: dict[tuple, int], id_col: str, seed: int):
    """The ``quota[stratum]`` rows with the smallest hash in each stratum."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    h = F.xxhash64(F.col(id_col).cast("string"), F.lit(seed))
    q = df.sparkSession.createDataFrame(
        [(*k, v, c) for k, (v, c) in quota.items()],
        ", ".join([f"k{i} string" for i in range(len(key_cols))] + ["q long", "c long"]))
    keyed = df.select("*", *[F.coalesce(F.col(f"`{c}`").cast("string"), F.lit("(null)"))
                             .alias(f"k{i}") for i, c in enumerate(key_cols)])
    joined = keyed.join(F.broadcast(q), [f"k{i}" for i in range(len(key_cols))])
    # Pre-filter by hash so the window sorts a few rows per stratum, not all:
    # a stratum's expected survivors are q + 5 sqrt(q) + 10, short with
    # negligible probability (then the full stratum is used).
    u = (F.abs(h) % 1_000_000) / 1_000_000.0
    bound = F.least(F.lit(1.0), (F.col("q") + 5 * F.sqrt("q") + 10) / F.col("c"))
    pre = joined.where(u < bound)
    w = Window.partitionBy(*[f"k{i}" for i in range(len(key_cols))]).orderBy(h, F.col(id_col))
    picked = pre.withColumn("__r", F.row_number().over(w)).where(F.col("__r") <= F.col("q"))
    rows = picked.collect()
    got: dict[tuple, int] = {}
    for r in rows:
        k = tuple(r[f"k{i}"] for i in range(len(key_cols)))
        got[k] = got.get(k, 0) + 1
    short = [k for k, (v, _) in quota.items() if got.get(k, 0) < v]
    if short:
        w2 = Window.partitionBy(*[f"k{i}" for i in range(len(key_cols))]).orderBy(h, F.col(id_col))
        cond = None
        for k in short:
            c = None
            for i, v in enumerate(k):
                e = F.col(f"k{i}") == F.lit(v)
                c = e if c is None else c & e
            cond = c if cond is None else cond | c
        again = (joined.where(cond).withColumn("__r", F.row_number().over(w2))
                 .where(F.col("__r") <= F.col("q")).collect())
        rows = [r for r in rows if tuple(r[f"k{i}"] for i in range(len(key_cols))) not in short]
        rows += again
    return rows


def _column(df, name: str):
    from pyspark.sql import functions as F

    if name in df.columns:
        return df
    if name.startswith("meta.") and "meta" in df.columns:
        return df.withColumn(name, F.from_json(F.col("meta"), "map<string,string>")
                             .getItem(name[5:]))
    raise SampleError(f"no column {name!r} to stratify by (columns: "
                      f"{', '.join(c for c in df.columns if not c.startswith('_'))}; "
                      "meta keys as meta.KEY)")


def _strata(df, cols: list[str]) -> dict[tuple, int]:
    from pyspark.sql import functions as F

    keys = [F.coalesce(F.col(f"`{c}`").cast("string"), F.lit("(null)")).alias(f"k{i}")
            for i, c in enumerate(cols)]
    counts = df.select(*keys).groupBy(*[f"k{i}" for i in range(len(cols))]).count() \
        .limit(MAX_STRATA + 1).collect()
    if len(counts) > MAX_STRATA:
        raise SampleError(f"{', '.join(cols)} has more than {MAX_STRATA} distinct values; "
                          "stratify by a categorical column")
    return {tuple(r[f"k{i}"] for i in range(len(cols))): int(r["count"]) for r in counts}


def _cut(text: Any) -> tuple[str | None, int | None]:
    if text is None:
        return None, None
    return str(text)[:TEXT_CHARS], len(str(text))


def _input_table(lh, pipeline: str, run_id: str, step: int) -> str:
    """The table step ``step`` read: the run's newest materialised stage before
    it (silver tables are named for the last step of their stage), else bronze."""
    silver = lh.root / "silver" / pipeline
    best = None
    if silver.is_dir():
        for p in silver.iterdir():
            head = p.name.split("_", 1)[0]
            if head.isdigit() and int(head) < step and (p / "_delta_log").is_dir():
                if best is None or int(head) > best[0]:
                    best = (int(head), f"silver/{pipeline}/{p.name}")
    return best[1] if best else lh.bronze(pipeline)


def _texts(lh, table: str, run_id: str, ids: list[str]) -> dict[str, str]:
    from pyspark.sql import functions as F

    if not ids or not lh.exists(table):
        return {}
    df = lh.read_run(table, run_id)
    col = "text" if "text" in df.columns else ("html" if "html" in df.columns else None)
    if col is None:
        return {}
    return {r["id"]: r["t"] for r in df.where(F.col("id").isin(ids))
            .select("id", F.col(col).alias("t")).collect()}


def draw(lh, table: str, n: int, *, version: int | None = None, stratify: str | None = None,
         removed: bool = False, seed: int = 0) -> dict[str, Any]:
    """The sample as ``{"table", "version", "pipeline", "run_id", "items": [...]}``."""
    from pyspark.sql import functions as F

    from include.lakehouse import LEDGER, LEDGER_SCHEMA
    from include.quality.stats import publishing_run

    if n < 1:
        raise SampleError("--n must be at least 1")
    if not lh.exists(table):
        raise SampleError(f"no Delta table {table!r} in {lh.root}")
    newest = lh.version(table)
    version = newest if version is None else int(version)
    if not 0 <= version <= newest:
        raise SampleError(f"table {table!r} has versions 0 to {newest}, not {version}")
    made_by = publishing_run(lh, table, version) or {}
    df = lh.read(table, version)
    df = df.drop(*[c for c in df.columns if c.startswith("_")])
    if "id" not in df.columns:
        raise SampleError(f"table {table!r} has no id column")
    if stratify:
        df, cols = _column(df, stratify), [stratify]
    else:
        df, cols = df.withColumn("__all", F.lit("all")), ["__all"]
    sizes = _strata(df, cols)
    quota = {k: (v, sizes[k]) for k, v in quotas(sizes, n).items() if v}
    items: list[dict[str, Any]] = []
    kept_rows = _pick(df, cols, quota, "id", seed) if quota else []
    for r in sorted(kept_rows, key=lambda r: (str(r["k0"]), r["__r"])):
        text, chars = _cut(r["text"] if "text" in r.asDict() else None)
        items.append({"decision": "kept", "doc_id": r["id"], "step_index": None, "op": None,
                      "rule": None, "stratum": r["k0"] if stratify else None,
                      "text": text, "text_chars": chars, "detail": None})
    if removed:
        if not made_by:
            raise SampleError(f"no datamill run recorded for {table!r} v{version}: its removed "
                              "rows are unknown")
        pipeline, run_id = made_by["pipeline"], made_by["run_id"]
        ledger = lh.read_system(LEDGER, LEDGER_SCHEMA).where(
            (F.col("pipeline") == pipeline) & (F.col("run_id") == run_id)
            & (F.col("action") == "removed"))
        rsizes = _strata(ledger, ["step_index", "op", "rule"])
        rquota = {k: (v, rsizes[k]) for k, v in quotas(rsizes, n).items() if v}
        picked = _pick(ledger, ["step_index", "op", "rule"], rquota, "doc_id", seed) if rquota else []
        by_step: dict[int, list] = {}
        for r in picked:
            by_step.setdefault(int(r["step_index"]), []).append(r)
        for step, rows in sorted(by_step.items()):
            details = {r["doc_id"]: _json(r["detail"]) for r in rows}
            survivors = [d.get("survivor") for d in details.values()
                         if isinstance(d, dict) and isinstance(d.get("survivor"), str)]
            src = _input_table(lh, pipeline, run_id, step)
            texts = _texts(lh, src, run_id, [r["doc_id"] for r in rows] + survivors)
            for r in sorted(rows, key=lambda r: (r["rule"], r["__r"])):
                d = details[r["doc_id"]]
                text, chars = _cut(texts.get(r["doc_id"]))
                item = {"decision": "removed", "doc_id": r["doc_id"], "step_index": step,
                        "op": r["op"], "rule": r["rule"], "stratum": f"{step}:{r['op']}/{r['rule']}",
                        "text": text, "text_chars": chars, "detail": d, "text_from": src}
                if isinstance(d, dict) and isinstance(d.get("survivor"), str):
                    item["survivor_id"] = d["survivor"]
                    item["survivor_text"] = _cut(texts.get(d["survivor"]))[0]
                items.append(item)
    for i, it in enumerate(items):
        it.update({"sample_id": i, "table": table, "version": version,
                   "pipeline": made_by.get("pipeline"), "run_id": made_by.get("run_id")})
    return {"table": table, "version": version, "pipeline": made_by.get("pipeline"),
            "run_id": made_by.get("run_id"), "stratify": stratify, "removed": removed,
            "seed": seed, "n": n, "items": items,
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}


def _json(s: str | None) -> Any:
    try:
        return json.loads(s) if s else None
    except ValueError:
        return s


def default_dir(lh, sample: dict[str, Any]) -> Path:
    if sample["pipeline"]:
        return run_dir(lh.root, sample["pipeline"], sample["run_id"]) / "samples"
    return lh.root / "_reports" / "tables" / safe_name(sample["table"]) / "samples"


def sample_name(sample: dict[str, Any]) -> str:
    parts = ["sample", table_report_name(sample["table"], sample["version"])]
    if sample["stratify"]:
        parts.append(f"by_{safe_name(sample['stratify'])}")
    if sample["removed"]:
        parts.append("removed")
    return "_".join(parts) + f"_n{sample['n']}"


def write(sample: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """``<name>.jsonl`` (one item a line, after a header line) and ``<name>.html``."""
    folder.mkdir(parents=True, exist_ok=True)
    name = sample_name(sample)
    jsonl, page = folder / f"{name}.jsonl", folder / f"{name}.html"
    with jsonl.open("w", encoding="utf-8") as fh:
        for it in sample["items"]:
            fh.write(json.dumps(it, ensure_ascii=False, default=str) + "\n")
    page.write_text(render(sample), encoding="utf-8")
    return jsonl, page


def load(path: Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def render(sample: dict[str, Any]) -> str:
    e = lambda v: html.escape("" if v is None else str(v), quote=True)  # noqa: E731
    kept = sum(1 for i in sample["items"] if i["decision"] == "kept")
    rows = []
    for it in sample["items"]:
        head = (f"<b>{e(it['doc_id'])}</b> · <span class={it['decision']}>{e(it['decision'])}</span>"
                + (f" by step {e(it['step_index'])} {e(it['op'])}, rule <b>{e(it['rule'])}</b>"
                   if it["decision"] == "removed" else "")
                + (f" · stratum {e(it['stratum'])}" if it.get("stratum") else ""))
        ev = (f"<div class=ev>evidence: <code>{e(json.dumps(it['detail'], ensure_ascii=False))}</code></div>"
              if it.get("detail") else "")
        more = (f" <span class=muted>(first {TEXT_CHARS:,} of {it['text_chars']:,} chars)</span>"
                if it.get("text_chars") and it["text_chars"] > TEXT_CHARS else "")
        surv = (f"<details><summary>survivor {e(it['survivor_id'])}</summary><pre>"
                f"{e(it.get('survivor_text'))}</pre></details>" if it.get("survivor_id") else "")
        rows.append(f"<div class=item><div>#{it['sample_id']} {head}{more}</div>{ev}"
                    f"<pre>{e(it['text'])}</pre>{surv}</div>")
    made = (f"pipeline {e(sample['pipeline'])}, run {e(sample['run_id'])}" if sample["pipeline"]
            else "no recorded run")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>sample of "
            f"{e(sample['table'])}</title><style>body{{font:14px/1.45 system-ui,sans-serif;margin:18px;"
            "max-width:1100px}}pre{{white-space:pre-wrap;background:#f7f9fb;border:1px solid #d9dee4;"
            "padding:8px;max-height:320px;overflow:auto}}.item{{border-bottom:1px solid #d9dee4;"
            "padding:8px 0}}.removed{{color:#c62828}}.kept{{color:#1a7f37}}.muted,.ev{{color:#5b6877}}"
            "</style></head><body>"
            f"<h1>Sample of {e(sample['table'])} v{e(sample['version'])}</h1>"
            f"<div class=muted>{made}; {kept} kept and {len(sample['items']) - kept} removed "
            f"rows; stratified by {e(sample['stratify'] or 'nothing')}; seed {e(sample['seed'])}; "
            f"drawn {e(sample['created_at'])}. Mark them right or wrong on the Inspect page of "
            "the datamill Airflow plugin.</div>" + "".join(rows) + "</body></html>")
