"""``datamill ask``: answers from the project's own documents, with citations.

The corpus is the project's Markdown (README files, the shared interface
docs when the checkout has them), every op's catalogue description and every
live spec. Markdown is split at its headings into sections (long sections
into paragraphs of at most ``PASSAGE_CHARS``), so a citation names a file
and a section: ``README.md § How a spec runs``. Passages are found with the
same hybrid BM25 + MiniLM retrieval as the planner's skills.

Offline (``--llm none``) the answer is the best passages themselves. With
``--llm openai`` the model writes a short answer from those passages only
and must cite them by number (a JSON schema enum of the passage numbers);
the citations shown are the passages it cited, never anything else.
"""
from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path
from typing import Any

from include.config import PROJECT_ROOT

PASSAGE_CHARS = 1200
NO_MATCH = 0.30
DOC_GLOBS = ("README.md", "*/README.md", "*/*/README.md", "docs/*.md")
SHARED_DOCS = PROJECT_ROOT.parent / "shared" / "docs"


class AskError(ValueError):
    pass


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading path, body) per Markdown section (fenced code is not a heading)."""
    out, stack, body, in_fence = [], [], [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else re.match(r"^(#{1,4})\s+(.*)", line)
        if m:
            if "".join(body).strip():
                out.append((" > ".join(h for _, h in stack) or "(top)", "\n".join(body)))
            body = []
            level = len(m.group(1))
            stack = [(lv, h) for lv, h in stack if lv < level] + [(level, m.group(2).strip())]
        else:
            body.append(line)
    if "".join(body).strip():
        out.append((" > ".join(h for _, h in stack) or "(top)", "\n".join(body)))
    return out


def _chunks(body: str) -> list[str]:
    paras, cur = [], ""
    for p in re.split(r"\n\s*\n", body.strip()):
        if cur and len(cur) + len(p) > PASSAGE_CHARS:
            paras.append(cur)
            cur = p
        else:
            cur = f"{cur}\n\n{p}" if cur else p
    if cur:
        paras.append(cur)
    return [p[: PASSAGE_CHARS * 2] for p in paras]


def doc_files() -> list[tuple[str, Path]]:
    files = []
    for g in DOC_GLOBS:
        for f in sorted(PROJECT_ROOT.glob(g)):
            if ".venv" in f.parts or "node_modules" in f.parts or not f.is_file():
                continue
            files.append((str(f.relative_to(PROJECT_ROOT)), f))
    if SHARED_DOCS.is_dir():
        files += [(f"../shared/docs/{f.name}", f) for f in sorted(SHARED_DOCS.glob("*.md"))]
    return list(dict.fromkeys(files))


def corpus() -> list[dict[str, Any]]:
    from include.agent.skills import op_skills, spec_skills
    from include.registry import get_op

    out = []
    for label, path in doc_files():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for section, body in _sections(text):
            for chunk in _chunks(body):
                out.append({"source": label, "section": section, "text": chunk})
    for s in op_skills():
        try:
            src = inspect.getsourcefile(get_op(s["name"]))
            label = str(Path(src).resolve().relative_to(PROJECT_ROOT))
        except (TypeError, ValueError, OSError):
            label = "op catalogue"
        params = ", ".join(s["plan_params"])
        out.append({"source": label, "section": f"op {s['name']}",
                    "text": f"{s['name']} ({s['category']}, {s['engine']}, cost {s['cost']}): "
                            f"{s['description']} Params: {params}."})
    for s in spec_skills():
        try:
            label = str(Path(s["path"]).resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            label = s["path"]
        out.append({"source": label, "section": f"pipeline {s['name']}",
                    "text": f"pipeline {s['name']}: {s['description']} Steps: "
                            f"{', '.join(s['ops'])}."})
    return out


@functools.lru_cache(maxsize=2)
def _index(key: tuple[str, ...]):
    from include.agent.retrieve import HybridIndex

    return HybridIndex(list(key), "docs")


def search(question: str, k: int = 4) -> list[dict[str, Any]]:
    docs = corpus()
    idx = _index(tuple(f"{d['source']} {d['section']}\n{d['text']}" for d in docs))
    hits = idx.search(question, k)
    return [{"n": n, **docs[i], "score": h, "lexical": lx, "embedding": c}
            for n, (i, h, lx, c) in enumerate(hits, start=1)]


def ask(question: str, llm: str = "none", k: int = 4) -> dict[str, Any]:
    q = " ".join((question or "").split())
    if not q:
        raise AskError("empty question: ask about datamill, e.g. \"how does approval work?\"")
    if len(q) > 2000:
        raise AskError("question longer than 2000 characters")
    passages = search(q, max(1, min(int(k), 10)))
    if not passages or passages[0]["score"] < NO_MATCH:
        return {"question": q, "answer": "Nothing in the project's documents matches this "
                "question well; the closest passages are listed.", "passages": passages,
                "low_match": True, "llm": llm}
    if llm != "openai":
        return {"question": q, "answer": None, "passages": passages, "llm": "none"}
    from include.agent.llm import LLMCallError, call

    numbered = "\n\n".join(f"[{p['n']}] {p['source']} § {p['section']}\n{p['text']}"
                           for p in passages)
    schema = {"type": "object", "properties": {
        "answer": {"type": "string", "minLength": 1, "maxLength": 2000},
        "citations": {"type": "array", "minItems": 1,
                      "items": {"type": "integer", "enum": [p["n"] for p in passages]}}},
        "required": ["answer", "citations"], "additionalProperties": False}
    try:
        ans, info = call("agent_ask", {"question": q, "passages": numbered}, schema,
                         max_tokens=400)
    except LLMCallError as exc:
        raise AskError(str(exc)) from None
    cited = [p for p in passages if p["n"] in set(ans["citations"])]
    refs = "; ".join(f"[{p['n']}] {p['source']} § {p['section']}" for p in cited)
    return {"question": q, "answer": f"{ans['answer'].strip()}\n\nSources: {refs}",
            "passages": cited, "llm": "openai", "model": info.get("model"),
            "cached": info.get("cached")}
