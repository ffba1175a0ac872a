"""Row selectors for llm_augment and the ``datamill`` subcommands of the Ray part."""
from __future__ import annotations

import argparse

import pyarrow as pa
import pytest

from ray_jobs.cli import register
from ray_jobs.where import WhereError, compile_where

TABLE = pa.table({"id": ["a", "b", "c", "d"], "difficulty": [1, 4, 5, None],
                  "topic": ["alg", "geo", "alg", "alg"]})


@pytest.mark.parametrize("where, ids", [
    ("difficulty >= 4", ["b", "c"]),
    ("difficulty >= 4 and topic == 'alg'", ["c"]),
    ("not difficulty < 4 or topic in ['geo']", ["b", "c"]),
    ("1 < difficulty <= 4", ["b"]),
    ("topic not in ['alg']", ["b"]),
])
def test_where_selects_rows(where, ids):
    assert TABLE.filter(compile_where(where, TABLE.column_names)).column("id").to_pylist() == ids


@pytest.mark.parametrize("where, message", [
    ("score > 3", "unknown column"),
    ("difficulty >=", "not a valid expression"),
    ("__import__('os').system('x')", "unknown column|not supported"),
    ("difficulty + 1 > 3", "not supported"),
])
def test_where_rejects_what_it_cannot_do_safely(where, message):
    with pytest.raises(WhereError, match=message):
        compile_where(where, TABLE.column_names)


def test_cli_registers_quality_model_and_llm_server():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["quality-model", "train", "--name", "q", "--positive", "p.txt"])
    assert args.func.__name__ == "cmd_train" and args.name == "q"
    args = parser.parse_args(["llm-server", "--port", "0", "--latency-ms", "50", "--rate-429", "0.1"])
    assert args.func.__name__ == "cmd_llm_server" and args.latency_ms == 50 and args.rate_429 == 0.1
