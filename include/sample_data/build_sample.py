"""Rebuild the bundled sample data (run once; the output is committed).

Source: the docstrings of CPython 3.11's standard library (modules, classes,
functions), written by the Python developers, under the Python Software
Foundation License 2.0 (https://docs.python.org/3/license.html). Real prose
and reference text of mixed quality and length, with natural exact and near
duplicates (inherited and copied docstrings): what the filters and dedup are
for. ``zz_bad_lines.jsonl`` holds deliberately broken records for the quarantine.
"""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).parent / "docs"
SKIP = ("test", "idlelib", "tkinter", "turtle", "lib2to3", "ensurepip", "antigravity",
        "this", "pydoc_data", "__", "_")
LIMIT = 3000


def docs():
    seen_obj = set()
    for m in sorted(pkgutil.iter_modules(), key=lambda m: m.name):
        if m.name.startswith(SKIP) or m.name not in sys.stdlib_module_names:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(m.name)
        except Exception:  # noqa: BLE001 - platform-specific modules
            continue
        if mod.__doc__:
            yield m.name, "module", mod.__doc__
        for name, obj in sorted(vars(mod).items()):
            if name.startswith("_") or id(obj) in seen_obj:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            seen_obj.add(id(obj))
            if obj.__doc__:
                yield f"{m.name}.{name}", "class" if inspect.isclass(obj) else "function", obj.__doc__
            if inspect.isclass(obj):
                for mname, meth in sorted(vars(obj).items()):
                    if mname.startswith("_") or not inspect.isfunction(meth) or not meth.__doc__:
                        continue
                    yield f"{m.name}.{name}.{mname}", "method", meth.__doc__


def code_chunks(lines_per_chunk: int = 60):
    """Windows of the stdlib's own Python source: the 'code' domain."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")):
        if path.name.startswith(SKIP):
            continue
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for start in range(0, len(lines), lines_per_chunk):
            chunk = "\n".join(lines[start:start + lines_per_chunk]).strip()
            if chunk:
                yield f"src:{path.name}:{start + 1}", chunk


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    n = 0
    with (HERE / "stdlib_docs.jsonl").open("w", encoding="utf-8") as fh:
        for qual, kind, doc in docs():
            fh.write(json.dumps({"id": f"py:{qual}", "text": inspect.cleandoc(doc),
                                 "kind": kind, "source": f"CPython {sys.version.split()[0]} stdlib",
                                 "license": "PSF-2.0"}, ensure_ascii=False) + "\n")
            n += 1
            if n >= LIMIT:
                break
    bad = [
        b'{"id": "bad:broken-json", "text": "an unterminated record',
        b'{"id": "bad:invalid-utf8", "text": "caf\xe9 au lait"}',
        b'{"id": "bad:null-text", "text": null}',
        b'{"id": "bad:numeric-text", "text": 42}',
        b'{"id": "bad:nested-text", "text": {"body": "nested"}}',
        b'["not", "an", "object"]',
        b'{"text": "A record without an id gets a stable content-hash id, so it is never lost or confused with another record in later runs."}',
        b'{"id": "py:json.dumps", "text": "A second record reusing an id that already exists in the stdlib file."}',
    ]
    (HERE / "zz_bad_lines.jsonl").write_bytes(b"\n".join(bad) + b"\n")
    code_dir = HERE.parent / "code"
    code_dir.mkdir(exist_ok=True)
    m = 0
    with (code_dir / "stdlib_source.jsonl").open("w", encoding="utf-8") as fh:
        for cid, chunk in code_chunks():
            fh.write(json.dumps({"id": cid, "text": chunk, "source": f"CPython {sys.version.split()[0]} stdlib",
                                 "license": "PSF-2.0"}, ensure_ascii=False) + "\n")
            m += 1
            if m >= LIMIT:
                break
    print(f"{n} documents, {len(bad)} bad lines, {m} code chunks")


if __name__ == "__main__":
    main()
