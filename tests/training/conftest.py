"""Fixtures for the training tests: a small lake of real-text gold tables
(written with Spark into Delta) and tokens prepared from it once per session.

Domains come from training.corpora (Debian docs and Python stdlib text on
this machine) plus a junk domain made by corrupting them. Models are tiny
(2 layers, hidden 64, seq 32) so a step costs milliseconds. Training signals
go to the session's gold lake (``lake=gold_lake`` where a test reads them).
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

from training import corpora
from training.config import TrainConfig, parse_config
from training_testkit import DOMAINS, base_raw

@pytest.fixture(scope="session")
def gold_lake(tmp_path_factory, spark) -> Path:
    lake = tmp_path_factory.mktemp("train_lake")
    docs = corpora.domains(80, seed=0)
    corpora.write_tables(spark, lake, {d: docs[d] for d in DOMAINS})
    return lake


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, gold_lake) -> Path:
    """The output folder of a base config whose tokens are prepared."""
    from training.tasks import prepare_tokens

    out = tmp_path_factory.mktemp("prepared")
    prepare_tokens(parse_config(base_raw(out)), gold_lake, log=lambda m: None)
    return out


@pytest.fixture
def make_config(tmp_path, prepared):
    """Build a TrainConfig in a fresh output folder that reuses the prepared
    tokens (copied, with the pointer to them, so each test owns its folder)."""
    def make(folder: str = "run", **sections) -> TrainConfig:
        out = tmp_path / folder
        raw = base_raw(out)
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **copy.deepcopy(value)}
            else:
                raw[key] = copy.deepcopy(value)
        if not (out / "data").exists():
            shutil.copytree(prepared / "data", out / "data")
        return parse_config(raw)
    return make
