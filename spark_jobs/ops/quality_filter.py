"""``quality_filter``: Gopher / C4 / FineWeb heuristic rules, one reason per rule."""
from __future__ import annotations

from typing import Any

from include.registry import Op, StepContext, apply_defaults, register_op
from spark_jobs import rowwise
from spark_jobs.text_rules import PRESETS, RULES, SETTINGS, active_rules, check


def _params_schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        "preset": {"type": "string", "enum": sorted(PRESETS), "default": "gopher",
                   "description": "rule set whose thresholds apply unless overridden"},
        "disable": {"type": "array", "items": {"type": "string",
                                               "enum": [r.name for r in RULES]},
                    "default": [], "description": "rules to switch off by name"},
        "c4_drop_lines": {"type": "boolean", "default": True,
                          "description": "when the C4 rules are active, drop the lines C4's "
                                         "line filter rejects from kept documents"},
    }
    for rule in RULES:
        props[rule.name] = {"type": [rule.type, "null"], "default": None,
                            "description": f"{rule.kind} threshold: {rule.description}; "
                                           "null = the preset's value (or off)"}
    for name, (schema, default, desc) in SETTINGS.items():
        props[name] = {**schema, "default": default, "description": desc}
    return {"type": "object", "properties": props}


class _QualityRow:
    """Row predicate: picklable, rules resolved once per task."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.rules = active_rules(params)
        names = {r.name for r, _ in self.rules}
        self.drop_lines = bool(params.get("c4_drop_lines", True)) and "c4_min_sentences" in names
        self.preset = params.get("preset") or "gopher"

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        reason, detail, doc = check(row["text"], self.rules, self.params)
        if reason:
            return {"_reason": reason, "_detail": {**detail, "preset": self.preset}}
        if self.drop_lines:
            kept = "\n".join(doc.c4[0])
            if kept != row["text"]:
                return {"text": kept, "_changed": "c4_line_filter",
                        "_detail": {"lines_before": len(doc.text.splitlines()),
                                    "lines_after": len(doc.c4[0])}}
        return {}


@register_op(
    name="quality_filter", version="1", category="filter", engine="spark", rowwise=True,
    tunables=("preset", "min_words", "max_words", "min_mean_word_length",
              "max_mean_word_length", "min_alpha_words_ratio", "min_stop_words",
              "max_dup_line_frac", "max_dup_para_frac"),
    description="""Rule-based quality filter with the Gopher, C4 and FineWeb heuristics (word
    count, mean word length, symbol/word ratios, bullet and ellipsis lines, alphabetic words,
    stop words, duplicate lines/paragraphs, top and repeated n-gram fractions, lorem ipsum and
    curly brackets, C4 sentence count after its line filter, FineWeb terminal punctuation, short
    lines, duplicate characters and list-likeness). Pick a preset and override or disable any
    rule by name; each removed document records the rule, the measured value and the
    threshold.""",
    params=_params_schema(), requires=("text",), adds=())
class QualityFilter(Op):
    def run(self, df, params: dict[str, Any], ctx: StepContext):
        params = apply_defaults(self.meta, params)
        row_fn = _QualityRow(params)  # validates preset and rule names before Spark runs
        return rowwise.map_rows(df, row_fn, op="quality_filter", reads=("text",),
                                writes={"text": "string"})
