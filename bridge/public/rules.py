"""Prompt rules: the words, phrases and patterns that refuse a prompt from the public before it is
queued (``--prompt-rules FILE``, or ``--prompt-rules default`` for the shipped starting list).

Rules see the prompt through :func:`normalise` (NFKC, casefolded, no zero-width characters, no
accents, look-alike letters and in-word "leet" folded to Latin, whitespace collapsed). The first
rule, in file order, that matches refuses the prompt:

* **word** — a whole word: not preceded or followed by a letter or digit (``a-z0-9`` for a word in
  Latin letters, so "classic" does not match "ass" nor "denuded" "nude"; any script's letters and
  digits for a word with other letters). Its letters may also be split by one and the same run of
  spaces or punctuation throughout: "n u d e", "n.u.d.e", "n-u-d-e", "n. u. d. e." all match "nude";
  "nu de" does not (the gaps differ), so "an al fresco lunch" does not match "anal". No stemming:
  list plurals ("nude", "nudes") yourself.
* **phrase** — its words (runs of letters and digits) whole and in order, with at least one space or
  punctuation mark between them: "blood bath" matches "Blood-bath", "BLOOD,  bath"; not "bloodbath"
  (add that as a word), so "the rapist" never matches "therapist".
* **pattern** — a Python regular expression found with :func:`re.search` in the normalised prompt:
  write it in lowercase, with Latin letters and without accents ("nude", not "[Nn]ud[e3]").
  At most 500 characters; one that does not compile, or that matches the empty text (it would refuse
  every prompt), is refused at load. The whole prompt is searched: prompts are bounded upstream.

Files (UTF-8, at most 1 MiB and 10,000 rules; an empty set of rules is allowed):

* **plain lines** (any name not ending in ``.toml``): one rule per line; blank lines and lines that
  start with ``#`` are ignored (" #" later in a word or phrase line is an error: comments go on their
  own line); ``re:`` starts a pattern (the rest of the line, stripped); a line with a space inside
  is a phrase; anything else is a word.
* **TOML** (``*.toml``): ``words``, ``phrases`` and ``patterns``, each an array of strings, in any
  order; the rules keep the file's order. A rule's line is where its string first appears quoted in
  the file (best effort: 0 when it is written with escapes).

Every mistake is a :class:`~bridge.errors.BadRules` naming the file and, where known, the line;
a refused prompt is a :class:`~bridge.errors.RefusedPrompt` whose message never repeats the rule
(the operator's log names it). Pure: nothing is read at import.
"""

from __future__ import annotations

import logging
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import BadRules, RefusedPrompt

log = logging.getLogger(__name__)

#: The value of ``--prompt-rules`` that means the shipped list.
DEFAULT = "default"
KINDS = ("word", "phrase", "pattern")
MAX_BYTES = 1 << 20
MAX_RULES = 10_000
MAX_PATTERN = 500
TOML_KEYS = {"words": "word", "phrases": "phrase", "patterns": "pattern"}
REFUSED = "this installation does not take that prompt; please try another"

# fmt: off
_LOOKALIKES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "і": "i", "ј": "j", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w",
    # Greek
    "α": "a", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x",
    # Latin
    "ı": "i", "ɑ": "a", "ɡ": "g",
})
# fmt: on
_LEET_CHARS = "013457@$"
_LEET = str.maketrans(_LEET_CHARS, "oieastas")
_LEET_RUN = re.compile(rf"(?:[^\W\d_]|[{re.escape(_LEET_CHARS)}])+")
_ALNUM = re.compile(r"[^\W_]+")
_INLINE_COMMENT = re.compile(r"\s#")
_DROPPED = re.compile(r"M|Cf")  # Unicode categories: combining marks (Mn, Mc, Me) and format characters


def _fold_leet(run: re.Match[str]) -> str:
    text = run.group()
    return text.translate(_LEET) if any(c.isalpha() for c in text) else text


def normalise(text: str) -> str:
    """The prompt as rules see it (idempotent: normalising twice changes nothing more):

    1. Unicode NFKC, so compatibility forms become plain ones ("ｎｕｄｅ" → "nude", "ﬁ" → "fi");
    2. ``casefold()`` (a stronger ``lower()``: "NUDE" → "nude", "ß" → "ss"), then NFKC again, as
       casefolding can produce non-NFKC text;
    3. format characters removed (Unicode category Cf: zero-width space and joiners, U+FEFF, the
       soft hyphen, direction marks), so "nu\\u200bde" → "nude";
    4. accents removed: NFD, every combining mark (category M) dropped, NFC ("nüde" → "nude",
       "café" → "cafe");
    5. look-alike letters folded to Latin: Cyrillic а в е і ј к м н о р с т у х ѕ ԁ һ ӏ ԛ ԝ, Greek
       α ε η ι κ ν ο ρ τ υ χ, and ı ɑ ɡ;
    6. leet folded: 0→o 1→i 3→e 4→a 5→s 7→t @→a $→s, but only inside a word. Precisely: in each
       maximal run of letters and those eight characters, they are folded when the run holds at least
       one letter. So "n00d", "s3x", "h4x0r" and "$ex" are folded, while "1024 px", "3 cats", "$100"
       and "10:45" stay; note that "3d" becomes "ed" and "4k" "ak" ("1024px": "102apx", since 2 ends
       the run "10");
    7. every run of whitespace collapsed to one space, and the ends stripped.
    """
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    kept = (c for c in unicodedata.normalize("NFD", text) if not _DROPPED.match(unicodedata.category(c)))
    text = unicodedata.normalize("NFC", "".join(kept))
    text = _LEET_RUN.sub(_fold_leet, text.translate(_LOOKALIKES))
    return " ".join(text.split())


@dataclass(frozen=True)
class Rule:
    kind: str  # "word", "phrase" or "pattern"
    text: str  # as written in the file (for the operator's log only)
    line: int  # 1-based line in the file (0 for rules given in code)


@dataclass(frozen=True)
class PromptRules:
    """A set of rules, compiled when made (a rule that cannot be is a :class:`BadRules`)."""

    source: str  # the file's path, or "default" for the shipped list
    rules: tuple[Rule, ...]
    _regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "_regexes", tuple(_compile(rule, self.source) for rule in self.rules))

    def match(self, prompt: str) -> Rule | None:
        """The first rule that matches the normalised prompt, or None."""
        text = normalise(prompt)
        for rule, regex in zip(self.rules, self._regexes, strict=True):
            if regex.search(text):
                return rule
        return None

    def check(self, prompt: str) -> None:
        """Raises :class:`RefusedPrompt` when a rule matches; the log names the rule, never the prompt."""
        rule = self.match(prompt)
        if rule is not None:
            log.info("prompt refused by %s:%d (%s %r)", self.source, rule.line, rule.kind, rule.text)
            raise RefusedPrompt(REFUSED)

    def __len__(self) -> int:
        return len(self.rules)


def _where(source: str, line: int) -> str:
    return f"{source}:{line}" if line > 0 else source


def _compile(rule: Rule, source: str) -> re.Pattern[str]:
    where = _where(source, rule.line)
    if rule.kind == "pattern":
        if not rule.text:
            raise BadRules(f"{where}: an empty pattern")
        if len(rule.text) > MAX_PATTERN:
            raise BadRules(f"{where}: a pattern of {len(rule.text)} characters; at most {MAX_PATTERN}")
        try:
            regex = re.compile(rule.text)
        except re.error as exc:
            raise BadRules(f"{where}: the pattern {rule.text!r} is not a regular expression: {exc}") from None
        if regex.search(""):
            raise BadRules(f"{where}: the pattern {rule.text!r} matches the empty text, so every prompt")
        return regex
    if rule.kind not in KINDS:
        raise BadRules(f"{where}: unknown kind of rule {rule.kind!r}; one of {', '.join(KINDS)}")
    text = normalise(rule.text)
    words = _ALNUM.findall(text)
    if not words:
        raise BadRules(f"{where}: the {rule.kind} {rule.text!r} has no letters or digits")
    if rule.kind == "phrase":
        body = r"[\W_]+".join(map(re.escape, words))
    else:
        # the letters, with one and the same run of spaces or punctuation (maybe none) between each two
        head, tail = re.escape(text[0]), [re.escape(c) for c in text[1:]]
        body = head + (r"(?P<gap>[\W_]*)" + "(?P=gap)".join(tail) if tail else "")
    edge = "[a-z0-9]" if text.isascii() else r"[^\W_]"
    return re.compile(f"(?<!{edge}){body}(?!{edge})")


def _line_at(text: str, at: int) -> int:
    """The 1-based line of offset ``at`` in ``text``; 0 for -1 (not found)."""
    return text.count("\n", 0, at) + 1 if at >= 0 else 0


def _plain_rules(text: str, source: str) -> list[Rule]:
    rules = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("re:"):
            rules.append(Rule("pattern", line[3:].strip(), number))
            continue
        if _INLINE_COMMENT.search(line):
            raise BadRules(f"{source}:{number}: a comment must be on a line of its own (starting with #)")
        rules.append(Rule("phrase" if len(line.split()) > 1 else "word", line, number))
    return rules


def _toml_rules(text: str, source: str) -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadRules(f"{source}: not valid TOML: {exc}") from None
    rules = []
    for key, entries in data.items():
        found = re.search(rf"(?m)^[ \t]*\[*[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*[=\].]", text)
        where = _where(source, _line_at(text, found.start() if found else -1))
        kind = TOML_KEYS.get(key)
        if kind is None:
            raise BadRules(f"{where}: unknown key {key!r}; the keys are {', '.join(TOML_KEYS)}")
        if not isinstance(entries, list):
            raise BadRules(f"{where}: {key} must be an array of strings")
        for entry in entries:
            if not isinstance(entry, str):
                raise BadRules(f"{where}: {key} must hold only strings, not {entry!r}")
            quoted = text.find(f'"{entry}"')
            line = _line_at(text, quoted if quoted >= 0 else text.find(f"'{entry}'"))
            if kind == "word" and len(entry.split()) > 1:
                raise BadRules(f"{_where(source, line)}: the word {entry!r} has a space; put it in phrases")
            rules.append(Rule(kind, entry if kind == "pattern" else entry.strip(), line))
    return rules


def parse_rules(text: str, source: str) -> PromptRules:
    """The rules in ``text``: TOML when ``source`` ends in ``.toml``, else plain lines.

    Raises :class:`BadRules` naming ``source`` and the line of the first mistake."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise BadRules(f"{source}: larger than the limit of 1 MiB for prompt rules")
    toml = source.lower().endswith(".toml")
    rules = _toml_rules(text, source) if toml else _plain_rules(text, source)
    if len(rules) > MAX_RULES:
        extra = rules[MAX_RULES]
        raise BadRules(f"{_where(source, extra.line)}: more than {MAX_RULES} rules; that is the limit")
    return PromptRules(source, tuple(rules))


def default_rules_path() -> Path:
    """The shipped starting list (``default_rules.txt``, beside this module)."""
    return Path(__file__).with_name("default_rules.txt")


def load_rules(path: str) -> PromptRules:
    """The rules in the file ``path`` (UTF-8), or the shipped list with source "default" for
    :data:`DEFAULT`. Raises :class:`BadRules` when the file cannot be read or has a mistake."""
    file, source = (default_rules_path(), DEFAULT) if path == DEFAULT else (Path(path), path)
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise BadRules(f"cannot read prompt rules {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise BadRules(f"cannot read prompt rules {path}: larger than the limit of 1 MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BadRules(f"cannot read prompt rules {path}: line {line} is not UTF-8 ({exc.reason})") from None
    rules = parse_rules(text, source)
    log.info("prompt rules from %s: %d rules", source, len(rules))
    return rules
