"""Real-text domains found on every machine, for demos, tests and the benchmark.

Nothing here is invented or downloaded: Debian's package changelogs and
copyright files (``/usr/share/doc``, each under its package's own licence,
which those very files state), and the Python standard library's docstrings
and source (PSF licence). ``junk`` makes a deliberately bad domain from real
text by shuffling its words and corrupting characters, the stand-in for
boilerplate or mis-extracted web text.
"""
from __future__ import annotations

import ast
import functools
import gzip
import random
import re
import sysconfig
from pathlib import Path

DOC_ROOT = Path("/usr/share/doc")


def _stdlib_files() -> list[Path]:
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def changelogs(max_docs: int) -> list[str]:
    """Debian changelog entries, one entry per document."""
    docs: list[str] = []
    for path in sorted(DOC_ROOT.glob("*/changelog.Debian.gz")):
        try:
            text = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        for entry in re.split(r"\n(?=\S+ \([^)]*\) )", text):
            if len(entry.split()) >= 20:
                docs.append(entry.strip())
                if len(docs) >= max_docs:
                    return docs
    return docs


def copyrights(max_docs: int) -> list[str]:
    """Paragraphs of Debian copyright files (licence and attribution prose)."""
    docs: list[str] = []
    seen: set[str] = set()
    for path in sorted(DOC_ROOT.glob("*/copyright")):
        text = path.read_text("utf-8", "replace")
        for para in re.split(r"\n\s*\n", text):
            para = para.strip()
            if len(para.split()) >= 30 and para not in seen:
                seen.add(para)
                docs.append(para)
                if len(docs) >= max_docs:
                    return docs
    return docs


@functools.lru_cache(maxsize=1)
def _parsed_stdlib() -> list[tuple[list[str], ast.Module]]:
    parsed = []
    for path in _stdlib_files():
        try:
            source = path.read_text("utf-8")
            parsed.append((source.splitlines(), ast.parse(source)))
        except (SyntaxError, UnicodeDecodeError):
            continue
    return parsed


def docstrings(max_docs: int) -> list[str]:
    """Docstrings of the standard library's modules, classes and functions."""
    docs: list[str] = []
    for _, tree in _parsed_stdlib():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc.split()) >= 20:
                    docs.append(doc)
                    if len(docs) >= max_docs:
                        return docs
    return docs


def code(max_docs: int) -> list[str]:
    """Source of the standard library's top-level functions and classes."""
    docs: list[str] = []
    for lines, tree in _parsed_stdlib():
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                if 10 <= node.end_lineno - node.lineno <= 200:
                    docs.append("\n".join(lines[node.lineno - 1:node.end_lineno]))
                    if len(docs) >= max_docs:
                        return docs
    return docs


def junk(sources: list[str], seed: int) -> list[str]:
    """Corrupted copies of ``sources``: words shuffled, 10% of letters replaced."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789{}[]#@%&"
    out = []
    for text in sources:
        words = text.split()
        rng.shuffle(words)
        chars = list(" ".join(words))
        for i in range(len(chars)):
            if rng.random() < 0.1:
                chars[i] = rng.choice(letters)
        out.append("".join(chars))
    return out


BUILDERS = {"changelog": changelogs, "license": copyrights, "pydoc": docstrings, "code": code}


def domains(max_docs: int, seed: int = 0, with_junk: bool = True) -> dict[str, list[str]]:
    """The clean domains plus (optionally) ``junk`` made from a mix of them."""
    out = {name: build(max_docs) for name, build in BUILDERS.items()}
    if with_junk:
        rng = random.Random(seed)
        pool = [t for docs in out.values() for t in docs]
        out["junk"] = junk(rng.sample(pool, min(max_docs, len(pool))), seed)
    return out


def write_tables(spark, lake: Path, tables: dict[str, list[str]], prefix: str = "gold") -> dict[str, str]:
    """Write each domain as a Delta table ``<lake>/<prefix>/<name>`` (id, text, meta).

    Ids are ``<name>-<n>`` in ``gold`` and ``<prefix>-<name>-<n>`` elsewhere,
    so an evaluation table never reuses its training table's ids."""
    import json

    from include.config import lake_path

    written = {}
    for name, docs in tables.items():
        stem = name if prefix == "gold" else f"{prefix}-{name}"
        rows = [(f"{stem}-{i:06d}", text, json.dumps({"source": name})) for i, text in enumerate(docs)]
        df = spark.createDataFrame(rows, "id string, text string, meta string")
        table = f"{prefix}/{name}"
        df.write.format("delta").mode("overwrite").save(str(lake_path(lake, table)))
        written[name] = table
    return written
