"""``html_extract``: main text and title from raw HTML with trafilatura or resiliparse."""
from __future__ import annotations

import re
from typing import Any

from include.registry import Op, StepContext, apply_defaults, register_op
from spark_jobs import rowwise


# Control characters are never text in HTML: lxml (under trafilatura) drops
# them and gives up on a whole page at a NUL, resiliparse would copy them into
# the text. Removing them first makes both extractors see the same page.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
# A page without a single tag is not HTML (binary junk, a truncated record):
# trafilatura yields no text for it, and resiliparse must not return the bytes.
_TAG = re.compile(r"<[A-Za-z!/?]")
# resiliparse's main-content pass is quadratic in DOM depth (measured: 20 000
# nested elements 19 s, 40 000 85 s), so one pathological page could stall a
# task. Real pages stay below 100 levels and lxml, under trafilatura, drops
# what lies below 255; a page this deep yields no text. The CSS check runs in
# lexbor (C).
_MAX_DEPTH = 1000
_TOO_DEEP = " > ".join(["*"] * _MAX_DEPTH)


class _ExtractRow:
    def __init__(self, params: dict[str, Any], has_url: bool):
        self.extract = {"trafilatura": self._trafilatura,
                        "resiliparse": self._resiliparse}[params["extractor"]]
        self.fast = params["fast"]
        self.include_tables = params["include_tables"]
        self.include_comments = params["include_comments"]
        self.min_chars = params["min_chars"]
        self.max_html_chars = params["max_html_chars"]
        self.has_url = has_url

    # Extractors return (text, title, evidence for the ledger if no text).
    def _trafilatura(self, html: str, url: str | None) -> tuple[str, str | None, dict]:
        import trafilatura

        doc = trafilatura.bare_extraction(
            html, url=url, fast=self.fast, include_comments=self.include_comments,
            include_tables=self.include_tables, with_metadata=True)
        if doc is None:
            return "", None, {}
        return doc.text or "", doc.title, {}

    def _resiliparse(self, html: str, url: str | None) -> tuple[str, str | None, dict]:
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        tree = HTMLTree.parse(html)
        title = (tree.title or "").strip() or None
        # depth needs at least as many tags: most pages skip the check
        if (html.count("<") >= _MAX_DEPTH
                and tree.document.query_selector(_TOO_DEEP) is not None):
            return "", title, {"depth_limit": _MAX_DEPTH}
        # preserve_formatting keeps paragraphs on their own lines, which the
        # line-based quality rules downstream rely on; image alt texts and
        # bylines/dates are not body text (trafilatura drops them too).
        text = extract_plain_text(
            tree, main_content=True, preserve_formatting=True, alt_texts=False,
            post_meta=False, comments=self.include_comments,
            skip_elements=None if self.include_tables else ["table"])
        return text, title, {}

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        html = row["html"]
        url = row.get("url") if self.has_url else None
        if html is None or not (html.strip() if isinstance(html, str) else html):
            return {"_reason": "no_html", "_detail": {"rule": "no_html"}}
        if isinstance(html, (bytes, bytearray)):
            html = html.decode("utf-8", errors="replace")
        html = _CONTROLS.sub("", html)[: self.max_html_chars]
        text, title, why = self.extract(html, url) if _TAG.search(html) else ("", None, {})
        if len(text.strip()) < self.min_chars:
            return {"text": text, "title": title, "_reason": "no_text",
                    "_detail": {"rule": "no_text", "chars": len(text.strip()),
                                "html_chars": len(html), "threshold": self.min_chars, **why}}
        return {"text": text, "title": title}


@register_op(
    name="html_extract", version="1", category="parse", engine="spark", rowwise=True,
    tunables=("extractor", "fast", "include_tables", "include_comments", "min_chars"),
    description="""Extracts the main text and the title of each HTML page, inside Spark
    partitions, with trafilatura (the default: F1 0.960 on the Zyte article-extraction
    benchmark) or resiliparse (extractor: resiliparse: F1 0.934, 12-30x faster, keeps a
    little more boilerplate). Navigation, footers, ads and comment sections are dropped.
    Reads the html column (and url when present, which trafilatura uses for metadata), adds
    text and title. A page that yields fewer than min_chars characters of text (binary junk,
    a page without any tag, an empty body) is removed with reason no_text, a row without
    HTML with no_html. Pages longer than max_html_chars are cut before parsing so memory
    stays bounded.""",
    params={"type": "object", "properties": {
        # Measured on the Zyte article-extraction benchmark (benchmarks/README.md).
        "extractor": {"type": "string", "enum": ["trafilatura", "resiliparse"],
                      "default": "trafilatura",
                      "description": "main-content extractor: trafilatura (higher F1) or "
                                     "resiliparse (faster)"},
        # Measured (benchmarks/README.md): fast mode ties on F1 and is ~1.3x
        # faster; the fallbacks stay on as the safety net for pages unlike the
        # benchmark's articles, resiliparse being the choice for speed.
        "fast": {"type": "boolean", "default": False,
                 "description": "trafilatura only: its own extractor without the "
                                "readability/justext fallbacks"},
        "include_tables": {"type": "boolean", "default": True,
                           "description": "keep text inside tables"},
        "include_comments": {"type": "boolean", "default": False,
                             "description": "keep user comment sections"},
        "min_chars": {"type": "integer", "minimum": 1, "default": 1,
                      "description": "pages with less extracted text are removed"},
        "max_html_chars": {"type": "integer", "minimum": 1000, "default": 5_000_000,
                           "description": "longer pages are cut to this many characters"},
    }},
    requires=("html",), adds=("text", "title"))
class HtmlExtract(Op):
    def run(self, df, params: dict[str, Any], ctx: StepContext):
        params = apply_defaults(self.meta, params)
        has_url = "url" in df.columns
        reads = ("html", "url") if has_url else ("html",)
        return rowwise.map_rows(df, _ExtractRow(params, has_url), op="html_extract",
                                reads=reads, writes={"text": "string", "title": "string"})
