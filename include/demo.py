"""``datamill demo``: the sample pipelines on the bundled data, and where to look."""
from __future__ import annotations

import json

from include.config import PIPELINES_DIR, PROJECT_ROOT, lake_root

DEMO_SPECS = (PIPELINES_DIR / "stdlib_docs.yaml", PIPELINES_DIR / "stdlib_code.yaml")
TRAIN_CONFIG = PROJECT_ROOT / "include" / "training_configs" / "mix_demo.yaml"


def run_demo(lake: str | None = None) -> int:
    from include.runner import run_pipeline
    from include.spec import load_spec

    root = lake_root(lake)
    ok = True
    for path in DEMO_SPECS:
        spec = load_spec(path)
        s = run_pipeline(spec, lake=str(root))
        ok &= s["conservation"]["ok"]
        print(json.dumps(s))
        print(f"datamill demo: {spec.name}: {s['source']['rows']} source lines -> {s['output_rows']} "
              f"rows in {s['output_table']} ({s['seconds']} s); conservation ok: "
              f"{s['conservation']['ok']}\n")
    print(f"""Where to look
  gold tables     {root / 'gold'}   (Delta; `datamill export gold/stdlib_docs --format jsonl --out F`)
  removal ledger  {root / '_system/ledger'}     quarantine: {root / '_system/quarantine'}
  a document      .venv/bin/datamill trace py:abc --lake {root}
  train on them   .venv/bin/datamill train {TRAIN_CONFIG.relative_to(PROJECT_ROOT)} --lake {root}
  Airflow UI      make airflow   (airflow standalone; log in with the admin password it prints),
                  then trigger 'datamill__stdlib_docs' (its params override the spec's step
                  params); 'datamill__train__mix_demo' runs when both gold tables are updated""")
    from include.agent.demo import run_agent_demo  # the data agent (issue 10)

    ok &= run_agent_demo(root) == 0
    return 0 if ok else 1
