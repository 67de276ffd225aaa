"""Prompt rules (bridge/public/rules.py): what normalise() folds, how words, phrases and patterns
match, both file formats, every mistake a BadRules names by line, and the shipped default list."""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import BadRules, RefusedPrompt
from bridge.public.rules import (
    DEFAULT,
    MAX_BYTES,
    MAX_RULES,
    REFUSED,
    PromptRules,
    Rule,
    default_rules_path,
    load_rules,
    normalise,
    parse_rules,
)

ART_PROMPTS = [
    "a misty forest at dawn",
    "360 view of a cathedral interior",
    "a classic red car",
    "cyberpunk city at night, 1024 px",
    "a winter forest with naked trees, seen with the naked eye",
    "the Essex coast at low tide, 8k",
    "a 3d render of a therapist's office, 4k",
    "an al fresco lunch under the denuded trees of Scunthorpe",
]


def rules(*given: tuple[str, str]) -> PromptRules:
    """Rules made in code, as (kind, text) pairs."""
    return PromptRules("code", tuple(Rule(kind, text, 0) for kind, text in given))


@functools.cache
def default_rules() -> PromptRules:
    return load_rules(DEFAULT)


def refuses(prompt_rules: PromptRules, prompt: str) -> bool:
    return prompt_rules.match(prompt) is not None


# --- normalise, step by step -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("ｎｕｄｅ ＣＡＴ", "nude cat"),  # NFKC: fullwidth
        ("ﬁne ①", "fine 1"),  # NFKC: ligature, circled digit
        ("NUDE Straße", "nude strasse"),  # casefold
        ("nu\u200bde nu\u200dde \ufeffnu\u00adde", "nude nude nude"),  # Cf: zero-width, BOM, soft hyphen
        ("nüde café NAÏVE", "nude cafe naive"),  # accents
        ("İstanbul", "istanbul"),  # casefold gives i + combining dot: dropped
    ],
)
def test_normalise_unicode_steps(text: str, want: str) -> None:
    assert normalise(text) == want


def test_normalise_folds_cyrillic_and_greek_look_alikes() -> None:
    assert normalise("сафе") != "cafe"  # ф is no look-alike
    assert normalise("саре") == "cape"  # Cyrillic с а р е
    assert normalise("аеорсхуіѕјкмтнв") == "aeopcxyisjkmthb"
    assert normalise("αεορτυνκι") == "aeoptuvki"
    assert normalise("ΑΕΟ") == "aeo"  # Greek capitals casefold first
    assert normalise("ЅЕХ") == "sex"  # Cyrillic capitals


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("n00d s3x h4x0r l33t 7r4sh", "nood sex haxor leet trash"),
        ("@ss $ex p@$$", "ass sex pass"),
        ("1024 px", "1024 px"),
        ("3 cats and 7 dogs", "3 cats and 7 dogs"),
        ("$100 at 10:45", "$100 at 10:45"),
        ("1024px", "102apx"),  # 2 is no leet character: the run with a letter is "4px"
        ("360° view", "360° view"),
    ],
)
def test_normalise_folds_leet_only_inside_words(text: str, want: str) -> None:
    assert normalise(text) == want


def test_normalise_collapses_whitespace() -> None:
    assert normalise("  a\t\tmisty\n\nforest \u00a0\u3000 at dawn  ") == "a misty forest at dawn"
    assert normalise("") == "" and normalise(" \u200b ") == ""


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    assert once == once.strip() and "  " not in once


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=())))  # surrogates too
def test_normalise_and_match_never_raise_on_any_text(text: str) -> None:
    assert isinstance(normalise(text), str)
    default_rules().match(text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["word", "phrase"]), st.text(min_size=1))
def test_a_word_or_phrase_matches_the_text_it_was_made_from(kind: str, text: str) -> None:
    try:
        made = rules((kind, text))
    except BadRules:
        assert not re.search(r"[^\W_]", normalise(text))  # refused only without a letter or digit
        return
    assert made.match(text) == Rule(kind, text, 0)
    assert made.match(f"[{text}] ...") is not None


# --- matching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    ["nude", "NUDE", "a nude statue", "n u d e", "n.u.d.e", "n-u-d-e", "n. u. d. e.", "n_u_d_e", "ｎｕｄｅ",
     "nu\u200bde", "nüde", "nud3", "NÜDE!", "(nude)", "nude_photo", "nud\u0435"],
)  # fmt: skip
def test_a_word_matches_spelt_many_ways(prompt: str) -> None:
    assert rules(("word", "nude")).match(prompt) == Rule("word", "nude", 0)


@pytest.mark.parametrize(
    ("word", "prompt"),
    [
        ("nude", "denuded"),
        ("nude", "nudes"),  # no stemming
        ("nude", "n u.d-e"),  # the letters split by different separators
        ("ass", "a classic red car"),
        ("ass", "passage of time, assassin's creed"),
        ("sex", "the Essex coast, Sussex"),
        ("anal", "an al fresco lunch, analysis"),
        ("nude", "nu de"),
        ("tit", "titanic, petite"),
    ],
)
def test_a_word_does_not_match_inside_other_words(word: str, prompt: str) -> None:
    assert not refuses(rules(("word", word)), prompt)


def test_a_word_in_latin_letters_matches_next_to_other_scripts_but_others_need_a_boundary() -> None:
    assert refuses(rules(("word", "nude")), "nudeの写真")  # Japanese writes no spaces
    russian = rules(("word", "голый"))
    assert refuses(russian, "ГОЛЫЙ человек") and refuses(russian, "голыи")  # й without its breve
    assert not refuses(russian, "преголый")


def test_a_word_with_digits_matches_whole() -> None:
    year = rules(("word", "1984"))
    assert refuses(year, "1984") and refuses(year, "1 9 8 4") and refuses(year, "in 1984.")
    assert not refuses(year, "19845") and not refuses(year, "21984")
    assert refuses(rules(("word", "w12")), "W12 rocket") and not refuses(rules(("word", "w12")), "w123")


def test_a_phrase_matches_its_words_in_order_with_any_punctuation_between() -> None:
    blood_bath = rules(("phrase", "blood bath"))
    for prompt in ["Blood-bath", "blood   bath", "BLOOD, bath", "a blood bath.", "bl00d_bath"]:
        assert refuses(blood_bath, prompt), prompt
    for prompt in ["bloodbath", "bath blood", "bloody bath", "blood bathroom"]:
        assert not refuses(blood_bath, prompt), prompt
    assert not refuses(rules(("phrase", "the rapist")), "a calm therapist")
    assert refuses(rules(("phrase", "blood-soaked  body")), "blood soaked body")


def test_a_pattern_is_searched_in_the_normalised_prompt() -> None:
    pattern = rules(("pattern", r"\bdisembowel(l?ed|ment)?\b"))
    assert refuses(pattern, "a DISEMBOWELLED knight") and refuses(pattern, "disemb0weled")
    assert not refuses(pattern, "a knight")
    assert not refuses(rules(("pattern", "NUDE")), "NUDE")  # the prompt is casefolded: write lowercase


def test_match_returns_the_first_rule_in_order() -> None:
    both = parse_rules("gory\nre:go\n", "r.txt")
    assert both.match("gory details") == Rule("word", "gory", 1)
    assert both.match("go home") == Rule("pattern", "go", 2)
    assert both.match("a misty forest") is None


def test_check_refuses_without_naming_the_rule_and_logs_the_rule_not_the_prompt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prompt_rules = parse_rules("# rules\nhentai\n", "museum.txt")
    prompt_rules.check("a misty forest at dawn")  # no error
    caplog.set_level(logging.INFO, logger="bridge.public.rules")
    with pytest.raises(RefusedPrompt) as refused:
        prompt_rules.check("some HENTAI at the secret-visitor-prompt")
    assert "hentai" not in str(refused.value).lower() and str(refused.value) == REFUSED
    assert refused.value.code == "refused_prompt"
    assert [r.getMessage() for r in caplog.records] == ["prompt refused by museum.txt:2 (word 'hentai')"]


def test_loading_a_file_tells_the_operator_where_the_rules_came_from_and_how_many(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "museum.txt"
    path.write_text('# rules\nhentai\n"gore fest"\n', encoding="utf-8")
    caplog.set_level(logging.INFO, logger="bridge.public.rules")
    assert len(load_rules(str(path))) == 2
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("INFO", f"prompt rules from {path}: 2 rules")]


# --- files -------------------------------------------------------------------------------------


def test_plain_lines_comments_patterns_phrases_and_words() -> None:
    text = "# a comment\n\n  nude  \nre:  \\bgor(e|y)\\b  \nblood bath\n\t# indented comment\r\nporn\r\n"
    parsed = parse_rules(text, "rules.txt")
    assert parsed.source == "rules.txt" and len(parsed) == 4
    assert parsed.rules == (
        Rule("word", "nude", 3),
        Rule("pattern", r"\bgor(e|y)\b", 4),
        Rule("phrase", "blood bath", 5),
        Rule("word", "porn", 7),
    )


def test_toml_rules_keep_the_files_order_and_find_their_lines() -> None:
    text = '# rules\npatterns = ["\\\\bgory\\\\b"]\nwords = [\n  "nude",\n  \'porn\',\n]\nphrases = ["blood bath"]\n'
    parsed = parse_rules(text, "rules.TOML")
    assert [(r.kind, r.text, r.line) for r in parsed.rules] == [
        ("pattern", r"\bgory\b", 0),  # written with escapes: not found, line 0
        ("word", "nude", 4),
        ("word", "porn", 5),
        ("phrase", "blood bath", 7),
    ]
    assert refuses(parsed, "so GORY") and refuses(parsed, "p o r n") and refuses(parsed, "blood-bath")
    assert len(parse_rules("", "empty.toml")) == 0 and len(parse_rules("# nothing\n", "empty.txt")) == 0


def test_toml_words_are_stripped_but_a_patterns_spaces_are_its_own() -> None:
    """A space inside a pattern is part of the expression (``" war "``: the word between spaces); around a
    word or phrase it is a typing slip."""
    parsed = parse_rules('patterns = [" war "]\nwords = ["  nude "]\nphrases = [" blood bath  "]\n', "r.toml")
    want = [("pattern", " war "), ("word", "nude"), ("phrase", "blood bath")]
    assert [(r.kind, r.text) for r in parsed.rules] == want
    assert refuses(parsed, "a war film") and not refuses(parsed, "war")


def test_a_pattern_at_the_length_limit_and_one_that_needs_text_to_match_are_taken() -> None:
    """The bound is 500 characters inclusive; the empty-text guard refuses only what matches nothing at
    all (``(?i)xxx`` needs text: it is a rule, not a refusal of every prompt)."""
    taken = parse_rules("re:" + "x" * 500 + "\nre:(?i)xxx\n", "r.txt")
    assert [(rule.kind, len(rule.text)) for rule in taken.rules] == [("pattern", 500), ("pattern", 7)]
    assert refuses(taken, "an XXX film") and not refuses(taken, "a film")


@pytest.mark.parametrize(
    ("source", "text", "message"),
    [
        ("r.txt", "nude\nre:(unclosed\n", r"^r\.txt:2: .*unclosed.*missing \), unterminated subpattern"),
        ("r.txt", "nude\n\nre:\n", r"^r\.txt:3: an empty pattern"),
        ("r.txt", "re:x*\n", r"^r\.txt:1: .*matches the empty text"),
        ("r.txt", "a\nre:" + "x" * 501 + "\n", r"^r\.txt:2: a pattern of 501 characters; at most 500"),
        ("r.txt", "nude\n...\n", r"^r\.txt:2: the word '\.\.\.' has no letters or digits"),
        ("r.txt", "nude\n\u200b\u200b\n", r"^r\.txt:2: the word .* has no letters or digits"),
        ("r.txt", "nude\n- - -\n", r"^r\.txt:2: the phrase '- - -' has no letters or digits"),
        ("r.txt", "\nnude  # explicit\n", r"^r\.txt:2: a comment must be on a line of its own"),
        ("r.toml", 'words = ["a"]\n\nimages = ["b"]\n', r"^r\.toml:3: unknown key 'images'"),
        ("r.toml", 'words = ["a"]\n[phrases]\nx = 1\n', r"^r\.toml:2: phrases must be an array of strings"),
        ("r.toml", '\nwords = ["a", 3]\n', r"^r\.toml:2: words must hold only strings, not 3"),
        ("r.toml", 'words = ["a",\n  "blood bath"]\n', r"^r\.toml:2: the word 'blood bath' has a space"),
        ("r.toml", 'words = ["a"]\nphrases = ["b\n', r"^r\.toml: not valid TOML: .*at line 2"),
        ("r.toml", 'patterns = [\n"(a"]\n', r"^r\.toml:2: the pattern '\(a' is not a regular expression"),
    ],
)
def test_every_mistake_is_bad_rules_with_the_file_and_line(source: str, text: str, message: str) -> None:
    with pytest.raises(BadRules, match=message) as bad:
        parse_rules(text, source)
    assert bad.value.code == "bad_rules"


def test_a_rule_made_in_code_is_checked_too() -> None:
    with pytest.raises(BadRules, match=r"^code: unknown kind of rule 'regex'"):
        rules(("regex", "a"))
    with pytest.raises(BadRules, match=r"^code: .*not a regular expression"):
        rules(("pattern", "[a"))


def test_too_many_rules_names_the_first_one_over_the_limit() -> None:
    assert len(parse_rules("\n".join(f"w{i}" for i in range(MAX_RULES)), "ok.txt")) == MAX_RULES
    with pytest.raises(BadRules, match=rf"^many\.txt:{MAX_RULES + 2}: more than {MAX_RULES} rules"):
        parse_rules("# header\n" + "\n".join(f"w{i}" for i in range(MAX_RULES + 1)), "many.txt")


def test_files_over_one_mib_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("# " + "x" * MAX_BYTES + "\n", encoding="utf-8")
    with pytest.raises(BadRules, match=r"big\.txt: larger than the limit of 1 MiB"):
        load_rules(str(big))
    with pytest.raises(BadRules, match=r"^big\.txt: larger than the limit of 1 MiB"):
        parse_rules(big.read_text(encoding="utf-8"), "big.txt")
    just = tmp_path / "just.txt"
    just.write_bytes(b"nude\n" + b"#" * (MAX_BYTES - 5))
    assert len(load_rules(str(just))) == 1


def test_unreadable_files_are_bad_rules(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(BadRules, match=rf"^cannot read prompt rules {re.escape(str(missing))}: No such file"):
        load_rules(str(missing))
    with pytest.raises(BadRules, match=r"^cannot read prompt rules .*: Is a directory"):
        load_rules(str(tmp_path))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("nude\n# café\n".encode("latin-1"))
    with pytest.raises(BadRules, match=r"^cannot read prompt rules .*latin1\.txt: line 2 is not UTF-8"):
        load_rules(str(latin1))


def test_load_rules_reads_utf8_with_or_without_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_bytes("\ufeff# rules\nnüde\n".encode())
    loaded = load_rules(str(path))
    assert loaded.source == str(path) and loaded.rules == (Rule("word", "nüde", 2),)
    assert refuses(loaded, "NUDE") and not refuses(loaded, "a misty forest")
    toml = tmp_path / "rules.toml"
    toml.write_text('phrases = ["blood bath"]\n', encoding="utf-8")
    assert load_rules(str(toml)).rules == (Rule("phrase", "blood bath", 1),)


# --- the shipped list --------------------------------------------------------------------------


def test_the_default_list_loads_refuses_the_obvious_and_accepts_art_prompts() -> None:
    default = load_rules(DEFAULT)
    assert default.source == "default" and 20 <= len(default) <= 40
    assert default_rules_path().is_file() and default_rules_path().parent.name == "public"
    assert default.rules == parse_rules(default_rules_path().read_text(encoding="utf-8"), "default").rules
    for prompt in ["a p0rn scene", "NSFW hentai", "a decapitated body", "a s e x scene", "blood and gore"]:
        assert refuses(default, prompt), prompt
        with pytest.raises(RefusedPrompt):
            default.check(prompt)
    for prompt in ART_PROMPTS:
        assert default.match(prompt) is None, prompt
        default.check(prompt)
