"""Scale-out on real clusters on this machine: a pipeline with scan ops (Spark)
and a Ray op, run by ``datamill run`` against a Spark standalone cluster
(master and worker, each its own JVM from pyspark's ``spark-class``) and a Ray
cluster (a head and a worker node, two raylets), gives the same gold table as
the same run in local mode; the work is shown to have run on the clusters.
The Ray step's rows go from Delta to the Ray workers and back through files
(ray_jobs/engine.py): the staging folder is gone afterwards.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import DATAMILL, ROOT, write_spec

# Two whole runs and two clusters of real JVMs and raylets: 400-800 s on 2
# loaded cores here (the local run alone took 14 min once, beside a benchmark),
# so the suite's 900 s limit is too tight for this one test.
pytestmark = pytest.mark.timeout(1800)

PARAPHRASES = [
    ("p1", "The cat sat on the mat in the warm afternoon sun."),
    ("p2", "In the warm afternoon sun, the cat was sitting on the mat."),
    ("q1", "To reset your password, open the settings page and click 'Forgot password'."),
    ("q2", "Open the settings page and choose 'Forgot password' to reset your password."),
    ("x1", "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar."),
    ("x2", "The recipe calls for two cups of flour, one egg and a pinch of salt."),
    ("x3", "Python lists are mutable, while tuples cannot be changed after they are created."),
    ("x4", "The train to Berlin leaves from platform nine at half past seven."),
    ("y1", "The   train to Berlin leaves from platform nine at half past seven."),  # exact dup
]
SPEC = """version: 1
name: scale_out
source: {{path: {src}, format: jsonl, id_field: id}}
steps:
  - op: normalize
  - op: exact_dedup
  - op: semantic_dedup
    params: {{threshold: 0.8, cluster_size: 4}}
output: {{table: gold/scale_out}}
"""


def _run(spec, lake, **env) -> dict:
    e = dict(os.environ, HF_HUB_OFFLINE="1", DATAMILL_RAY_NUM_CPUS="2", **env)
    for k in ("DATAMILL_SPARK_URL", "DATAMILL_RAY_ADDRESS"):
        if k not in env:
            e.pop(k, None)
    p = subprocess.run([DATAMILL, "run", str(spec), "--lake", str(lake)], capture_output=True,
                       text=True, env=e, cwd=str(ROOT), timeout=1500)
    assert p.returncode == 0, p.stderr[-4000:]
    lines = p.stdout.strip().splitlines()
    # the summary is stdout's only line: the engines' own output goes to stderr
    assert len(lines) == 1, f"stdout: {p.stdout[-2000:]!r}\nstderr: {p.stderr[-2000:]}"
    return json.loads(lines[0])


def _gold(lake) -> list[dict]:
    from deltalake import DeltaTable

    rows = DeltaTable(str(lake / "gold" / "scale_out")).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: r["id"])


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale_out")
    (d / "src").mkdir()
    with open(d / "src" / "docs.jsonl", "w") as fh:
        for i, t in PARAPHRASES:
            fh.write(json.dumps({"id": i, "text": t}) + "\n")
    return write_spec(d / "scale_out.yaml", SPEC.format(src=d / "src"))


def test_clusters_give_the_local_gold_table(spec, tmp_path):
    from include.local_clusters import RayCluster, SparkStandalone, ray_auth_env

    local = _run(spec, tmp_path / "local")
    expected = _gold(tmp_path / "local")
    assert local["output_rows"] == 6  # p2, q2 (paraphrases) and y1 (exact copy) removed
    assert {r["id"] for r in expected} == {"p1", "q1", "x1", "x2", "x3", "x4"}

    with SparkStandalone(tmp_path / "spark", cores=1, memory="1g") as sc, \
            RayCluster(tmp_path / "ray") as rc:
        before = sc.state()
        assert before["aliveworkers"] == 1 and before["cores"] == 1
        assert RayCluster.alive_nodes(rc.head) == 2
        summary = _run(spec, tmp_path / "cluster", DATAMILL_SPARK_URL=sc.url,
                       DATAMILL_RAY_ADDRESS=rc.address, **ray_auth_env())
        apps = sc.state()
        # The run's Spark application ran on the standalone cluster's worker.
        ran = [a for a in apps.get("completedapps", []) + apps.get("activeapps", [])
               if a["name"] == "datamill"]
        assert ran and ran[0]["cores"] >= 1
        # Ray work ran in the cluster's own worker processes (its session logs).
        logs = list((rc.head.temp_dir / "session_latest" / "logs").glob("python-core-worker-*"))
        assert logs, "no Ray worker ran on the cluster"
    assert summary["output_rows"] == local["output_rows"]
    assert summary["steps"] == local["steps"]
    assert _gold(tmp_path / "cluster") == expected
    for lake in ("local", "cluster"):  # the Ray step's staging folders are cleaned up
        staging = tmp_path / lake / "_system" / "staging"
        assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))
