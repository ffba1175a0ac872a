"""``normalize``: mojibake repair (ftfy), control characters, Unicode NFC, whitespace."""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from include.registry import Op, StepContext, apply_defaults, register_op
from spark_jobs import rowwise

# C1 controls left after ftfy's mojibake repair carry no text; ftfy keeps them
# only as clues for that repair, so they go once it has run.
_C1 = {c: None for c in range(0x80, 0xA0)}
_LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x0c\x85\x0b]")
_UNICODE_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}")
_TRAILING = re.compile(r"[ \t]+$", re.M)
_BLANK_RUNS = re.compile(r"\n{3,}")
_NEEDS_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u206a-\u206f\ufeff\ufff9-\ufffc]")


class _NormalizeRow:
    def __init__(self, params: dict[str, Any]):
        self.p = params

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        import ftfy
        from ftfy.fixes import remove_control_chars

        text = row["text"]
        if text is None:
            return {}
        fixes: list[str] = []
        evidence: dict[str, Any] = {}
        out = text
        ascii_only = out.isascii()
        if self.p["mojibake"] and not ascii_only:
            fixed, steps = ftfy.fix_encoding_and_explain(out)
            if fixed != out:
                fixes.append("mojibake")
                evidence["ftfy"] = [list(s) for s in steps or ()]
                out = fixed
        if self.p["control_chars"] and _NEEDS_CONTROL.search(out):
            cleaned = remove_control_chars(out).translate(_C1)
            if cleaned != out:
                fixes.append("control_chars")
                out = cleaned
        if self.p["nfc"] and not ascii_only and not unicodedata.is_normalized("NFC", out):
            fixes.append("nfc")
            out = unicodedata.normalize("NFC", out)
        if self.p["whitespace"]:
            ws = _LINE_BREAKS.sub("\n", out)
            ws = _UNICODE_SPACES.sub(" ", ws)
            if self.p["collapse_spaces"]:
                ws = _INNER_SPACES.sub(" ", ws)
            ws = _BLANK_RUNS.sub("\n\n", _TRAILING.sub("", ws)).strip()
            if ws != out:
                fixes.append("whitespace")
                out = ws
        if not fixes:
            return {}
        evidence.update(fixes=fixes, chars_before=len(text), chars_after=len(out))
        return {"text": out, "_changed": ",".join(fixes), "_detail": evidence}


@register_op(
    name="normalize", version="1", category="parse", engine="spark", rowwise=True,
    tunables=("mojibake", "control_chars", "nfc", "whitespace", "collapse_spaces"),
    description="""Cleans text without removing documents: repairs mojibake (text decoded
    with the wrong codec) with ftfy, removes control characters, applies Unicode NFC, unifies
    line breaks and Unicode spaces, trims trailing spaces, collapses runs of spaces inside lines
    (leading indentation is kept) and of blank lines. Changed rows record which fixes applied
    (e.g. "mojibake,whitespace") and the ftfy repair steps.""",
    params={"type": "object", "properties": {
        "mojibake": {"type": "boolean", "default": True,
                     "description": "repair mis-decoded text with ftfy.fix_encoding"},
        "control_chars": {"type": "boolean", "default": True,
                          "description": "remove C0/C1 controls (not tab/newline), BOM, "
                                         "deprecated format characters"},
        "nfc": {"type": "boolean", "default": True, "description": "Unicode NFC composition"},
        "whitespace": {"type": "boolean", "default": True,
                       "description": "unify line breaks and spaces, trim, squeeze blank lines"},
        "collapse_spaces": {"type": "boolean", "default": True,
                            "description": "squeeze runs of spaces/tabs inside a line "
                                           "(indentation is kept)"},
    }},
    requires=("text",), adds=())
class Normalize(Op):
    def run(self, df, params: dict[str, Any], ctx: StepContext):
        params = apply_defaults(self.meta, params)
        return rowwise.map_rows(df, _NormalizeRow(params), op="normalize", reads=("text",),
                                writes={"text": "string"})
