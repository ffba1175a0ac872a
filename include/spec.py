"""Pipeline spec v1: load, override, validate (see shared interfaces.md §1).

Validation runs before anything else and reports every problem at once, each
message naming the step (``step 2 (minhash_dedup): ...``).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from include.lakehouse import check_table_name
from include.registry import UnknownOpError, apply_defaults, get_op

FORMATS = ("jsonl", "parquet", "csv", "text", "html", "warc")
# Columns each source format provides to the first step.
SOURCE_COLUMNS = {
    "jsonl": ("id", "text", "meta"),
    "parquet": ("id", "text", "meta"),
    "csv": ("id", "text", "meta"),
    "text": ("id", "text", "meta"),
    "html": ("id", "html", "url", "meta"),
    "warc": ("id", "html", "url", "meta"),
}
SCHEDULE_PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly",
                    "@monthly", "@quarterly", "@yearly", "@annually")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TOP_KEYS = {"version", "name", "description", "schedule", "source", "steps", "output", "execution",
            "retention"}
SOURCE_KEYS = {"path", "format", "id_field", "text_field", "options", "incremental"}


class SpecError(ValueError):
    def __init__(self, errors: list[str], path: str | None = None):
        self.errors = errors
        where = f"{path}: " if path else ""
        super().__init__(where + "invalid spec:\n  - " + "\n  - ".join(errors))


@dataclass
class Step:
    index: int          # 1-based, as people count steps
    op: str
    params: dict[str, Any]

    @property
    def label(self) -> str:
        return f"step {self.index} ({self.op})"


@dataclass
class PipelineSpec:
    name: str
    source: dict[str, Any]
    steps: list[Step]
    output_table: str
    description: str = ""
    schedule: str | None = None
    fuse: bool = True
    raw: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def dag_id(self) -> str:
        return f"datamill__{self.name}"

    def source_path(self) -> str:
        """Source path, relative paths taken from the project root."""
        from include.config import PROJECT_ROOT

        p = str(self.source["path"])
        if "://" in p or Path(p).is_absolute():
            return p
        return str(PROJECT_ROOT / p)


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """Apply ``--set`` overrides.

    Keys are dotted paths into the spec (``steps.1.params.threshold``,
    ``output.table``; step numbers are 1-based) or ``OP.PARAM`` which sets the
    param on every step using that op.
    """
    if not overrides:
        return raw
    out = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else [
        (kv.split("=", 1)[0], _parse_value(kv.split("=", 1)[1])) if "=" in kv
        else (_ for _ in ()).throw(SpecError([f"--set {kv!r}: expected key=value"]))
        for kv in overrides]
    for key, value in items:
        parts = key.split(".")
        steps = out.get("steps") or []
        if len(parts) == 2 and parts[0] not in TOP_KEYS:
            hits = [s for s in steps if isinstance(s, dict) and s.get("op") == parts[0]]
            if not hits:
                raise SpecError([f"--set {key}: no step uses op {parts[0]!r}"])
            for s in hits:
                s.setdefault("params", {})[parts[1]] = value
            continue
        node: Any = out
        for i, p in enumerate(parts[:-1]):
            if isinstance(node, list):
                # Steps count from 1; 0 and negatives would reach the end of
                # the list through Python's negative indexing.
                if not (p.isdigit() and 1 <= int(p) <= len(node)):
                    raise SpecError([f"--set {key}: no step {p} (steps are numbered "
                                     f"1 to {len(node)})"])
                node = node[int(p) - 1]
            else:
                node = node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list):
            raise SpecError([f"--set {key}: cannot set a whole step"])
        node[last] = value
    return out


def _check_schedule(schedule: Any) -> str | None:
    if schedule is None:
        return None
    if not isinstance(schedule, str):
        return f"schedule {schedule!r} must be null, a preset or a cron string"
    if schedule.startswith("@"):
        if schedule not in SCHEDULE_PRESETS:
            return f"schedule {schedule!r} is not a preset ({', '.join(SCHEDULE_PRESETS)})"
        return None
    from croniter import croniter

    if not croniter.is_valid(schedule):
        return f"schedule {schedule!r} is not a valid cron expression"
    return None


def _param_errors(label: str, schema: dict[str, Any], params: Any) -> list[str]:
    import jsonschema

    if not isinstance(params, dict):
        return [f"{label}: params must be a mapping, got {type(params).__name__}"]
    errs = []
    validator = jsonschema.Draft202012Validator(schema)
    for e in sorted(validator.iter_errors(params), key=lambda e: list(e.path)):
        if e.validator == "additionalProperties":
            known = ", ".join(sorted(schema.get("properties", {}))) or "none"
            extra = sorted(set(params) - set(schema.get("properties", {})))
            errs.append(f"{label}: unknown param(s) {', '.join(map(repr, extra))} (known: {known})")
        else:
            where = ".".join(str(p) for p in e.path) or "params"
            errs.append(f"{label}: param {where}: {e.message}")
    return errs


def validate_raw(raw: Any) -> list[str]:
    """Every problem with a raw spec mapping, as messages."""
    if not isinstance(raw, dict):
        return ["spec must be a YAML mapping"]
    errs: list[str] = []
    for k in sorted(set(raw) - TOP_KEYS):
        errs.append(f"unknown top-level key {k!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
    if raw.get("version") != 1:
        errs.append(f"version must be 1, got {raw.get('version')!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        errs.append(f"name {name!r} must be lower-case letters, digits and _ (starting with a letter)")
    if (e := _check_schedule(raw.get("schedule"))):
        errs.append(e)
    ex = raw.get("execution") or {}
    if not isinstance(ex, dict) or set(ex) - {"fuse"} or not isinstance(ex.get("fuse", True), bool):
        errs.append("execution must be a mapping with an optional boolean 'fuse'")

    src = raw.get("source")
    fmt = None
    if not isinstance(src, dict):
        errs.append("source must be a mapping with path and format")
    else:
        for k in sorted(set(src) - SOURCE_KEYS):
            errs.append(f"source: unknown key {k!r} (allowed: {', '.join(sorted(SOURCE_KEYS))})")
        if not src.get("path") or not isinstance(src.get("path"), str):
            errs.append("source.path is required (a file, folder or glob)")
        fmt = src.get("format")
        if fmt not in FORMATS:
            errs.append(f"source.format {fmt!r} is not one of {', '.join(FORMATS)}")
            fmt = None
        for k in ("id_field", "text_field"):
            if k in src and src[k] is not None and not isinstance(src[k], str):
                errs.append(f"source.{k} must be a string")
        if "options" in src and not isinstance(src["options"], dict):
            errs.append("source.options must be a mapping")
        if not isinstance(src.get("incremental", False), bool):
            errs.append("source.incremental must be true or false")

    from include.retention import policy_errors

    errs.extend(policy_errors(raw.get("retention")))

    out = raw.get("output")
    if not isinstance(out, dict) or "table" not in out:
        errs.append("output.table is required")
    elif (e := check_table_name(out["table"])):
        errs.append(e)
    else:
        from include.pipelines_catalog import output_owners

        others = sorted({f"{n} ({p.name})" for n, p in output_owners().get(out["table"], [])
                         if n != name})
        if others:
            errs.append(f"output table {out['table']!r} is already the output of live "
                        f"pipeline(s) {', '.join(others)}; two pipelines may not share an "
                        "output table")

    steps = raw.get("steps", [])
    if steps is None:
        steps = []
    if not isinstance(steps, list):
        errs.append("steps must be a list")
        return errs
    available = set(SOURCE_COLUMNS[fmt]) if fmt else None
    for i, step in enumerate(steps, start=1):
        if not isinstance(step, dict) or "op" not in step:
            errs.append(f"step {i}: must be a mapping with 'op'")
            available = None
            continue
        label = f"step {i} ({step['op']})"
        for k in sorted(set(step) - {"op", "params"}):
            errs.append(f"{label}: unknown key {k!r} (allowed: op, params)")
        try:
            op_cls = get_op(step["op"])
        except UnknownOpError as exc:
            errs.append(f"{label}: {exc.args[0]}")
            available = None
            continue
        meta = op_cls.meta
        perrs = _param_errors(label, meta.params, step.get("params") or {})
        errs.extend(perrs)
        required, added = meta.requires, meta.adds
        if not perrs:
            # The hooks follow column-naming params and refuse (ValueError) a
            # param that would overwrite a reserved column.
            for hook in ("columns_required", "columns_added"):
                try:
                    cols = getattr(op_cls, hook)(apply_defaults(meta, step.get("params")))
                except ValueError as exc:
                    errs.append(f"{label}: {exc}")
                    continue
                required, added = (cols, added) if hook == "columns_required" else (required, cols)
        if available is not None:
            missing = [c for c in required if c not in available]
            if missing:
                errs.append(f"{label}: requires column(s) {', '.join(missing)}, which neither the "
                            f"source nor an earlier step provides (available: "
                            f"{', '.join(sorted(available))})")
            available |= set(added)
    return errs


def parse(raw: dict[str, Any], path: str | None = None) -> PipelineSpec:
    errs = validate_raw(raw)
    if errs:
        raise SpecError(errs, path)
    steps = []
    for i, s in enumerate(raw.get("steps") or [], start=1):
        meta = get_op(s["op"]).meta
        steps.append(Step(index=i, op=s["op"], params=apply_defaults(meta, s.get("params"))))
    src = dict(raw["source"])
    src.setdefault("text_field", "text")
    src.setdefault("id_field", None)
    src.setdefault("options", {})
    src.setdefault("incremental", False)
    return PipelineSpec(name=raw["name"], source=src, steps=steps,
                        output_table=raw["output"]["table"],
                        description=raw.get("description") or "",
                        schedule=raw.get("schedule"),
                        fuse=(raw.get("execution") or {}).get("fuse", True),
                        raw=raw, path=path)


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise SpecError([f"spec file {str(p)!r} not found"])
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError([f"not valid YAML: {exc}"], str(p)) from None
    return raw


def load_spec(path: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> PipelineSpec:
    raw = apply_overrides(read_yaml(path), overrides)
    return parse(raw, str(path))
