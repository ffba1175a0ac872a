"""``datamill demo``: the sample pipeline on the bundled data, and where to look."""
from __future__ import annotations

import json

from include.config import PIPELINES_DIR, lake_root

DEMO_SPEC = PIPELINES_DIR / "stdlib_docs.yaml"


def run_demo(lake: str | None = None) -> int:
    from include.runner import run_pipeline
    from include.spec import load_spec

    root = lake_root(lake)
    spec = load_spec(DEMO_SPEC)
    summary = run_pipeline(spec, lake=str(root))
    s = summary
    print(f"""
datamill demo: {s['source']['rows']} source lines -> {s['output_rows']} rows in {s['output_table']} \
({s['seconds']} s); conservation ok: {s['conservation']['ok']}

Where to look
  gold table      {root / spec.output_table}   (Delta, version {s['output_version']})
  removal ledger  {root / '_system/ledger'}     quarantine: {root / '_system/quarantine'}
  a document      .venv/bin/datamill trace py:abc --lake {root}
  export          .venv/bin/datamill export {spec.output_table} --lake {root} --format jsonl --out /tmp/{spec.name}.jsonl
  Airflow UI      make airflow   (airflow standalone; log in with the printed admin password),
                  then trigger the DAG '{spec.dag_id}' (its params override the spec's step params)
""")
    print(json.dumps(summary))
    return 0 if s["conservation"]["ok"] else 1
