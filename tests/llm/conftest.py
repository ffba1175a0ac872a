"""Real parts for the Ray/LLM op tests: local Ray (2 CPUs), the local
OpenAI-compatible HTTP server, a fresh Delta lakehouse per test."""
from __future__ import annotations

import os
import sys

import pytest

from include.config import PROJECT_ROOT
from include.testing.openai_server import OpenAIServer

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
os.environ["DATAMILL_RAY_NUM_CPUS"] = "2"
os.environ["HF_HUB_OFFLINE"] = "1"

NO_FAULTS = dict(latency_ms=0, rate_429=0, rate_500=0, rate_malformed=0, rate_timeout=0,
                 retry_after_s=0.05, hang_s=5, outage_after=0, outage_s=0, seed=0,
                 api_key="", models="", reject_json_schema=False, max_prompt_chars=0,
                 max_body_bytes=0)


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from ray_jobs.engine import ensure_ray

    ensure_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def _server():
    with OpenAIServer() as s:
        yield s


@pytest.fixture
def server(_server):
    _server.configure(**NO_FAULTS)
    _server.reset()
    return _server


@pytest.fixture
def lake(tmp_path):
    return str(tmp_path / "lake")
