"""Prompt composition for the LLM ops in a plan.

The agent writes the *params* of ``llm_score`` (a rubric for the domain),
``llm_annotate`` (a label set as a JSON schema, instructions),
``llm_rewrite`` / ``llm_augment`` / ``llm_synthesize`` (an instruction) and
``llm_augment.where`` (a selector such as ``difficulty >= 4``). Every one of
them is a template *variable*: the request's words end up quoted inside a
value, never inside a template (include/prompts renders in a sandbox).

``check_prompts`` proves every template variable is bound: by the
template's defaults, by the op's params, or by a column the rows have at
that step. ``render_prompts`` renders each LLM step's messages for one
sample row, exactly as the op will send them (the op's own template, schema
and variables), for the reviewer.
"""
from __future__ import annotations

import json
import re
from typing import Any

LLM_OPS = ("llm_score", "llm_annotate", "llm_rewrite", "llm_augment", "llm_synthesize")

RUBRICS = {
    "math": ("5 = a correct, complete, self-contained math problem with a clear, correct "
             "step-by-step solution; 4 = correct, with minor gaps in reasoning or formatting; "
             "3 = understandable but skips steps or is partly unclear; 2 = confusing, "
             "incomplete or probably wrong; 1 = not a math problem, garbled or wrong."),
    "code": ("5 = correct, idiomatic, self-contained code with a clear explanation; 4 = "
             "correct with minor style or clarity issues; 3 = works but is hard to follow or "
             "lacks context; 2 = buggy, fragmentary or mostly boilerplate; 1 = not code, "
             "broken or harmful."),
    "medical": ("5 = accurate, evidence-based, clearly written and safe; 4 = accurate with "
                "minor omissions; 3 = mostly accurate but vague; 2 = misleading or "
                "incomplete; 1 = wrong, unsafe or not medical content."),
    "legal": ("5 = accurate, precise and clearly reasoned legal text; 4 = accurate with minor "
              "imprecision; 3 = understandable but vague; 2 = confusing or partly wrong; "
              "1 = wrong, garbled or not legal content."),
    "dialogue": ("5 = a helpful, correct, polite and coherent conversation; 4 = helpful with "
                 "minor issues; 3 = acceptable but generic; 2 = unhelpful or incoherent; "
                 "1 = harmful, spam or gibberish."),
    "science": ("5 = accurate, well-explained scientific content; 4 = accurate with minor "
                "issues; 3 = acceptable but shallow; 2 = confusing or partly wrong; "
                "1 = wrong or not scientific content."),
    "instruction": ("5 = a clear instruction with a correct, complete, helpful response; 4 = "
                    "good with minor issues; 3 = acceptable; 2 = the response is unhelpful, "
                    "incomplete or partly wrong; 1 = unusable: wrong, harmful or gibberish."),
}
DOMAIN_NOUN = {"math": "math problem", "code": "code sample", "medical": "medical text",
               "legal": "legal text", "dialogue": "conversation", "science": "scientific text",
               "instruction": "instruction-response pair", "web": "web document"}

# Selectors people say in words, as ``where`` expressions over annotated columns.
WHERE_WORDS = [
    (r"\b(very hard|hardest|most difficult|extremely difficult)\b", "difficulty >= 5"),
    (r"\b(difficult|hard|challenging|complex|advanced)\b", "difficulty >= 4"),
    (r"\b(medium|moderate|intermediate)\b", "difficulty == 3"),
    (r"\b(easy|easiest|simple|trivial|basic)\b", "difficulty <= 2"),
]
WHERE_EXPR = re.compile(r"(?:where\s+)?[`'\"]?\b([a-z_][a-z0-9_]*\s*(?:>=|<=|==|!=|>|<)\s*"
                        r"(?:\d+(?:\.\d+)?|'[^']*'))[`'\"]?", re.I)
# Which op provides a column a selector may read.
COLUMN_PROVIDERS = {"difficulty": "llm_annotate", "topic": "llm_annotate",
                    "llm_score": "llm_score", "lang": "language_filter",
                    "lang_score": "language_filter", "quality_score": "embed_quality_score"}


def domain_of(u: dict[str, Any]) -> str:
    return u.get("domain") or ("instruction" if u.get("task") == "instruction" else "web"
                               if u.get("source", {}).get("format") in ("html", "warc")
                               else "general")


def rubric(u: dict[str, Any], part: str) -> str | None:
    d = domain_of(u)
    base = RUBRICS.get(d) or RUBRICS.get(u.get("task") or "")
    focus = re.search(r"\b(?:for|on|by|rate|rates|rating|judge|score|grade)\s+(?:the |their |its )?"
                      r"((?:helpfulness|correctness|clarity|accuracy|reasoning|safety|fluency|"
                      r"relevance|harmlessness|factuality)(?:(?:,| and| or) \w+)*)", part, re.I)
    if re.search(r"\b(toxic\w*|hate speech|offensive|abusive|harmful|nsfw|profan\w*)", part, re.I):
        return ("Judge mainly safety. 5 = no toxic, hateful, harassing, sexual or violent "
                "content; 4 = mild rudeness; 3 = some offensive language; 2 = clearly offensive "
                "or harassing; 1 = hateful, threatening or explicit.")
    if base is None and not focus:
        return None  # the template's general rubric fits
    out = base or ("5 = excellent; 4 = good with minor issues; 3 = acceptable; 2 = poor; "
                   "1 = unusable.")
    if focus:
        out = f"Judge mainly {focus.group(1).lower()}. " + out
    return out


def where(part: str) -> str | None:
    m = WHERE_EXPR.search(part)
    if m and re.search(r"(>=|<=|==|!=|>|<)", m.group(1)):
        return re.sub(r"\s+", " ", m.group(1)).strip()
    m = re.search(r"\bdifficulty (?:of )?(?:at least|above|over|>=?)\s*(\d)", part, re.I)
    if m:
        return f"difficulty >= {m.group(1)}"
    for pat, expr in WHERE_WORDS:
        if re.search(pat, part, re.I):
            return expr
    m = re.search(r"\b(?:low[- ]scor\w*|scor\w* below (\d(?:\.\d)?))", part, re.I)
    if m:
        return f"llm_score < {m.group(1) or 3}"
    return None


def labels(part: str) -> tuple[str, list[str]] | None:
    """(field, labels) from "label each as positive, negative or neutral"."""
    listing = r"([\w'-]+(?: [\w'-]+){0,2}(?:\s*(?:,|/|\bor\b|\band\b)\s*[\w'-]+(?: [\w'-]+){0,2})+)"
    m = None
    for lead in (r"\b(?:as|into|one of)\s+", r"\b(?:with(?: the)? labels?|labels?:|categories:?)\s+"):
        m = re.search(lead + listing, part, re.I)
        if m:
            break
    if not m:
        return None
    items = [w.strip(" '\"").lower() for w in re.split(r"\s*(?:,|/|\bor\b|\band\b)\s*",
                                                       m.group(1))]
    items = [re.sub(r"\s+", "_", w) for w in items if w and len(w) <= 30]
    items = [w for w in items if w not in ("a", "the", "one")]
    if len(items) < 2 or len(items) > 20:
        return None
    field = "label"
    for word in ("sentiment", "topic", "intent", "category", "language", "toxicity", "domain"):
        if re.search(rf"\b{word}", part, re.I):
            field = word
    return field, list(dict.fromkeys(items))


def annotate_params(u: dict[str, Any], part: str, needed: set[str]) -> dict[str, Any]:
    """Schema and instructions for ``llm_annotate`` (the default schema is topic +
    difficulty 1-5, which is what a difficulty selector needs)."""
    noun = DOMAIN_NOUN.get(domain_of(u), "text")
    found = labels(part) if part else None
    if found:
        field, items = found
        props: dict[str, Any] = {field: {"type": "string", "enum": items}}
        if "difficulty" in needed:
            props["difficulty"] = {"type": "integer", "minimum": 1, "maximum": 5}
        schema = {"type": "object", "properties": props, "required": sorted(props),
                  "additionalProperties": False}
        return {"schema": schema,
                "instructions": f"Label the {noun} with its {field}: one of "
                                f"{', '.join(items)}." + (" Also rate its difficulty from 1 "
                                                         "(very easy) to 5 (very hard)."
                                                         if "difficulty" in needed else "")}
    return {"instructions": f"Label the {noun} with its topic and its difficulty from 1 "
                            "(very easy) to 5 (very hard)."}


def rewrite_instruction(u: dict[str, Any], part: str) -> str:
    m = re.search(r"\btranslat\w*\b.*?\b(?:in)?to\s+([A-Z]?[a-z]+)", part, re.I)
    if m:
        return (f"Translate the text into {m.group(1).capitalize()}. Keep its meaning, facts "
                "and formatting; do not add content.")
    if re.search(r"\bsummari[sz]", part, re.I):
        return "Summarise the text in a few sentences. Keep the key facts; add nothing."
    return ("Rewrite the text as the request asks, keeping its meaning, facts and language: "
            + json.dumps(part.strip()[:300], ensure_ascii=False))


def augment_instruction(u: dict[str, Any], part: str) -> str:
    noun = DOMAIN_NOUN.get(domain_of(u), "text")
    return (f"Write new {noun}s of the same kind, domain and difficulty as the given one, each "
            "complete and self-contained, and different from it in content, not just wording.")


def synthesize_params(u: dict[str, Any], part: str, n: int | None) -> dict[str, Any]:
    topic = re.sub(r"^(?:please\s+)?(?:generate|synthesi[sz]e|create|write|produce|make)\s+"
                   r"(?:about\s+)?(?:\d+\s+|a few\s+|some\s+)?(?:new\s+|synthetic\s+)?",
                   "", part.strip(), flags=re.I) or part.strip()
    topic = topic[:300]
    total = n or 10
    seeds_n = max(1, -(-total // 50))
    per = max(1, -(-total // seeds_n))
    seeds = [topic] if seeds_n == 1 else [{"id": f"seed{i + 1}", "prompt": topic}
                                          for i in range(seeds_n)]
    noun = DOMAIN_NOUN.get(domain_of(u), "training example")
    return {"seeds": seeds, "n": min(per, 50),
            "instructions": f"Write new {noun}s for the topic below. Each must be complete, "
                            "correct and self-contained."}


# -- checks and rendering ------------------------------------------------------------
def _variables(op: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(template variables the op passes, answer schema) as the op itself builds them."""
    v: dict[str, Any] = {}
    schema = None
    if op == "llm_score" and params.get("rubric"):
        v["rubric"] = params["rubric"]
    if op in ("llm_annotate", "llm_rewrite", "llm_augment", "llm_synthesize") and \
            params.get("instructions"):
        v["instructions"] = params["instructions"]
    if op in ("llm_augment", "llm_synthesize"):
        v["n"] = params.get("n", 1)
    if op == "llm_annotate":
        schema = params.get("schema")
    return v, schema


def columns_at(spec: dict[str, Any]) -> list[set[str]]:
    """Columns available before each step (source columns plus earlier steps' adds)."""
    from include.registry import UnknownOpError, apply_defaults, get_op
    from include.spec import SOURCE_COLUMNS

    fmt = (spec.get("source") or {}).get("format")
    cols = set(SOURCE_COLUMNS.get(fmt, ("id", "text", "meta")))
    out = []
    for s in spec.get("steps") or []:
        out.append(set(cols))
        try:
            cls = get_op(s["op"])
            cols |= set(cls.columns_added(apply_defaults(cls.meta, s.get("params"))))
        except (UnknownOpError, KeyError, ValueError, TypeError):
            pass
    return out


def check_prompts(spec: dict[str, Any]) -> list[str]:
    """A message per LLM step whose template reads a variable nothing binds."""
    from include.prompts import load_template
    from include.registry import apply_defaults, get_op

    msgs = []
    for i, (s, cols) in enumerate(zip(spec.get("steps") or [], columns_at(spec)), start=1):
        if s.get("op") not in LLM_OPS:
            continue
        params = apply_defaults(get_op(s["op"]).meta, s.get("params"))
        try:
            tpl = load_template(params["template"])
        except ValueError as exc:
            msgs.append(f"step {i} ({s['op']}): {exc}")
            continue
        v, _ = _variables(s["op"], params)
        # llm_synthesize renders from its seeds, not from rows: no columns there.
        bound = set(v) | {"schema_json"} | ({"seed"} if s["op"] == "llm_synthesize" else cols)
        missing = tpl.unbound(bound)
        if missing:
            msgs.append(f"step {i} ({s['op']}): prompt template {tpl.id} reads "
                        f"{', '.join(sorted(missing))}, which neither its defaults, the step's "
                        f"params nor the columns at this step ({', '.join(sorted(cols))}) bind")
    return msgs


def render_prompts(spec: dict[str, Any], sample: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The messages each LLM step sends for one sample row."""
    from include.llm.answers import Request
    from include.prompts import load_template
    from include.registry import apply_defaults, get_op

    row = dict(sample or {"id": "example-1",
                          "text": "(no sample: an example document would appear here)"})
    out = []
    for i, s in enumerate(spec.get("steps") or [], start=1):
        if s.get("op") not in LLM_OPS:
            continue
        params = apply_defaults(get_op(s["op"]).meta, s.get("params"))
        v, schema = _variables(s["op"], params)
        tpl = load_template(params["template"])
        r = dict(row)
        if s["op"] == "llm_synthesize":
            seed = (params.get("seeds") or ["?"])[0]
            r = {"seed": seed["prompt"] if isinstance(seed, dict) else seed}
        try:
            messages = Request(template=tpl, schema=schema or tpl.schema, variables=v).messages(r)
            error = None
        except Exception as exc:  # noqa: BLE001 - shown to the reviewer, not raised
            messages, error = [], f"{type(exc).__name__}: {exc}"
        out.append({"step": i, "op": s["op"], "template": tpl.id,
                    "variables": {k: v[k] for k in sorted(v)},
                    "where": params.get("where"), "sample_id": row.get("id"),
                    "messages": messages, "error": error})
    return out
