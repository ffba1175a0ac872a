"""Expectation suites and their validation, without importing Great Expectations.

A step's expectations are GX expectations by GX's own type names::

    - op: gx_validate
      params:
        suite: datamill_defaults          # include/expectations/datamill_defaults.yml
        expectations:                     # added after the suite's
          - {type: expect_column_values_to_be_in_set, kwargs: {column: lang, value_set: [en]}}

Specs are validated when the DAG file is parsed, and GX takes seconds to
import, so kwargs are checked against ``gx_types.json``: the JSON schema of
every core expectation that GX 1.24.1 runs on Spark, exported from GX's own
pydantic models (``python -m include.quality.expectations --write``; a test
fails when it no longer matches the installed GX). GX validates the same
kwargs again when the step runs.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from include.config import PROJECT_ROOT

CATALOGUE_PATH = Path(__file__).with_name("gx_types.json")
DEFAULT_SUITE = "datamill_defaults"
SUITE_RE = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
# Kwargs that GX fills in itself or that only GX Cloud uses.
_INTERNAL = ("id", "rendered_content", "batch_id", "windows", "metadata")
# Kwargs that name the columns an expectation reads.
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list",)


def suites_dir() -> Path:
    return Path(os.environ.get("DATAMILL_EXPECTATIONS_DIR",
                               PROJECT_ROOT / "include" / "expectations"))


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, Any]:
    return json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))


def suite_names() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.yml"))


def load_suite(name: str) -> dict[str, Any]:
    """The suite ``include/expectations/NAME.yml`` as ``{name, description, expectations}``."""
    if not isinstance(name, str) or not SUITE_RE.match(name):
        raise ValueError(f"suite {name!r} is not a valid suite name (letters, digits, _ and -)")
    path = suites_dir() / f"{name}.yml"
    if not path.is_file():
        known = ", ".join(suite_names()) or "none"
        raise ValueError(f"unknown suite {name!r} (known suites in {suites_dir()}: {known})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"suite {name!r}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations"), list):
        raise ValueError(f"suite {name!r}: {path} must be a mapping with a list 'expectations'")
    return {"name": name, "description": raw.get("description", ""),
            "expectations": raw["expectations"]}


def resolve(params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(suite name, expectations) for a gx_validate step's params.

    The named suite's expectations come first, then the step's own; a step
    that names neither runs ``datamill_defaults``.
    """
    own = list(params.get("expectations") or [])
    name = params.get("suite")
    if not name and not own:
        name = DEFAULT_SUITE
    suite = load_suite(name) if name else {"expectations": []}
    return name or "inline", [*suite["expectations"], *own]


def _validator(etype: str):
    import jsonschema

    entry = catalogue()["types"][etype]
    schema = {"type": "object", "properties": entry["properties"],
              "required": entry.get("required", []), "additionalProperties": False,
              "definitions": catalogue()["definitions"]}
    return jsonschema.Draft7Validator(schema)


def check(expectations: Any, where: str = "") -> list[str]:
    """Every problem with a list of ``{type, kwargs}``, as messages."""
    if not isinstance(expectations, list):
        return [f"{where}expectations must be a list of {{type, kwargs}}"]
    types = catalogue()["types"]
    unsupported = catalogue()["not_on_spark"]
    errs = []
    for i, exp in enumerate(expectations, start=1):
        label = f"{where}expectation {i}"
        if not isinstance(exp, dict) or "type" not in exp or set(exp) - {"type", "kwargs", "meta"}:
            errs.append(f"{label}: must be a mapping with 'type' and 'kwargs' (got {exp!r:.120})")
            continue
        etype, kwargs = exp["type"], exp.get("kwargs") or {}
        label = f"{label} ({etype})"
        if etype in unsupported:
            errs.append(f"{label}: Great Expectations {catalogue()['gx_version']} cannot run it "
                        "on Spark")
            continue
        if etype not in types:
            close = difflib.get_close_matches(str(etype), list(types), n=3, cutoff=0.8)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            errs.append(f"{label}: unknown expectation type (not a core Great Expectations "
                        f"{catalogue()['gx_version']} expectation for Spark{hint})")
            continue
        if not isinstance(kwargs, dict):
            errs.append(f"{label}: kwargs must be a mapping")
            continue
        props = types[etype]["properties"]
        for e in sorted(_validator(etype).iter_errors(kwargs), key=lambda e: list(e.path)):
            if e.validator == "additionalProperties":
                extra = sorted(set(kwargs) - set(props))
                errs.append(f"{label}: unknown kwarg(s) {', '.join(map(repr, extra))} "
                            f"(known: {', '.join(sorted(props))})")
            elif e.validator == "required":
                errs.append(f"{label}: {e.message.replace('property', 'kwarg')}")
            else:
                key = ".".join(str(p) for p in e.path) or "kwargs"
                errs.append(f"{label}: kwarg {key}: {e.message}")
        one_of = types[etype].get("needs_one_of")
        if one_of and all(kwargs.get(k) is None for k in one_of):
            errs.append(f"{label}: needs at least one of {', '.join(one_of)}")
    return errs


def columns_of(expectations: list[dict[str, Any]]) -> tuple[str, ...]:
    """The columns the expectations read (for the validator's data-flow check)."""
    cols: list[str] = []
    for exp in expectations:
        kw = exp.get("kwargs") or {}
        cols += [kw[k] for k in _COLUMN_KWARGS if isinstance(kw.get(k), str)]
        for k in _COLUMN_LIST_KWARGS:
            cols += [c for c in kw.get(k) or [] if isinstance(c, str)]
    return tuple(dict.fromkeys(cols))


# -- the catalogue, exported from the installed GX -----------------------------
def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        # multipleOf: GX declares mostly as a multiple of 0.01 but accepts 0.995.
        return {k: _strip(v) for k, v in node.items()
                if k not in ("description", "title", "multipleOf")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def build_catalogue() -> dict[str, Any]:
    """The catalogue from the installed GX (imports GX; for ``--write``/``--check``)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.expectation import Expectation

    types, not_spark, definitions = {}, [], {}
    for name in sorted(dir(gxe)):
        cls = getattr(gxe, name)
        if not (isinstance(cls, type) and issubclass(cls, Expectation)):
            continue
        schema = json.loads(cls.schema_json())
        meta = schema["properties"].get("metadata", {}).get("properties", {})
        etype = meta.get("expectation_type", {}).get("const")
        if not etype:
            continue  # an abstract base class
        if "Spark" not in meta.get("supported_data_sources", {}).get("const", []):
            not_spark.append(etype)
            continue
        for dname, d in schema.get("definitions", {}).items():
            d = _strip(d)
            if definitions.setdefault(dname, d) != d:
                raise RuntimeError(f"definition {dname} differs between expectations")
        props = {k: _strip(v) for k, v in schema["properties"].items() if k not in _INTERNAL}
        entry: dict[str, Any] = {"class": name, "properties": props,
                                 "required": schema.get("required", [])}
        # GX's root validators are not in the JSON schema; the one that matters
        # (min_value and max_value cannot both be None) is found by trying it.
        if {"min_value", "max_value"} <= set(props) and not \
                {"min_value", "max_value"} & set(entry["required"]):
            sample = {k: ("c" if k == "column" else ["c"]) for k in entry["required"]}
            try:
                cls(**sample)
            except Exception:  # noqa: BLE001 - any validation error means "needs one"
                entry["needs_one_of"] = ["min_value", "max_value"]
        types[etype] = entry
    return {"gx_version": gx.__version__, "types": types, "not_on_spark": sorted(not_spark),
            "definitions": definitions}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="export GX's expectation schemas to gx_types.json")
    ap.add_argument("--write", action="store_true", help="rewrite the catalogue")
    a = ap.parse_args(argv)
    built = build_catalogue()
    if a.write:
        CATALOGUE_PATH.write_text(json.dumps(built, indent=1, sort_keys=True) + "\n")
        print(f"{len(built['types'])} expectation types written to {CATALOGUE_PATH}")
        return 0
    same = built == catalogue()
    print("catalogue matches the installed GX" if same else
          "catalogue is stale: run python -m include.quality.expectations --write")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
