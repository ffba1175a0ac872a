"""The agent's tests: every test gets its own review folder, pipelines folder
(with the bundled specs), lakehouse, data root and generated-ops folder."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import ROOT


@pytest.fixture(autouse=True)
def agent_env(tmp_path, monkeypatch):
    pipes = tmp_path / "pipelines"
    shutil.copytree(ROOT / "include" / "pipelines", pipes)
    data = tmp_path / "data"
    data.mkdir()
    env = {"DATAMILL_REVIEW_DIR": tmp_path / "review", "DATAMILL_PIPELINES_DIR": pipes,
           "DATAMILL_LAKE": tmp_path / "lake", "DATAMILL_GENERATED_OPS_DIR": tmp_path / "genops",
           "DATAMILL_DATA_ROOTS": data}
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    (tmp_path / "genops").mkdir()
    for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "DATAMILL_LLM_MODEL"):
        monkeypatch.delenv(k, raising=False)
    return {k: v for k, v in env.items()} | {"tmp": tmp_path}


@pytest.fixture
def docs_source(agent_env):
    """Twelve real docstrings (and one exact copy) from the bundled sample, as JSONL."""
    from tests.helpers import clean_texts

    texts = clean_texts(12)
    path = agent_env["DATAMILL_DATA_ROOTS"] / "docs"
    path.mkdir()
    with open(path / "part-0.jsonl", "w", encoding="utf-8") as fh:
        for i, t in enumerate(texts + texts[:1]):
            fh.write(json.dumps({"id": f"d{i:02d}", "text": t}) + "\n")
    return path
