"""Feedback on an existing spec: change what the feedback names, keep the rest.

``plan --from SPEC --feedback TEXT`` (and the HITL "revise" answer) start
from the spec being revised. Each part of the feedback is read with the same
rules as a request (``understand``): an op it names with a negation ("no
augmentation", "drop the dedup step") is removed; "less"/"more" adjust the
op's amount (``llm_augment.n`` and its ``where`` selector, dedup
thresholds, score cut-offs); values it states (a threshold, languages, a
count, a selector) update that op's params; an op it asks for that the spec
lacks is inserted at its canonical place among the existing steps; a
schedule or output table it names replaces the old one. Steps the feedback
does not touch keep their op, params and order exactly. Feedback nothing in
it can act on is refused with a message rather than silently ignored.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from include.agent import compose
from include.agent import params as P
from include.agent.offline import GROUPS, known_ops, params_for, rank

LESS = re.compile(r"\b(less|fewer|reduce\w*|lower|not as much|too much|too many|smaller|"
                  r"softer|looser|less aggressive|too aggressive|too strict)\b", re.I)
MORE = re.compile(r"\b(more|increase\w*|higher|additional|extra|too few|too little|"
                  r"stricter|more aggressive|tighter|harsher)\b", re.I)
REMOVE_STEP = re.compile(r"\b(remove|drop|delete|take out|get rid of)\s+(?:the\s+|that\s+)?"
                         r"(?:[\w-]+\s+){0,3}?(?:step|stage)s?\b", re.I)
NO_SCHEDULE = re.compile(r"\b(no schedule|unscheduled|manual(?:ly)?|only when triggered|"
                         r"on demand|don'?t schedule)\b", re.I)


def _where_bound(expr: str | None) -> int | None:
    m = re.fullmatch(r"\s*difficulty\s*>=\s*(\d)\s*", expr or "")
    return int(m.group(1)) if m else None


def _insert(steps: list[dict[str, Any]], step: dict[str, Any]) -> int:
    """Insert before the first existing step that ranks later; the others keep their order."""
    r = rank(step["op"])
    for i, s in enumerate(steps):
        if rank(s["op"]) > r:
            steps.insert(i, step)
            return i
    steps.append(step)
    return len(steps) - 1


def _explicit(op: str, part: str, u: dict[str, Any]) -> dict[str, Any]:
    """Params the part's words state, not the ones ``params_for`` fills by default."""
    got = params_for(op, part, u)
    base = params_for(op, "", u)
    return {k: v for k, v in got.items() if base.get(k) != v}


def revise_state(state: dict[str, Any]) -> dict[str, Any]:
    from include.agent.graph import PlanRefused, flag

    u = state["understanding"]
    base = state["from_spec"]
    spec = copy.deepcopy(base)
    spec["name"] = u["name"]
    steps: list[dict[str, Any]] = [s for s in spec.get("steps") or [] if isinstance(s, dict)]
    for s in steps:
        s.setdefault("params", {})
    changes: list[str] = []
    touched: dict[int, str] = {}
    fb = u.get("feedback") or {"parts": []}
    have = known_ops()

    def idx(op: str) -> list[int]:
        return [i for i, s in enumerate(steps) if s["op"] == op]

    for part in fb["parts"]:
        text = part["text"]
        ops: list[tuple[str, bool]] = []
        for it in part["intents"]:
            for op in GROUPS.get(it["op"], [it["op"]]):
                if op in have:
                    ops.append((op, it["negated"]))
        if it_present := [o for o, _ in ops if idx(o)]:
            # "deduplication" names the step the spec has (exact or near), not both.
            if any(o in GROUPS["dedup"] for o in it_present):
                ops = [(o, n) for o, n in ops if o not in GROUPS["dedup"] or idx(o)]
        removing = bool(REMOVE_STEP.search(text))
        for op, negated in ops:
            where = idx(op)
            if negated or (removing and where):
                for i in reversed(where):
                    steps.pop(i)
                if where:
                    changes.append(f"removed {op} ({text!r})")
                continue
            less, more = bool(LESS.search(text)), bool(MORE.search(text))
            if where:
                i = where[0]
                s = steps[i]
                p = s["params"]
                before = copy.deepcopy(p)
                explicit = _explicit(op, text, u)
                if op == "llm_augment" and (less or more):
                    explicit.pop("where", None)  # "less on easy ones" excludes them
                p.update(explicit)
                if op == "llm_augment" and (less or more) and p == before:
                    _amount_augment(s, text, less, steps, changes, u)
                elif op in ("minhash_dedup", "semantic_dedup") and (less or more) and p == before:
                    default = 0.8 if op == "minhash_dedup" else 0.85
                    t = float(p.get("threshold", default))
                    # Less dedup = only closer copies are duplicates = higher threshold.
                    p["threshold"] = round(min(0.95, t + 0.05) if less else max(0.5, t - 0.05), 2)
                elif op == "llm_score" and (less or more) and p == before:
                    t = float(p.get("threshold", 3))
                    p["threshold"] = max(1, t - 1) if less else min(5, t + 1)
                if p != before:
                    changes.append(f"changed {op} params {_delta(before, p)} ({text!r})")
                    touched[id(s)] = text
            else:
                new = {"op": op, "params": params_for(op, text, u)}
                _insert(steps, new)
                touched[id(new)] = text
                changes.append(f"added {op} ({text!r})")
                if op == "llm_augment":
                    _ensure_provider(new, steps, changes, text)
    sched = P.schedule(state.get("feedback") or "")
    if sched and sched != spec.get("schedule"):
        changes.append(f"schedule {spec.get('schedule')!r} -> {sched!r}")
        spec["schedule"] = sched
    elif NO_SCHEDULE.search(state.get("feedback") or "") and spec.get("schedule"):
        changes.append(f"schedule {spec.get('schedule')!r} -> None")
        spec["schedule"] = None
    if u.get("output_table") and u["output_table"] != (spec.get("output") or {}).get("table"):
        changes.append(f"output table -> {u['output_table']!r}")
        spec["output"] = {"table": u["output_table"]}
    if not changes:
        raise PlanRefused("the feedback asks for no change the agent can make to this spec "
                          f"({state.get('feedback')!r}); name a step or a value, e.g. \"less "
                          "augmentation on easy samples\", \"drop the dedup step\", \"use a "
                          "near-duplicate threshold of 0.9\", \"run it every night\"")
    for s in steps:
        if not s.get("params"):
            s.pop("params", None)
    spec["steps"] = steps
    notes = []
    for s in steps:
        why = touched.get(id(s))
        notes.append({"op": s["op"], "why": f"changed by the feedback {why!r}" if why
                      else "kept from the previous round (the feedback does not touch it)"})
    for c in changes:
        flag(state, "revision", c)
    state["spec"] = spec
    state["draft_notes"] = notes
    state["changes"] = changes
    state["planner"] = "revise"
    return state


def _delta(before: dict[str, Any], after: dict[str, Any]) -> str:
    keys = sorted(set(before) | set(after))
    return ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in keys
                     if before.get(k) != after.get(k))


def _ensure_provider(step: dict[str, Any], steps: list[dict[str, Any]], changes: list[str],
                     text: str) -> None:
    from ray_jobs.where import where_columns

    expr = (step.get("params") or {}).get("where")
    if not expr:
        return
    pos = steps.index(step)
    for col in sorted(where_columns(expr)):
        prov = compose.COLUMN_PROVIDERS.get(col)
        if prov and prov in known_ops() and prov not in {s["op"] for s in steps[:pos]}:
            steps.insert(pos, {"op": prov, "params": {}})
            changes.append(f"added {prov} before llm_augment: its where reads {col!r}")
            pos += 1


def _amount_augment(step: dict[str, Any], text: str, less: bool, steps: list[dict[str, Any]],
                    changes: list[str], u: dict[str, Any]) -> None:
    """"less augmentation on easy samples": stop augmenting easy rows (raise the
    difficulty floor); "less augmentation": fewer variants, else a higher floor;
    "more augmentation": more variants."""
    p = step["params"]
    n = int(p.get("n", 1))
    bound = _where_bound(p.get("where"))
    easy = bool(re.search(r"\b(easy|easier|simple|trivial|basic)\b", text, re.I))
    if not less:
        p["n"] = min(20, n + 1)
        return
    if easy or n <= 1:
        if p.get("where") and bound is None:
            p["where"] = f"({p['where']}) and difficulty >= 3"
        else:
            p["where"] = f"difficulty >= {min(5, max(3, (bound or 0) + 1))}"
        _ensure_provider(step, steps, changes, text)
    else:
        p["n"] = n - 1
