"""Where the refresh's gold table and the full rerun's differ, and why.

After ``benchmarks.refresh.run`` (its ``--work`` folder): every id that one
side kept and the other removed, split by base and new documents, and for
each one whether its true near-duplicates (``truth.json``) explain it:

- a base document the refresh kept whose true cluster holds another
  published survivor: by design (a refresh never removes a published
  document, while the full rerun keeps one survivor per cluster);
- a new document the refresh kept that is a true near copy of a base
  document the earlier run removed (what the dedup indexes' removed copies
  are for: this count should be 0).

    python -m benchmarks.refresh.compare --work /tmp/refresh50k
"""
from __future__ import annotations

import argparse
import glob
import json
import os


def _ids(path: str) -> set[str]:
    from deltalake import DeltaTable

    return set(DeltaTable(path).to_pyarrow_table(columns=["id"]).column("id").to_pylist())


def _file_ids(pattern: str) -> set[str]:
    out = set()
    for f in glob.glob(pattern):
        with open(f) as fh:
            out.update(json.loads(line)["id"] for line in fh)
    return out


def compare(work: str) -> dict:
    kept_r = _ids(os.path.join(work, "lake_inc", "gold", "refresh_bench"))
    kept_f = _ids(os.path.join(work, "lake_full", "gold", "full_bench"))
    base = _file_ids(os.path.join(work, "base", "*.jsonl"))
    new = _file_ids(os.path.join(work, "new", "*.jsonl"))
    with open(os.path.join(work, "truth.json")) as f:
        pairs = [tuple(p[:2]) for p in json.load(f)["pairs"]]
    adj: dict[str, set[str]] = {}
    for x, y in pairs:
        adj.setdefault(x, set()).add(y)
        adj.setdefault(y, set()).add(x)

    def cluster(d: str) -> set[str]:
        seen, todo = {d}, [d]
        while todo:
            for y in adj.get(todo.pop(), ()):
                if y not in seen:
                    seen.add(y)
                    todo.append(y)
        return seen

    only_r, only_f = kept_r - kept_f, kept_f - kept_r
    bridged = sum(1 for d in only_r & base if (cluster(d) - {d}) & kept_r & base)
    removed_base = base - kept_r
    near_removed = sum(1 for d in only_r & new if adj.get(d, set()) & removed_base)
    return {"kept_by_refresh_only": {"base": len(only_r & base), "new": len(only_r & new)},
            "kept_by_full_rerun_only": {"base": len(only_f & base), "new": len(only_f & new)},
            "base_with_another_published_survivor": bridged,
            "new_near_a_removed_base_document": near_removed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True)
    print(json.dumps(compare(ap.parse_args(argv).work), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
