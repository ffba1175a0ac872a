"""Dataset statistics with Spark aggregations; only aggregates and bounded
samples come to the driver, so a table of any size fits.

``frame_stats(df)`` describes rows: counts, lengths in characters, words and
tokens (the project's byte-level BPE when one has been trained, else words),
every categorical column (and the keys of the ``meta`` JSON), every score
column, exact duplicates, near duplicates of a sample against the whole
table (the project's MinHash, ``spark_jobs.minhash``) and n-gram diversity
of a sample. ``run_stats`` adds what the run that made the rows did: the
funnel, removals per step and rule, quarantine, the share dedup steps
removed, the quality-gate results and the human agreement with each rule.
``table_stats`` puts both together for a Delta table version.

The keys of the result are listed in README.md ("Quality and statistics").
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from include.config import PROJECT_ROOT

PERCENTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# Names that are categorical whatever their cardinality.
CATEGORICAL_NAMES = ("language", "lang", "domain", "label", "source", "task", "category",
                     "kind", "license", "split", "topic")
NOT_CATEGORICAL = ("id", "text", "html", "url", "meta", "title")
MAX_CATEGORIES = 100     # a column with more distinct values is not categorical
TOP_VALUES = 30          # values shown per categorical column; the rest are "(other)"
HIST_BINS = 30
SAMPLE_CHARS = 20_000    # per sampled document, for diversity
_WORD = re.compile(r"\w+")


# -- helpers ---------------------------------------------------------------------
def find_tokenizer(explicit: str | None = None) -> Path | None:
    """The project's BPE (``training/tokenizer.py``'s tokenizer.json): the
    given path, else ``$DATAMILL_TOKENIZER``, else the newest one a training
    run wrote under ``runs/``; None when none has been trained."""
    for cand in (explicit, os.environ.get("DATAMILL_TOKENIZER")):
        if cand:
            p = Path(cand).expanduser()
            if not p.is_file():
                raise ValueError(f"tokenizer {str(p)!r} not found")
            return p
    found = glob.glob(str(PROJECT_ROOT / "runs" / "**" / "tokenizer.json"), recursive=True)
    return Path(max(found, key=os.path.getmtime)) if found else None


_TOKENIZERS: dict[str, Any] = {}


def _token_counts(texts, tok_json: str):
    """pandas UDF body: BPE token count per text (tokenizer built once per worker)."""
    import pandas as pd
    from tokenizers import Tokenizer

    key = str(hash(tok_json))
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = Tokenizer.from_str(tok_json)
    tok = _TOKENIZERS[key]
    vals = texts.fillna("").tolist()
    return pd.Series([len(e.ids) for e in tok.encode_batch(vals)], dtype="int64")


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95 % Wilson score interval of a proportion k/n."""
    if n <= 0:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(max(0.0, c - h), 4), round(min(1.0, c + h), 4)]


def _num(v: Any, nd: int = 3) -> Any:
    if v is None:
        return None
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return None
        return round(v, nd)
    return v


def _is_numeric(dtype) -> bool:
    from pyspark.sql import types as T

    return isinstance(dtype, (T.IntegerType, T.LongType, T.ShortType, T.ByteType, T.FloatType,
                              T.DoubleType, T.DecimalType))


def _is_string(dtype) -> bool:
    from pyspark.sql import types as T

    return isinstance(dtype, T.StringType)


def _categorical_candidate(field) -> bool:
    from pyspark.sql import types as T

    return isinstance(field.dataType, (T.StringType, T.BooleanType, T.IntegerType, T.LongType,
                                       T.ShortType, T.ByteType))


# -- the frame ---------------------------------------------------------------------
def frame_stats(df, *, tokenizer: Path | None = None, sample_size: int = 1000,
                near_dup_sample: int = 1000, near_dup_threshold: float = 0.8,
                seed: int = 0) -> dict[str, Any]:
    """Statistics of the rows of ``df`` (columns starting with ``_`` ignored)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    t0 = time.time()
    df = df.select(*[c for c in df.columns if not c.startswith("_")])
    fields = {f.name: f for f in df.schema.fields}
    text = "text" if "text" in fields else None
    out: dict[str, Any] = {"columns": list(fields), "text_column": text, "notes": []}

    # Derived columns: lengths, a text hash, meta keys. Text itself stays out
    # of the cached frame, so caching costs a few numbers per row.
    derived = [F.col(c) for c in fields if c not in ("text", "html", "meta")]
    tok_unit = "words"
    if text:
        t = F.col(text)
        trimmed = F.trim(t)
        derived += [F.length(t).alias("__chars"),
                    F.when(t.isNull(), None).when(trimmed == "", 0)
                     .otherwise(F.size(F.split(trimmed, r"\s+"))).alias("__words"),
                    F.sha2(F.lower(F.regexp_replace(trimmed, r"\s+", " ")), 256).alias("__h"),
                    t.isNull().alias("__null"), (trimmed == "").alias("__blank")]
        if tokenizer is not None:
            from pyspark.sql.functions import pandas_udf

            tok_json = Path(tokenizer).read_text(encoding="utf-8")
            count = pandas_udf(lambda s: _token_counts(s, tok_json), "long")
            derived.append(F.when(t.isNull(), None).otherwise(count(t)).alias("__tokens"))
            tok_unit = f"bpe:{tokenizer}"
    meta_keys: list[str] = []
    if "meta" in fields and _is_string(fields["meta"].dataType):
        m = F.from_json(F.col("meta"), "map<string,string>")
        meta_keys = [r[0] for r in df.select(F.explode(F.map_keys(m)).alias("k"))
                     .groupBy("k").count().orderBy(F.desc("count")).limit(50).collect()
                     if r[0] is not None]
        derived += [m.getItem(k).alias(f"meta.{k}") for k in meta_keys]
    base = df.select(*derived)
    if text and tokenizer is None:
        base = base.withColumn("__tokens", F.col("__words"))
    base = base.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        out.update(_aggregates(base, fields, meta_keys, text, tok_unit))
        out["seconds_aggregates"] = round(time.time() - t0, 2)
        if out["rows"] == 0:
            out["notes"].append("the table is empty: no rows to describe")
            out.update({"duplication": {}, "diversity": None})
            return out
        if text:
            out["duplication"] = _exact_duplicates(base)
            with_text = out["rows"] - out["text_null"]
            ids, texts = _sample(df, text, max(sample_size, near_dup_sample), seed, with_text)
            out["diversity"] = diversity(texts[:sample_size])
            if "id" in fields:
                out["duplication"]["near"] = near_duplicates(df, text, ids[:near_dup_sample],
                                                             near_dup_threshold)
            else:
                out["notes"].append("no id column: near duplicates not estimated")
        else:
            out["notes"].append("no text column: lengths, duplicates and diversity skipped")
            out.update({"duplication": {}, "diversity": None})
    finally:
        base.unpersist()
    out["seconds_frame"] = round(time.time() - t0, 2)
    return out


def _aggregates(base, fields, meta_keys, text, tok_unit) -> dict[str, Any]:
    from pyspark.sql import functions as F

    cat_cands = [c for c, f in fields.items()
                 if c not in NOT_CATEGORICAL and _categorical_candidate(f)
                 and not (_is_numeric(f.dataType) and "score" in c.lower())]
    cat_cands += [f"meta.{k}" for k in meta_keys]
    scores = [c for c, f in fields.items() if _is_numeric(f.dataType) and "score" in c.lower()]
    units = ("chars", "words", "tokens") if text else ()

    aggs = [F.count(F.lit(1)).alias("rows")]
    for u in units:
        c = F.col(f"__{u}")
        aggs += [F.mean(c).alias(f"{u}_mean"), F.stddev_samp(c).alias(f"{u}_std"),
                 F.min(c).alias(f"{u}_min"), F.max(c).alias(f"{u}_max"),
                 F.sum(c).alias(f"{u}_sum"),
                 F.percentile_approx(c, list(PERCENTILES), 10000).alias(f"{u}_pct")]
    if text:
        aggs += [F.sum(F.col("__null").cast("long")).alias("text_null"),
                 F.sum(F.col("__blank").cast("long")).alias("text_blank")]
    for i, c in enumerate(cat_cands):
        aggs.append(F.approx_count_distinct(F.col(f"`{c}`")).alias(f"cat{i}"))
    for i, c in enumerate(scores):
        s = F.col(f"`{c}`").cast("double")
        aggs += [F.mean(s).alias(f"sc{i}_mean"), F.stddev_samp(s).alias(f"sc{i}_std"),
                 F.min(s).alias(f"sc{i}_min"), F.max(s).alias(f"sc{i}_max"),
                 F.count(s).alias(f"sc{i}_n"),
                 F.percentile_approx(s, [0.05, 0.5, 0.95], 10000).alias(f"sc{i}_pct")]
    a = base.agg(*aggs).collect()[0].asDict()
    rows = int(a["rows"])
    res: dict[str, Any] = {"rows": rows, "length": {}, "by": {}, "scores": {},
                           "histograms": {}}
    if text:
        res["text_null"] = int(a["text_null"] or 0)
        res["text_blank"] = int(a["text_blank"] or 0)
    for u in units:
        pct = a[f"{u}_pct"] or [None] * len(PERCENTILES)
        entry = {"mean": _num(a[f"{u}_mean"], 2), "std": _num(a[f"{u}_std"], 2),
                 "min": a[f"{u}_min"], "max": a[f"{u}_max"], "total": a[f"{u}_sum"]}
        entry.update({f"p{int(q * 100)}": v for q, v in zip(PERCENTILES, pct)})
        if u == "tokens":
            entry["unit"] = tok_unit
        res["length"][u] = entry
    if rows == 0:
        return res

    # Histograms: log-spaced for lengths (they span orders of magnitude),
    # linear for scores; one job computes all of them.
    specs = []
    for u in units:
        lo, hi = a[f"{u}_min"], a[f"{u}_max"]
        if lo is not None:
            specs.append((f"length.{u}", f"__{u}", True, float(lo), float(hi)))
    for i, c in enumerate(scores):
        lo, hi = a[f"sc{i}_min"], a[f"sc{i}_max"]
        pct = a[f"sc{i}_pct"] or [None] * 3
        res["scores"][c] = {"n": int(a[f"sc{i}_n"]), "nulls": rows - int(a[f"sc{i}_n"]),
                            "mean": _num(a[f"sc{i}_mean"]), "std": _num(a[f"sc{i}_std"]),
                            "min": _num(lo), "p5": _num(pct[0]), "p50": _num(pct[1]),
                            "p95": _num(pct[2]), "max": _num(hi)}
        if lo is not None:
            specs.append((f"score.{c}", f"`{c}`", False, float(lo), float(hi)))
    if specs:
        res["histograms"] = _histograms(base, specs)
    for spec_name, hist in list(res["histograms"].items()):
        if spec_name.startswith("score."):
            res["scores"][spec_name[6:]]["histogram"] = hist

    cats = [c for i, c in enumerate(cat_cands)
            if (a[f"cat{i}"] or 0) <= MAX_CATEGORIES
            and (c.split(".")[-1].lower() in CATEGORICAL_NAMES or (a[f"cat{i}"] or 0) < rows
                 or rows <= 1)]
    if cats:
        res["by"], res["by_other"] = _value_counts(base, cats)
    return res


def _edges(lo: float, hi: float, log: bool) -> list[float]:
    if hi <= lo:
        return [lo, lo + 1.0]
    if log:
        a, b = math.log10(max(lo, 0) + 1), math.log10(hi + 1)
        return [round(10 ** (a + (b - a) * i / HIST_BINS) - 1, 4) for i in range(HIST_BINS + 1)]
    return [round(lo + (hi - lo) * i / HIST_BINS, 6) for i in range(HIST_BINS + 1)]


def _histograms(base, specs) -> dict[str, dict[str, Any]]:
    """Counts per bin for every (name, column, log?, lo, hi): one shuffle,
    at most HIST_BINS rows per histogram to the driver."""
    from pyspark.sql import functions as F

    bins = []
    for j, (_, col, log, lo, hi) in enumerate(specs):
        x = F.col(col).cast("double")
        if hi <= lo:
            b = F.lit(0)
        elif log:
            a, z = math.log10(max(lo, 0) + 1), math.log10(hi + 1)
            b = F.floor(HIST_BINS * (F.log10(F.greatest(x, F.lit(0.0)) + 1) - a) / (z - a))
        else:
            b = F.floor(HIST_BINS * (x - lo) / (hi - lo))
        b = F.least(F.greatest(b, F.lit(0)), F.lit(HIST_BINS - 1)).cast("int")
        bins.append(F.when(x.isNotNull(), F.struct(F.lit(j).alias("h"), b.alias("b"))))
    counts = (base.select(F.explode(F.array(*bins)).alias("p")).where(F.col("p").isNotNull())
              .groupBy("p.h", "p.b").count().collect())
    out = {}
    for j, (name, _, log, lo, hi) in enumerate(specs):
        edges = _edges(lo, hi, log)
        hist = [0] * (len(edges) - 1)
        for r in counts:
            if r["h"] == j:
                hist[min(r["b"], len(hist) - 1)] += int(r["count"])
        out[name] = {"edges": edges, "counts": hist}
    return out


def _value_counts(base, cats) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Top values of every categorical column in one shuffle; nulls as "(null)"."""
    from pyspark.sql import functions as F

    pairs = F.explode(F.array(*[
        F.struct(F.lit(c).alias("c"),
                 F.coalesce(F.col(f"`{c}`").cast("string"), F.lit("(null)")).alias("v"))
        for c in cats])).alias("p")
    # Categorical columns have at most ~MAX_CATEGORIES values, so all counts fit.
    counts = base.select(pairs).groupBy("p.c", "p.v").count().collect()
    per: dict[str, list[tuple[str, int]]] = {c: [] for c in cats}
    for r in counts:
        per[r["c"]].append((r["v"], int(r["count"])))
    by: dict[str, dict[str, int]] = {}
    rest: dict[str, int] = {}
    for c, vals in per.items():
        vals.sort(key=lambda kv: (-kv[1], kv[0]))
        by[c] = dict(vals[:TOP_VALUES])
        if len(vals) > TOP_VALUES:
            by[c]["(other)"] = sum(v for _, v in vals[TOP_VALUES:])
            rest[c] = len(vals) - TOP_VALUES
    return by, rest


def _exact_duplicates(base) -> dict[str, Any]:
    from pyspark.sql import functions as F

    g = base.where(F.col("__h").isNotNull()).groupBy("__h").count()
    a = g.agg(F.count(F.lit(1)).alias("distinct"), F.sum("count").alias("n"),
              F.sum(F.when(F.col("count") > 1, F.col("count"))).alias("in_groups")).collect()[0]
    n, distinct = int(a["n"] or 0), int(a["distinct"] or 0)
    return {"exact": {"duplicates": n - distinct, "share": _num((n - distinct) / n, 4) if n else 0.0,
                      "docs_in_duplicate_groups": int(a["in_groups"] or 0),
                      "compared": "sha256 of lower-cased text, whitespace collapsed"}}


def _sample(df, text: str, n: int, seed: int, total: int) -> tuple[list, list[str]]:
    """(ids, texts) of ``n`` rows with text, those with the smallest hash of
    the id (the same on every run, and any prefix is itself such a sample),
    each text cut to SAMPLE_CHARS: the only text that comes to the driver."""
    from pyspark.sql import functions as F

    key = "id" if "id" in df.columns else text
    frac = min(1.0, (n + 5 * math.sqrt(n) + 10) / max(total, 1))
    h = (F.abs(F.xxhash64(F.col(key), F.lit(seed))) % 1_000_000) / 1_000_000.0
    rows = (df.where(F.col(text).isNotNull() & (h < frac))
              .select(F.col(key).alias("k"), F.substring(F.col(text), 1, SAMPLE_CHARS).alias("t"),
                      h.alias("h"))
              .orderBy("h", "k").limit(n).collect())
    return [r["k"] for r in rows], [r["t"] for r in rows]


def diversity(texts: list[str]) -> dict[str, Any]:
    """Distinct-n (distinct n-grams / n-gram occurrences, n = 1..4) and the
    share of word 5-gram occurrences that occur once, over a sample."""
    words = [_WORD.findall(t.lower()) for t in texts]
    out: dict[str, Any] = {"sample": len(texts)}
    for n in (1, 2, 3, 4):
        grams = Counter(g for ws in words for g in zip(*(ws[i:] for i in range(n))))
        total = sum(grams.values())
        out[f"distinct_{n}"] = _num(len(grams) / total, 4) if total else None
    fives = Counter(g for ws in words for g in zip(*(ws[i:] for i in range(5))))
    total = sum(fives.values())
    out["unique_5gram_share"] = _num(sum(1 for c in fives.values() if c == 1) / total, 4) \
        if total else None
    out["words"] = sum(len(ws) for ws in words)
    return out


def near_duplicates(df, text: str, sample_ids: list[str], threshold: float) -> dict[str, Any]:
    """Share of documents with a near duplicate (MinHash LSH candidate, then
    exact Jaccard of word 5-gram sets >= threshold) anywhere in the table,
    estimated on the sampled documents, each checked against all rows.

    An unbiased estimate of that share, with a 95 % Wilson interval; a sample
    compared only with itself would miss nearly every pair in a large table.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from spark_jobs.minhash import MinhashConfig, pair_jaccard, signatures

    cfg = MinhashConfig(threshold=threshold)
    bands, rows_per_band = cfg.banding()
    width = rows_per_band * 4
    docs = df.where(F.col(text).isNotNull()).select("id", F.col(text).alias("text"))
    if not sample_ids:
        return {"sample": 0, "with_near_duplicate": 0, "share": None, "threshold": threshold}
    sigs = signatures(docs, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        keyed = sigs.where(F.col("sig").isNotNull()).select("id", F.explode(F.array(*[
            F.struct(F.lit(i).alias("band"), F.substring("sig", i * width + 1, width).alias("key"))
            for i in range(bands)])).alias("bk")).select("id", "bk.band", "bk.key")
        mine = keyed.where(F.col("id").isin(sample_ids))
        pairs = (F.broadcast(mine.select(F.col("id").alias("a"), "band", "key"))
                 .join(keyed.select(F.col("id").alias("b"), "band", "key"), ["band", "key"])
                 .where(F.col("a") != F.col("b")).select("a", "b").distinct())
        found = pair_jaccard(pairs, sigs, threshold).select("a").distinct().count()
    finally:
        sigs.unpersist()
    k = len(sample_ids)
    return {"sample": k, "with_near_duplicate": int(found), "share": _num(found / k, 4),
            "ci95": wilson(int(found), k), "threshold": threshold,
            "method": f"MinHash LSH ({bands}x{rows_per_band}) against every row, exact Jaccard "
                      "of word 5-grams"}


# -- the run ------------------------------------------------------------------------
def run_stats(lh, pipeline: str, run_id: str, upto_step: int | None = None) -> dict[str, Any]:
    """What the run did: funnel, removals per step and rule, quarantine,
    dedup removal share, gate results and human agreement."""
    from pyspark.sql import functions as F

    from include.lakehouse import LEDGER, LEDGER_SCHEMA, QUARANTINE, QUARANTINE_SCHEMA
    from include.quality.gate import QUALITY, QUALITY_SCHEMA
    from include.quality.labels import agreement
    from include.registry import UnknownOpError, get_op

    steps = [s for s in lh.step_rows(pipeline, run_id)
             if upto_step is None or s["step_index"] < upto_step]
    funnel = [{"step": s["step_index"], "op": s["op"], "rows_in": s["rows_in"], "kept": s["kept"],
               "removed": s["removed"], "quarantined": s["quarantined"],
               **({"added": s["added"]} if s["added"] else {}),
               **({"changed": s["changed"]} if s["changed"] else {})} for s in steps]
    this_run = (F.col("pipeline") == pipeline) & (F.col("run_id") == run_id)
    if upto_step is not None:
        this_run = this_run & (F.col("step_index") < upto_step)
    removed = (lh.read_system(LEDGER, LEDGER_SCHEMA).where(this_run & (F.col("action") == "removed"))
               .groupBy("step_index", "op", "rule").count().orderBy("step_index", F.desc("count"))
               .collect())
    quarantined = (lh.read_system(QUARANTINE, QUARANTINE_SCHEMA).where(this_run)
                   .groupBy("step_index", "op").count().orderBy("step_index").collect())
    ops = Counter(s["op"] for s in funnel if s["step"] > 0)
    label = {s["step"]: (s["op"] if ops[s["op"]] <= 1 else f"{s['op']}@{s['step']}") for s in funnel}
    by_reason = {f"{label.get(r['step_index'], r['op'])}/{r['rule']}": int(r["count"]) for r in removed}

    def category(op: str) -> str | None:
        try:
            return get_op(op).meta.category
        except UnknownOpError:
            return None

    dedup = [s for s in funnel if s["step"] > 0 and category(s["op"]) == "dedup"]
    dup_steps = {label[s["step"]]: _num(s["removed"] / s["rows_in"], 4) if s["rows_in"] else None
                 for s in dedup}
    reached = dedup[0]["rows_in"] if dedup else 0
    source = next((s for s in funnel if s["step"] == 0), None)
    last = funnel[-1] if funnel else None
    gate = [r.asDict() for r in lh.read_system(QUALITY, QUALITY_SCHEMA).where(this_run)
            .orderBy("step_index", "expectation").collect()]
    for g in gate:
        g["ts"] = str(g["ts"])
    return {
        "pipeline": pipeline, "run_id": run_id,
        "funnel": [s for s in funnel if s["step"] > 0],
        "source": ({"rows": source["rows_in"], "quarantined": source["quarantined"]}
                   if source else None),
        "retained": ({"input": source["rows_in"], "output": last["kept"],
                      "share": _num(last["kept"] / source["rows_in"], 4) if source["rows_in"] else None}
                     if source and last else None),
        "removed_by_reason": by_reason,
        "removed_by_step_rule": [{"step": r["step_index"], "op": r["op"], "rule": r["rule"],
                                  "count": int(r["count"])} for r in removed],
        "quarantined_by_step": {label.get(r["step_index"], r["op"]): int(r["count"])
                                for r in quarantined},
        "dedup": {"removed_share": _num(sum(s["removed"] for s in dedup) / reached, 4)
                  if reached else None, "steps": dup_steps},
        "quality_gate": gate,
        "agreement": agreement(lh.root, pipeline, run_id),
    }


def table_stats(lh, table: str, version: int | None = None, **kw) -> dict[str, Any]:
    """``datamill stats``: the rows of ``table`` (a version, default the
    newest) and the run that published that version."""
    if not lh.exists(table):
        raise LookupError(f"no Delta table {table!r} in {lh.root}")
    newest = lh.version(table)
    if version is None:
        version = newest
    elif not 0 <= int(version) <= newest:
        raise LookupError(f"table {table!r} has versions 0 to {newest}, not {version}")
    t0 = time.time()
    df = lh.read(table, int(version))
    out: dict[str, Any] = {"table": table, "version": int(version)}
    out.update(frame_stats(df, **kw))
    made_by = publishing_run(lh, table, int(version))
    if made_by:
        out.update(run_stats(lh, made_by["pipeline"], made_by["run_id"]))
    else:
        out.update({"pipeline": None, "run_id": None, "funnel": [], "removed_by_reason": {},
                    "dedup": {"removed_share": None, "steps": {}}})
        out["notes"].append("no datamill run recorded for this version: funnel and removals "
                            "unknown")
    out["duplication_rate"] = duplication_rate(out)
    out["training_signals"] = _training_signals(lh, table)
    out["seconds"] = round(time.time() - t0, 2)
    return out


def _training_signals(lh, table: str) -> list[dict[str, Any]]:
    """What training runs measured on this table's documents, per run and domain
    (``training.signals.domain_aggregates``; empty when no run trained on it)."""
    from training.signals import domain_aggregates

    try:
        return domain_aggregates(lh.root, table)
    except ValueError:      # a lakehouse that is not local: signals are local files
        return []


def publishing_run(lh, table: str, version: int) -> dict[str, Any] | None:
    """``{"pipeline", "run_id"}`` of the run that published ``version``: from
    the commit itself, else from ``_system/runs`` (commits made before
    publishes carried their run)."""
    from pyspark.sql import functions as F

    from include.lakehouse import RUNS
    from include.quality.runs import producer

    found = producer(lh.root, table, version)
    if found:
        return found
    if not lh.exists(RUNS):
        return None
    rows = (lh.read(RUNS).where((F.col("output_table") == table)
                                & (F.col("output_version") == version)
                                & (F.col("status") == "success"))
            .orderBy(F.desc("ts")).limit(1).collect())
    return {"pipeline": rows[0]["pipeline"], "run_id": rows[0]["run_id"]} if rows else None


def duplication_rate(stats: dict[str, Any]) -> dict[str, Any]:
    """The duplication figures in one place (see README for each key)."""
    dup = stats.get("duplication") or {}
    exact, near = dup.get("exact") or {}, dup.get("near") or {}
    return {"removed_by_dedup": (stats.get("dedup") or {}).get("removed_share"),
            "removed_by_step": (stats.get("dedup") or {}).get("steps", {}),
            "exact_in_table": exact.get("share"),
            "near_in_table": near.get("share"),
            "near_in_table_ci95": near.get("ci95"),
            "near_sample": near.get("sample")}


def dumps(stats: dict[str, Any]) -> str:
    return json.dumps(stats, default=str, sort_keys=False)
