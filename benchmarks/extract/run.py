"""Main-text extractors side by side on the Zyte article-extraction benchmark.

Input: the 181 pages and the ground truth of scrapinghub/article-extraction-benchmark
(MIT), read in place from a clone or a bare mirror of that repository; nothing is
copied into this one. Every extractor gets the same decoded pages in one process.
Quality is that benchmark's own metric, computed by its own ``evaluate.py`` loaded
from the same source (token 4-gram shingle precision/recall per page, averaged over
pages, F1 of the means, ± from its 1000-sample bootstrap). Throughput is pages/s and
MB/s of HTML (UTF-8) for the extraction call alone, after one warm-up page.

    python -m benchmarks.extract.run --source /path/to/article-extraction-benchmark
    python -m benchmarks.extract.run --source ... --docs-dir /usr/share/doc

``--docs-dir`` also times the same extractors on every ``*.htm*`` file under a
folder (no ground truth there: pages/s, MB/s, pages with no text).
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import time
import types
from importlib.metadata import version
from pathlib import Path
from typing import Callable

Extractor = Callable[[str, str | None], str]


class Source:
    """The benchmark repository: a work tree (has ``html/``) or a bare git directory."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.tree = (self.path / "html").is_dir()

    def _git(self, *args: str, data: bytes | None = None) -> bytes:
        return subprocess.run(["git", "--git-dir", str(self.path), *args], input=data,
                              capture_output=True, check=True).stdout

    def text(self, name: str) -> str:
        if self.tree:
            return (self.path / name).read_text(encoding="utf-8")
        return self._git("show", f"HEAD:{name}").decode("utf-8")

    def pages(self) -> dict[str, str]:
        """Page id -> HTML, decoded as the benchmark's runners do (gzip, UTF-8)."""
        if self.tree:
            blobs = {p.name: p.read_bytes() for p in sorted((self.path / "html").glob("*.html.gz"))}
        else:
            names = self._git("ls-tree", "--name-only", "HEAD", "html/").decode().split()
            names = [n for n in names if n.endswith(".html.gz")]
            out = self._git("cat-file", "--batch",
                            data="".join(f"HEAD:{n}\n" for n in names).encode())
            blobs, pos = {}, 0
            for n in names:
                header_end = out.index(b"\n", pos)
                size = int(out[pos:header_end].split()[2])
                blobs[Path(n).name] = out[header_end + 1: header_end + 1 + size]
                pos = header_end + 1 + size + 1
        return {name.split(".")[0]: gzip.decompress(b).decode("utf-8")
                for name, b in blobs.items()}

    def evaluate_module(self) -> types.ModuleType:
        """The benchmark's own ``evaluate.py``, so the metric is theirs, not a re-implementation."""
        mod = types.ModuleType("aeb_evaluate")
        exec(compile(self.text("evaluate.py"), "evaluate.py", "exec"), mod.__dict__)
        return mod


def _op_row(extractor: str, **params) -> Extractor:
    """html_extract's own row function, so the op is what gets measured."""
    from include.registry import apply_defaults, get_op
    from spark_jobs.ops.html_extract import _ExtractRow

    meta = get_op("html_extract").meta
    row = _ExtractRow(apply_defaults(meta, {"extractor": extractor, **params}), has_url=True)
    return lambda html, url: row({"html": html, "url": url}).get("text") or ""


def _justext() -> Extractor:
    import justext

    stoplist = justext.get_stoplist("English")
    # The benchmark's runner settings (extractors/run_justext.py).
    return lambda html, url: "\n".join(
        p.text for p in justext.justext(html, stoplist, 50, 200, 0.1, 0.2, 0.2, 200, True)
        if not p.is_boilerplate)


def _readability() -> Extractor:
    import logging

    from inscriptis import get_text
    from readability import Document

    # it logs a traceback for each page it cannot parse and then raises;
    # _timed counts those pages as errors
    logging.getLogger("readability.readability").setLevel(logging.CRITICAL)

    # The benchmark's runner turns the article HTML into text with html-text;
    # inscriptis (installed for its own row) does the same job here.
    return lambda html, url: get_text(Document(html).summary(html_partial=True))


def _inscriptis() -> Extractor:
    from inscriptis import get_text

    return lambda html, url: get_text(html)


def _resiliparse_default() -> Extractor:
    from resiliparse.extract.html2text import extract_plain_text

    return lambda html, url: extract_plain_text(html, main_content=True)


# name -> (PyPI distribution, factory); factories import lazily so a missing
# library is reported, not fatal.
EXTRACTORS: dict[str, tuple[str, Callable[[], Extractor]]] = {
    "html_extract trafilatura (default, fast=False)": ("trafilatura",
                                                       lambda: _op_row("trafilatura")),
    "html_extract trafilatura fast=True": ("trafilatura",
                                           lambda: _op_row("trafilatura", fast=True)),
    "html_extract resiliparse": ("resiliparse", lambda: _op_row("resiliparse")),
    "resiliparse main_content=True (library defaults)": ("resiliparse", _resiliparse_default),
    "jusText": ("justext", _justext),
    "readability-lxml (+ inscriptis)": ("readability-lxml", _readability),
    "inscriptis (whole page)": ("inscriptis", _inscriptis),
}


def _timed(fn: Extractor, pages: dict[str, str], urls: dict[str, str | None]):
    """Texts by page (an extractor error counts as an empty text), seconds, errors."""
    first = next(iter(pages))
    fn(pages[first], urls.get(first))  # warm-up: imports and lazy tables
    out, errors, t0 = {}, 0, time.perf_counter()
    for key, html in pages.items():
        try:
            out[key] = fn(html, urls.get(key)) or ""
        except Exception:  # noqa: BLE001 - the op quarantines such a page; count it here
            out[key], errors = "", errors + 1
    return out, time.perf_counter() - t0, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True,
                    help="clone or bare git mirror of scrapinghub/article-extraction-benchmark")
    ap.add_argument("--docs-dir", help="also time the extractors on every *.htm* file here")
    ap.add_argument("--only", nargs="*", help="substrings of extractor names to run")
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)

    src = Source(args.source)
    ev = src.evaluate_module()
    truth = json.loads(src.text("ground-truth.json"))
    pages = src.pages()
    if set(pages) != set(truth):
        raise SystemExit(f"pages and ground truth differ: {sorted(set(pages) ^ set(truth))[:5]}")
    urls = {k: v.get("url") for k, v in truth.items()}
    mb = sum(len(h.encode("utf-8")) for h in pages.values()) / 1e6
    print(f"{len(pages)} pages, {mb:.1f} MB of HTML, load average {os.getloadavg()[0]:.1f}\n")

    chosen = {n: v for n, v in EXTRACTORS.items()
              if not args.only or any(s in n for s in args.only)}
    results, makers = {}, {}
    print("| extractor | version | F1 | precision | recall | accuracy | pages/s | MB/s "
          "| empty | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (dist, factory) in chosen.items():
        try:
            fn = factory()
            ver = version(dist)
        except ImportError as exc:
            print(f"| {name} | not installed: {exc} |||||||", flush=True)
            continue
        makers[name] = fn
        texts, dt, errors = _timed(fn, pages, urls)
        m = ev.evaluate(truth, {k: {"articleBody": t} for k, t in texts.items()},
                        args.n_bootstrap)
        r = {"version": ver, "pages": len(pages), "seconds": round(dt, 2),
             "pages_per_s": round(len(pages) / dt, 1), "mb_per_s": round(mb / dt, 2),
             "empty": sum(1 for t in texts.values() if not t.strip()), "errors": errors}
        r.update({k: round(v, 3) for k, v in m.items() if isinstance(v, float)})
        results[name] = r
        print(f"| {name} | {ver} | {r['f1']:.3f} ± {r['f1_std']:.3f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['accuracy']:.3f} | {r['pages_per_s']} | "
              f"{r['mb_per_s']} | {r['empty']} | {errors} |", flush=True)

    if args.docs_dir:
        paths = sorted(p for p in glob.glob(f"{args.docs_dir}/**/*.htm*", recursive=True)
                       if os.path.isfile(p))
        docs = {}
        for p in paths:
            with open(p, encoding="utf-8", errors="replace") as fh:
                docs[p] = fh.read()
        if not docs:
            raise SystemExit(f"no *.htm* files under {args.docs_dir}")
        dmb = sum(len(h.encode("utf-8")) for h in docs.values()) / 1e6
        print(f"\n{args.docs_dir}: {len(docs)} pages, {dmb:.1f} MB, "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print("| extractor | pages/s | MB/s | empty | errors | characters extracted |")
        print("|---|---|---|---|---|---|")
        for name, fn in makers.items():
            texts, dt, errors = _timed(fn, docs, {})
            empty = sum(1 for t in texts.values() if not t.strip())
            chars = sum(len(t) for t in texts.values())
            results[name]["docs_dir"] = {"pages": len(docs), "seconds": round(dt, 2),
                                         "pages_per_s": round(len(docs) / dt, 1),
                                         "mb_per_s": round(dmb / dt, 2), "empty": empty,
                                         "errors": errors, "chars": chars}
            print(f"| {name} | {len(docs) / dt:.1f} | {dmb / dt:.2f} | {empty} | {errors} "
                  f"| {chars} |", flush=True)

    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
