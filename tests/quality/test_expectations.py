"""gx_validate's expectations are checked when the spec is validated, before
anything runs, and without importing Great Expectations."""
import os
import subprocess
import sys

import pytest

from include.quality.expectations import build_catalogue, catalogue, check, resolve
from include.spec import validate_raw
from tests.helpers import ROOT


def spec(*gate_params, source_format="jsonl"):
    steps = [{"op": "quality_filter", "params": {"min_words": 5}}]
    steps += [{"op": "gx_validate", "params": p} for p in gate_params]
    return {"version": 1, "name": "q", "source": {"path": "x/", "format": source_format},
            "steps": steps, "output": {"table": "gold/q"}}


def errors(*gate_params, **kw):
    return "\n".join(validate_raw(spec(*gate_params, **kw)))


@pytest.mark.parametrize("params,needle", [
    ({"expectations": [{"type": "expect_column_values_to_not_be_nul", "kwargs": {"column": "id"}}]},
     "step 2 (gx_validate): expectation 1 (expect_column_values_to_not_be_nul): unknown "
     "expectation type (not a core Great Expectations 1.24.1 expectation for Spark; did you mean "
     "expect_column_values_to_not_be_null"),
    ({"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"colum": "id"}}]},
     "unknown kwarg(s) 'colum' (known: catch_exceptions, column,"),
    ({"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {}}]},
     "'column' is a required kwarg"),
    ({"expectations": [{"type": "expect_column_value_lengths_to_be_between",
                        "kwargs": {"column": "text", "min_value": "ten"}}]},
     "kwarg min_value: 'ten' is not valid"),
    ({"expectations": [{"type": "expect_column_value_lengths_to_be_between",
                        "kwargs": {"column": "text"}}]}, "needs at least one of min_value, max_value"),
    ({"expectations": [{"type": "expect_column_values_to_be_json_parseable",
                        "kwargs": {"column": "text"}}]}, "cannot run it on Spark"),
    ({"suite": "no_such_suite"}, "step 2 (gx_validate): unknown suite 'no_such_suite' (known "
                                 "suites in"),
    ({"suite": "../../etc/passwd"}, "is not a valid suite name"),
    ({"on_fail": "ignore"}, "step 2 (gx_validate): param on_fail: 'ignore' is not one of"),
    ({"expectations": [{"kind": "x"}]}, "step 2 (gx_validate): param expectations.0"),
])
def test_bad_expectations_are_validation_errors_naming_the_step(params, needle):
    assert needle in errors(params)


def test_expectation_columns_take_part_in_the_data_flow_check():
    msg = errors({"expectations": [{"type": "expect_column_values_to_be_in_set",
                                    "kwargs": {"column": "lang", "value_set": ["en"]}}]})
    assert "step 2 (gx_validate): requires column(s) lang, which neither the source nor an " \
           "earlier step provides" in msg
    # an html source has no text until html_extract: the default suite needs it
    assert "requires column(s) text" in errors({}, source_format="html")


def test_default_suite_and_inline_expectations_are_valid():
    assert errors({}, {"suite": "datamill_defaults", "on_fail": "warn",
                       "expectations": [{"type": "expect_table_row_count_to_be_between",
                                         "kwargs": {"min_value": 1, "max_value": 10}}]}) == ""
    name, exps = resolve({})
    assert name == "datamill_defaults" and check(exps) == []
    types = {e["type"] for e in exps}
    assert {"expect_column_values_to_not_be_null", "expect_column_values_to_be_unique",
            "expect_column_value_lengths_to_be_between"} <= types


def test_catalogue_matches_the_installed_great_expectations():
    assert build_catalogue() == catalogue(), \
        "run: python -m include.quality.expectations --write"


def test_validating_a_gate_spec_does_not_import_great_expectations(tmp_path):
    import yaml

    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(spec({"suite": "datamill_defaults"})))
    code = ("import sys; from include.spec import load_spec; load_spec(sys.argv[1]); "
            "assert 'great_expectations' not in sys.modules, 'GX imported'; "
            "assert 'pyspark' not in sys.modules, 'Spark imported'")
    r = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True,
                       text=True, env=os.environ.copy(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
