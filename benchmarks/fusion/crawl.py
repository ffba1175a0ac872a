"""A small, mostly non-English web crawl made from real text (WARC).

Pages are built from the man pages Debian installs, translated by the
Debian/po4a translation teams: ``/usr/share/man/<lang>/man*/*.gz`` for German,
French, Spanish, Italian, Polish, Russian, Japanese, ... and the English
originals in ``/usr/share/man/man*``. Each man page's roff is turned into
paragraphs (``.SH``/``.SS`` become headings, ``.PP``/``.TP``/``.IP`` paragraph
breaks, other requests and font escapes are dropped) and cut into pages of
150-600 words; each page is wrapped in the same site boilerplate (navigation,
cookie banner, footer with a contact address and phone number, so PII
redaction has work) and stored as an HTTP response record in WARC files, with
a request record before each, as crawlers write them. ``en_fraction`` of the
pages are English (default 0.1): the crawl is what a language filter that
keeps English mostly removes.

Synthetic in its layout only: every sentence is real text nobody here wrote
(GPL/BSD-licensed documentation of the installed packages).

    python -m benchmarks.fusion.crawl --pages 2000 --out /tmp/crawl
"""
from __future__ import annotations

import argparse
import glob
import gzip
import html
import io
import os
import random
import re
import sys

SKIP_REQUESTS = re.compile(r"^[.'](?!SH|SS|PP|P\b|LP|TP|IP|HP)")
FONT = re.compile(r"\\f[BIRP0-9]|\\f\(..|\\\(..|\\[&|^%e]|\\-|\\s[+-]?\d|\\\*\(..|\\\*.")


def _roff_paragraphs(text: str) -> list[str]:
    paras, buf = [], []
    for line in text.splitlines():
        if line.startswith((".SH", ".SS")):
            if buf:
                paras.append(" ".join(buf))
            buf = []
            title = FONT.sub("", line[3:]).strip().strip('"')
            if title:
                paras.append("# " + title)
            continue
        if line.startswith((".PP", ".P ", ".LP", ".TP", ".IP", ".HP")) or line == ".P":
            if buf:
                paras.append(" ".join(buf))
            buf = []
            continue
        if line.startswith((".", "'")) or not line.strip():
            continue
        buf.append(FONT.sub("", line).replace("\\", "").strip())
    if buf:
        paras.append(" ".join(buf))
    return [p for p in paras if p.strip()]


def _pages(paths: list[str], rng: random.Random):
    for path in paths:
        try:
            with gzip.open(path, "rt", errors="replace") as fh:
                paras = _roff_paragraphs(fh.read(400_000))
        except (OSError, EOFError):
            continue
        buf, n, target = [], 0, rng.randint(150, 600)
        for p in paras:
            buf.append(p)
            n += len(p.split())
            if n >= target:
                yield path, buf
                buf, n, target = [], 0, rng.randint(150, 600)
        if n >= 80:
            yield path, buf


def _html(title: str, paras: list[str], lang: str, rng: random.Random) -> str:
    body = "\n".join(f"<h2>{html.escape(p[2:])}</h2>" if p.startswith("# ")
                     else f"<p>{html.escape(p)}</p>" for p in paras)
    phone = f"+1 415 555 {rng.randint(1000, 9999)}"
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title></head><body>"
            '<nav><a href="/">Home</a> | <a href="/docs">Docs</a> | <a href="/about">About</a>'
            "</nav><div class=\"cookie\">This site uses cookies. <a href=\"/privacy\">Privacy"
            f"</a></div><main><article><h1>{html.escape(title)}</h1>\n{body}\n</article></main>"
            f"<footer>Contact: webmaster@example.org, {phone}. &copy; Example Docs</footer>"
            "</body></html>")


def build(out: str, pages: int, en_fraction: float = 0.1, seed: int = 0, files: int = 4) -> dict:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rng = random.Random(seed)
    langs = sorted(d for d in os.listdir("/usr/share/man")
                   if not d.startswith("man") and os.path.isdir(f"/usr/share/man/{d}"))
    foreign = sorted(glob.glob("/usr/share/man/[a-z][a-z]*/man*/*.gz"))
    foreign = [p for p in foreign if p.split("/")[4] in langs]
    english = sorted(glob.glob("/usr/share/man/man[1-8]/*.gz"))
    rng.shuffle(foreign)
    rng.shuffle(english)
    n_en = round(pages * en_fraction)
    chosen = []
    for paths, n in ((english, n_en), (foreign, pages - n_en)):
        it = _pages(paths, rng)
        for _ in range(n):
            try:
                chosen.append(next(it))
            except StopIteration:
                raise SystemExit(f"only {len(chosen)} pages of text available") from None
    rng.shuffle(chosen)
    os.makedirs(out, exist_ok=True)
    writers = []
    for k in range(files):
        fh = open(os.path.join(out, f"crawl-{k:02d}.warc.gz"), "wb")
        writers.append((fh, WARCWriter(fh, gzip=True)))
    by_lang: dict[str, int] = {}
    for i, (path, paras) in enumerate(chosen):
        parts = path.split("/")
        lang = "en" if parts[4].startswith("man") else parts[4]
        by_lang[lang] = by_lang.get(lang, 0) + 1
        name = os.path.basename(path).removesuffix(".gz")
        url = f"https://docs.example.org/{lang}/{name}/{i}"
        body = _html(name, paras, lang, rng).encode("utf-8")
        _, w = writers[i % files]
        w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(
            f"GET /{lang}/{name}/{i} HTTP/1.1\r\nHost: docs.example.org\r\n\r\n".encode())))
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")],
                                protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body),
                                            http_headers=http))
    for fh, _ in writers:
        fh.close()
    return {"pages": len(chosen), "by_lang": dict(sorted(by_lang.items()))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--en-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    print(build(a.out, a.pages, a.en_fraction, a.seed), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
