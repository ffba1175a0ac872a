"""``language_filter``: py3langid language id (model inside the wheel), allow-list + confidence."""
from __future__ import annotations

from typing import Any

from include.registry import Op, StepContext, apply_defaults, register_op
from spark_jobs import rowwise

_IDENTIFIER = None


def _identifier():
    """One normalised-probability identifier per Python worker (loading costs ~1 s)."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _IDENTIFIER


class _LanguageRow:
    def __init__(self, params: dict[str, Any]):
        self.allowed = set(params["languages"] or ())
        self.min_conf = float(params["min_confidence"])
        self.max_chars = int(params["max_chars"])

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        text = row["text"]
        if text is None or not text.strip():
            return {"_reason": "empty", "_detail": {"rule": "empty"}}
        # The head of a document decides its language; a 5 MB document is not
        # read in full.
        lang, score = _identifier().classify(text[: self.max_chars])
        out: dict[str, Any] = {"lang": lang, "lang_score": round(float(score), 4)}
        if self.allowed and lang not in self.allowed:
            out.update(_reason="language_not_allowed",
                       _detail={"lang": lang, "score": out["lang_score"],
                                "allowed": sorted(self.allowed)})
        elif score < self.min_conf:
            out.update(_reason="language_low_confidence",
                       _detail={"lang": lang, "score": out["lang_score"],
                                "threshold": self.min_conf})
        return out


@register_op(
    name="language_filter", version="1", category="filter", engine="spark", rowwise=True,
    tunables=("languages", "min_confidence"),
    description="""Identifies each document's language with py3langid (97 languages, model
    shipped inside the package, nothing downloaded) on its first max_chars characters, adds
    lang (ISO 639-1) and lang_score (normalised probability), and removes documents whose
    language is not in the allowed list (reason language_not_allowed) or whose score is below
    min_confidence (language_low_confidence). An empty allowed list only annotates.""",
    params={"type": "object", "properties": {
        "languages": {"type": "array", "maxItems": 200, "default": ["en"],
                      "items": {"type": "string", "pattern": "^[a-z]{2,3}$", "maxLength": 3},
                      "description": "allowed ISO 639-1 codes; empty = keep every language"},
        "min_confidence": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.65,
                           "description": "lowest lang_score kept"},
        "max_chars": {"type": "integer", "minimum": 100, "default": 10000,
                      "description": "characters read from the start of each document"},
    }},
    requires=("text",), adds=("lang", "lang_score"))
class LanguageFilter(Op):
    def run(self, df, params: dict[str, Any], ctx: StepContext):
        params = apply_defaults(self.meta, params)
        return rowwise.map_rows(df, _LanguageRow(params), op="language_filter", reads=("text",),
                                writes={"lang": "string", "lang_score": "double"})
