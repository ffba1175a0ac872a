"""Step 4, validate and repair: the spec validator, plan checks, bounded repair.

Every spec a planner proposes goes through ``include.spec.validate_raw``,
the same validator as a hand-written spec (unknown ops and params, types,
columns no earlier step provides, schedule, source format, output table),
plus checks only a plan needs:

- every prompt template variable of an LLM step is bound (``compose``);
- the source and output are the ones the request and arguments gave (a
  planner never moves them), and no live pipeline already writes the table;
- no step repeats the one before it; a gate or stats step comes after the
  steps that change rows;
- (LLM planner) every op the request's words clearly ask for is there.

Repair rounds are bounded (``max_rounds``). Each round first applies the
fixes that cannot change what the request meant (drop an unknown param,
reset an out-of-range param to its default, add the step that provides a
missing column), then, for the LLM planner, sends the remaining messages
back to the model. When the rounds are exhausted the plan is refused with
the last messages: an unvalidated spec is never handed out.
"""
from __future__ import annotations

import re
from typing import Any

from include.agent import compose

UNKNOWN_PARAM = re.compile(r"^step (\d+) \(([\w]+)\): unknown param\(s\) (.+?) \(known")
BAD_PARAM = re.compile(r"^step (\d+) \(([\w]+)\): param ([\w]+)(?:\.[\w.]+)?: ")
MISSING_COLS = re.compile(r"^step (\d+) \(([\w]+)\): requires column\(s\) (.+?), which")
WHERE_ERR = re.compile(r"^step (\d+) \(([\w]+)\): where ")
PROMPT_ERR = re.compile(r"^step (\d+) \(([\w]+)\): prompt template")
UNKNOWN_OP = re.compile(r"^step (\d+) \(([\w]+)\): unknown op")
LATE_STEPS = ("gx_validate", "stats_report")


def plan_messages(state: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """Problems a plan can have beyond what the spec validator checks."""
    from include.agent.offline import known_ops

    msgs: list[str] = []
    u = state.get("understanding") or {}
    steps = spec.get("steps") or []
    if not isinstance(steps, list):
        return msgs
    ok_steps = [s for s in steps if isinstance(s, dict) and isinstance(s.get("op"), str)]
    have = known_ops()
    if len(ok_steps) == len(steps) and all(s["op"] in have for s in ok_steps):
        try:
            msgs += compose.check_prompts(spec)
        except Exception as exc:  # noqa: BLE001 - reported, the validator names the cause
            msgs.append(f"prompt check failed: {exc}")
    for i in range(1, len(ok_steps)):
        if ok_steps[i] == ok_steps[i - 1]:
            msgs.append(f"step {i + 1} ({ok_steps[i]['op']}): repeats step {i} exactly")
    for i, s in enumerate(ok_steps, start=1):
        if s["op"] in LATE_STEPS:
            later = [t["op"] for t in ok_steps[i:] if t["op"] not in LATE_STEPS]
            if later:
                msgs.append(f"step {i} ({s['op']}): must come after the steps that change "
                            f"rows, but {', '.join(later)} follow it")
        if s["op"] == "llm_synthesize":
            seeds = (s.get("params") or {}).get("seeds") or []
            if isinstance(seeds, list) and any(isinstance(x, str) and len(x.split()) < 2
                                               for x in seeds):
                msgs.append(f"step {i} (llm_synthesize): each seed must describe what to "
                            "write (a topic or instruction of a few words)")
    src = u.get("source") or {}
    if src and not u.get("hand_written"):
        got = spec.get("source") or {}
        if got.get("path") != src.get("path") or got.get("format") != src.get("format"):
            msgs.append(f"source must stay {src.get('path')!r} ({src.get('format')}); the "
                        "planner does not choose where data comes from")
    out = (spec.get("output") or {}).get("table")
    if u.get("output_table") and not u.get("hand_written") and out != u["output_table"]:
        msgs.append(f"output.table must stay {u['output_table']!r}")
    if isinstance(out, str):
        from include.pipelines_catalog import output_owners

        owners = [n for n, _ in output_owners().get(out, []) if n != spec.get("name")]
        if owners:
            msgs.append(f"output table {out!r} is already written by the live pipeline(s) "
                        f"{', '.join(owners)}")
    if state.get("planner") == "llm":
        asked = state.get("asked") or {}
        present = {s["op"] for s in ok_steps}
        for w in asked.get("wanted", []):
            if w["via"] == "rule" and w["op"] not in present and \
                    w["op"] not in asked.get("excluded", []):
                msgs.append(f"the request asks for {w['op']} ({w['part']!r}) but no step "
                            "does it")
        for op in asked.get("excluded", []):
            if op in present:
                msgs.append(f"the request says not to use {op}, but a step does")
    return list(dict.fromkeys(msgs))


def all_messages(state: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    from include.spec import validate_raw

    try:
        msgs = validate_raw(spec)
    except Exception as exc:  # noqa: BLE001 - a spec so odd the validator trips: say so
        msgs = [f"spec could not be validated: {type(exc).__name__}: {exc}"]
    return msgs + plan_messages(state, spec)


def fix(state: dict[str, Any], spec: dict[str, Any], messages: list[str]
        ) -> tuple[dict[str, Any], list[str]]:
    """Fixes that cannot change the request's meaning; returns (spec, actions)."""
    import copy

    from include.agent.offline import known_ops, order_steps

    spec = copy.deepcopy(spec)
    steps = spec.get("steps") if isinstance(spec.get("steps"), list) else []
    actions: list[str] = []
    u = state.get("understanding") or {}
    insert: list[tuple[int, str]] = []
    drop: set[int] = set()
    for m in messages:
        if (g := UNKNOWN_PARAM.match(m)):
            i = int(g.group(1)) - 1
            names = re.findall(r"'([^']+)'", g.group(3))
            for n in names:
                (steps[i].get("params") or {}).pop(n, None)
            actions.append(f"step {i + 1}: dropped unknown param(s) {', '.join(names)}")
        elif (g := BAD_PARAM.match(m)):
            i, p = int(g.group(1)) - 1, g.group(3)
            if isinstance(steps[i].get("params"), dict) and p in steps[i]["params"]:
                steps[i]["params"].pop(p)
                actions.append(f"step {i + 1}: reset {p} to its default ({m.split(': ', 1)[1]})")
        elif (g := WHERE_ERR.match(m)) or (g := PROMPT_ERR.match(m)):
            i = int(g.group(1)) - 1
            key = "where" if WHERE_ERR.match(m) else "template"
            if isinstance(steps[i].get("params"), dict) and key in steps[i]["params"]:
                steps[i]["params"].pop(key)
                actions.append(f"step {i + 1}: removed {key} ({m.split(': ', 1)[1][:120]})")
        elif (g := MISSING_COLS.match(m)):
            i = int(g.group(1)) - 1
            cols = [c.strip() for c in g.group(3).split(",")]
            for c in cols:
                prov = compose.COLUMN_PROVIDERS.get(c) or (
                    "html_extract" if c in ("text", "title") else None)
                present = {s.get("op") for s in steps[:i] if isinstance(s, dict)}
                if prov and prov in known_ops() and prov not in present:
                    insert.append((i, prov))
                    actions.append(f"step {i + 1}: added {prov} before it to provide {c!r}")
        elif (g := UNKNOWN_OP.match(m)):
            drop.add(int(g.group(1)) - 1)
            actions.append(f"step {g.group(1)}: removed the unknown op {g.group(2)!r}")
        elif m.startswith("schedule "):
            spec["schedule"] = u.get("schedule")
            actions.append(f"schedule set to {u.get('schedule')!r} ({m})")
        elif m.startswith("source must stay") or m.startswith("source"):
            src = u.get("source") or {}
            spec["source"] = {**(spec.get("source") if isinstance(spec.get("source"), dict)
                                 else {}), "path": src.get("path"), "format": src.get("format")}
            actions.append("source restored to the requested one")
        elif m.startswith("output.table must stay") or m.startswith("output table"):
            if u.get("output_table"):
                spec["output"] = {"table": u["output_table"]}
                actions.append(f"output table set to {u['output_table']!r}")
        elif m.startswith("name "):
            spec["name"] = u.get("name")
            actions.append(f"name set to {u.get('name')!r}")
        elif m.startswith("unknown top-level key"):
            k = re.search(r"'([^']+)'", m)
            if k:
                spec.pop(k.group(1), None)
                actions.append(f"dropped top-level key {k.group(1)!r}")
        elif m.startswith("version must be"):
            spec["version"] = 1
            actions.append("version set to 1")
        elif re.match(r"^step (\d+) \(\w+\): repeats step", m):
            drop.add(int(re.match(r"^step (\d+)", m).group(1)) - 1)
            actions.append(m.split(": ", 1)[0] + ": removed (a repeat of the step before)")
        elif re.match(r"^step (\d+) \((gx_validate|stats_report)\): must come after", m):
            actions.append("moved gate and stats steps after the steps that change rows")
            spec["steps"] = steps = order_steps([s for s in steps if isinstance(s, dict)
                                                 and "op" in s])
    for i, op in sorted(insert, reverse=True):
        steps.insert(i, {"op": op, "params": {}})
    if drop:
        steps[:] = [s for j, s in enumerate(steps) if j not in drop]
    for s in steps:
        if isinstance(s, dict) and s.get("params") == {}:
            s.pop("params")
    return spec, actions


def validate_and_repair(state: dict[str, Any]) -> dict[str, Any]:
    from include.agent.graph import PlanRefused

    max_rounds = int((state.get("options") or {}).get("max_rounds", 3))
    spec = state["spec"]
    rounds: list[dict[str, Any]] = []
    for rnd in range(max_rounds + 1):
        messages = all_messages(state, spec)
        entry: dict[str, Any] = {"round": rnd + 1, "messages": messages, "actions": []}
        rounds.append(entry)
        if not messages:
            break
        if rnd == max_rounds:
            state["validation"] = rounds
            state["rounds_used"] = rnd
            state["errors"] = messages
            raise PlanRefused(f"no valid spec after {max_rounds} repair round(s); the "
                              "validator's last messages:\n  - " + "\n  - ".join(messages))
        fixed, actions = fix(state, spec, messages)
        entry["actions"] = actions
        if state.get("planner") == "llm" and all_messages(state, fixed):
            from include.agent.llm_planner import repair_llm

            fixed, llm_actions = repair_llm(state, fixed, all_messages(state, fixed), rnd + 1)
            entry["actions"] += llm_actions
        if not entry["actions"] or fixed == spec:
            state["validation"] = rounds
            state["rounds_used"] = rnd + 1
            state["errors"] = messages
            raise PlanRefused("the planner could not repair the spec; the validator's "
                              "messages:\n  - " + "\n  - ".join(messages))
        spec = fixed
    state["spec"] = spec
    state["validation"] = rounds
    state["rounds_used"] = len(rounds) - 1
    state["valid"] = True
    state["errors"] = []
    return state


def validate_only(state: dict[str, Any]) -> dict[str, Any]:
    """Validation without repair (hand-written specs)."""
    from include.agent.graph import refuse

    messages = all_messages(state, state["spec"])
    state["validation"] = [{"round": 1, "messages": messages, "actions": []}]
    state["rounds_used"] = 0
    if messages:
        state["errors"] = messages
        return refuse(state, "invalid spec:\n  - " + "\n  - ".join(messages))
    state["valid"] = True
    state["errors"] = []
    return state
