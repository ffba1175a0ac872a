"""Skills: what the agent may use, read from the one registry and the live specs.

Every op's catalogue metadata is a skill (name, version, category,
description, params schema, requires, adds, engine, cost class). Every live
pipeline spec (bundled or approved, ``$DATAMILL_PIPELINES_DIR``) is a skill
too, so "run the usual cleaning" can reuse one: its steps are copied, not
re-planned. Skills are plain dicts, so they travel in the planner state.
"""
from __future__ import annotations

import json
from typing import Any

# Params a planner never sets: where the model runs and how hard it is driven
# belong to the operator of the platform, not to the request (and keeping them
# out keeps the LLM planner's answer schema small).
OPERATIONAL_PARAMS = frozenset({
    "engine", "model", "template", "concurrency", "workers", "batch_size", "rate_limit_rps",
    "timeout_s", "max_retries", "backoff_base_s", "backoff_cap_s", "max_failed_fraction",
    "temperature", "max_tokens", "response_format", "cache", "price_per_1m_input_tokens",
    "price_per_1m_output_tokens", "threads", "num_perm", "bands", "rows", "max_shingles",
    "bucket_window", "seed", "max_chars", "max_html_chars", "cluster_size"})


def op_skill(meta) -> dict[str, Any]:
    props = meta.params.get("properties", {})
    return {"kind": "op", "name": meta.name, "version": meta.version,
            "category": meta.category, "engine": meta.engine, "cost": meta.cost,
            "description": meta.description, "params": meta.params,
            "plan_params": sorted(k for k in props if k not in OPERATIONAL_PARAMS),
            "requires": list(meta.requires), "adds": list(meta.adds)}


def op_skills() -> list[dict[str, Any]]:
    from include.registry import all_ops

    return [op_skill(m) for m in all_ops()]


def spec_skills() -> list[dict[str, Any]]:
    """One skill per live spec that reads as a mapping with steps."""
    from include.pipelines_catalog import read_raw, spec_files

    out = []
    for path in spec_files():
        raw = read_raw(path)
        if not raw or not isinstance(raw.get("steps"), list) or not raw.get("name"):
            continue
        steps = [s for s in raw["steps"] if isinstance(s, dict) and "op" in s]
        ops = [s["op"] for s in steps]
        out.append({"kind": "spec", "name": str(raw["name"]), "path": str(path),
                    "category": "pipeline", "cost": "scan",
                    "description": " ".join(str(raw.get("description") or "").split())
                    or f"pipeline {raw['name']}",
                    "steps": steps, "ops": ops,
                    "source_format": (raw.get("source") or {}).get("format")})
    return out


def all_skills() -> list[dict[str, Any]]:
    return op_skills() + spec_skills()


def skill_text(skill: dict[str, Any]) -> str:
    """The text retrieval matches against: name, category and description
    (plus params for ops, the op list for specs)."""
    name = skill["name"].replace("_", " ")
    if skill["kind"] == "op":
        props = skill["params"].get("properties", {})
        params = "; ".join(f"{k.replace('_', ' ')}: {v.get('description', '')}".strip(": ")
                           for k, v in props.items() if k in skill["plan_params"])
        return f"{name} ({skill['category']}). {skill['description']} Params: {params}"
    ops = ", ".join(o.replace("_", " ") for o in skill["ops"])
    return f"pipeline {name}. {skill['description']} Steps: {ops}"


def _short(text: str, n: int = 240) -> str:
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    cut = text[:n]
    return (cut[: cut.rfind(". ") + 1] if ". " in cut else cut.rsplit(" ", 1)[0] + "...")


def _param_line(schema: dict[str, Any]) -> str:
    typ = schema.get("type", "any")
    typ = "|".join(typ) if isinstance(typ, list) else typ
    if "enum" in schema:
        typ = "one of " + ", ".join(map(str, schema["enum"]))
    if typ == "array" and isinstance(schema.get("items"), dict):
        it = schema["items"]
        typ = "list of " + ("one of " + ", ".join(map(str, it["enum"])) if "enum" in it
                            else str(it.get("type", "any")))
    rng = [f"{k} {schema[k]}" for k in ("minimum", "maximum") if k in schema]
    out = typ + (f" ({', '.join(rng)})" if rng else "")
    if "default" in schema:
        out += f", default {json.dumps(schema['default'])}"
    if schema.get("description"):
        out += f": {_short(schema['description'], 80)}"
    return out


def summary(skill: dict[str, Any]) -> dict[str, Any]:
    """What the LLM planner is shown of a skill (never the whole catalogue): a
    short description and one line per param it may set."""
    if skill["kind"] == "spec":
        return {"pipeline": skill["name"], "description": _short(skill["description"]),
                "steps": skill["ops"]}
    props = skill["params"].get("properties", {})
    return {"op": skill["name"], "category": skill["category"], "cost": skill["cost"],
            "description": _short(skill["description"]),
            "params": {k: _param_line(props[k]) for k in skill["plan_params"]}}
