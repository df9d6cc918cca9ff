"""Answer extraction: turn a model's free-text output into a canonical answer.

The canonical answer sentence every target ends with is ``"The answer is X."``
(``X`` an option letter such as ``B`` or a canonical number such as ``18`` /
``2.5``). :func:`extract_answer` parses that sentence back, and tolerates the
usual deviations of real model outputs: the *last parseable* answer cue wins
(a later cue followed by something that is not an answer does not erase an earlier answer);
hedged cues ("the answer could/might/may/should be", "is probably/likely") count as answers;
``(B)``, ``B.``, ``B)``, ``**B**``, option text instead of the letter, numbers
with thousands separators, units, ``$``, ``%``, fractions or number words, and
trailing punctuation. Anything it cannot parse becomes
:data:`raftlab.schema.INVALID`; it never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from raftlab.schema import INVALID, Example

__all__ = [
    "INVALID",
    "AnswerSpec",
    "answer_sentence",
    "answer_stop_pattern",
    "canonical_number",
    "answer_statements",
    "cut_at_answer",
    "extract_answer",
    "numbers_equal",
    "parse_choice",
    "parse_number",
    "strip_answer_sentence",
]

NUMERIC_TOLERANCE = 1e-4

# "The answer is", "the final answer is", "Answer:", "\boxed{...}" (first group = priority, lower is better).
_ANSWER_CUES: list[re.Pattern[str]] = [
    re.compile(r"(?:the\s+)?(?:final|correct|best)?\s*answer\s+(?:is|was|would\s+be|will\s+be|could\s+be|might\s+be"
               r"|may\s+be|should\s+be|must\s+be|seems\s+to\s+be)(?:\s+(?:probably|likely|clearly))?\s*:?", re.IGNORECASE),
    re.compile(r"\\boxed\{", re.IGNORECASE),
    re.compile(r"(?:final\s+)?answer\s*:", re.IGNORECASE),
]
#: "7 is the answer", "(B) is indeed the correct answer", "D is correct": the answer comes *before* the cue (the
#: lowest-priority cue kind; group 1 is the answer)
_REVERSED_CUE = re.compile(r"(\(?[\w$.,/%-]+\)?)\s+is\s+(?:indeed\s+|clearly\s+)?(?:the\s+)?(?:(?:correct|right|final|best)"
                           r"\s+)?(?:answer\b|choice\b|correct\b)", re.IGNORECASE)
#: a final sentence that concludes with a number without an answer cue: "So Milo has 28 cookies now."
_CONCLUSION = re.compile(r"(?:^|[.!?\n]\s*)((?:so|thus|therefore|hence|in the end)\b[^.!?\n]*\d[^.!?\n]*)[.!]?\s*$",
                         re.IGNORECASE)

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}
_NUMBER_RE = re.compile(
    r"(?<![\w.])([-+\u2212]?)\s?\$?\s?(\d+(?:\.\d+)?|\.\d+)(?:\s*/\s*(\d+(?:\.\d+)?))?"
)
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_STRIP_CHARS = " \t\r\n*_`'\"“”‘’:.,;!?-"


class AnswerSpec:
    """What an answer may look like: a number, or one of some option letters/texts.

    ``verbalizers`` maps each option letter to its accepted texts (first one is
    the display text, the rest synonyms).
    """

    def __init__(self, answer_type: str, option_letters: Sequence[str] = (),
                 verbalizers: dict[str, Sequence[str]] | None = None) -> None:
        self.answer_type = answer_type
        self.option_letters = [str(x) for x in option_letters]
        self.verbalizers = {k: [str(t) for t in v if str(t).strip()] for k, v in (verbalizers or {}).items()}

    @classmethod
    def of(cls, obj: Any) -> AnswerSpec:
        """Build from an :class:`Example` (its own options only), a task (anything with ``answer_spec()``;
        ``task.answer_spec(example)`` adds the task's synonyms), or an AnswerSpec."""
        if isinstance(obj, AnswerSpec):
            return obj
        if isinstance(obj, Example):
            verbal = {letter: [text] for letter, text in zip(obj.option_letters, obj.options)}
            return cls(obj.answer_type, obj.option_letters, verbal)
        spec = getattr(obj, "answer_spec", None)
        if callable(spec):
            return spec()
        raise TypeError(f"cannot derive an answer spec from {type(obj).__name__}")


# ----------------------------------------------------------------------------- numbers


def canonical_number(value: Any) -> str:
    """Canonical string of a number: ``18``, ``2.5``, ``-3``, ``0.125`` (no exponent, no trailing zeros).

    Raises ``ValueError`` for things that are not numbers.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"not a finite number: {value!r}")
            dec = Decimal(repr(round(value, 10)))
        else:
            dec = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not dec.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    with localcontext() as ctx:
        ctx.prec = max(28, len(dec.as_tuple().digits) + 2)
        text = format(dec.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", "+0", ""):
        text = "0"
    return text


def numbers_equal(a: str, b: str, tol: float = NUMERIC_TOLERANCE) -> bool:
    """``|a - b| <= tol`` for two number strings; False if either is not a number."""
    try:
        return abs(float(a) - float(b)) <= tol
    except (TypeError, ValueError):
        return False


def parse_number(text: str) -> str:
    """First number in ``text`` as a canonical string (handles ``$1,234.50``, ``3/4``, ``50%``, ``-2``, number words)."""
    s = text.replace("\u2212", "-").replace("\u2013", "-")
    s = _THOUSANDS_RE.sub("", s)
    lead = re.match(r"\s*(?:[a-zA-Z]\s*=|[-+*/×^().,$\d\s]*\d[-+*/×^().,$\d\s]*=)", s)
    if lead:  # "12 - 4 = 8" / "x = 8" / "20 / 4 = 5 = 5": the value after the last "=" of the expression
        after = s[lead.end():]
        while re.match(r"[-+*/×^().,$\d\s]*=", after):
            after = after[re.match(r"[-+*/×^().,$\d\s]*=", after).end():]
        s = after
    elif re.match(r"\s*\(?\d*[a-zA-Z]\s*[-+*/×^=]", s) or re.match(r"\s*(?![aAI]\b)[a-zA-Z]\b(?!['’])", s):
        return INVALID  # "n + 26", "2n + 1", "n. This can be ...": a variable, not a value
    match = _NUMBER_RE.search(s)
    if match and re.match(r"[a-zA-Z]\s*[-+*/×^=]", s[match.end():]):  # "2n + 1"
        return INVALID
    word = re.search(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", s, re.IGNORECASE)
    if match and (not word or match.start() <= word.start()):
        sign, num, den = match.group(1), match.group(2), match.group(3)
        try:
            value = Decimal(num)
            if den is not None:
                d = Decimal(den)
                if d == 0:
                    return INVALID
                value = value / d
                if value != value.quantize(Decimal("1e-6")):
                    value = value.quantize(Decimal("1e-6"))
            if sign in ("-", "\u2212"):
                value = -value
            return canonical_number(value)
        except (InvalidOperation, ValueError):
            return INVALID
    if word:
        return canonical_number(_NUMBER_WORDS[word.group(1).lower()])
    return INVALID


# ----------------------------------------------------------------------------- choices


def parse_choice(text: str, spec: AnswerSpec) -> str:
    """An option letter from the text right after "The answer is" (letter, ``(B)``, option text, synonym)."""
    s = text.strip().lstrip(_STRIP_CHARS + "\u2013\u2014").strip()  # also a leading dash: "- False", "– (B)"
    s = re.sub(r"^(?:option|choice|letter)\s+", "", s, flags=re.IGNORECASE)
    letters = spec.option_letters
    # an explicit letter at the start wins, whatever text follows it: "(B)", "[B]", "B)", "B.", "B:" (the same
    # rule with or without the opening bracket; "B." must not be the start of a decimal or an abbreviation)
    m = re.match(r"[(\[]\s*([A-Za-z])\s*[)\]]|([A-Z])(?:[)\]:]|\.(?![\w.]))", s)
    if m and (m.group(1) or m.group(2)).upper() in letters:
        return (m.group(1) or m.group(2)).upper()
    # option text (or synonym) at the start, longest first.
    by_text = _text_index(spec)
    low = s.lower()
    first_clause = re.split(r"(?<=[.!?])\s|\n", s, maxsplit=1)[0].lower()
    named = {letter for phrase, letter in by_text
             if re.search(r"(?<![\w])" + re.escape(phrase) + r"(?![\w])", first_clause)}
    for phrase, letter in by_text:
        if re.match(re.escape(phrase) + r"(?![\w])", low):
            return letter if named <= {letter} or _only_nested(phrase, letter, by_text, first_clause) else INVALID
    if re.match(r"(?:not|neither|none)\b", s, re.IGNORECASE):
        return INVALID
    # bare uppercase letter: "B", "B.", "B)", "B:", "B - text".
    m = re.match(r"([A-Z])(?:$|[\s.,;:!?)\]*]|-)", s)
    if m and m.group(1) in letters:
        letter = m.group(1)
        rest = s[1:].strip(" .,;:!?)]*-").lower()
        # "A negative ..." where A's own text is "positive": letter and text disagree -> invalid
        for phrase, other in by_text:
            if other != letter and rest.startswith(phrase):
                return INVALID
        return letter
    # lowercase single letter on its own: "b" / "b."
    m = re.fullmatch(r"([a-z])[.)]?", s.strip(_STRIP_CHARS))
    if m and m.group(1).upper() in letters and len(letters) > 1:
        return m.group(1).upper()
    # exactly one option text mentioned in the answer clause, and it ends the clause ("The answer is clear and
    # concise - sports."), so that a common word in prose ("An answer that is true, is lying") is not an answer
    if len(named) == 1 and not re.search(r"\b(?:not|n't)\b", first_clause):
        letter = named.pop()
        tail = first_clause.strip(_STRIP_CHARS + "()[]")
        if any(tail.endswith(phrase) for phrase, other in by_text if other == letter):
            return letter
    return INVALID


def _only_nested(phrase: str, letter: str, by_text: list[tuple[str, str]], clause: str) -> bool:
    """True if the other options "named" in ``clause`` only occur inside ``phrase`` (e.g. "not paraphrase")."""
    stripped = clause.replace(phrase, " ")
    return not any(other != letter and re.search(r"(?<![\w])" + re.escape(p) + r"(?![\w])", stripped)
                   for p, other in by_text)


def _text_index(spec: AnswerSpec) -> list[tuple[str, str]]:
    pairs = []
    for letter, texts in spec.verbalizers.items():
        for t in texts:
            t = t.strip().lower().rstrip(".")
            if t:
                pairs.append((t, letter))
    # texts shared by two letters are ambiguous: drop them
    counts: dict[str, set[str]] = {}
    for t, letter in pairs:
        counts.setdefault(t, set()).add(letter)
    pairs = [(t, letter) for t, letter in pairs if len(counts[t]) == 1]
    return sorted(set(pairs), key=lambda p: -len(p[0]))


# ----------------------------------------------------------------------------- extraction


def answer_sentence(answer: str) -> str:
    """The canonical answer sentence, e.g. ``"The answer is B."``."""
    return f"The answer is {answer}."


_LEAD_IN = re.compile(r"(?:[,;:]?\s*\b(?:so|therefore|thus|hence|in\s+conclusion|the)\b[,:]?\s*)+$", re.IGNORECASE)


_CUE_FOR_STOP = (r"(?i:\banswer\s+(?:is|was|would\s+be|will\s+be|could\s+be|might\s+be|may\s+be|should\s+be|must\s+be)"
                 r"(?:\s+(?:probably|likely|clearly))?\s*:?)\s*\**\s*")
_STOP_CLAUSE = {
    # the number right after the cue, a short unit ("apples", "%"), then the sentence's end
    "number": r"[-+\u2212]?\$?\s?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?[^\n.!?]{0,24}",
    # a short clause: a letter, "(B)", an option text
    "choice": r"[(\[]?\s*\w[^\n.!?]{0,40}",
}


def answer_stop_pattern(answer_type: str) -> str | None:
    """A regex whose match in generated text means the answer sentence is complete: an answer cue, an answer of
    ``answer_type`` right after it, and the sentence's end (``.``/``!``) followed by whitespace (so ``2.`` of
    ``2.5`` does not end it). Generation stops there (``SamplingParams.stop_regex``) and the text is cut at the
    end of the match; the pattern is deliberately narrow so that a cue followed by prose ("the answer is the
    number of ...") does not stop the rationale. None for answer types without a pattern."""
    clause = _STOP_CLAUSE.get(answer_type)
    return None if clause is None else _CUE_FOR_STOP + clause + r"[.!](?=\s)"


def cut_at_answer(text: str, pattern: str | None) -> tuple[str, bool]:
    """``(text up to the end of the first complete answer sentence, whether it was cut)``."""
    if not pattern:
        return text, False
    m = re.search(pattern, text)
    return (text[: m.end()], True) if m else (text, False)


def strip_answer_sentence(rationale: str) -> str:
    """The rationale without its final answer sentence (training appends the canonical one instead).

    Everything from the last answer cue on goes (the sentence cues of :data:`_ANSWER_CUES`: "the answer is",
    "the final answer would be", "Answer:"; ``\\boxed{}`` is not cut), with markdown emphasis before it
    ("**The answer is 5**") and a lead-in ("So,", "Therefore,", "In conclusion,", ", so"). Used by the
    teacher's gold filter, the training targets and the information-gain prefixes alike."""
    text = rationale.strip()
    starts = [m.start() for cue in (_ANSWER_CUES[0], _ANSWER_CUES[2]) for m in cue.finditer(text)]
    if not starts:
        return text
    head = text[: max(starts)].rstrip()
    head = re.sub(r"[*_#>\s]+$", "", head)  # "**The answer is 5**", "### Answer: 5"
    head = _LEAD_IN.sub("", head)
    return head.rstrip(" ,;:").strip()


def _answer_clauses(text: str) -> Iterator[str]:
    """Text following each answer cue: cue kinds in priority order ("the answer is", ``\boxed{}``, "Answer:"),
    within a kind the last cue first."""
    for index, cue in enumerate(_ANSWER_CUES):
        found = list(cue.finditer(text))
        if not found:
            continue
        for m in reversed(found):
            pos = m.end()
            if index == 1:  # \boxed{...}
                close = text.find("}", pos)
                yield text[pos:close if close >= 0 else len(text)]
                continue
            # the rest of the line; if the cue ends its line ("The answer is:\n B"), the next non-empty line
            while True:
                nl = text.find("\n", pos)
                line = text[pos:nl if nl >= 0 else len(text)]
                if line.strip(" \t:") or nl < 0:
                    yield line.lstrip(" \t:")
                    break
                pos = nl + 1
    for m in reversed(list(_REVERSED_CUE.finditer(text))):
        yield m.group(1)


def _clause_answers(text: str, spec: AnswerSpec) -> Iterator[str]:
    """The parsed value of each answer cue's clause (:func:`_answer_clauses` order; :data:`INVALID` where it does
    not parse)."""
    parse = (lambda s: parse_number(s)) if spec.answer_type == "number" else (lambda s: parse_choice(s, spec))
    for clause in _answer_clauses(text):
        yield parse(clause) if clause.strip(_STRIP_CHARS) else INVALID


def answer_statements(text: str, example_or_task: Any) -> list[str]:
    """Every answer ``text`` states: the parsed value of each answer cue's clause that parses ("The answer is",
    ``\boxed{}``, "Answer:", "(B) is the correct answer"), whatever its position. The gold filter requires them
    all to agree."""
    return [value for value in _clause_answers(text, AnswerSpec.of(example_or_task)) if value != INVALID]


def extract_answer(text: Any, example_or_task: Any) -> str:
    """Canonical answer parsed from a model output, or :data:`INVALID`. Never raises.

    ``example_or_task`` is an :class:`Example` (options taken from it), a
    ``Task`` or an :class:`AnswerSpec`. The last *parseable* "The answer is ..." wins (cues with nothing
    parseable after them, such as a cut-off output or prose, are skipped; then ``\boxed{}``, then "Answer:");
    if the output has no answer cue at all, a bare answer (the whole output is just ``B`` / ``(B)`` / ``18``)
    is accepted.
    """
    try:
        if not isinstance(text, str) or not text.strip():
            return INVALID
        spec = AnswerSpec.of(example_or_task)
        any_cue = False
        # the last parseable cue wins: a cue with nothing after it (output cut off) or with something that is not
        # an answer ("... The answer is written at the end") defers to the one before
        for value in _clause_answers(text, spec):
            any_cue = True
            if value != INVALID:
                return value
        if any_cue:
            return INVALID
        bare = text.strip().strip(_STRIP_CHARS.replace("-", "")).strip()
        if spec.answer_type == "number":
            if re.fullmatch(r"[-+\u2212]?\$?\s?[\d,]*\.?\d+(?:\s*/\s*\d+)?\s*%?", bare):
                return parse_number(bare)
            conclusion = _CONCLUSION.search(text.rstrip())  # "... So Milo has 28 cookies now." (last sentence)
            if conclusion and not re.search(r"\d\s*:\s*\d", conclusion.group(1)):  # not a ratio "6888:1200"
                sentence = conclusion.group(1)
                return parse_number(sentence.rsplit("=", 1)[1] if "=" in sentence else sentence)
            return INVALID
        # a bare choice: the whole output is one line holding a letter ("B", "(B)", "B) text") or an option text
        if re.fullmatch(r"[(\[]?[A-Za-z][)\].:]?|[(\[]?[A-Za-z][)\].:][ \t]+[^\n]{1,60}", bare) or bare.lower() in {
            p for p, _ in _text_index(spec)
        }:
            return parse_choice(bare, spec)
        return INVALID
    except Exception:  # never raise on model output
        return INVALID
