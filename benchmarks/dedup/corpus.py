"""Labelled near-duplicate corpus from real text this project did not write.

Base documents are ~150-600-word chunks of text installed on every Debian
machine: man pages (``/usr/share/man/man1/*.gz``, roff requests stripped),
package documentation (``/usr/share/doc``, plain and gzipped text) and the
Python standard library's sources. A quarter of them seed near-duplicate
families: copies with word substitutions, insertions, deletions, swapped
paragraphs and added boilerplate at several edit rates, plus one family of
``skew_copies`` copies (a skewed LSH bucket). Ids are shuffled so the original
is not always the lowest id.

When those run out (beyond ~78 000 base documents, i.e. corpora above ~100k
documents), a second tier is used: the Python sources and documentation of the
third-party packages installed in this environment (site-packages). The first
tier is read in the same order either way, so a 20k corpus is unchanged.

Ground truth is exact Jaccard over sets of word 5-grams, for *all* pairs that
can reach the threshold, under two tokenisations: ``truth.json`` with
lower-cased ``\\w+`` words, datamill's own shingling (so it favours datamill,
whose verification computes exactly this Jaccard), and ``truth_ws.json``
with an independent one: NFKC-normalised text split at whitespace, case and
punctuation kept ("Foo," and "foo" differ), which neither datamill nor
datatrove (lower-cased, punctuation stripped by its ``simplify_text``) uses.
Both are computed the same way: AllPairs prefix filtering (Bayardo et al.
2007) orders shingles rarest-first and pairs two documents only if their
prefixes share a shingle, which every pair with J >= t does, then every
candidate is verified exactly. The near-duplicate
clusters are the connected components of the J >= t graph. Shingles are
compared as 64-bit hashes of their word ids (numpy, so 200k documents fit in
minutes); a collision changes a Jaccard only with probability ~1e-19 per
shingle pair. Written here rather than taken from a library because the
libraries that exist (datasketch, datatrove) estimate Jaccard; the truth must
be exact.

    python -m benchmarks.dedup.corpus --docs 20000 --out /tmp/dedup20k
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import math
import os
import random
import re
import sys
import sysconfig
import time
import unicodedata

import numpy as np

WORD = re.compile(r"\w+")
TOKENIZERS = {
    "word": lambda text: WORD.findall(text.lower()),
    "ws": lambda text: unicodedata.normalize("NFKC", text).split(),
}
TRUTH_FILES = {"word": "truth.json", "ws": "truth_ws.json"}
SOURCE_GLOBS = (
    ("man", "/usr/share/man/man1/*.gz"),
    ("doc", "/usr/share/doc/*/*"),
    ("python", os.path.join(os.path.dirname(os.__file__), "**", "*.py")),
)
_SITE = sysconfig.get_paths()["purelib"]
EXTRA_GLOBS = tuple(("site", os.path.join(_SITE, "**", f"*.{ext}"))
                    for ext in ("py", "md", "rst", "txt"))
BOILERPLATE = ["Read more about this topic on our website.", "Share this page with your friends.",
               "Copyright notice: all rights reserved by the respective owners.",
               "This document was automatically generated.", "Last updated recently."]


def _read(path: str) -> str:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", errors="replace") as f:
                return f.read(400_000)
        with open(path, errors="replace") as f:
            return f.read(400_000)
    except (OSError, EOFError):
        return ""


def _clean(kind: str, text: str) -> str:
    if kind == "man":
        lines = [ln for ln in text.splitlines() if not ln.startswith((".", "'", '\\"'))]
        text = re.sub(r"\\f[BIRP]|\\-|\\\(..|\\&|\\e", " ", "\n".join(lines))
    return text


def _chunks(text: str, rng: random.Random):
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    buf, n, target = [], 0, rng.randint(150, 600)
    for p in paras:
        buf.append(p)
        n += len(p.split())
        if n >= target:
            yield "\n\n".join(buf)
            buf, n, target = [], 0, rng.randint(150, 600)
    if n >= 80:
        yield "\n\n".join(buf)


def _files(globs, rng: random.Random) -> list[tuple[str, str]]:
    files = []
    for kind, pattern in globs:
        paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        files += [(kind, p) for p in paths]
    rng.shuffle(files)
    return files


def base_documents(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    docs, seen = [], set()
    for globs in (SOURCE_GLOBS, EXTRA_GLOBS):
        for kind, path in _files(globs, rng):
            for chunk in _chunks(_clean(kind, _read(path)), rng):
                key = chunk[:200]
                if key in seen:  # skip verbatim-repeated boilerplate chunks at the source
                    continue
                seen.add(key)
                docs.append(chunk)
                if len(docs) >= n:
                    return docs
    raise SystemExit(f"only {len(docs)} base documents available, {n} asked")


def edit(text: str, rate: float, rng: random.Random, vocab: list[str]) -> str:
    paras = text.split("\n\n")
    if len(paras) > 2 and rng.random() < 0.3:
        i = rng.randrange(len(paras) - 1)
        paras[i], paras[i + 1] = paras[i + 1], paras[i]
    out = []
    for para in paras:
        words = para.split(" ")
        new = []
        for w in words:
            r = rng.random()
            if r < rate / 3:
                continue                      # deletion
            if r < 2 * rate / 3:
                new.append(rng.choice(vocab))  # substitution
                continue
            new.append(w)
            if r < rate:
                new.append(rng.choice(vocab))  # insertion
        out.append(" ".join(new))
    text = "\n\n".join(out)
    if rng.random() < 0.3:
        text = text + "\n\n" + rng.choice(BOILERPLATE)
    return text


def build(n_docs: int, seed: int = 0, skew_copies: int = 1000):
    rng = random.Random(seed)
    n_base = int(n_docs * 0.72)
    bases = base_documents(n_base, seed)
    vocab = sorted({w for d in bases[:2000] for w in d.split()})[:50000]
    docs: list[tuple[str, str]] = [(f"base{i}", t) for i, t in enumerate(bases)]
    need = n_docs - len(docs) - skew_copies
    rates = (0.0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15)
    i = 0
    while need > 0:
        src = rng.randrange(len(bases))
        for k in range(min(need, rng.choice((1, 1, 1, 2, 3, 5)))):
            docs.append((f"base{src}~{i}", edit(bases[src], rng.choice(rates), rng, vocab)))
            i += 1
            need -= 1
    src = rng.randrange(len(bases))
    docs += [(f"base{src}~skew{j}", edit(bases[src], 0.01, rng, vocab)) for j in range(skew_copies)]
    order = list(range(len(docs)))
    rng.shuffle(order)
    width = len(str(len(docs)))
    return [{"id": f"d{rank:0{width}d}", "origin": docs[j][0], "text": docs[j][1]}
            for rank, j in enumerate(order)]


def shingle_set(text: str, n: int = 5) -> frozenset:
    ws = WORD.findall(text.lower())
    if len(ws) < n:
        return frozenset([" ".join(ws)]) if ws else frozenset()
    return frozenset(" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1))


def _shingle_hashes(texts: list[str], n: int = 5, tokens: str = "word") -> list[np.ndarray]:
    """Sorted unique uint64 hashes of each text's word n-grams (``word``: the
    shingles of ``shingle_set``; ``ws``: whitespace tokens)."""
    tokenize = TOKENIZERS[tokens]
    vocab: dict[str, int] = {}
    mult = np.uint64(0x9E3779B97F4A7C15)
    out = []
    with np.errstate(over="ignore"):
        for text in texts:
            ws = tokenize(text)
            ids = np.fromiter((vocab.setdefault(w, len(vocab) + 1) for w in ws), np.uint64,
                              len(ws))
            if len(ws) < n:  # shingle_set's one short shingle: all the words
                ids = np.concatenate([ids, np.zeros(n - len(ws), np.uint64)])[:, None] \
                    if len(ws) else np.zeros((n, 0), np.uint64)
                m = ids.shape[1]
            else:
                m = len(ws) - n + 1
                ids = np.lib.stride_tricks.sliding_window_view(ids, m)  # row k: k-th words
            h = np.zeros(m, np.uint64)
            for k in range(n):
                h = h * mult + ids[k]
            out.append(np.unique(h))
    return out


def true_pairs(texts: dict[str, str], threshold: float,
               tokens: str = "word") -> dict[tuple[str, str], float]:
    """Every pair with Jaccard >= threshold, exactly (prefix filtering + verification)."""
    keys = sorted(texts)
    sets = _shingle_hashes([texts[k] for k in keys], tokens=tokens)
    sizes = np.array([len(s) for s in sets])
    flat = np.concatenate(sets)
    doc = np.repeat(np.arange(len(sets)), sizes)
    # global token order: rarest first, ties by hash (AllPairs' canonical order)
    uniq, inv, df = np.unique(flat, return_inverse=True, return_counts=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.lexsort((uniq, df))] = np.arange(len(uniq))
    tok = rank[inv]
    order = np.lexsort((tok, doc))  # per document, rarest token first
    tok, doc = tok[order], doc[order]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.arange(len(tok)) - np.repeat(starts, sizes)
    prefix = np.minimum(sizes, sizes - np.ceil(threshold * sizes).astype(np.int64) + 1)
    keep = pos < np.repeat(prefix, sizes)
    ptok, pdoc = tok[keep], doc[keep]
    # inverted index over prefix tokens (CSR): documents sharing a prefix token
    by_tok = np.lexsort((pdoc, ptok))
    itok, idoc = ptok[by_tok], pdoc[by_tok]
    bounds = np.searchsorted(itok, np.arange(len(uniq) + 1))
    pstart = np.concatenate([[0], np.cumsum(prefix)[:-1]])
    out = {}
    for a in range(len(sets)):
        toks = ptok[pstart[a]:pstart[a] + prefix[a]]
        lo, hi = bounds[toks], bounds[toks + 1]
        multi = hi - lo > 1
        if not multi.any():
            continue
        cands = np.unique(np.concatenate([idoc[x:y] for x, y in zip(lo[multi], hi[multi])]))
        cands = cands[cands > a]
        # size filter: J >= t needs min(|x|,|y|) >= t * max(|x|,|y|)
        cs = sizes[cands]
        cands = cands[(np.minimum(cs, sizes[a]) >= threshold * np.maximum(cs, sizes[a]))]
        for b in cands:
            inter = len(np.intersect1d(sets[a], sets[b], assume_unique=True))
            j = inter / (sizes[a] + sizes[b] - inter)
            if j >= threshold:
                out[(keys[a], keys[b])] = j
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skew-copies", type=int, default=1000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--truth-only", choices=sorted(TOKENIZERS), default=None,
                    help="only (re)compute this truth for the corpus already in --out")
    a = ap.parse_args(argv)
    os.makedirs(os.path.join(a.out, "input"), exist_ok=True)
    t0 = time.time()
    if a.truth_only:
        rows = []
        for path in sorted(glob.glob(os.path.join(a.out, "input", "*.jsonl"))):
            with open(path) as f:
                rows += [json.loads(line) for line in f]
        with open(os.path.join(a.out, "truth.json")) as f:
            origin = json.load(f)["origin"]
        rows = [{**r, "origin": origin[r["id"]]} for r in rows]
    else:
        rows = build(a.docs, a.seed, a.skew_copies)
        # several files: datatrove parallelises over files, Spark over splits
        shards = [open(os.path.join(a.out, "input", f"docs-{k:02d}.jsonl"), "w")
                  for k in range(a.shards)]
        for i, r in enumerate(rows):
            shards[i % a.shards].write(json.dumps({"id": r["id"], "text": r["text"]}) + "\n")
        for f in shards:
            f.close()
    t1 = time.time()
    for tokens in [a.truth_only] if a.truth_only else sorted(TOKENIZERS, reverse=True):
        t2 = time.time()
        pairs = true_pairs({r["id"]: r["text"] for r in rows}, a.threshold, tokens)
        with open(os.path.join(a.out, TRUTH_FILES[tokens]), "w") as f:
            json.dump({"threshold": a.threshold, "docs": len(rows), "tokens": tokens,
                       "pairs": [[x, y, round(j, 4)] for (x, y), j in sorted(pairs.items())],
                       "origin": {r["id"]: r["origin"] for r in rows}}, f)
        print(f"{len(rows)} docs ({sum(len(r['text']) for r in rows) / 1e6:.1f} MB) in "
              f"{t1 - t0:.0f}s; truth {tokens}: {len(pairs)} true pairs at J>={a.threshold} "
              f"in {time.time() - t2:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
