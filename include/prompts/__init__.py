"""Versioned prompt templates for the LLM ops.

One YAML file per template version: ``<name>/v<N>.yaml`` with ``system`` and
``user`` Jinja templates, the JSON ``schema`` the answer must match and
``defaults`` for template variables. A template is referred to as ``name``
(newest version) or ``name/vN``. A changed file is a new prompt: its rendered
messages change, so the answer cache (keyed by the rendered prompt) re-asks
exactly the rows whose prompt changed.

Templates render in jinja2's ``ImmutableSandboxedEnvironment``: the template
files are the only template text, and everything a person, a request or an
LLM writes (a rubric, instructions, a document) goes in as a *variable*,
whose value is never parsed as a template. The sandbox is the second fence:
a template that reaches for attributes such as ``__class__`` or calls
methods that mutate fails with ``jinja2.exceptions.SecurityError`` instead
of running code (a plain ``Environment`` would let template text run any
Python it can reach).
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROMPTS_DIR = Path(__file__).resolve().parent
_VERSION_RE = re.compile(r"^v(\d+)\.ya?ml$")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    system: str
    user: str
    schema: dict[str, Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    digest: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}/v{self.version}"

    def variables(self) -> set[str]:
        """Every variable the system and user templates read (bound by ``defaults``,
        the op's params or the row's columns at render time)."""
        return _undeclared(self.system) | _undeclared(self.user)

    def unbound(self, bound: set[str] | dict[str, Any]) -> set[str]:
        """Variables the template reads that neither ``defaults`` nor ``bound`` provide."""
        return self.variables() - set(self.defaults) - set(bound)

    def render(self, variables: dict[str, Any]) -> list[dict[str, str]]:
        """Chat messages for one request; a variable the template needs but
        ``variables`` lacks raises ``jinja2.UndefinedError`` naming it."""
        values = {**self.defaults, **variables}
        msgs = []
        if self.system.strip():
            msgs.append({"role": "system", "content": _compiled(self.system).render(values)})
        msgs.append({"role": "user", "content": _compiled(self.user).render(values)})
        return msgs


@functools.cache
def _env():
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined,
                                         keep_trailing_newline=False, autoescape=False)


@functools.lru_cache(maxsize=64)
def _compiled(source: str):
    """Compiling a Jinja template costs far more than rendering it: once per process."""
    return _env().from_string(source)


@functools.lru_cache(maxsize=64)
def _undeclared(source: str) -> frozenset[str]:
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(_env().parse(source)))


def available() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for d in sorted(p for p in PROMPTS_DIR.iterdir() if p.is_dir() and not p.name.startswith("_")):
        versions = sorted(int(m.group(1)) for f in d.iterdir() if (m := _VERSION_RE.match(f.name)))
        if versions:
            out[d.name] = versions
    return out


def load_template(ref: str) -> PromptTemplate:
    """``name`` (newest version) or ``name/vN``; unknown refs list what exists."""
    name, _, ver = ref.partition("/")
    known = available()
    if name not in known:
        raise ValueError(f"unknown prompt template {ref!r}; known: {sorted(known)}")
    version = known[name][-1] if not ver else int(ver.lstrip("v"))
    path = next((p for p in (PROMPTS_DIR / name / f"v{version}.yaml",
                             PROMPTS_DIR / name / f"v{version}.yml") if p.exists()), None)
    if path is None:
        raise ValueError(f"prompt template {ref!r} has no version {version}; "
                         f"known versions: {known[name]}")
    raw = path.read_text()
    doc = yaml.safe_load(raw)
    missing = [k for k in ("user", "schema") if k not in doc]
    if missing:
        raise ValueError(f"prompt template {path} lacks {missing}")
    return PromptTemplate(name=name, version=version, system=doc.get("system", ""),
                          user=doc["user"], schema=doc["schema"],
                          defaults=doc.get("defaults") or {},
                          digest=hashlib.sha256(raw.encode()).hexdigest()[:16])

