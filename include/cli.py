"""The ``datamill`` command line (shared interfaces.md §3).

Exit codes: 0 success, 1 invalid input or failed gate, 2 usage error.
Heavy imports (Spark, Ray, torch) happen inside the commands that need them.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

# Other parts of the project add their own subcommands through a
# ``register(subparsers)`` function; missing parts are simply absent.
EXTENSIONS = ("training.cli", "ray_jobs.cli", "include.agent.cli", "include.quality.cli",
              "include.retention")


def _quiet() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("py4j").setLevel(logging.ERROR)
    # Progress of datamill's own stages on stderr; stdout stays machine-readable.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s", "%H:%M:%S"))
    dm = logging.getLogger("datamill")
    dm.addHandler(handler)
    dm.setLevel(logging.INFO)
    dm.propagate = False


def cmd_ops(args) -> int:
    from include.registry import all_ops, catalogue_json

    if args.json:
        print(catalogue_json())
        return 0
    for m in all_ops():
        print(f"{m.name:22} {m.category:11} {m.engine:7} v{m.version}  {m.description[:70]}")
    return 0


def cmd_validate(args) -> int:
    from include.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec, args.set)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.spec}: valid ({len(spec.steps)} steps, dag_id {spec.dag_id})")
    return 0


def _reserve_stdout():
    """A private copy of stdout for the command's one machine-readable line;
    fd 1 points at stderr from here to the process's exit.

    The engines a run starts write to fd 1 too: the Spark JVM and Ray's
    processes inherit it, and their shutdown hooks run after ``main`` returns,
    so anything they print would land after the summary that interfaces.md
    promises as stdout's last line.
    """
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return out


def cmd_run(args) -> int:
    from include.quality.gate import QualityGateError
    from include.runner import StageError, run_pipeline
    from include.spec import SpecError, load_spec
    from spark_jobs.ingest import SourceError

    out = _reserve_stdout()
    try:
        spec = load_spec(args.spec, args.set)
        from spark_jobs.ingest import list_files

        list_files(spec.source_path())  # a missing source fails before anything is written
        summary = run_pipeline(spec, lake=args.lake, run_id=args.run_id)
    except (SpecError, SourceError, StageError, QualityGateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary), file=out, flush=True)
    return 0


def cmd_export(args) -> int:
    from include.config import lake_root
    from include.lakehouse import Lakehouse

    lh = Lakehouse(lake_root(args.lake))
    if not lh.exists(args.table):
        print(f"error: no Delta table {args.table!r} in {lh.root}", file=sys.stderr)
        return 1
    df = lh.read(args.table, args.version)
    df = df.drop(*[c for c in df.columns if c == "_run_id"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if args.format == "jsonl":
        with out.open("w", encoding="utf-8") as fh:
            for row in df.toLocalIterator():
                fh.write(json.dumps(row.asDict(recursive=True), ensure_ascii=False, default=str) + "\n")
                n += 1
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        batch, writer = [], None
        for row in df.toLocalIterator():
            batch.append(row.asDict(recursive=True))
            if len(batch) >= 10000:
                t = pa.Table.from_pylist(batch)
                writer = writer or pq.ParquetWriter(out, t.schema)
                writer.write_table(t)
                n += len(batch)
                batch = []
        if batch or writer is None:
            t = pa.Table.from_pylist(batch) if batch else pa.Table.from_pandas(df.limit(0).toPandas())
            writer = writer or pq.ParquetWriter(out, t.schema)
            writer.write_table(t)
            n += len(batch)
        writer.close()
    print(f"{n} rows written to {out}")
    return 0


def cmd_trace(args) -> int:
    from include.config import lake_root
    from include.trace import trace

    events = trace(args.doc_id, lake_root(args.lake))
    if not events:
        print(f"no record of document {args.doc_id!r}", file=sys.stderr)
        return 1
    for e in events:
        print(json.dumps(e, default=str) if args.json else e["line"])
    return 0


def cmd_demo(args) -> int:
    from include.demo import run_demo

    return run_demo(args.lake)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="datamill", description="Airflow-native data preparation "
                                "and data-centric training")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ops", help="list the op catalogue")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ops)

    for name, func, hlp in (("validate", cmd_validate, "check a spec without running it"),
                            ("run", cmd_run, "run a pipeline end to end")):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("spec")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a spec value (steps.N.params.P, OP.PARAM, output.table)")
        if name == "run":
            s.add_argument("--lake")
            s.add_argument("--run-id", help="reuse a run id: replaces that run's outputs")
        s.set_defaults(func=func)

    s = sub.add_parser("export", help="read a Delta table into a file")
    s.add_argument("table")
    s.add_argument("--lake")
    s.add_argument("--version", type=int)
    s.add_argument("--format", choices=("jsonl", "parquet"), required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("trace", help="a document's fate across runs")
    s.add_argument("doc_id")
    s.add_argument("--lake")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_trace)

    s = sub.add_parser("demo", help="run the main job on the bundled sample data")
    s.add_argument("--lake")
    s.set_defaults(func=cmd_demo)

    for mod in EXTENSIONS:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and mod.startswith(exc.name):
                continue
            raise
        if hasattr(m, "register"):
            m.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    _quiet()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
