"""Values people write in requests: numbers, languages, schedules, counts, cut-offs.

Pure functions over text, no model: each returns ``None`` when the text does
not say. They are shared by the offline planner, the feedback reviser and
the LLM planner (which fills in what the model left out).
"""
from __future__ import annotations

import re

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
                "twenty": 20, "fifty": 50, "hundred": 100, "a hundred": 100,
                "a thousand": 1000, "thousand": 1000, "once": 1, "twice": 2, "thrice": 3,
                "a dozen": 12, "dozen": 12, "a couple of": 2, "a few": 3, "a single": 1}
_NUM = r"(\d+(?:\.\d+)?|" + "|".join(sorted(map(re.escape, NUMBER_WORDS), key=len,
                                             reverse=True)) + r")"

# ISO 639-1 codes of the languages py3langid knows that people name most.
LANGUAGES = {
    "english": "en", "german": "de", "french": "fr", "spanish": "es", "italian": "it",
    "portuguese": "pt", "dutch": "nl", "russian": "ru", "chinese": "zh", "mandarin": "zh",
    "japanese": "ja", "korean": "ko", "arabic": "ar", "hindi": "hi", "turkish": "tr",
    "polish": "pl", "swedish": "sv", "danish": "da", "norwegian": "no", "finnish": "fi",
    "czech": "cs", "greek": "el", "hebrew": "he", "hungarian": "hu", "romanian": "ro",
    "ukrainian": "uk", "vietnamese": "vi", "thai": "th", "indonesian": "id", "malay": "ms",
    "persian": "fa", "farsi": "fa", "bengali": "bn", "urdu": "ur", "tamil": "ta",
    "catalan": "ca", "bulgarian": "bg", "croatian": "hr", "serbian": "sr", "slovak": "sk",
    "slovenian": "sl", "lithuanian": "lt", "latvian": "lv", "estonian": "et", "swahili": "sw",
    "basque": "eu", "galician": "gl", "icelandic": "is", "irish": "ga", "welsh": "cy",
    "afrikaans": "af", "tagalog": "tl", "esperanto": "eo", "latin": "la",
}
LANG_RE = re.compile(r"\b(" + "|".join(LANGUAGES) + r")\b", re.I)
CODE_RE = re.compile(r"\b(?:lang(?:uage)?s?|codes?)\s*[:=]?\s*((?:[a-z]{2}\s*(?:,|and|or|/)?\s*)+)\b")
WEEKDAYS = {"monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5,
            "saturday": 6, "sunday": 0}


def number(text: str) -> float | None:
    t = text.strip().lower()
    if t in NUMBER_WORDS:
        return float(NUMBER_WORDS[t])
    try:
        return float(t)
    except ValueError:
        return None


def numbers(text: str) -> list[float]:
    return [v for m in re.finditer(r"(?<![\w.])" + _NUM + r"(?![\w.])", text, re.I)
            if (v := number(m.group(1))) is not None]


def languages(text: str) -> list[str] | None:
    """ISO codes of the languages named ("English and German" -> [en, de])."""
    found = []
    for m in LANG_RE.finditer(text):
        code = LANGUAGES[m.group(1).lower()]
        if code not in found:
            found.append(code)
    m = CODE_RE.search(text.lower())
    if m:
        for code in re.findall(r"[a-z]{2}", m.group(1)):
            if code in LANGUAGES.values() and code not in found and code not in ("an", "or"):
                found.append(code)
    return found or None


def _hour(h: str, ampm: str | None) -> int | None:
    hour = int(h)
    if ampm:
        ampm = ampm.lower().replace(".", "")
        if ampm == "pm" and hour < 12:
            hour += 12
        if ampm == "am" and hour == 12:
            hour = 0
    return hour if 0 <= hour <= 23 else None


def schedule(text: str) -> str | None:
    """A cron string or Airflow preset for the schedule the text asks for."""
    t = text.lower()
    m = re.search(r"\b(?:cron|schedule)\s*[:=]?\s*[`'\"]([^`'\"]+)[`'\"]", t)
    if m:
        return m.group(1).strip()
    at = re.search(r"\bat\s+(\d{1,2})(?::(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)?(?![\d%])", t)
    hour = minute = None
    if at and (at.group(2) or at.group(3) or "o'clock" in t or "at " + at.group(1) in t):
        hour, minute = _hour(at.group(1), at.group(3)), int(at.group(2) or 0)
    if "midnight" in t:
        hour, minute = 0, 0
    if re.search(r"\bnoon\b", t):
        hour, minute = 12, 0
    m = re.search(r"\bevery\s+(\d+)\s*(minute|min|hour|hr|day)s?\b", t)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        if unit.startswith("min") and 1 <= n < 60:
            return f"*/{n} * * * *"
        if unit in ("hour", "hr") and 1 <= n < 24:
            return f"0 */{n} * * *"
        if unit == "day" and 1 <= n <= 31:
            return f"{minute or 0} {hour if hour is not None else 0} */{n} * *"
    for day, num in WEEKDAYS.items():
        if re.search(rf"\b(?:every|each|on)\s+{day}s?\b", t) or re.search(rf"\b{day}s\b", t):
            return f"{minute or 0} {hour if hour is not None else 0} * * {num}"
    if re.search(r"\b(?:on\s+)?(?:every\s+)?week\s?days\b|\bmonday (?:to|through) friday\b", t):
        return f"{minute or 0} {hour if hour is not None else 0} * * 1-5"
    if re.search(r"\b(?:every|each)\s+(?:night|evening)\b|\bnightly\b|\bovernight\b|"
                 r"\bat night\b", t):
        return f"{minute or 0} {hour if hour is not None else 2} * * *"
    if re.search(r"\b(?:every|each)\s+morning\b", t):
        return f"{minute or 0} {hour if hour is not None else 6} * * *"
    if re.search(r"\bhourly\b|\b(?:every|each)\s+hour\b|\bonce an hour\b", t):
        return "@hourly"
    if re.search(r"\bdaily\b|\b(?:every|each|once a)\s+day\b|\bper day\b", t):
        return "@daily" if hour is None else f"{minute or 0} {hour} * * *"
    if re.search(r"\bweekly\b|\b(?:every|each|once a)\s+week\b", t):
        return "@weekly"
    if re.search(r"\bmonthly\b|\b(?:every|each|once a)\s+month\b", t):
        return "@monthly"
    if re.search(r"\byearly\b|\bannually\b|\b(?:every|each|once a)\s+year\b", t):
        return "@yearly"
    if re.search(r"\bquarterly\b|\bevery\s+quarter\b", t):
        return "@quarterly"
    if hour is not None and re.search(r"\b(?:run|refresh|update|schedule)", t):
        return f"{minute or 0} {hour} * * *"
    return None


def count(text: str, nouns: str) -> int | None:
    """A count attached to one of ``nouns`` ("3 variants", "twice", "generate 200 problems")."""
    m = re.search(_NUM + r"\s+(?:\w+[\s-]){0,3}?(?:" + nouns + r")", text, re.I)
    if m and (v := number(m.group(1))) is not None and v >= 1 and v == int(v):
        return int(v)
    m = re.search(r"\b(once|twice|thrice|" + r"\w+) times?\b", text, re.I)
    if m and (v := number(m.group(1))) is not None and v >= 1:
        return int(v)
    m = re.search(r"\b(once|twice|thrice)\b", text, re.I)
    if m:
        return NUMBER_WORDS[m.group(1).lower()]
    return None


def cutoff(text: str, lo: float, hi: float) -> float | None:
    """A score cut-off in [lo, hi]: "at least 4", ">= 3.5", "4 or higher", "below 3" (the
    rows below are removed, so the cut-off is 3), "4+", "above 0.7"."""
    t = text.lower()
    pats = [r"(?:>=|≥|=>)\s*" + _NUM, r"\bat least\s+(?:a\s+)?(?:score of\s+)?" + _NUM,
            r"\b(?:minimum|min(?:imum)? score|cut-?off|threshold)(?: of| is| =|:)?\s*" + _NUM,
            _NUM + r"\s*(?:\+|or (?:higher|more|above|better))",
            r"\b(?:scor\w*|rated|rating)\s+(?:of\s+)?(?:above|over|higher than|more than|"
            r"greater than|>)\s*" + _NUM,
            r"\b(?:below|under|less than|lower than|<)\s*" + _NUM,
            r"\b(?:above|over|higher than|greater than|>)\s*" + _NUM,
            r"\bscor\w*\s+(?:of\s+)?" + _NUM]
    for p in pats:
        for m in re.finditer(p, t):
            v = number(m.group(1))
            if v is not None and lo <= v <= hi:
                return v
    return None


def fraction(text: str, words: str) -> float | None:
    """A similarity/threshold in (0, 1], from "0.9", "90%" or "90 percent" near ``words``."""
    t = text.lower()
    for m in re.finditer(r"(\d+(?:\.\d+)?)\s*(%|percent)?", t):
        window = t[max(0, m.start() - 60): m.end() + 40]
        if not re.search(words, window):
            continue
        v = float(m.group(1))
        if m.group(2):
            v /= 100.0
        if 0 < v <= 1 and ("." in m.group(1) or m.group(2)):
            return round(v, 4)
    return None


def words_bound(text: str) -> dict[str, int]:
    """min_words / max_words: "at least 50 words", "remove texts shorter than 20
    words" (min 20), "keep texts shorter than 500 words" (max 500), "drop anything
    longer than 5000 words" (max 5000), "keep those with more than 50 words" (min 50)."""
    t = text.lower()
    out: dict[str, int] = {}
    for m in re.finditer(r"(at least|no fewer than|minimum of|min(?:imum)?|fewer than|less than|"
                         r"shorter than|under|below|more than|longer than|over|above|at most|"
                         r"no more than|maximum of|max(?:imum)?|up to)\s+(\d+)\s+words?", t):
        rel, n = m.group(1), int(m.group(2))
        before = t[max(0, m.start() - 80): m.start()]
        keeping = re.search(r"\b(keep|retain|only|with|require|must have|need)\b", before)
        removing = re.search(r"\b(remove|drop|discard|filter(?:ing)? out|exclude|delete|"
                             r"throw away|get rid of|no)\b", before)
        if rel in ("at least", "no fewer than", "minimum of", "min", "minimum"):
            key = "min_words"
        elif rel in ("at most", "no more than", "maximum of", "max", "maximum", "up to"):
            key = "max_words"
        elif rel in ("fewer than", "less than", "shorter than", "under", "below"):
            key = "max_words" if keeping and not removing else "min_words"
        else:
            key = "min_words" if keeping and not removing else "max_words"
        out.setdefault(key, n)
    if "min_words" in out and "max_words" in out and out["max_words"] <= out["min_words"]:
        out.pop("max_words")
    return out
