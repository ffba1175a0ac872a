"""The offline planner (``--llm none``): retrieval plus rules, no model.

For each part of the request it takes the ops the part's words ask for
(``understand.INTENTS``); a part no rule covers gets the best retrieved op
skill when retrieval is confident (hybrid score >= ``ACCEPT``), and a part
that asks to reuse "the usual" pipeline gets the best retrieved spec skill's
steps. Steps are put in one canonical order (parse, filter, redact, dedup,
score, annotate, rewrite, augment, synthesize, evaluate, stats), params
come from the words of the part that asked for the op (``params``,
``compose``), and columns a step needs are provided by adding the step that
makes them (a ``where: difficulty >= 4`` gets an ``llm_annotate`` before it).

A part that asks for an action no skill fits (a low match, no rule) is
*unserved*: when nothing else is asked the plan is refused with the
closest skills and a hint to ``datamill op new``; otherwise it is flagged.
"""
from __future__ import annotations

import re
from typing import Any

from include.agent import compose
from include.agent import params as P

ACCEPT = 0.50
# Canonical position of each op; generated and unknown ops go by category.
ORDER = ["html_extract", "normalize", "language_filter", "quality_filter", "pii_redact",
         "exact_dedup", "minhash_dedup", "semantic_dedup", "embed_quality_score", "llm_score",
         "llm_annotate", "llm_rewrite", "llm_augment", "llm_synthesize", "gx_validate",
         "stats_report"]
CATEGORY_RANK = {"acquire": 0, "parse": 1, "filter": 3.5, "rewrite": 4.5, "dedup": 7.5,
                 "score": 9.5, "annotate": 10.5, "augment": 12.5, "synthesize": 13.5,
                 "evaluate": 14, "stats": 15, "publish": 16}
# Words that ask for a group of ops: "remove duplicates" is exact + near-duplicate
# removal (as the bundled pipelines do), "clean the text" is normalise + rules.
GROUPS = {"dedup": ["exact_dedup", "minhash_dedup"], "clean": ["normalize", "quality_filter"]}
ACTION = re.compile(r"\b(remove|drop|filter|keep|score|rate|label|annotate|augment|generate|"
                    r"rewrite|translate|redact|mask|validate|check|report|compute|extract|"
                    r"convert|train|fine-?tune|upload|download|send|email|crawl|scrape|ocr|"
                    r"transcribe|detect|count|sort|split|merge|join|encrypt|compress|delete|"
                    r"plot|visuali[sz]e|predict|forecast|buy|book|order|deploy|index|"
                    r"transform|classify|segment|tokeni[sz]e|sample|balance|clean)\w*",
                    re.I)
CONTINUATION = re.compile(r"\b(those|them|these|ones|the rest|such|it)\b|\d", re.I)
INGEST_ONLY = re.compile(r"\b(as[- ]is|unchanged|without (?:any )?(?:processing|changes)|"
                         r"just (?:ingest|load|copy|publish)|only (?:ingest|load|copy))\b", re.I)


def rank(op: str) -> float:
    if op in ORDER:
        return ORDER.index(op)
    from include.registry import UnknownOpError, get_op

    try:
        return CATEGORY_RANK.get(get_op(op).meta.category, 16)
    except UnknownOpError:
        return 16


def order_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for _, s in sorted(enumerate(steps), key=lambda t: (rank(t[1]["op"]), t[0]))]


def known_ops() -> set[str]:
    from include.registry import all_ops

    return {m.name for m in all_ops()}


def schema_props(op: str) -> dict[str, Any]:
    from include.registry import get_op

    return get_op(op).meta.params.get("properties", {})


def params_for(op: str, part: str, u: dict[str, Any], needed: set[str] | None = None
               ) -> dict[str, Any]:
    """Params for ``op`` from the words of ``part`` (and the request's globals)."""
    out: dict[str, Any] = {}
    t = part
    if op == "language_filter":
        out["languages"] = P.languages(part) or u.get("languages") or ["en"]
        m = re.search(r"confidence (?:of |above |at least )?(0?\.\d+)", t, re.I)
        if m:
            out["min_confidence"] = float(m.group(1))
    elif op == "quality_filter":
        m = re.search(r"\b(c4|fineweb|gopher)\b", t, re.I)
        if m:
            out["preset"] = m.group(1).lower()
        out.update(P.words_bound(t))
    elif op == "pii_redact":
        kinds = [k for k, pat in (("email", r"e-?mail"), ("phone", r"phone|telephone"),
                                  ("ip_address", r"\bip\b|ip address"),
                                  ("credit_card", r"credit[- ]?card|card number"),
                                  ("iban", r"\biban|bank account"))
                 if re.search(pat, t, re.I)]
        if kinds:
            out["kinds"] = kinds
    elif op == "minhash_dedup":
        v = P.fraction(t, r"similar|jaccard|threshold|overlap|near|dup|match")
        if v is not None and v >= 0.05:
            out["threshold"] = v
    elif op == "semantic_dedup":
        v = P.fraction(t, r"cosine|similar|threshold|semantic|meaning")
        if v is not None:
            out["threshold"] = v
    elif op == "embed_quality_score":
        v = P.fraction(t, r"score|threshold|quality|above|below|least|classifier")
        if v is not None:
            out["threshold"] = v
    elif op == "llm_score":
        v = P.cutoff(t, 1, 5)
        ten = re.search(r"\b(?:1|one)\s*(?:-|to|–)\s*10\b|\bout of (?:10|ten)\b|/\s*10\b", t, re.I)
        if ten:  # the request's 1-10 scale, mapped linearly onto llm_score's 1-5
            v10 = P.cutoff(t, 1, 10)
            v = None if v10 is None else round(1 + (v10 - 1) * 4 / 9, 1)
            if v is not None:
                u.setdefault("param_notes", []).append(
                    f"llm_score rates 1-5: the request's cut-off {v10:g} on 1-10 became {v:g}")
        if v is not None:
            out["threshold"] = int(v) if v == int(v) else v
        r = compose.rubric(u, t)
        if r:
            out["rubric"] = r
    elif op == "llm_annotate":
        out.update(compose.annotate_params(u, t, needed or set()))
    elif op == "llm_rewrite":
        out["instructions"] = compose.rewrite_instruction(u, t)
    elif op == "llm_augment":
        n = P.count(t, r"variants?|variations?|versions?|copies|paraphrases?|rewrites?|"
                       r"examples?|samples?|new (?:ones|problems|examples)|times")
        if n:
            out["n"] = min(n, 20)
        w = compose.where(t)
        if w:
            out["where"] = w
        out["instructions"] = compose.augment_instruction(u, t)
    elif op == "llm_synthesize":
        n = P.count(t, r"\w*\s*(?:examples?|samples?|questions?|problems?|dialogues?|"
                       r"conversations?|instructions?|pairs?|exercises?|items?|documents?)")
        out.update(compose.synthesize_params(u, t, n))
    elif op == "gx_validate":
        out.update(gx_params(t))
    props = schema_props(op)
    return {k: v for k, v in out.items() if k in props}


def gx_params(text: str) -> dict[str, Any]:
    """Expectations in GX's own type names from the words of a quality-gate request."""
    exps: list[dict[str, Any]] = []
    t = text.lower()
    if re.search(r"\b(unique ids?|ids? (?:are|is|must be) unique|duplicate ids?)\b", t):
        exps.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}})
    if re.search(r"\b(no (?:null|missing|empty)|not (?:be )?(?:null|empty)|non-?empty|"
                 r"must have text|empty text)", t):
        exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}})
    m = re.search(r"between (\d+) and (\d+) (?:char|characters)", t)
    if m:
        exps.append({"type": "expect_column_value_lengths_to_be_between",
                     "kwargs": {"column": "text", "min_value": int(m.group(1)),
                                "max_value": int(m.group(2))}})
    m = re.search(r"at least (\d+) (?:rows|documents|samples|records)", t)
    if m:
        exps.append({"type": "expect_table_row_count_to_be_between",
                     "kwargs": {"min_value": int(m.group(1))}})
    out: dict[str, Any] = {}
    if exps:
        out["expectations"] = exps
    else:
        out["suite"] = "datamill_defaults"
    if re.search(r"\b(warn(?:ing)? only|just warn|only warn|don'?t block|do not block|"
                 r"warn but|without blocking)\b", t):
        out["on_fail"] = "warn"
    elif re.search(r"\b(block|fail|stop|gate)\b", t):
        out["on_fail"] = "block"
    return out


def best_spec(text: str) -> dict[str, Any] | None:
    """The live spec skill that fits ``text`` best (among specs only)."""
    from include.agent.retrieve import retrieve_for
    from include.agent.skills import spec_skills

    specs = spec_skills()
    if not specs:
        return None
    hit = retrieve_for(text, specs, k=1)["skills"]
    return hit[0] if hit else None


def collect(state: dict[str, Any]) -> dict[str, Any]:
    """What the request asks for: ops (with the part that asked), excluded ops,
    reused spec skill, unserved parts. Shared with the LLM planner's checks."""
    u = state["understanding"]
    retrieved = {r["index"]: r for r in state.get("retrieved", [])}
    have = known_ops()
    wanted: list[dict[str, Any]] = []
    excluded: set[str] = set()
    reuse = None
    unserved = []
    previous: list[dict[str, Any]] = []
    for i, part in enumerate(u["parts"]):
        r = retrieved.get(i, {"skills": [], "best": 0.0, "low_match": True})
        served = False
        if not part["intents"] and previous and CONTINUATION.search(part["text"]):
            # "..., and keep those scoring at least 4": the values belong to the ops of
            # the part before.
            for w in previous:
                w["part"] = f"{w['part']}, {part['text']}"
            continue
        first_new = len(wanted)
        for it in part["intents"]:
            ops = GROUPS.get(it["op"], [it["op"]])
            for op in ops:
                if op not in have:
                    continue
                served = True
                if it["negated"]:
                    excluded.add(op)
                else:
                    wanted.append({"op": op, "part": part["text"], "via": "rule",
                                   "trigger": it["trigger"], "part_index": i})
            if it["op"] == "dedup" and it["negated"]:
                excluded |= {"exact_dedup", "minhash_dedup", "semantic_dedup"}
            if it["op"] == "clean" and it["negated"]:
                excluded |= set(GROUPS["clean"])
        if part.get("reuse"):
            best = best_spec(part["text"])
            if best and (reuse is None or best["score"] > reuse["score"]):
                reuse = {**best, "part": part["text"]}
                served = True
                # The reused pipeline is the cleaning asked for.
                wanted[first_new:] = [w for w in wanted[first_new:] if w.get("trigger")
                                      and not re.match(r"clean", w["trigger"], re.I)]
        if not served and r["skills"]:
            top = next((s for s in r["skills"] if s["kind"] == "op"), None)
            if top and top["score"] >= ACCEPT and not r["low_match"]:
                wanted.append({"op": top["name"], "part": part["text"], "via": "retrieval",
                               "score": top["score"], "part_index": i})
                served = True
        if served:
            previous = wanted[first_new:]
        if not served and ACTION.search(part["text"]):
            unserved.append({"part": part["text"], "best": r.get("best", 0.0),
                             "closest": [s["name"] for s in r["skills"][:3]]})
    return {"wanted": wanted, "excluded": sorted(excluded), "reuse": reuse,
            "unserved": unserved}


def build_steps(state: dict[str, Any], asked: dict[str, Any]) -> tuple[list, list]:
    """(steps, notes) for what ``collect`` found."""
    from include.agent.skills import spec_skills

    u = state["understanding"]
    fmt = u["source"]["format"]
    steps: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    seen: set[str] = set()
    if asked["reuse"]:
        spec = next((s for s in spec_skills() if s["name"] == asked["reuse"]["name"]), None)
        for s in (spec or {}).get("steps", []):
            if s["op"] in asked["excluded"] or s["op"] in seen:
                continue
            steps.append({"op": s["op"], "params": dict(s.get("params") or {})})
            notes.append({"op": s["op"], "why": f"reused from the live pipeline "
                          f"{spec['name']!r} (asked: {asked['reuse']['part']!r})",
                          "via": "spec skill", "skill": spec["name"],
                          "score": asked["reuse"]["score"]})
            seen.add(s["op"])
    # An op's params come from the words of every part that asked for it, in the
    # request's order ("strip boilerplate, ..., apply gopher quality rules").
    by_op: dict[str, dict[str, Any]] = {}
    for w in asked["wanted"]:
        if w["op"] in asked["excluded"]:
            continue
        if w["op"] in by_op and w["part"] not in by_op[w["op"]]["part"]:
            by_op[w["op"]] = {**by_op[w["op"]], "part": f"{by_op[w['op']]['part']}; {w['part']}"}
        by_op.setdefault(w["op"], w)
    needed: set[str] = set()
    if "llm_augment" in by_op:
        expr = compose.where(by_op["llm_augment"]["part"])
        if expr:
            from ray_jobs.where import where_columns

            needed |= where_columns(expr)
    for col in sorted(needed):
        prov = compose.COLUMN_PROVIDERS.get(col)
        if prov and prov not in by_op and prov not in seen and prov in known_ops():
            by_op[prov] = {"op": prov, "part": by_op["llm_augment"]["part"], "via": "needed",
                           "why": f"provides the column {col!r} that llm_augment's where "
                                  "selector reads"}
    if fmt in ("html", "warc") and "html_extract" not in by_op and "html_extract" not in seen:
        by_op["html_extract"] = {"op": "html_extract", "part": "", "via": "format",
                                 "why": f"the source is {fmt}: the main text must be "
                                        "extracted before any text step"}
    for op, w in by_op.items():
        if op in seen:
            # The reused spec already has it: apply this part's params on top.
            i = next(j for j, s in enumerate(steps) if s["op"] == op)
            steps[i]["params"].update(params_for(op, w["part"], u, needed))
            continue
        steps.append({"op": op, "params": params_for(op, w["part"], u, needed)})
        why = w.get("why") or (f"asked for: {w['part']!r}" + (
            f" (matched {w['trigger']!r})" if w.get("trigger") else "") + (
            f" (retrieved, score {w['score']:.2f})" if w["via"] == "retrieval" else ""))
        notes.append({"op": op, "why": why, "via": w["via"], "part": w["part"]})
        seen.add(op)
    order = order_steps([{**s, "_n": n} for s, n in zip(steps, notes)])
    return ([{"op": s["op"], "params": s["params"]} for s in order],
            [s["_n"] for s in order])


def skeleton(state: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The spec around the steps: name, description, schedule, source, output."""
    u = state["understanding"]
    src = u["source"]
    source = {"path": src["path"], "format": src["format"]}
    if src["format"] in ("jsonl", "parquet", "csv") and state.get("id_field", True):
        source["id_field"] = "id"
    req = " ".join((state.get("request") or "").split())
    return {"version": 1, "name": u["name"],
            "description": (req[:497] + "...") if len(req) > 500 else req,
            "schedule": u.get("schedule"), "source": source,
            "steps": [{"op": s["op"], **({"params": s["params"]} if s["params"] else {})}
                      for s in steps],
            "output": {"table": u["output_table"]}}


def draft_offline(state: dict[str, Any]) -> dict[str, Any]:
    from include.agent.graph import PlanRefused, flag

    asked = collect(state)
    steps, notes = build_steps(state, asked)
    state["asked"] = asked
    drafted = []
    for un in asked["unserved"]:
        flag(state, "low_match", f"no op in the catalogue fits {un['part']!r} (closest: "
             f"{', '.join(un['closest']) or 'none'}, best score {un['best']:.2f}); "
             f"`datamill op new \"{un['part'][:80]}\"` can draft one for review")
        if (state.get("options") or {}).get("draft_ops"):
            drafted.append(_draft_op_for(state, un["part"]))
    if not steps and not INGEST_ONLY.search(state.get("request") or ""):
        if asked["unserved"]:
            parts = "; ".join(repr(u["part"]) for u in asked["unserved"])
            if any(drafted):
                raise PlanRefused(f"no op can do {parts} yet; drafted for review: "
                                  + ", ".join(d for d in drafted if d)
                                  + " (approve it, then plan again)")
            raise PlanRefused(f"no op can do what the request asks: {parts}. Closest skills: "
                              + ", ".join(asked["unserved"][0]["closest"])
                              + ". `datamill op new \"DESCRIPTION\"` drafts a new op for review.")
        raise PlanRefused("the request asks for nothing the op catalogue can do (no filter, "
                          "dedup, scoring, labelling, rewriting, augmentation, synthesis, "
                          "validation or statistics step); say what should happen to the data")
    state["spec"] = skeleton(state, steps)
    state["draft_notes"] = notes
    state["planner"] = "offline"
    return state


def _draft_op_for(state: dict[str, Any], part: str) -> str | None:
    """``plan --draft-ops``: a new op for an unserved part, drafted into review."""
    from include.agent.graph import flag
    from include.agent.opgen import OpGenError, draft_op
    from include.agent.review_store import ReviewError, ReviewStore

    try:
        draft = draft_op(part, llm=state.get("llm") or "none")
        path = ReviewStore().save_op(draft)
    except (OpGenError, ReviewError) as exc:
        flag(state, "op_not_drafted", f"could not draft an op for {part!r}: {exc}")
        return None
    flag(state, "op_drafted", f"drafted op {draft['name']!r} for {part!r} into review ({path}); "
         "it is not used until a person approves it and its tests pass")
    return f"op-{draft['name']}"
