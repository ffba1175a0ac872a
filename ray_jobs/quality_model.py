"""Quality classifiers on sentence embeddings: train, store with a version, load.

A logistic regression (scikit-learn) over all-MiniLM-L6-v2 embeddings,
trained from labelled positive and negative examples. Each training makes a
new version under ``<lake>/_system/models/quality/<name>/v<N>/model.json``;
the weights are stored as JSON (384 coefficients and an intercept), not a
pickle, so a model is readable, diffable and safe to load.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_jobs.embeddings import MODEL_NAME

from include.config import local_path

if TYPE_CHECKING:
    import numpy as np

MODELS_DIR = "_system/models/quality"


@dataclass
class QualityModel:
    name: str
    version: int
    coef: np.ndarray
    intercept: float
    info: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}/v{self.version}"

    def score(self, emb: np.ndarray) -> np.ndarray:
        """P(good) for each unit-length embedding."""
        import numpy as np

        return 1.0 / (1.0 + np.exp(-(emb @ self.coef + self.intercept)))


def model_dir(lake: str | Path, name: str) -> Path:
    return local_path(lake) / MODELS_DIR / name


def versions(lake: str | Path, name: str) -> list[int]:
    d = model_dir(lake, name)
    if not d.is_dir():
        return []
    return sorted(int(p.name[1:]) for p in d.iterdir()
                  if p.name[:1] == "v" and p.name[1:].isdigit() and (p / "model.json").exists())


def load(lake: str | Path, name: str, version: int | None = None) -> QualityModel:
    known = versions(lake, name)
    if not known:
        raise FileNotFoundError(
            f"no quality model {name!r} under {model_dir(lake, name)}; train one with "
            f"`datamill quality-model train --name {name} --positive FILE --negative FILE`")
    v = known[-1] if version is None else int(version)
    if v not in known:
        raise FileNotFoundError(f"quality model {name!r} has no version {v}; versions: {known}")
    import numpy as np

    doc = json.loads((model_dir(lake, name) / f"v{v}" / "model.json").read_text())
    return QualityModel(name, v, np.asarray(doc["coef"], dtype=np.float32),
                        float(doc["intercept"]), doc["info"])


def train(lake: str | Path, name: str, positives: list[str], negatives: list[str],
          c: float = 1.0, seed: int = 0, holdout: float = 0.2) -> QualityModel:
    if len(positives) < 2 or len(negatives) < 2:
        raise ValueError(f"need at least 2 positive and 2 negative examples, got "
                         f"{len(positives)} and {len(negatives)}")
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from ray_jobs.embeddings import embed_texts

    x = embed_texts(positives + negatives, threads=2)
    y = np.array([1] * len(positives) + [0] * len(negatives))
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=holdout, random_state=seed, stratify=y)
    metrics = {"holdout_accuracy": float(LogisticRegression(C=c, class_weight="balanced",
                                                            max_iter=1000).fit(xtr, ytr)
                                         .score(xte, yte))}
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=1000).fit(x, y)
    metrics["train_accuracy"] = float(clf.score(x, y))
    info = {"classifier": "sklearn LogisticRegression", "C": c,
            "positives": len(positives), "negatives": len(negatives), "metrics": metrics}
    return save(lake, name, clf.coef_[0].tolist(), float(clf.intercept_[0]), info)


def save(lake: str | Path, name: str, coef: list[float], intercept: float,
         info: dict[str, Any]) -> QualityModel:
    """Store weights as the next version of model ``name``."""
    import numpy as np

    version = (versions(lake, name) or [0])[-1] + 1
    info = {"embedder": MODEL_NAME, **info, "created_at": datetime.now(timezone.utc).isoformat()}
    out = model_dir(lake, name) / f"v{version}"
    out.mkdir(parents=True, exist_ok=False)
    (out / "model.json").write_text(json.dumps(
        {"coef": list(coef), "intercept": float(intercept), "info": info}))
    return QualityModel(name, version, np.asarray(coef, dtype=np.float32), float(intercept), info)
