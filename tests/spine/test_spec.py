import pytest

from include.spec import SpecError, apply_overrides, load_spec, parse, validate_raw
from tests.helpers import run_cli, write_spec


def base(**kw):
    raw = {"version": 1, "name": "t", "source": {"path": "x/", "format": "jsonl"},
           "steps": [{"op": "normalize"}, {"op": "quality_filter", "params": {"min_words": 5}}],
           "output": {"table": "gold/t"}}
    raw.update(kw)
    return raw


def errors(raw):
    return "\n".join(validate_raw(raw))


def test_valid_spec_parses_with_defaults():
    spec = parse(base())
    assert spec.dag_id == "datamill__t"
    assert spec.steps[1].params["min_words"] == 5
    assert spec.steps[1].params["preset"] == "gopher"  # default filled in
    assert spec.fuse is True


@pytest.mark.parametrize("raw,needle", [
    (base(steps=[{"op": "frobnicate"}]), "step 1 (frobnicate): unknown op 'frobnicate'"),
    (base(steps=[{"op": "quality_filter", "params": {"bogus": 1}}]),
     "step 1 (quality_filter): unknown param(s) 'bogus'"),
    (base(steps=[{"op": "quality_filter", "params": {"min_words": "many"}}]),
     "step 1 (quality_filter): param min_words"),
    (base(steps=[{"op": "normalize"}, {"op": "quality_filter", "params": {"preset": "nope"}}]),
     "step 2 (quality_filter): param preset"),
    (base(source={"path": "x/", "format": "html"}), "step 1 (normalize): requires column(s) text"),
    (base(schedule="every tuesday"), "schedule 'every tuesday' is not a valid cron"),
    (base(schedule="@fortnightly"), "is not a preset"),
    (base(source={"path": "x/", "format": "xml"}), "source.format 'xml' is not one of"),
    (base(output={"table": "../outside"}), "must be a relative path inside the lakehouse"),
    (base(output={"table": "/abs/path"}), "must be a relative path inside the lakehouse"),
    (base(output={"table": "_system/ledger"}), "reserved area"),
    (base(version=2), "version must be 1"),
    (base(name="Bad Name"), "name 'Bad Name'"),
    (base(extra=1), "unknown top-level key 'extra'"),
])
def test_invalid_specs_name_the_problem(raw, needle):
    assert needle in errors(raw)


def test_cron_and_preset_schedules_accepted():
    assert errors(base(schedule="0 3 * * *")) == ""
    assert errors(base(schedule="@daily")) == ""


def test_overrides_by_path_and_by_op():
    raw = apply_overrides(base(), ["quality_filter.min_words=30", "output.table=gold/u"])
    assert raw["steps"][1]["params"]["min_words"] == 30
    assert raw["output"]["table"] == "gold/u"
    raw = apply_overrides(base(), {"steps.2.params.preset": "c4"})
    assert raw["steps"][1]["params"]["preset"] == "c4"
    with pytest.raises(SpecError, match="no step uses op"):
        apply_overrides(base(), ["minhash_dedup.threshold=0.5"])


def test_load_spec_reports_every_error(tmp_path):
    p = write_spec(tmp_path / "s.yaml", "version: 1\nname: x\nsource: {path: a, format: xml}\n"
                   "steps: [{op: nope}]\noutput: {table: ../x}\n")
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    assert len(exc.value.errors) == 3


def test_cli_validate_exit_codes(tmp_path):
    good = write_spec(tmp_path / "g.yaml", "version: 1\nname: g\nsource: {path: a/, format: jsonl}\n"
                      "steps: [{op: quality_filter, params: {min_words: 3}}]\noutput: {table: gold/g}\n")
    bad = write_spec(tmp_path / "b.yaml", "version: 1\nname: b\nsource: {path: a/, format: jsonl}\n"
                     "steps: [{op: quality_filter, params: {min_words: x}}]\noutput: {table: gold/b}\n")
    assert run_cli("validate", str(good)).returncode == 0
    r = run_cli("validate", str(bad))
    assert r.returncode == 1 and "step 1 (quality_filter)" in r.stderr
    assert run_cli("validate").returncode == 2
    assert run_cli("validate", str(tmp_path / "missing.yaml")).returncode == 1


def test_columns_from_param_dependent_ops_are_known():
    """llm_annotate adds a column per schema field: later steps may require them."""
    from include.registry import get_op

    ann = get_op("llm_annotate")
    raw = base(steps=[{"op": "llm_annotate"}, {"op": "llm_augment", "params": {"where": "difficulty >= 4"}}])
    cols = ann.columns_added(parse(raw).steps[0].params)
    assert {"llm_annotations", "topic", "difficulty"} <= set(cols)
    assert errors(raw) == ""


def test_where_selector_columns_are_checked_before_running():
    raw = base(steps=[{"op": "llm_augment", "params": {"where": "difficulty >= 4"}}])
    assert "step 1 (llm_augment): requires column(s) difficulty" in errors(raw)
    raw = base(steps=[{"op": "llm_augment", "params": {"where": "difficulty >="}}])
    assert "step 1 (llm_augment): where 'difficulty >=' is not a valid expression" in errors(raw)
