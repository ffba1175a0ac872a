"""Named, parameterised document-quality rules: Gopher, C4 and FineWeb.

Pure Python over one document, no Spark: ``quality_filter`` runs them through
``spark_jobs.rowwise``. The rules and default thresholds follow the papers and
datatrove's reference filters (``GopherQualityFilter``,
``GopherRepetitionFilter``, ``C4QualityFilter``, ``FineWebQualityFilter``);
each rule is one entry in ``RULES`` with one threshold, so a spec can override
or disable any rule by name and the ledger names the rule that removed a row.

Words are regex tokens (``\\w`` runs, with inner apostrophes/hyphens/dots)
rather than datatrove's spaCy tokenizer: an order of magnitude cheaper and
language-neutral; punctuation never counts as a word. Sentences (C4) are
split on terminal punctuation followed by space for the same reason.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

WORD_RE = re.compile(r"\w+(?:['’.\-]\w+)*")
PARA_RE = re.compile(r"\n{2,}")
LINES_RE = re.compile(r"\n+")
SENTENCE_RE = re.compile(r"[^.!?。！？]+(?:[.!?。！？]+|$)")
CITATION_RE = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
C4_END_PUNCT = (".", "?", "!", '"', "'")
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                     "use of cookies", "use cookies")
# FineWeb's terminal-punctuation set, trimmed to the marks that end lines in
# practice across scripts (datatrove's full set has ~150 rare code points).
TERMINAL_PUNCT = tuple(".!?\"'。！？…‼⁇⁈⁉؟।॥።።፧᙮।")


def _dup_stats(items: list[str]) -> tuple[int, int]:
    """(duplicate elements, characters in duplicate elements), first copy free."""
    seen: set[str] = set()
    dup_n = dup_chars = 0
    for it in items:
        if it in seen:
            dup_n += 1
            dup_chars += len(it)
        else:
            seen.add(it)
    return dup_n, dup_chars


class Doc:
    """Lazily computed measurements of one text, shared by all rules."""

    def __init__(self, text: str, params: dict[str, Any]):
        self.text = text
        self.params = params

    @cached_property
    def words(self) -> list[str]:
        return WORD_RE.findall(self.text)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines() or [""]

    @cached_property
    def nonblank_lines(self) -> list[str]:
        return [ln for ln in self.text.split("\n") if ln.strip()]

    @cached_property
    def n_words(self) -> int:
        return len(self.words)

    def ratio(self, num: float) -> float:
        return num / self.n_words if self.n_words else float("inf")

    @cached_property
    def alpha_ratio(self) -> float:
        tokens = self.text.split()
        return sum(any(c.isalpha() for c in t) for t in tokens) / len(tokens) if tokens else 0.0

    @cached_property
    def mean_word_length(self) -> float:
        return sum(map(len, self.words)) / self.n_words if self.n_words else 0.0

    def top_ngram_frac(self, n: int) -> float:
        ws = self.words
        if len(ws) < n:
            return 0.0
        grams = Counter(tuple(ws[i:i + n]) for i in range(len(ws) - n + 1))
        gram, count = grams.most_common(1)[0]
        # A gram seen once is not repetition (datatrove counts it, which
        # removes every short document for its only bigram).
        if count < 2:
            return 0.0
        return sum(map(len, gram)) * count / max(len(self.text), 1)

    def dup_ngram_frac(self, n: int) -> float:
        """Characters in repeated word n-grams (non-overlapping), Gopher-style."""
        ws = self.words
        seen: set[tuple[str, ...]] = set()
        rep = i = 0
        while i < len(ws) - n + 1:
            gram = tuple(ws[i:i + n])
            if gram in seen:
                rep += sum(map(len, gram))
                i += n
            else:
                seen.add(gram)
                i += 1
        return rep / max(len(self.text), 1)

    @cached_property
    def paragraphs(self) -> list[str]:
        return PARA_RE.split(self.text.strip())

    @cached_property
    def line_splits(self) -> list[str]:
        return LINES_RE.split(self.text)

    @cached_property
    def c4(self) -> tuple[list[str], int]:
        """C4's line filter: (kept lines, sentences in them)."""
        p = self.params
        min_words = p.get("c4_min_words_per_line") or 0
        max_len = p.get("c4_max_word_length") or 0
        kept, sentences = [], 0
        for line in self.text.splitlines():
            line = line.strip()
            words = line.split()
            if max_len and any(len(w) > max_len for w in words):
                continue
            line = CITATION_RE.sub("", line)
            if not line.endswith(C4_END_PUNCT) or line.endswith("..."):
                continue
            if len(words) < min_words:
                continue
            low = line.lower()
            if "javascript" in low or any(s in low for s in POLICY_SUBSTRINGS):
                continue
            sentences += len(SENTENCE_RE.findall(line))
            kept.append(line)
        return kept, sentences


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # "min": remove if value < threshold; "max": if value > threshold; "flag": if value
    measure: Callable[[Doc], float | bool]
    description: str
    type: str = "number"


def _top(n):
    return lambda d: d.top_ngram_frac(n)


def _dup(n):
    return lambda d: d.dup_ngram_frac(n)


RULES: tuple[Rule, ...] = (
    # Gopher quality (Rae et al. 2021, appendix A)
    Rule("min_words", "min", lambda d: d.n_words, "fewest words", "integer"),
    Rule("max_words", "max", lambda d: d.n_words, "most words", "integer"),
    Rule("min_mean_word_length", "min", lambda d: d.mean_word_length, "mean word length floor"),
    Rule("max_mean_word_length", "max", lambda d: d.mean_word_length, "mean word length cap"),
    Rule("max_hash_word_ratio", "max", lambda d: d.ratio(d.text.count("#")), "'#' per word"),
    Rule("max_ellipsis_word_ratio", "max",
         lambda d: d.ratio(d.text.count("...") + d.text.count("…")), "ellipses per word"),
    Rule("max_bullet_lines_ratio", "max",
         lambda d: sum(ln.lstrip().startswith(("•", "-", "*", "·")) for ln in d.lines) / len(d.lines),
         "fraction of lines starting with a bullet"),
    Rule("max_ellipsis_lines_ratio", "max",
         lambda d: sum(ln.rstrip().endswith(("...", "…")) for ln in d.lines) / len(d.lines),
         "fraction of lines ending with an ellipsis"),
    # the paper's words here are whitespace-separated, so "=" and "1.2" count
    Rule("min_alpha_words_ratio", "min", lambda d: d.alpha_ratio,
         "fraction of whitespace-separated words with a letter"),
    Rule("min_stop_words", "min",
         lambda d: len(STOP_WORDS.intersection(w.lower() for w in d.words)),
         "distinct English stop words present", "integer"),
    # Gopher repetition (Rae et al. 2021, table A1)
    Rule("max_dup_para_frac", "max",
         lambda d: _dup_stats(d.paragraphs)[0] / len(d.paragraphs), "duplicate paragraph fraction"),
    Rule("max_dup_para_char_frac", "max",
         lambda d: _dup_stats(d.paragraphs)[1] / max(len(d.text), 1),
         "characters in duplicate paragraphs"),
    Rule("max_dup_line_frac", "max",
         lambda d: _dup_stats(d.line_splits)[0] / len(d.line_splits), "duplicate line fraction"),
    Rule("max_dup_line_char_frac", "max",
         lambda d: _dup_stats(d.line_splits)[1] / max(len(d.text), 1),
         "characters in duplicate lines"),
    *(Rule(f"max_top_{n}gram_frac", "max", _top(n), f"characters in the most frequent {n}-gram")
      for n in (2, 3, 4)),
    *(Rule(f"max_dup_{n}gram_frac", "max", _dup(n), f"characters in repeated {n}-grams")
      for n in range(5, 11)),
    # C4 (Raffel et al. 2020, section 2.2), after its line filter
    Rule("lorem_ipsum", "flag", lambda d: "lorem ipsum" in d.text.lower(),
         "page contains 'lorem ipsum'", "boolean"),
    Rule("curly_bracket", "flag", lambda d: "{" in d.text, "page contains '{'", "boolean"),
    Rule("c4_min_sentences", "min", lambda d: d.c4[1],
         "sentences left after C4's line filter", "integer"),
    # FineWeb (Penedo et al. 2024)
    Rule("min_line_punct_ratio", "min",
         lambda d: (sum(ln.endswith(TERMINAL_PUNCT) for ln in d.nonblank_lines)
                    / len(d.nonblank_lines)) if d.nonblank_lines else 0.0,
         "fraction of lines ending in terminal punctuation"),
    Rule("max_short_line_ratio", "max",
         lambda d: (sum(len(ln) <= (d.params.get("short_line_length") or 30)
                        for ln in d.nonblank_lines) / len(d.nonblank_lines))
         if d.nonblank_lines else 1.0,
         "fraction of lines of at most short_line_length characters"),
    Rule("max_char_dup_ratio", "max",
         lambda d: _dup_stats(d.nonblank_lines)[1] / max(len(d.text.replace("\n", "")), 1),
         "characters in duplicate lines (FineWeb)"),
    Rule("max_newline_word_ratio", "max", lambda d: d.ratio(d.text.count("\n")),
         "newlines per word (list-like pages)"),
)
RULES_BY_NAME = {r.name: r for r in RULES}

_GOPHER = {
    "min_words": 50, "max_words": 100000, "min_mean_word_length": 3,
    "max_mean_word_length": 10, "max_hash_word_ratio": 0.1, "max_ellipsis_word_ratio": 0.1,
    "max_bullet_lines_ratio": 0.9, "max_ellipsis_lines_ratio": 0.3,
    "min_alpha_words_ratio": 0.8, "min_stop_words": 2,
    "max_dup_para_frac": 0.3, "max_dup_para_char_frac": 0.2, "max_dup_line_frac": 0.3,
    "max_dup_line_char_frac": 0.2, "max_top_2gram_frac": 0.2, "max_top_3gram_frac": 0.18,
    "max_top_4gram_frac": 0.16, "max_dup_5gram_frac": 0.15, "max_dup_6gram_frac": 0.14,
    "max_dup_7gram_frac": 0.13, "max_dup_8gram_frac": 0.12, "max_dup_9gram_frac": 0.11,
    "max_dup_10gram_frac": 0.10,
}
PRESETS: dict[str, dict[str, Any]] = {
    "gopher": _GOPHER,
    "c4": {"lorem_ipsum": True, "curly_bracket": True, "c4_min_sentences": 5},
    "fineweb": {"min_line_punct_ratio": 0.12, "max_short_line_ratio": 0.67,
                "max_char_dup_ratio": 0.01, "max_newline_word_ratio": 0.3},
}
# Settings that shape a rule's measurement rather than being thresholds.
SETTINGS = {
    "short_line_length": ({"type": "integer", "minimum": 1}, 30,
                          "a FineWeb 'short line' has at most this many characters"),
    "c4_min_words_per_line": ({"type": "integer", "minimum": 0}, 3,
                              "C4 line filter: drop lines with fewer words"),
    "c4_max_word_length": ({"type": "integer", "minimum": 0}, 1000,
                           "C4 line filter: drop lines with a longer word"),
}


def active_rules(params: dict[str, Any]) -> list[tuple[Rule, Any]]:
    """Rules to apply, in order, with thresholds: the preset, then overrides."""
    preset = params.get("preset") or "gopher"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    thresholds = dict(PRESETS[preset])
    for name in RULES_BY_NAME:
        if params.get(name) is not None:
            thresholds[name] = params[name]
    disabled = set(params.get("disable") or ())
    unknown = disabled - set(RULES_BY_NAME)
    if unknown:
        raise ValueError(f"disable names unknown rule(s) {sorted(unknown)}")
    return [(r, thresholds[r.name]) for r in RULES
            if r.name in thresholds and r.name not in disabled
            and thresholds[r.name] is not False]


def check(text: str | None, rules: list[tuple[Rule, Any]], params: dict[str, Any]
          ) -> tuple[str | None, dict[str, Any] | None, Doc]:
    """First failing rule: (rule name, evidence) or (None, None) when kept."""
    if text is None or not text.strip():
        return "empty", {"rule": "empty", "chars": len(text or "")}, Doc(text or "", params)
    doc = Doc(text, params)
    for rule, thr in rules:
        value = rule.measure(doc)
        if rule.kind == "flag":
            failed = bool(value)
        elif rule.kind == "min":
            failed = value < thr
        else:
            failed = value > thr
        if failed:
            if isinstance(value, float):
                value = round(value, 4) if value != float("inf") else "inf"
            return rule.name, {"rule": rule.name, "value": value, "threshold": thr}, doc
    return None, None, doc
