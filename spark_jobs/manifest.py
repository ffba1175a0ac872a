"""The file manifest of an incremental source: which files a run must read.

``_system/files`` keeps one row per file a run dealt with: ``path``, ``size``,
``mtime`` (ms), ``sha256`` of the bytes and a ``status``:

- ``new``: never read by a successful run of the pipeline; read now;
- ``changed``: read before, and its bytes differ now; read again, and the
  documents it gave before are replaced (``spark_jobs.incremental``);
- ``unchanged``: size or mtime moved but the bytes are the same (a ``touch``,
  a copy that kept the content); not read again, recorded so the next run
  need not hash it again;
- ``missing``: listed, then gone before it could be read; quarantined with
  its path, and not counted as read, so it is read when it comes back.

A file counts as read once the run that recorded it has succeeded (its
``_system/runs`` row says ``success``): the rows of a failed or still running
run are ignored, so a run that fails reads the same files again next time.

Files whose path, size and mtime equal the last successful record are not
opened at all; every other file is hashed before the read decides anything
(a sha256 of the whole file: local files on the driver, streamed; files on an
object store in Spark, next to the data).
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from include.config import is_uri
from include.lakehouse import FILES, FILES_SCHEMA, RUNS, Lakehouse, now

READ = ("new", "changed")          # statuses whose run read the file's rows
KNOWN = ("new", "changed", "unchanged")
MISSING = "file deleted after it was listed for reading"


@dataclass
class FileState:
    path: str
    size: int
    mtime: int            # milliseconds since the epoch, as Spark's binaryFile has it
    sha256: str | None = None


@dataclass
class Plan:
    """What an incremental ingest reads, and what it knows about each file."""

    new: list[FileState] = field(default_factory=list)
    changed: list[FileState] = field(default_factory=list)
    unchanged: list[FileState] = field(default_factory=list)   # touched, same bytes
    missing: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    skipped: int = 0                                              # already read, same stat
    hidden: dict[str, int] = field(default_factory=dict)
    # path -> the run whose read of it gave the documents now published
    last_read_run: dict[str, str] = field(default_factory=dict)

    @property
    def to_read(self) -> list[FileState]:
        return self.new + self.changed

    def counts(self) -> dict[str, int]:
        return {"files_new": len(self.new), "files_changed": len(self.changed),
                "files_unchanged": len(self.unchanged) + self.skipped,
                "files_missing": len(self.missing)}


# -- listing -------------------------------------------------------------------
def list_states(spark, source_path: str) -> tuple[list[FileState], list[tuple[str, str]],
                                                   dict[str, int]]:
    """(files with size and mtime, unreadable files, hidden entries skipped)."""
    if is_uri(source_path) and not source_path.startswith("file://"):
        return _spark_states(spark, source_path), [], {"files": 0, "dirs": 0}
    from spark_jobs.ingest import list_files

    files, unreadable, hidden = list_files(source_path)
    states = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError as exc:
            unreadable.append((f, f"{MISSING}: {exc.strerror or exc}"))
            continue
        states.append(FileState(f, st.st_size, st.st_mtime_ns // 1_000_000))
    return states, unreadable, hidden


def _spark_states(spark, uri: str) -> list[FileState]:
    """Files under a URI with their length and mtime, from Spark's binaryFile
    listing (the content column is not selected, so no file is read)."""
    from pyspark.sql import functions as F

    df = (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(uri)
          .select("path", "length", (F.unix_millis("modificationTime")).alias("mtime")))
    hidden = ("/.", "/_")
    return [FileState(r["path"], int(r["length"]), int(r["mtime"])) for r in df.collect()
            if not any(h in r["path"][len(uri.rstrip("/")):] for h in hidden)]


# -- hashing -------------------------------------------------------------------
def _sha256_local(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_files(spark, states: list[FileState]) -> list[tuple[str, str]]:
    """Fill in ``sha256``; returns the files that could not be read, with why."""
    local = [s for s in states if not (is_uri(s.path) and not s.path.startswith("file://"))]
    remote = [s for s in states if s not in local]
    gone: list[tuple[str, str]] = []

    def one(s: FileState):
        try:
            s.sha256 = _sha256_local(s.path.removeprefix("file://"))
        except OSError as exc:
            gone.append((s.path, f"{MISSING}: {exc.strerror or exc}"))

    # hashlib releases the GIL on large buffers: a few threads overlap I/O and hashing.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, local))
    if remote:
        from pyspark.sql import functions as F

        got = {r["path"]: r["h"] for r in spark.read.format("binaryFile")
               .load([s.path for s in remote])
               .select("path", F.sha2("content", 256).alias("h")).collect()}
        for s in remote:
            if s.path in got:
                s.sha256 = got[s.path]
            else:
                gone.append((s.path, MISSING))
    return gone


# -- the manifest --------------------------------------------------------------
def successful_runs(lh: Lakehouse, pipeline: str) -> dict[str, int]:
    """run_id -> seq of the pipeline's successful runs."""
    from include.runs import read_system

    rows = read_system(lh.root, RUNS, pipeline=pipeline, where={"status": "success"},
                       columns=["run_id", "seq", "ts"])
    return {r["run_id"]: int(r["seq"]) if r["seq"] is not None else int(r["ts"].timestamp() * 1e6)
            for r in rows}


def read_manifest(lh: Lakehouse, pipeline: str) -> tuple[dict[str, dict[str, Any]],
                                                          dict[str, dict[str, Any]]]:
    """(last known state per path, last read per path) over successful runs.

    Read with delta-rs (the manifest is small; no Spark job for it)."""
    from include.runs import read_system

    ok = successful_runs(lh, pipeline)
    if not ok:
        return {}, {}
    rows = read_system(lh.root, FILES, pipeline=pipeline, run_ids=list(ok),
                       columns=["run_id", "path", "size", "mtime", "sha256", "status"])
    last, last_read = {}, {}
    for d in sorted((r for r in rows if r["status"] in KNOWN), key=lambda r: ok[r["run_id"]]):
        last[d["path"]] = d
        if d["status"] in READ:
            last_read[d["path"]] = d
    return last, last_read


def plan(spark, lh: Lakehouse, pipeline: str, source_path: str) -> Plan:
    """Compare the source with the manifest: what to read, what to skip."""
    states, unreadable, hidden = list_states(spark, source_path)
    last, last_read = read_manifest(lh, pipeline)
    out = Plan(missing=list(unreadable), hidden=hidden)
    candidates = []
    for s in states:
        prev = last.get(s.path)
        if prev and prev["size"] == s.size and prev["mtime"] == s.mtime:
            out.skipped += 1
        else:
            candidates.append(s)
    out.missing += hash_files(spark, candidates)
    for s in candidates:
        if s.sha256 is None:
            continue
        read = last_read.get(s.path)
        if read is None:
            out.new.append(s)
        elif read["sha256"] == s.sha256:
            out.unchanged.append(s)
        else:
            out.changed.append(s)
            out.last_read_run[s.path] = read["run_id"]
    return out


def record(lh: Lakehouse, pipeline: str, run_id: str, p: Plan) -> None:
    """This run's manifest rows (replaced on a retry of the ingest)."""
    ts = now()
    rows = [(pipeline, run_id, s.path, s.size, s.mtime, s.sha256, status, ts)
            for status, group in (("new", p.new), ("changed", p.changed),
                                  ("unchanged", p.unchanged)) for s in group]
    rows += [(pipeline, run_id, path, None, None, None, "missing", ts) for path, _ in p.missing]
    lh.write_records(rows, FILES, FILES_SCHEMA, pipeline, run_id)
