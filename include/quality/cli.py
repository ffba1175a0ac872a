"""``datamill stats`` and ``datamill sample`` (registered through include.cli's EXTENSIONS)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_stats(args) -> int:
    from include.config import lake_root
    from include.lakehouse import Lakehouse
    from include.quality import report, runs, stats

    lh = Lakehouse(lake_root(args.lake))
    try:
        tok = stats.find_tokenizer(args.tokenizer)
        if not lh.exists(args.table):
            raise LookupError(f"no Delta table {args.table!r} in {lh.root}")
        out = stats.table_stats(lh, args.table, args.version, tokenizer=tok,
                                sample_size=args.sample, near_dup_sample=args.near_dup_sample)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    if args.out:
        folder, name = Path(args.out), "report"
    elif out.get("pipeline"):
        folder = runs.run_dir(lh.root, out["pipeline"], out["run_id"])
        name = runs.table_report_name(args.table, out["version"])
    else:
        folder = runs.reports_root(lh.root) / "tables" / runs.safe_name(args.table)
        name = runs.table_report_name(args.table, out["version"])
    path = report.write(out, folder, name)
    print(f"report: {path}", file=sys.stderr)
    print(stats.dumps(out))
    return 0


def cmd_sample(args) -> int:
    from include.config import lake_root
    from include.lakehouse import Lakehouse
    from include.quality import sample

    lh = Lakehouse(lake_root(args.lake))
    try:
        s = sample.draw(lh, args.table, args.n, version=args.version, stratify=args.stratify,
                        removed=args.removed, seed=args.seed)
    except sample.SampleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    jsonl, page = sample.write(s, Path(args.out) if args.out else sample.default_dir(lh, s))
    kept = sum(1 for i in s["items"] if i["decision"] == "kept")
    print(f"{kept} kept and {len(s['items']) - kept} removed rows sampled from {args.table} "
          f"v{s['version']}", file=sys.stderr)
    print(json.dumps({"jsonl": str(jsonl), "html": str(page), "items": len(s["items"]),
                      "kept": kept, "removed": len(s["items"]) - kept}))
    return 0


def register(sub) -> None:
    s = sub.add_parser("stats", help="the dataset statistics report of a table")
    s.add_argument("table")
    s.add_argument("--version", type=int, help="Delta version (default: the newest)")
    s.add_argument("--out", help="folder for report.html and stats JSON (default: the "
                   "producing run's folder under <lake>/_reports/)")
    s.add_argument("--lake")
    s.add_argument("--tokenizer", help="tokenizer.json (default: the newest trained BPE)")
    s.add_argument("--sample", type=int, default=1000, help="documents for diversity")
    s.add_argument("--near-dup-sample", type=int, default=1000,
                   help="documents checked for a near duplicate among all rows")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("sample", help="a sample of kept (and removed) rows to inspect")
    s.add_argument("table")
    s.add_argument("--n", type=int, required=True, help="rows per decision (kept / removed)")
    s.add_argument("--stratify", help="column (or meta.KEY) whose values share the sample")
    s.add_argument("--removed", action="store_true",
                   help="also removed rows, stratified by step and rule, with their evidence")
    s.add_argument("--version", type=int)
    s.add_argument("--lake")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="folder (default: the producing run's samples/ folder)")
    s.set_defaults(func=cmd_sample)
