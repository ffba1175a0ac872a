"""Ingest a source (file, folder or glob) into bronze rows plus quarantine.

Text formats are read with Spark's ``binaryFile`` source, one file per row,
and parsed by ``spark_jobs.readers`` inside the tasks (``mapInPandas``), so a
bad line becomes a quarantine row with its reason instead of a failed job.
Parquet uses Spark's reader with ``_metadata.row_index`` as the line number.
One file must fit in a task's memory (split multi-GB JSONL files upstream).

What is not read is reported, not hidden: ``ingest`` returns, beside the
rows and the quarantine, the counts the run summary shows (``source_info``):
files read, hidden files and folders skipped (``_``/``.``-prefixed, such as
``_SUCCESS`` or ``.crc`` files), blank lines (also quarantined), and WARC
records that are not responses, by type.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from spark_jobs.readers import RAW_LIMIT, parse_file

ROW_SCHEMA = ("file string, line int, id string, text string, html string, url string, "
              "meta string, id_generated boolean, error string, raw string, skipped string")
ROW_COLUMNS = ("id", "text", "html", "url", "meta")


class SourceError(ValueError):
    pass


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


HIDDEN = (".", "_")


def list_files(path: str) -> tuple[list[str], list[tuple[str, str]], dict[str, int]]:
    """(readable files, [(unreadable file, error)], hidden entries skipped) for a
    local path or glob; the last is ``{"files": n, "dirs": m}`` (hidden folders
    are not walked).

    Remote URIs are passed to Spark as they are.
    """
    hidden = {"files": 0, "dirs": 0}
    if _is_uri(path):
        return [path], [], hidden
    path = path.removeprefix("file://")
    matches = sorted(glob.glob(path, recursive=True)) if glob.has_magic(path) else (
        [path] if os.path.exists(path) else [])
    if not matches:
        raise SourceError(f"source path {path!r} does not exist or matches no file")
    files: list[str] = []
    for m in matches:
        if os.path.isdir(m):
            for root, dirs, names in os.walk(m):
                hidden["dirs"] += sum(1 for d in dirs if d.startswith(HIDDEN))
                hidden["files"] += sum(1 for n in names if n.startswith(HIDDEN))
                dirs[:] = sorted(d for d in dirs if not d.startswith(HIDDEN))
                files.extend(os.path.join(root, n) for n in sorted(names)
                             if not n.startswith(HIDDEN))
        else:
            files.append(m)
    readable, unreadable = check_readable(files)
    return readable, unreadable, hidden


def check_readable(files: list[str], missing: str = "unreadable file"
                   ) -> tuple[list[str], list[tuple[str, str]]]:
    """(readable files, [(file, error)]): each local file is opened for one byte;
    remote URIs are left to Spark."""
    readable, unreadable = [], []
    for f in files:
        if _is_uri(f):
            readable.append(f)
            continue
        f = os.path.abspath(f.removeprefix("file://"))
        try:
            with open(f, "rb") as fh:
                fh.read(1)
            readable.append(f)
        except OSError as exc:
            unreadable.append((f, f"{missing}: {exc.strerror or exc}"))
    return readable, unreadable


def _parse_partition(fmt: str, id_field: str | None, text_field: str, options: dict[str, Any]):
    def run(batches):
        import pandas as pd

        for pdf in batches:
            out = []
            for path, content in zip(pdf["path"], pdf["content"]):
                local = path.removeprefix("file:")
                for rec in parse_file(fmt, bytes(content), local, id_field, text_field, options):
                    rec["file"] = local
                    out.append(rec)
            yield pd.DataFrame(out, columns=[c.split()[0] for c in ROW_SCHEMA.split(", ")])
    return run


def _parquet_rows(spark, files: list[str], id_field: str | None, text_field: str):
    from pyspark.sql import functions as F

    df = spark.read.parquet(*files)
    if text_field not in df.columns:
        raise SourceError(f"parquet source has no text column {text_field!r} "
                          f"(columns: {', '.join(df.columns)})")
    if dict(df.dtypes)[text_field] != "string":
        raise SourceError(f"parquet text column {text_field!r} is {dict(df.dtypes)[text_field]}, "
                          "expected string")
    others = [c for c in df.columns if c not in (text_field, id_field)]
    text = F.col(text_field)
    hashed = F.concat(F.lit("h"), F.substring(F.sha2(text, 256), 1, 24))
    has_id = id_field is not None and id_field in df.columns
    id_col = F.col(id_field).cast("string") if has_id else F.lit(None).cast("string")
    return df.select(
        F.col("_metadata.file_path").alias("file"),
        (F.col("_metadata.row_index") + 1).cast("int").alias("line"),
        F.coalesce(id_col, hashed).alias("id"),
        text.alias("text"),
        F.lit(None).cast("string").alias("html"),
        F.lit(None).cast("string").alias("url"),
        (F.to_json(F.struct(*others)) if others else F.lit("{}")).alias("meta"),
        id_col.isNull().alias("id_generated"),
        F.when(text.isNull(), F.lit(f"text field {text_field!r} is null")).alias("error"),
        F.when(text.isNull(), F.to_json(F.struct(*df.columns))).alias("raw"),
        F.lit(None).cast("string").alias("skipped"),
    )


def ingest(spark, source: dict[str, Any], source_path: str, files: list[str] | None = None,
           with_file: bool = False):
    """Return (rows_df, quarantine_df, source_info).

    rows_df: id, text / html, url, meta — unique ids. quarantine_df: doc_id,
    source_ref, raw, error. Duplicate user ids: the first occurrence in
    (file, line) order is kept, later ones are quarantined naming the first;
    duplicate generated (content-hash) ids get ``-2``, ``-3`` suffixes.
    source_info: ``files`` read, ``hidden_files_skipped``,
    ``hidden_dirs_skipped``, and for parsed formats ``blank_lines`` and
    ``warc_records_skipped`` (type -> count).

    ``files``: read exactly these (an incremental run's manifest chose them;
    one gone by now is quarantined with its path). ``with_file``: rows_df also
    has ``_file``, the file each row came from.

    Parsed formats are parsed once: the parse is checkpointed (in executor
    storage, freed with the frame) and the counts, the rows and the
    quarantine all read that checkpoint; before, each of them parsed every
    file again.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    fmt = source["format"]
    id_field = source.get("id_field")
    text_field = source.get("text_field") or "text"
    if files is None:
        files, unreadable, hidden = list_files(source_path)
    else:
        from spark_jobs.manifest import MISSING

        files, unreadable = check_readable(files, MISSING)
        hidden = {"files": 0, "dirs": 0}
    info: dict[str, Any] = {"files": len(files) + len(unreadable),
                            "hidden_files_skipped": hidden["files"],
                            "hidden_dirs_skipped": hidden["dirs"]}
    if fmt == "parquet":
        parsed = _parquet_rows(spark, files, id_field, text_field) if files else \
            spark.createDataFrame([], ROW_SCHEMA)
    else:
        binary = (spark.read.format("binaryFile").load(files) if files
                  else spark.createDataFrame([], "path string, content binary"))
        parsed = binary.select("path", "content").mapInPandas(
            _parse_partition(fmt, id_field, text_field, source.get("options") or {}), ROW_SCHEMA)
        parsed = parsed.localCheckpoint(eager=True)
        info.update(_parse_counts(parsed, fmt))
        parsed = parsed.where(F.col("skipped").isNull())
    if unreadable:
        bad = spark.createDataFrame(
            [(f, 0, None, None, None, None, None, False, e, f, None) for f, e in unreadable],
            ROW_SCHEMA)
        parsed = parsed.unionByName(bad)

    ok = parsed.where(F.col("error").isNull())
    w = Window.partitionBy("id", "id_generated").orderBy("file", "line")
    ok = ok.withColumn("_rn", F.row_number().over(w)).withColumn(
        "_first", F.first(F.concat_ws(":", "file", "line")).over(w))
    dup_user = (~F.col("id_generated")) & (F.col("_rn") > 1)
    ok = ok.withColumn("id", F.when(F.col("id_generated") & (F.col("_rn") > 1),
                                    F.concat_ws("-", "id", F.col("_rn").cast("string")))
                              .otherwise(F.col("id")))
    ref = F.concat_ws(":", "file", F.col("line").cast("string"))
    rows = ok.where(~dup_user).select(*ROW_COLUMNS, *([F.col("file").alias("_file")]
                                                      if with_file else []))
    dups = ok.where(dup_user).select(
        F.col("id").alias("doc_id"), ref.alias("source_ref"),
        F.substring(F.coalesce("text", "html"), 1, RAW_LIMIT).alias("raw"),
        F.concat(F.lit("duplicate id (first at "), F.col("_first"), F.lit(")")).alias("error"))
    errors = parsed.where(F.col("error").isNotNull()).select(
        F.col("id").alias("doc_id"), ref.alias("source_ref"), "raw", "error")
    return rows, errors.unionByName(dups), info


def _parse_counts(parsed, fmt: str) -> dict[str, Any]:
    """Blank lines and skipped records of a parse, in one small aggregate."""
    from pyspark.sql import functions as F

    from spark_jobs.readers import BLANK

    got = (parsed.where(F.col("skipped").isNotNull() | (F.col("error") == BLANK))
           .groupBy(F.coalesce("skipped", F.lit("blank")).alias("k")).count().collect())
    counts = {r["k"]: r["count"] for r in got}
    out: dict[str, Any] = {"blank_lines": counts.pop("blank", 0)}
    if fmt == "warc":
        out["warc_records_skipped"] = {k.removeprefix("warc_"): v for k, v in sorted(counts.items())}
    return out
