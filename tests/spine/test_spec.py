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


@pytest.mark.parametrize("index", ["0", "-1", "-2", "3", "x"])
def test_override_step_numbers_count_from_one(index):
    """``steps.0`` used to reach the last step through Python's ``list[-1]``."""
    with pytest.raises(SpecError, match=rf"no step {index}\b.*1 to 2"):
        apply_overrides(base(), {f"steps.{index}.params.preset": "c4"})
    raw = apply_overrides(base(), {"steps.1.params.form": "NFC"})
    assert raw["steps"][0]["params"] == {"form": "NFC"} and "form" not in raw["steps"][1]["params"]


def llm_steps(*steps):
    return base(steps=[{"op": op, "params": params} for op, params in steps])


@pytest.mark.parametrize("steps,needle", [
    ([("llm_score", {"column": "id"})], "step 1 (llm_score): llm_score: column would write "
                                        "column 'id', which is reserved"),
    ([("llm_score", {"column": "_reason"})], "column '_reason', which is reserved"),
    ([("embed_quality_score", {"column": "text"})], "column 'text', which is reserved"),
    ([("llm_rewrite", {"column": "id"})], "step 1 (llm_rewrite): llm_rewrite: column would "
                                          "write column 'id'"),
    ([("llm_rewrite", {"column": "meta"})], "column 'meta', which is reserved"),
    ([("llm_annotate", {"schema": {"type": "object", "properties": {"text": {"type": "string"}}}})],
     "llm_annotate: prefix + schema key would write column 'text'"),
    ([("llm_annotate", {"prefix": "_"})], "column '_topic', which is reserved"),
    ([("llm_annotate", {"schema": {"type": "object", "properties": {
        "llm_annotations": {"type": "string"}}}})], "overwrite the llm_annotations column"),
    # requires follows the column params
    ([("llm_rewrite", {"column": "summary"})], "step 1 (llm_rewrite): requires column(s) summary"),
    ([("semantic_dedup", {"column": "title"})], "step 1 (semantic_dedup): requires column(s) title"),
    ([("embed_quality_score", {"text_column": "body"})], "requires column(s) body"),
])
def test_column_params_may_not_overwrite_reserved_columns(steps, needle):
    assert needle in errors(llm_steps(*steps))


def test_adds_and_requires_follow_the_column_params():
    # llm_score writes the column it is told to, and a later step may read it
    ok = llm_steps(("llm_score", {"column": "s"}), ("llm_augment", {"where": "s >= 4"}),
                   ("llm_rewrite", {}))
    assert errors(ok) == ""
    assert "llm_augment" in errors(llm_steps(("llm_score", {}),
                                             ("llm_augment", {"where": "s >= 4"})))
    chained = llm_steps(("llm_annotate", {"prefix": "a_"}), ("llm_rewrite", {"column": "a_topic"}),
                        ("semantic_dedup", {"column": "a_topic"}))
    assert errors(chained) == ""
