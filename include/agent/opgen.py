"""``datamill op new``: a new op drafted into review, never imported before approval.

A draft is one module in the standard shape (``register_op`` metadata beside
a pure row function ``decide(row, params)``, see ``include.agent.rowops``)
and a test module with example rows. Offline it fills a template from a
parameterised family (keyword, regex, length and ratio predicates, field
conditions, and a regex rewrite); with ``--llm openai`` the model writes
the ``decide`` function itself (free-form code), its params and examples.
Values from the description become Python *literals* (``repr`` of str,
int, float, bool, list) and the whole module is then checked statically.

Static checks, before a person even sees the draft (``static_checks``):

- the module parses; top level holds only the docstring, imports, literal
  constants, ``def decide`` and the one ``@register_op`` class;
- imports only from an allow-list of text modules (``re``, ``string``,
  ``unicodedata``, ``math``, ``json``, ``collections``, ``itertools``,
  ``difflib``, ``textwrap``, ``html``) and the two datamill names it needs;
- no ``os``, ``sys``, ``subprocess``, ``socket``, ``open``, ``eval``,
  ``exec``, ``compile``, ``__import__``, ``getattr``/``setattr``,
  ``globals``... anywhere; no dunder attribute or name;
- the ``register_op`` arguments are literals and the metadata validates
  (name free and well-formed, category, engine, a params JSON schema whose
  every param has a default, a description people can read).

Approval (``ReviewStore.approve`` -> ``publish``) runs the checks again, runs
the tests in a separate interpreter, and only when they pass copies the
module into the generated-ops folder and records its SHA-256 in
``approved.json``, which is what ``include.generated_ops`` loads.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import string
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from include.config import PROJECT_ROOT

ALLOWED_MODULES = frozenset({"re", "string", "unicodedata", "math", "json", "collections",
                             "itertools", "difflib", "textwrap", "html"})
ALLOWED_FROM = {"include.registry": {"register_op"},
                "include.agent.rowops": {"RowFilter", "RowRewrite"}}
BANNED_NAMES = frozenset({"os", "sys", "subprocess", "socket", "shutil", "pathlib", "open",
                          "eval", "exec", "compile", "__import__", "getattr", "setattr",
                          "delattr", "globals", "locals", "vars", "input", "breakpoint",
                          "importlib", "builtins", "exit", "quit", "memoryview", "type",
                          "object", "super", "classmethod", "property", "help", "dir",
                          "pickle", "marshal", "ctypes", "threading", "multiprocessing",
                          "asyncio", "urllib", "http", "requests", "aiohttp"})
TEST_TIMEOUT_S = 120
LITERAL_TYPES = (str, int, float, bool, type(None))


class OpGenError(ValueError):
    pass


# -- the families ---------------------------------------------------------------------------
RATIO_KINDS = {"digits": r"\d", "uppercase": r"[A-Z]", "punctuation": r"[^\w\s]",
               "non_ascii": r"[^\x00-\x7f]", "whitespace": r"\s", "symbols": r"[^\w\s.,;:!?'\"-]"}
REPLACE_PATTERNS = {"urls": r"https?://\S+|www\.\S+", "html_tags": r"<[^>]+>",
                    "emails": r"[\w.+-]+@[\w-]+\.[\w.-]+", "hashtags": r"#\w+",
                    "mentions": r"@\w+", "extra_whitespace": r"[ \t]{2,}",
                    "brackets": r"\[[^\]]*\]"}


def _quoted(text: str) -> list[str]:
    return [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", text)] + \
        re.findall(r"`([^`]+)`", text)


def _keep_matching(desc: str) -> bool:
    return bool(re.search(r"\b(keep|retain|only|select)\b", desc, re.I)) and not \
        re.search(r"\b(remove|drop|discard|filter out|exclude|delete)\b", desc, re.I)


def parse_description(desc: str) -> dict[str, Any]:
    """Pick the family and its params from the description (raises when none fits)."""
    d = desc.strip()
    low = d.lower()
    m = re.search(r"\b(?:replace|strip|remove|delete)\s+(?:all\s+)?(?:the\s+)?(urls?|links?|"
                  r"html tags?|e-?mails?(?: addresses)?|hashtags?|mentions?|extra whitespace|"
                  r"bracketed text|brackets?)\b(?:\s+(?:from|in)\s+(?:the\s+)?(?:text|"
                  r"documents?))?", low)
    if m and not re.search(r"\b(documents?|rows?|texts?|samples?|pages?)\s+(?:that|which|"
                           r"with|containing)\b", low):
        word = m.group(1)
        key = next(k for k in REPLACE_PATTERNS if word.replace(" ", "_").rstrip("s")
                   .replace("-", "").startswith(k.rstrip("s")[:4]))
        return {"family": "regex_rewrite", "category": "rewrite",
                "params": {"pattern": REPLACE_PATTERNS[key],
                           "replacement": " " if key == "extra_whitespace" else ""},
                "slug": f"strip_{key}"}
    m = re.search(r"\breplace\s+['\"`](.+?)['\"`]\s+with\s+['\"`](.*?)['\"`]", d, re.I)
    if m:
        return {"family": "regex_rewrite", "category": "rewrite",
                "params": {"pattern": re.escape(m.group(1)), "replacement": m.group(2)},
                "slug": "replace_text"}
    m = re.search(r"\b(?:regex|regular expression|pattern|matching)\s*:?\s*[`'\"](.+?)[`'\"]",
                  d, re.I)
    if m:
        try:
            re.compile(m.group(1))
        except re.error as exc:
            raise OpGenError(f"the pattern {m.group(1)!r} is not a valid regular expression: "
                             f"{exc}") from None
        return {"family": "regex", "category": "filter",
                "params": {"pattern": m.group(1), "keep_matching": _keep_matching(d)},
                "slug": "regex_filter"}
    m = re.search(r"(?:more than|over|above|at least)\s+(\d+(?:\.\d+)?)\s*(%|percent)\s+"
                  r"(?:of\s+)?(?:the\s+|its\s+)?(?:characters?\s+)?(?:are\s+|is\s+)?"
                  r"(digits?|numbers?|numeric|upper-?case|capitals?|capital letters|"
                  r"punctuation|non-?ascii|symbols?|whitespace)", low)
    if m:
        word = m.group(3)
        kind = ("digits" if word.startswith(("digit", "number", "numeric")) else
                "uppercase" if word.startswith(("upper", "capital")) else
                "punctuation" if word.startswith("punct") else
                "non_ascii" if "ascii" in word else
                "whitespace" if word.startswith("white") else "symbols")
        return {"family": "ratio", "category": "filter",
                "params": {"kind": kind, "max_ratio": round(float(m.group(1)) / 100, 4)},
                "slug": f"{kind}_ratio_filter"}
    m = re.search(r"(shorter|fewer|less|longer|more)\s+than\s+(\d+)\s+(characters?|chars?|"
                  r"lines?)", low)
    if m:
        unit = "lines" if m.group(3).startswith("line") else "chars"
        short = m.group(1) in ("shorter", "fewer", "less")
        removing = not _keep_matching(d)
        lo_key = f"min_{unit}"
        hi_key = f"max_{unit}"
        n = int(m.group(2))
        params = {"unit": unit, "min": None, "max": None}
        if short == removing:
            params["min"] = n
        else:
            params["max"] = n
        return {"family": "length", "category": "filter", "params": params,
                "slug": f"{lo_key if params['min'] is not None else hi_key}_filter"}
    m = re.search(r"\b(?:meta(?:data)?\s+)?(?:field|key|column)\s+[`'\"]?(\w+)[`'\"]?\s+"
                  r"(is not|isn't|is|equals|==|!=|does not equal)\s*(empty|missing|"
                  r"[`'\"][^`'\"]*[`'\"]|\w+)?", d, re.I)
    if m:
        field, rel, value = m.group(1), m.group(2).lower(), (m.group(3) or "").strip("`'\"")
        negate = rel in ("is not", "isn't", "!=", "does not equal")
        if value.lower() in ("empty", "missing", ""):
            cond = "nonempty" if negate else "empty"
            value = None
        else:
            cond = "ne" if negate else "eq"
        keep = _keep_matching(d)
        return {"family": "field", "category": "filter",
                "params": {"field": field, "condition": cond, "value": value,
                           "keep_matching": keep}, "slug": f"{field}_field_filter"}
    words = _quoted(d)
    if not words:
        m = re.search(r"\b(?:contain(?:s|ing)?|mention(?:s|ing)?|with the (?:words?|phrases?)|"
                      r"keywords?|words?|phrases?)\s+(?:the\s+)?(?:words?\s+)?(.+?)(?:\.|$)", d,
                      re.I)
        if m:
            words = [w.strip(" '\"") for w in re.split(r",|\bor\b|\band\b", m.group(1))
                     if w.strip(" '\"")]
    if words and re.search(r"\b(contain|mention|word|keyword|phrase)", low):
        words = [w for w in words if 0 < len(w) <= 80][:50]
        return {"family": "keyword", "category": "filter",
                "params": {"keywords": words, "case_sensitive": False,
                           "keep_matching": _keep_matching(d)},
                "slug": "keyword_filter"}
    raise OpGenError("no op template fits this description offline (families: keyword, "
                     "regex, length, ratio, field condition, regex rewrite: e.g. \"remove "
                     "documents containing 'lorem ipsum'\", \"drop texts where more than 30% "
                     "of characters are digits\"); describe it that way or use --llm openai")


DECIDE = {
    "keyword": '''def decide(row, params):
    """(keep, reason): does the text contain one of the keywords?"""
    text = row.get("text") or ""
    if not params["case_sensitive"]:
        text = text.lower()
    words = params["keywords"] if params["case_sensitive"] else [
        w.lower() for w in params["keywords"]]
    found = any(w in text for w in words)
    if found == params["keep_matching"]:
        return True, None
    return False, "keyword_match" if found else "keyword_missing"
''',
    "regex": '''def decide(row, params):
    """(keep, reason): does the text match the pattern?"""
    found = re.search(params["pattern"], row.get("text") or "") is not None
    if found == params["keep_matching"]:
        return True, None
    return False, "pattern_match" if found else "pattern_missing"
''',
    "length": '''def decide(row, params):
    """(keep, reason): is the text's length (chars or lines) within bounds?"""
    text = row.get("text") or ""
    n = len(text) if params["unit"] == "chars" else len(text.splitlines())
    if params["min"] is not None and n < params["min"]:
        return False, "too_short"
    if params["max"] is not None and n > params["max"]:
        return False, "too_long"
    return True, None
''',
    "ratio": '''PATTERNS = {"digits": r"\\d", "uppercase": r"[A-Z]", "punctuation": r"[^\\w\\s]",
            "non_ascii": r"[^\\x00-\\x7f]", "whitespace": r"\\s",
            "symbols": r"[^\\w\\s.,;:!?'\\"-]"}


def decide(row, params):
    """(keep, reason): is the share of characters of one kind at most max_ratio?"""
    text = row.get("text") or ""
    if not text:
        return True, None
    share = len(re.findall(PATTERNS[params["kind"]], text)) / len(text)
    if share > params["max_ratio"]:
        return False, params["kind"] + "_ratio"
    return True, None
''',
    "field": '''def decide(row, params):
    """(keep, reason): a condition on one field of the row's meta JSON."""
    try:
        meta = json.loads(row.get("meta") or "{}")
    except ValueError:
        meta = {}
    value = meta.get(params["field"]) if isinstance(meta, dict) else None
    cond = params["condition"]
    if cond == "empty":
        hit = value in (None, "", [], {})
    elif cond == "nonempty":
        hit = value not in (None, "", [], {})
    elif cond == "eq":
        hit = str(value) == str(params["value"])
    else:
        hit = str(value) != str(params["value"])
    if hit == params["keep_matching"]:
        return True, None
    return False, "field_" + cond
''',
    "regex_rewrite": '''def decide(row, params):
    """The text with every match of the pattern replaced (None: unchanged)."""
    text = row.get("text")
    if text is None:
        return None
    new = re.sub(params["pattern"], params["replacement"], text)
    return new if new != text else None
''',
}
FAMILY_IMPORTS = {"keyword": [], "regex": ["re"], "length": [], "ratio": ["re"],
                  "field": ["json"], "regex_rewrite": ["re"]}


def family_schema(family: str, params: dict[str, Any]) -> dict[str, Any]:
    p = params
    props: dict[str, Any] = {
        "keyword": {"keywords": {"type": "array", "items": {"type": "string"},
                                 "default": p.get("keywords")},
                    "case_sensitive": {"type": "boolean", "default": p.get("case_sensitive")},
                    "keep_matching": {"type": "boolean", "default": p.get("keep_matching")}},
        "regex": {"pattern": {"type": "string", "default": p.get("pattern")},
                  "keep_matching": {"type": "boolean", "default": p.get("keep_matching")}},
        "length": {"unit": {"type": "string", "enum": ["chars", "lines"],
                            "default": p.get("unit")},
                   "min": {"type": ["integer", "null"], "minimum": 0, "default": p.get("min")},
                   "max": {"type": ["integer", "null"], "minimum": 0, "default": p.get("max")}},
        "ratio": {"kind": {"type": "string", "enum": sorted(RATIO_KINDS),
                           "default": p.get("kind")},
                  "max_ratio": {"type": "number", "minimum": 0, "maximum": 1,
                                "default": p.get("max_ratio")}},
        "field": {"field": {"type": "string", "default": p.get("field")},
                  "condition": {"type": "string", "enum": ["eq", "ne", "empty", "nonempty"],
                                "default": p.get("condition")},
                  "value": {"type": ["string", "null"], "default": p.get("value")},
                  "keep_matching": {"type": "boolean", "default": p.get("keep_matching")}},
        "regex_rewrite": {"pattern": {"type": "string", "default": p.get("pattern")},
                          "replacement": {"type": "string", "default": p.get("replacement")}},
    }[family]
    return {"type": "object", "properties": props}


def family_examples(family: str, p: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows with the answer the op must give: one each way."""
    base = "A plain sentence about data pipelines and training sets."
    if family == "keyword":
        hit = {"text": f"{base} It mentions {p['keywords'][0]} once."}
        miss = {"text": base}
        return [{"row": hit, "keep": p["keep_matching"]},
                {"row": miss, "keep": not p["keep_matching"]}]
    if family == "regex":
        return [{"row": {"text": base}, "keep": (re.search(p["pattern"], base) is not None)
                 == p["keep_matching"]}]
    if family == "length":
        n_ok = p["min"] if p["min"] is not None else max(0, (p["max"] or 1) - 1)
        unit_text = (lambda n: "x" * n) if p["unit"] == "chars" else \
            (lambda n: "\n".join(["line"] * max(n, 1)))
        out = [{"row": {"text": unit_text(n_ok)}, "keep": True}]
        if p["min"] is not None and p["min"] > 1:
            out.append({"row": {"text": unit_text(p["min"] - 1)}, "keep": False})
        if p["max"] is not None:
            out.append({"row": {"text": unit_text(p["max"] + 1)}, "keep": False})
        return out
    if family == "ratio":
        sample = {"digits": "1234567890", "uppercase": "ABCDEFGHIJ", "punctuation": "!!!???...",
                  "non_ascii": "ééééééééé", "whitespace": "          ",
                  "symbols": "@@@###$$$%"}[p["kind"]]
        return [{"row": {"text": base}, "keep": True},
                {"row": {"text": sample + "ab"}, "keep": False}]
    if family == "field":
        meta_hit = {p["field"]: p["value"] if p["condition"] in ("eq",) else
                    ("" if p["condition"] == "empty" else "x")}
        if p["condition"] == "ne":
            meta_hit = {p["field"]: "something-else"}
        if p["condition"] == "nonempty":
            meta_hit = {p["field"]: "x"}
        return [{"row": {"text": base, "meta": json.dumps(meta_hit)},
                 "keep": p["keep_matching"]}]
    if family == "regex_rewrite":
        return []
    return []


MODULE = string.Template('''"""${name}: generated by `datamill op new` (${mode}); reviewed before registration.

Request: ${request}
"""
${imports}
from include.agent.rowops import ${base}
from include.registry import register_op

DESCRIPTION = ${description}
PARAMS = ${params}


${decide}

@register_op(name=${name_lit}, version="1", category=${category}, engine="spark",
             rowwise=True, description=DESCRIPTION, params=PARAMS, requires=${requires})
class GeneratedOp(${base}):
    decide = staticmethod(decide)
''')
TEST = string.Template('''"""Tests of the generated op ${name} on example rows (run after approval)."""
import importlib.util
from pathlib import Path

EXAMPLES = ${examples}


def _module():
    spec = importlib.util.spec_from_file_location(
        "generated_${name}", Path(__file__).with_name("${name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _defaults(mod):
    return {k: v.get("default") for k, v in mod.PARAMS["properties"].items()}


def test_metadata_registers():
    from include.registry import get_op

    mod = _module()
    assert get_op("${name}").meta.category == ${category}
    assert mod.GeneratedOp.meta.name == "${name}"


def test_examples():
    mod = _module()
    params = _defaults(mod)
    for ex in EXAMPLES:
        got = mod.decide(ex["row"], params)
        if "keep" in ex:
            assert got[0] is ex["keep"], (ex, got)
        else:
            assert got == ex["text"], (ex, got)
''')


def _lit(v: Any) -> str:
    return repr(v)


def _safe_doc(text: str) -> str:
    return " ".join(re.sub(r'["\\\\]', "'", text).split())[:300]


def op_name(desc: str, slug: str | None, name: str | None) -> str:
    from include.registry import all_ops
    from include.spec import NAME_RE

    if name:
        if not NAME_RE.match(name):
            raise OpGenError(f"--name {name!r} must be lower-case letters, digits and _")
        cand = name
    else:
        cand = re.sub(r"[^a-z0-9_]", "", (slug or "generated_op").lower())[:50] or "generated_op"
    from include.agent.review_store import ReviewStore
    from include.generated_ops import approved

    store = ReviewStore()
    existing = {m.name for m in all_ops()} | set(approved()) | {
        i["name"][3:] for i in store.list() if i["kind"] == "op" and i["status"] == "approved"}
    if name and name in existing:
        raise OpGenError(f"an op named {name!r} already exists")
    base, i = cand, 1
    while cand in existing or (not name and store.exists(f"op-{cand}")):
        i += 1
        cand = f"{base}_{i}"
    return cand


def build_module(name: str, category: str, description: str, decide_src: str,
                 imports: list[str], schema: dict[str, Any], request: str, mode: str,
                 requires: tuple[str, ...] = ("text",)) -> str:
    return MODULE.substitute(
        name=name, mode=mode, request=_safe_doc(request),
        imports="\n".join(f"import {m}" for m in sorted(set(imports))),
        base="RowRewrite" if category == "rewrite" else "RowFilter",
        description=_lit(description), params=_lit(schema), decide=decide_src.rstrip() + "\n",
        name_lit=_lit(name), category=_lit(category), requires=_lit(tuple(requires)))


def build_test(name: str, category: str, examples: list[dict[str, Any]]) -> str:
    return TEST.substitute(name=name, category=_lit(category), examples=_lit(examples))


# -- static checks ------------------------------------------------------------------------------
def static_checks(module_src: str, test_src: str | None = None,
                  expect_name: str | None = None) -> dict[str, Any]:
    problems: list[str] = []
    try:
        tree = ast.parse(module_src)
    except SyntaxError as exc:
        return {"ok": False, "problems": [f"module does not parse: {exc.msg} (line {exc.lineno})"]}
    classes, decides = [], []
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name not in ALLOWED_MODULES or a.asname:
                    problems.append(f"line {node.lineno}: import {a.name} is not allowed "
                                    f"(allowed: {', '.join(sorted(ALLOWED_MODULES))})")
        elif isinstance(node, ast.ImportFrom):
            names = {a.name for a in node.names}
            allowed = ALLOWED_FROM.get(node.module or "")
            if node.level or (allowed is None and node.module not in ALLOWED_MODULES) or \
                    (allowed is not None and not names <= allowed) or \
                    any(a.asname for a in node.names):
                problems.append(f"line {node.lineno}: from {node.module} import "
                                f"{', '.join(sorted(names))} is not allowed")
        elif isinstance(node, ast.Assign):
            if not all(isinstance(t, ast.Name) for t in node.targets):
                problems.append(f"line {node.lineno}: only NAME = <literal> at top level")
            else:
                try:
                    ast.literal_eval(node.value)
                except ValueError:
                    problems.append(f"line {node.lineno}: top-level values must be literals")
        elif isinstance(node, ast.FunctionDef):
            decides.append(node)
            args = [a.arg for a in node.args.args]
            if node.decorator_list or args != ["row", "params"] or node.name != "decide":
                problems.append(f"line {node.lineno}: the one function must be "
                                "`def decide(row, params)` without decorators")
        elif isinstance(node, ast.ClassDef):
            classes.append(node)
        else:
            problems.append(f"line {node.lineno}: {type(node).__name__} is not allowed at "
                            "top level")
    if len(decides) != 1:
        problems.append("the module must define exactly one `decide(row, params)`")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and (node.id in BANNED_NAMES or node.id.startswith("__")):
            problems.append(f"line {node.lineno}: name {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute) and (node.attr.startswith("__")
                                                   or node.attr.endswith("__")):
            problems.append(f"line {node.lineno}: dunder attribute {node.attr!r} is not allowed")
        elif isinstance(node, (ast.Global, ast.Nonlocal, ast.AsyncFunctionDef, ast.Await,
                               ast.Yield, ast.YieldFrom, ast.With, ast.AsyncWith)):
            problems.append(f"line {node.lineno}: {type(node).__name__} is not allowed")
        elif isinstance(node, ast.Lambda):
            problems.append(f"line {node.lineno}: lambda is not allowed")
        elif isinstance(node, ast.ClassDef) and node not in classes:
            problems.append(f"line {node.lineno}: nested classes are not allowed")
        elif isinstance(node, ast.FunctionDef) and node not in decides:
            problems.append(f"line {node.lineno}: only the one `decide` function is allowed")
    meta = None
    if len(classes) != 1:
        problems.append("the module must define exactly one @register_op class")
    else:
        cls = classes[0]
        base_ok = [b.id for b in cls.bases if isinstance(b, ast.Name)] in (["RowFilter"],
                                                                            ["RowRewrite"])
        if not base_ok:
            problems.append("the op class must derive from RowFilter or RowRewrite only")
        body_ok = len(cls.body) == 1 and isinstance(cls.body[0], ast.Assign) and \
            ast.unparse(cls.body[0]) == "decide = staticmethod(decide)"
        if not body_ok:
            problems.append("the op class body must be exactly `decide = staticmethod(decide)`")
        deco = cls.decorator_list
        if len(deco) != 1 or not isinstance(deco[0], ast.Call) or \
                getattr(deco[0].func, "id", None) != "register_op":
            problems.append("the op class needs exactly one @register_op(...) decorator")
        else:
            meta, mprobs = _meta_from(deco[0], tree)
            problems += mprobs
            if meta:
                problems += meta_problems(meta, expect_name, base_ok and
                                          cls.bases[0].id == "RowRewrite")
    if test_src is not None and meta:
        problems += _test_problems(test_src, meta["name"], meta["category"])
    problems = list(dict.fromkeys(problems))
    return {"ok": not problems, "problems": problems, "meta": meta}


def _test_problems(test_src: str, name: str, category: str) -> list[str]:
    """The test module must be the fixed template with literal examples only."""
    try:
        tree = ast.parse(test_src)
    except SyntaxError as exc:
        return [f"test module does not parse: {exc.msg}"]
    examples = next((n.value for n in tree.body if isinstance(n, ast.Assign)
                     and getattr(n.targets[0], "id", None) == "EXAMPLES"), None)
    try:
        values = ast.literal_eval(examples) if examples is not None else None
    except ValueError:
        values = None
    if not isinstance(values, list):
        return ["test module: EXAMPLES must be a literal list"]
    if build_test(name, category, values) != test_src:
        return ["test module differs from the fixed test template"]
    return []


def _meta_from(call: ast.Call, tree: ast.Module) -> tuple[dict[str, Any] | None, list[str]]:
    consts = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            try:
                consts[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    meta, problems = {}, []
    if call.args:
        problems.append("register_op takes keyword arguments only")
    for kw in call.keywords:
        if kw.arg is None:
            problems.append("register_op(**...) is not allowed")
            continue
        if isinstance(kw.value, ast.Name) and kw.value.id in consts:
            meta[kw.arg] = consts[kw.value.id]
            continue
        try:
            meta[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            problems.append(f"register_op {kw.arg}= must be a literal or a module constant")
    return (meta if not problems else None), problems


def meta_problems(meta: dict[str, Any], expect_name: str | None, rewrite: bool) -> list[str]:
    import jsonschema

    from include.registry import CATEGORIES, all_ops
    from include.spec import NAME_RE

    out = []
    need = {"name", "version", "category", "engine", "description", "params"}
    if missing := need - set(meta):
        out.append(f"register_op lacks {', '.join(sorted(missing))}")
        return out
    if set(meta) - need - {"rowwise", "requires", "adds", "cost"}:
        out.append(f"register_op has unexpected arguments "
                   f"{', '.join(sorted(set(meta) - need - {'rowwise', 'requires', 'adds', 'cost'}))}")
    name = meta["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        out.append(f"op name {name!r} is not valid")
    elif expect_name and name != expect_name:
        out.append(f"op name {name!r} is not the drafted name {expect_name!r}")
    elif name in {m.name for m in all_ops()}:
        out.append(f"an op named {name!r} already exists")
    if meta["category"] not in CATEGORIES:
        out.append(f"category {meta['category']!r} not in {CATEGORIES}")
    if meta["engine"] != "spark" or meta.get("rowwise") is not True:
        out.append("generated ops run on Spark as row-wise ops (engine='spark', rowwise=True)")
    if rewrite and meta["category"] != "rewrite":
        out.append("a RowRewrite op must have category 'rewrite'")
    if not isinstance(meta["description"], str) or len(meta["description"].split()) < 6:
        out.append("the description must say in a sentence or more what the op does")
    params = meta["params"]
    try:
        jsonschema.Draft202012Validator.check_schema(params)
        if params.get("type") != "object":
            raise jsonschema.SchemaError("params must be an object schema")
        for k, v in params.get("properties", {}).items():
            if "default" not in v and k not in params.get("required", []):
                out.append(f"param {k!r} needs a default")
            elif "default" in v:
                errs = list(jsonschema.Draft202012Validator(v).iter_errors(v["default"]))
                if errs:
                    out.append(f"param {k!r}: default {v['default']!r}: {errs[0].message}")
    except jsonschema.SchemaError as exc:
        out.append(f"params is not a valid JSON schema: {exc.message}")
    req = meta.get("requires", ("text",))
    if not isinstance(req, (list, tuple)) or not set(req) <= {"text", "meta", "id"}:
        out.append("requires may only name text, meta and id")
    return out


# -- drafting ---------------------------------------------------------------------------------
def draft_op(description: str, llm: str = "none", name: str | None = None) -> dict[str, Any]:
    desc = " ".join((description or "").split())
    if not desc:
        raise OpGenError("empty description: say what the op should do to each row")
    if len(desc) > 2000:
        raise OpGenError("description longer than 2000 characters")
    if llm == "openai":
        return _draft_llm(desc, name)
    fam = parse_description(desc)
    nm = op_name(desc, fam["slug"], name)
    schema = family_schema(fam["family"], fam["params"])
    text_desc = (f"Generated {fam['category']} op ({fam['family']} template): {desc} "
                 f"Params: {', '.join(f'{k}={v!r}' for k, v in fam['params'].items())}.")
    requires = ("text", "meta") if fam["family"] == "field" else ("text",)
    module = build_module(nm, fam["category"], text_desc, DECIDE[fam["family"]],
                          FAMILY_IMPORTS[fam["family"]], schema, desc,
                          f"template family {fam['family']}", requires)
    examples = family_examples(fam["family"], fam["params"])
    if fam["family"] == "regex_rewrite":
        sample = "See https://example.org/page or write to a@b.org <b>now</b> #tag @you  ok [1]"
        new = re.sub(fam["params"]["pattern"], fam["params"]["replacement"], sample)
        examples = [{"row": {"text": sample}, "text": new if new != sample else None}]
    test = build_test(nm, fam["category"], examples)
    return _finish(nm, desc, f"template:{fam['family']}", module, test, fam["params"])


def _draft_llm(desc: str, name: str | None) -> dict[str, Any]:
    from include.agent.llm import LLMCallError, call

    schema = {"type": "object", "properties": {
        "category": {"enum": ["filter", "rewrite"]},
        "slug": {"type": "string", "pattern": "^[a-z][a-z0-9_]{2,40}$"},
        "summary": {"type": "string", "minLength": 20},
        "decide": {"type": "string", "minLength": 20},
        "params": {"type": "object"},
        "examples": {"type": "array", "minItems": 2, "items": {
            "type": "object", "properties": {"text": {"type": "string"},
                                             "keep": {"type": "boolean"},
                                             "output": {"type": ["string", "null"]}},
            "required": ["text"]}}},
        "required": ["category", "slug", "summary", "decide", "params", "examples"]}
    try:
        ans, info = call("agent_op", {"description": desc,
                                      "allowed": ", ".join(sorted(ALLOWED_MODULES))}, schema,
                         max_tokens=1200)
    except LLMCallError as exc:
        raise OpGenError(str(exc)) from None
    nm = op_name(desc, ans["slug"], name)
    props = ans["params"] if isinstance(ans["params"], dict) else {}
    schema_p = {"type": "object", "properties": props}
    src = ans["decide"]
    try:
        fn = ast.parse(src)
        imports = sorted({a.name for n in ast.walk(fn) if isinstance(n, ast.Import)
                          for a in n.names})
    except SyntaxError:
        imports = []
    uses = sorted(m for m in ALLOWED_MODULES if re.search(rf"\b{m}\.", src))
    cat = ans["category"]
    module = build_module(nm, cat, f"Generated {cat} op (LLM draft): {ans['summary']}", src,
                          uses, schema_p, desc, f"LLM draft, model {info.get('model')}")
    examples = []
    for ex in ans["examples"][:20]:
        if cat == "filter" and isinstance(ex.get("keep"), bool):
            examples.append({"row": {"text": ex["text"]}, "keep": ex["keep"]})
        elif cat == "rewrite":
            examples.append({"row": {"text": ex["text"]}, "text": ex.get("output")})
    test = build_test(nm, cat, examples)
    draft = _finish(nm, desc, "llm", module, test, props)
    if imports:
        draft["checks"]["problems"].insert(0, "the decide function imports inside itself: "
                                           + ", ".join(imports))
        draft["checks"]["ok"] = False
    return draft


def _finish(name: str, desc: str, mode: str, module: str, test: str,
            params: dict[str, Any]) -> dict[str, Any]:
    checks = static_checks(module, test, expect_name=name)
    checks.pop("meta", None)
    plan = "\n".join([
        f"# Generated op `{name}` ({mode})", "",
        "Nothing here is imported or run until a person approves it. On approval the static "
        "checks run again, then the tests below; only if they pass is the op registered from "
        "the generated-ops folder.", "",
        "## Request", "", "> " + desc, "",
        "## Static checks", "",
        "passed" if checks["ok"] else "FAILED:\n" + "\n".join(f"- {p}" for p in checks["problems"]),
        "", "## Params", "", "```json", json.dumps(params, indent=2, default=str), "```", "",
        f"## Module `{name}.py`", "", "````python", module.rstrip(), "````", "",
        f"## Tests `test_{name}.py`", "", "````python", test.rstrip(), "````", ""])
    return {"name": name, "description": desc, "mode": mode, "module": module, "test": test,
            "checks": checks, "plan_md": plan}


# -- approval ---------------------------------------------------------------------------------
def run_tests(module_src: str, test_src: str, name: str) -> tuple[bool, str]:
    """The draft's tests in a separate interpreter (the approving process imports nothing)."""
    with tempfile.TemporaryDirectory(prefix="datamill-opgen-") as d:
        Path(d, f"{name}.py").write_text(module_src, encoding="utf-8")
        Path(d, f"test_{name}.py").write_text(test_src, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                "-o", "addopts=", f"test_{name}.py"], cwd=d, env=env,
                               capture_output=True, text=True, timeout=TEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return False, f"tests timed out after {TEST_TIMEOUT_S} s"
        return p.returncode == 0, (p.stdout + p.stderr)[-6000:]


def publish(item_dir: Path, item: dict[str, Any]) -> Path:
    """Checks again, tests, then registers the approved op (called under the store's lock)."""
    from include.agent.review_store import ReviewError, atomic_write
    from include.generated_ops import MANIFEST, ops_dir

    name = item["op_name"]
    module = (item_dir / f"{name}.py").read_text(encoding="utf-8")
    test = (item_dir / f"test_{name}.py").read_text(encoding="utf-8")
    checks = static_checks(module, test, expect_name=name)
    if not checks["ok"]:
        raise ReviewError(f"op {name!r} fails its static checks: " + "; ".join(checks["problems"]))
    ok, output = run_tests(module, test, name)
    atomic_write(item_dir / "test_output.txt", output)
    if not ok:
        raise ReviewError(f"op {name!r}: its tests failed, so it is not registered "
                          f"(output in {item_dir / 'test_output.txt'}):\n{output[-1500:]}")
    folder = ops_dir()
    target = folder / f"{name}.py"
    atomic_write(target, module)
    manifest = folder / MANIFEST
    data = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}
    data[name] = hashlib.sha256(module.encode("utf-8")).hexdigest()
    atomic_write(manifest, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return target
