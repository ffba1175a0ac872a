"""Every quality rule: one document it keeps and one it removes, at preset thresholds."""
from __future__ import annotations

import pytest

from spark_ops_samples import GOOD

from spark_jobs.text_rules import PRESETS, RULES, RULES_BY_NAME, SETTINGS, active_rules, check

_WORDS = "alpha beta gamma delta epsilon zeta theta iota kappa lambda omicron sigma".split()


def _prose(n_words: int) -> str:
    return " ".join(f"{_WORDS[i % len(_WORDS)]}{i}" for i in range(n_words))


# rule -> a document that breaks it at the preset threshold
REMOVED = {
    "min_words": "The cat sat on the mat with the dog.",
    "max_words": "the and of " * 40000,
    "min_mean_word_length": "a b c d e of to the and it is at " * 10,
    "max_mean_word_length": " ".join(["extraordinarilylongword"] * 60) + " the and",
    "max_hash_word_ratio": GOOD + " #tag" * 20,
    "max_ellipsis_word_ratio": GOOD + " and so on..." * 15,
    "max_bullet_lines_ratio": "\n".join(f"- item {w} of the list" for w in _WORDS * 2),
    "max_ellipsis_lines_ratio": "\n".join(f"this line about {w} trails off..." for w in _WORDS),
    "min_alpha_words_ratio": GOOD + " " + " ".join(str(i) for i in range(200)),
    "min_stop_words": _prose(80),
    "max_dup_para_frac": "\n\n".join(["Same paragraph text here."] * 3 + ["Other one.", "Third."]),
    "max_dup_para_char_frac": GOOD + "\n\n" + GOOD,
    "max_dup_line_frac": "\n".join(["repeated line"] * 5 + ["a", "b", "c"]),
    "max_dup_line_char_frac": GOOD + "\n" + GOOD.splitlines()[0] * 1 + "\n" + GOOD.splitlines()[1],
    "max_top_2gram_frac": _prose(40) + " new york" * 40,
    "max_top_3gram_frac": _prose(40) + " one two three" * 20 + _prose(20),
    "max_top_4gram_frac": _prose(40) + " one two three four" * 12 + _prose(40),
    "max_dup_5gram_frac": _prose(100) + " " + _prose(30) + " " + _prose(30),
    "max_dup_6gram_frac": _prose(100) + " " + _prose(30) + " " + _prose(30),
    "max_dup_7gram_frac": _prose(100) + " " + _prose(30) + " " + _prose(30),
    "max_dup_8gram_frac": _prose(100) + " " + _prose(30) + " " + _prose(30),
    "max_dup_9gram_frac": _prose(100) + " " + _prose(30) + " " + _prose(30),
    "max_dup_10gram_frac": _prose(100) + " " + _prose(30) + " " + _prose(30),
    "lorem_ipsum": GOOD + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "curly_bracket": GOOD + "\nfunction f() { return 1; }",
    "c4_min_sentences": "Menu\nHome\nAbout us\nContact the team at the office today.",
    "min_line_punct_ratio": "\n".join(f"navigation entry number {w} of the site" for w in _WORDS),
    "max_short_line_ratio": "\n".join(f"Item {w}." for w in _WORDS) + "\n" + GOOD.splitlines()[0],
    "max_char_dup_ratio": GOOD + "\n" + GOOD.splitlines()[2],
    "max_newline_word_ratio": "\n".join(f"{w}." for w in _WORDS),
}


def _threshold(rule_name: str):
    for preset in PRESETS.values():
        if rule_name in preset:
            return preset[rule_name]
    raise AssertionError(f"{rule_name} is in no preset")


def _params():
    return {name: default for name, (_, default, _) in SETTINGS.items()}


def test_every_rule_has_a_removed_example():
    assert set(REMOVED) == {r.name for r in RULES}


@pytest.mark.parametrize("rule", [r.name for r in RULES])
def test_rule_keeps_good_text(rule):
    only = [(RULES_BY_NAME[rule], _threshold(rule))]
    assert check(GOOD, only, _params())[0] is None


@pytest.mark.parametrize("rule", [r.name for r in RULES])
def test_rule_removes_bad_text(rule):
    only = [(RULES_BY_NAME[rule], _threshold(rule))]
    reason, detail, _ = check(REMOVED[rule], only, _params())
    assert reason == rule
    assert detail["rule"] == rule and "value" in detail and "threshold" in detail


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_good_text_passes_every_preset(preset):
    rules = active_rules({"preset": preset, **_params()})
    assert check(GOOD, rules, _params())[0] is None


@pytest.mark.parametrize("text", [None, "", "   \n\t  "])
def test_empty_text_removed_as_empty(text):
    assert check(text, active_rules({"preset": "fineweb"}), _params())[0] == "empty"


def test_overrides_and_disable():
    rules = active_rules({"preset": "gopher", "min_words": 5, "disable": ["min_stop_words"]})
    names = {r.name: t for r, t in rules}
    assert names["min_words"] == 5 and "min_stop_words" not in names
    # an override of a rule outside the preset switches it on
    assert "min_words" in {r.name for r, _ in active_rules({"preset": "c4", "min_words": 20})}


def test_unknown_preset_and_rule_rejected():
    with pytest.raises(ValueError, match="preset"):
        active_rules({"preset": "nope"})
    with pytest.raises(ValueError, match="unknown rule"):
        active_rules({"preset": "gopher", "disable": ["no_such_rule"]})


def test_non_latin_text_is_measured_not_crashed():
    text = "これは日本語の文章です。" * 30 + "\n" + "Это русский текст, и он достаточно длинный. " * 30
    reason, _, doc = check(text, active_rules({"preset": "gopher"}), _params())
    assert doc.n_words > 0 and (reason is None or reason in {r.name for r in RULES})
