import json
import subprocess
import sys

import pytest

from include.registry import CATEGORIES, ENGINES, Op, all_ops, get_op, register_op, UnknownOpError
from tests.helpers import ROOT, run_cli

FIELDS = {"name", "version", "category", "description", "engine", "params", "requires", "adds"}


def test_every_op_has_full_metadata():
    metas = all_ops()
    assert {m.name for m in metas} >= {"normalize", "quality_filter"}
    for m in metas:
        d = m.to_json()
        assert FIELDS <= set(d), m.name
        assert m.category in CATEGORIES and m.engine in ENGINES
        assert len(m.description) > 40
        assert d["params"]["type"] == "object"
        for name, p in d["params"].get("properties", {}).items():
            assert "default" in p or name in d["params"].get("required", []), (m.name, name)


def test_unknown_op_lists_known_names():
    with pytest.raises(UnknownOpError, match="known ops: .*quality_filter"):
        get_op("no_such_op")


@pytest.fixture
def scratch_registry():
    from include import registry

    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)


def test_duplicate_registration_rejected(scratch_registry):
    register_op(name="_dup_probe", version="1", category="filter", engine="spark",
                description="probe")(type("A", (Op,), {}))
    with pytest.raises(ValueError, match="registered twice"):
        register_op(name="_dup_probe", version="1", category="filter", engine="spark",
                    description="probe")(type("B", (Op,), {}))


def test_param_without_default_rejected():
    with pytest.raises(ValueError, match="needs a default"):
        register_op(name="_nodefault", version="1", category="filter", engine="spark",
                    description="x", params={"properties": {"k": {"type": "integer"}}})


def test_catalogue_loads_without_engines():
    """DAG parsing reads the catalogue: it must not import Spark, Ray or torch."""
    code = ("import sys; from include.registry import all_ops; all_ops(); "
            "bad = [m for m in ('pyspark', 'ray', 'torch', 'megatron') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_ops_json_matches_registry():
    r = run_cli("ops", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [o["name"] for o in listed] == [m.name for m in all_ops()]
