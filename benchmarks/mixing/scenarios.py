"""The mixing scenario suite: five mixtures, each built to break a different assumption.

Real text from the machine (training/corpora.py: Debian changelogs and
copyright paragraphs, Python stdlib docstrings and source) plus generated
domains whose ground truth is known by construction:

- ``noise``: words of uniformly random letters. Nothing beyond letter
  frequencies can be learnt: the *unlearnable* domain.
- ``arith``: lines ``a + b = c`` with random 1-4 digit numbers. Fully
  predictable in principle, but a small model learns the carries slowly:
  the *learnable but slow* domain.
- ``code_dup``: 20 stdlib functions, each copied 20 times under different
  ids: the *redundant* domain. It is evaluated on a separate table of other
  stdlib functions (``data.test``), i.e. on what the domain is about rather
  than on its copies; exact copies never straddle train and evaluation.
- ``*_noisy_*``: other docstrings with 10/25/50% of characters replaced:
  noisy neighbours of a clean target.

What each scenario's headline measures (``goal``): the mean evaluation loss
over the domains a user of that mixture cares about. ``learnable`` names
the domains a strategy should never starve (all but ``noise``).

Every domain is split train / selection holdout / evaluation by the
trainer (training/data.py); strategies only ever see the first two.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from training import corpora


@dataclass
class Scenario:
    name: str
    what: str
    tables: dict[str, list[str]]                 # domain -> documents (gold/<domain>)
    goal: list[str]
    test_tables: dict[str, list[str]] = field(default_factory=dict)  # domain -> eval/<domain>

    @property
    def learnable(self) -> list[str]:
        return [d for d in self.tables if d != "noise"]


def noise(n: int, seed: int, words: int = 120) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [" ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 8)))
                     for _ in range(words)) for _ in range(n)]


def arith(n: int, seed: int, lines: int = 24) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        rows = []
        for _ in range(lines):
            a, b = rng.randint(0, 10 ** rng.randint(1, 4)), rng.randint(0, 10 ** rng.randint(1, 4))
            rows.append(f"{a} + {b} = {a + b}")
        out.append("\n".join(rows))
    return out


def corrupt(texts: list[str], rate: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789{}[]#@%&"
    return ["".join(rng.choice(letters) if rng.random() < rate else c for c in t) for t in texts]


def build(docs: int = 400, seed: int = 0) -> list[Scenario]:
    """The five scenarios, ``docs`` documents per ordinary domain."""
    changelog = corpora.changelogs(4 * docs + 400)
    license_ = corpora.copyrights(4 * docs + 400)
    pydoc = corpora.docstrings(4 * docs)
    code = corpora.code(1200)
    if len(pydoc) < 4 * docs or len(code) < docs + 120:
        raise RuntimeError(f"not enough stdlib text for {docs} docs per domain")
    rng = random.Random(seed)
    base = {"changelog": changelog[:docs], "license": license_[:docs], "pydoc": pydoc[:docs],
            "code": code[:docs]}
    dup_src = code[docs:docs + 20]
    fresh_code = code[docs + 20:docs + 120]
    small = max(20, docs // 10)
    return [
        Scenario("unlearnable", "four real domains and one of random letters",
                 {**base, "noise": noise(docs, seed)}, goal=list(base)),
        Scenario("redundant", "code made of 20 functions copied 20x each, evaluated on other code",
                 {k: base[k] for k in ("changelog", "license", "pydoc")}
                 | {"code_dup": [t for t in dup_src for _ in range(20)]},
                 goal=["changelog", "license", "pydoc", "code_dup"],
                 test_tables={"code_dup": fresh_code}),
        Scenario("slow", "three real domains and arithmetic (learnable, slowly)",
                 {k: base[k] for k in ("changelog", "license", "pydoc")} | {"arith": arith(docs, seed)},
                 goal=["changelog", "license", "pydoc", "arith"]),
        Scenario("imbalanced", f"two domains of {4 * docs} documents, two of {small}",
                 {"changelog": changelog[:4 * docs], "license": license_[:4 * docs],
                  "pydoc": pydoc[:small], "code": code[:small]},
                 goal=["changelog", "license", "pydoc", "code"],
                 test_tables={"pydoc": pydoc[small:2 * small], "code": code[small:2 * small]}),
        Scenario("clean_target", "clean docstrings among three corrupted copies of others",
                 {"pydoc": pydoc[:docs],
                  **{f"pydoc_noisy_{int(r * 100)}": corrupt(pydoc[(i + 1) * docs:(i + 2) * docs], r,
                                                            rng.randint(0, 10 ** 6))
                     for i, r in enumerate((0.10, 0.25, 0.50))}},
                 goal=["pydoc"]),
    ]
