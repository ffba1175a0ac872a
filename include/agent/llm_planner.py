"""The LLM planner (``--llm openai``): the model chooses the steps, nothing else.

As in Data-Juicer's ``djx plan``, the model is asked for as little as
possible: the list of steps and their params. Name, source, output table
and schedule come from the request and the arguments (``understand``), and
prompt params the model leaves out are composed as the offline planner
does. The answer's JSON schema is derived from the catalogue for this
request: ``steps`` items are an ``anyOf`` with one branch per *retrieved*
op, ``{"op": {"const": NAME}, "params": <that op's params schema>}``, so an
invented op name or param cannot even be decoded (guided decoding on vLLM
and llama.cpp) and is rejected by validation when a server ignores the
schema. The model sees only the retrieved skills, never the whole
catalogue. Temperature 0; answers cached (``include.agent.llm``).

Repair: the validator's messages and the previous answer go back to the
model in the next round (``repair_llm``); the graph bounds the rounds. An
endpoint that keeps failing (429/500 past the retry budget, answers that
never parse) ends in a clean refusal, never in an unvalidated spec.
"""
from __future__ import annotations

import json
from typing import Any

from include.agent.offline import collect, known_ops, params_for, skeleton

TEMPLATE = "agent_plan"
SCHEMA_KEYS = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "minItems",
               "maxItems", "items", "minLength", "anyOf", "required", "properties",
               "additionalProperties")
MAX_STEPS = 12
# Op skills per part of the request the model is shown (plus the ops the request's
# words name): a small model's prompt and its decoding grammar stay small.
LLM_TOP_K = 3


def _slim(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: (_slim(v) if isinstance(v, dict) and k == "items" else v)
            for k, v in schema.items() if k in SCHEMA_KEYS}


def candidate_ops(state: dict[str, Any]) -> list[str]:
    """The ops the model may choose: retrieved for some part, or asked by the rules."""
    have = known_ops()
    ops = [s["name"] for r in state.get("retrieved") or []
           for s in [k for k in r["skills"] if k["kind"] == "op"][:LLM_TOP_K]]
    for r in state.get("retrieved") or []:
        for s in r["skills"]:
            if s["kind"] == "spec":
                from include.agent.skills import spec_skills

                ops += next((k["ops"] for k in spec_skills() if k["name"] == s["name"]), [])
    ops += [w["op"] for w in (state.get("asked") or {}).get("wanted", [])]
    if (state.get("understanding") or {}).get("source", {}).get("format") in ("html", "warc"):
        ops.append("html_extract")
    return sorted({o for o in ops if o in have})


def answer_schema(ops: list[str]) -> dict[str, Any]:
    from include.agent.skills import OPERATIONAL_PARAMS
    from include.registry import get_op

    branches = []
    for op in ops:
        props = get_op(op).meta.params.get("properties", {})
        plan = {k: _slim(v) for k, v in props.items() if k not in OPERATIONAL_PARAMS}
        required = [k for k in get_op(op).meta.params.get("required", []) if k in plan]
        branches.append({"type": "object",
                         "properties": {"op": {"const": op},
                                        "params": {"type": "object", "properties": plan,
                                                   "required": required,
                                                   "additionalProperties": False}},
                         "required": ["op", "params"], "additionalProperties": False})
    return {"type": "object",
            "properties": {"steps": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS,
                                     "items": {"anyOf": branches}}},
            "required": ["steps"], "additionalProperties": False}


def _skills_text(state: dict[str, Any], ops: list[str]) -> str:
    from include.agent.skills import op_skill, summary
    from include.registry import get_op

    return "\n".join(json.dumps(summary(op_skill(get_op(o).meta)), ensure_ascii=False)
                     for o in ops)


def _ask(state: dict[str, Any], previous: str = "", problems: list[str] | None = None,
         round_no: int = 0) -> list[dict[str, Any]]:
    from include.agent.graph import PlanRefused
    from include.agent.llm import LLMCallError, call

    ops = state.setdefault("llm_ops", candidate_ops(state))
    if not ops:
        raise PlanRefused("no op in the catalogue fits the request (every part is a low "
                          "match); `datamill op new \"DESCRIPTION\"` drafts a new op for review")
    u = state["understanding"]
    request = "\n".join(p["text"] for p in u["parts"])  # injected parts are left out
    if state.get("feedback"):
        request += "\nFeedback on the previous plan: " + state["feedback"]
    variables = {"request": request, "format": u["source"]["format"],
                 "skills": _skills_text(state, ops), "previous": previous,
                 "problems": "\n".join(f"- {m}" for m in problems or [])}
    try:
        parsed, info = call(TEMPLATE, variables, answer_schema(ops))
    except LLMCallError as exc:
        state.setdefault("llm_calls", []).append({"round": round_no, "template": TEMPLATE + "/v1",
                                                  "error": str(exc)})
        raise PlanRefused(str(exc)) from None
    state.setdefault("llm_calls", []).append({"round": round_no, **info})
    steps = parsed.get("steps") if isinstance(parsed, dict) else None
    if not isinstance(steps, list):
        raise PlanRefused("the LLM's answer has no list of steps")
    return [s for s in steps if isinstance(s, dict)]


def _complete(state: dict[str, Any], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prompt params the model left out, composed from the request's words."""
    u = state["understanding"]
    asked = state.get("asked") or {}
    out = []
    for s in steps:
        op, params = s.get("op"), s.get("params")
        if not isinstance(params, dict):
            params = {}
        if op in ("llm_score", "llm_annotate", "llm_rewrite", "llm_augment", "llm_synthesize") \
                and op in known_ops():
            part = next((w["part"] for w in asked.get("wanted", []) if w["op"] == op),
                        state.get("request") or "")
            for k, v in params_for(op, part, u).items():
                params.setdefault(k, v)
        out.append({"op": op, **({"params": params} if params else {})})
    return out


def draft_llm(state: dict[str, Any]) -> dict[str, Any]:
    state["asked"] = collect(state)
    state["planner"] = "llm"
    steps = _complete(state, _ask(state))
    state["spec"] = {**skeleton(state, []), "steps": steps}
    state["draft_notes"] = [{"op": s.get("op"), "why": "chosen by the LLM planner from the "
                             "retrieved skills" + (f" (the request's words ask for it: "
                                                   f"{w['part']!r})" if (w := next(
                                                       (w for w in state["asked"]["wanted"]
                                                        if w["op"] == s.get("op")), None))
                                                   else "")} for s in steps]
    return state


def repair_llm(state: dict[str, Any], spec: dict[str, Any], messages: list[str],
               round_no: int) -> tuple[dict[str, Any], list[str]]:
    """Ask the model again with its previous answer and the validator's messages."""
    # Sorted keys: a cached answer comes back key-sorted, and the next prompt (hence
    # its cache key) must not depend on whether the last answer was cached.
    previous = json.dumps({"steps": spec.get("steps") or []}, ensure_ascii=False,
                          sort_keys=True)
    steps = _complete(state, _ask(state, previous, messages, round_no))
    fixed = {**spec, "steps": steps}
    state["draft_notes"] = [{"op": s.get("op"), "why": f"chosen by the LLM planner (repair "
                             f"round {round_no})"} for s in steps]
    return fixed, [f"asked the model again with {len(messages)} message(s)"]
