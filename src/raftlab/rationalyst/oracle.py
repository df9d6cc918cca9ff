"""Rule-based annotators for offline demos of the mining stage (not language models).

Small local models cannot follow the extraction prompt (SmolLM2-135M rewrites the text instead of
annotating it, so the 10% fidelity filter drops everything). These annotators insert the rationale a
writer would think before each computation, so the rest of the pipeline (filter, generator training,
supervised decoding) can run with real models:

* ``synthetic``: for synthetic arithmetic solutions ("12 - 5 = 7."), a rationale per operation
  ("Subtract what was taken away.");
* ``equations``: for GSM8K-style human solutions, a rationale derived from the first equation of each
  sentence ("Natalia sold 48/2 = 24 clips in May." gets "Divide 48 by 2 to find the clips in May.").

Both add "State the final result." before "The answer is". ``OracleAnnotator`` implements the Backend
``generate`` method only.
"""

from __future__ import annotations

import re

from raftlab.backends.base import Generation, SamplingParams
from raftlab.rationalyst.extract import BOT, EOT

_OPS = {"+": "Add the new amount to the running total.", "-": "Subtract what was taken away.",
        "*": "Multiply the total by the factor.", "/": "Divide the total into equal parts."}
_STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)\.")
_FINAL = "State the final result."

_NUM = r"\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)%?"
_OPERAND = rf"\(*\s*{_NUM}\s*\)*"
_OP = r"[-+*/x×÷]"
_EQUATION = re.compile(rf"(?<![\w.])({_OPERAND}(?:\s*{_OP}\s*{_OPERAND})+)\s*=\s*(\$?-?\d[\d,]*(?:\.\d+)?%?)"
                       r"(?:\s+([A-Za-z][A-Za-z' ]*))?")
_SENTENCES = re.compile(r"((?<=[.!?])\s+|\n+)")
_NOT_A_UNIT = {"per", "each", "a", "an", "the", "and", "or", "so", "which", "is", "are", "in", "of", "for",
               "to", "at", "on", "this", "that", "it", "he", "she", "they", "we", "you", "if", "but", "x"}
_VERB = {"+": "Add", "-": "Subtract", "*": "Multiply", "/": "Divide"}


def annotate(text: str) -> str:
    """Synthetic arithmetic: a rationale before each "a op b = c." step and before the final answer."""
    out = _STEP.sub(lambda m: f"{BOT}{_OPS[m.group(2)]}{EOT} {m.group(0)}", text)
    return _before_answer(out)


def _before_answer(text: str) -> str:
    return text.replace("The answer is", f"{BOT}{_FINAL}{EOT} The answer is", 1)


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def equation_rationale(expression: str, unit: str | None = None) -> str:
    """A sentence describing ``expression`` ("48/2" -> "Divide 48 by 2."), naming ``unit`` if given.

    One kind of operator gives a verb (add, subtract, multiply, divide); mixed operators or parentheses
    give "Compute 3 * 4 + 2."."""
    expr = re.sub(r"\s+", " ", expression.strip())
    norm = re.sub(r"(?<=[\d%)\s])[x×](?=[\s\d($])", "*", expr).replace("÷", "/")
    parts = [p.strip() for p in re.split(r"\s*([-+*/])\s*", norm)]
    numbers, ops = parts[0::2], set(parts[1::2])
    if len(ops) == 1 and "(" not in norm and ")" not in norm and all(numbers):
        op = ops.pop()
        if op == "+" or (op == "*" and len(numbers) > 2):
            body = f"{_VERB[op]} {_list(numbers)}"
        elif op == "*":
            body = f"Multiply {numbers[0]} by {numbers[1]}"
        elif op == "-":
            body = f"Subtract {_list(numbers[1:])} from {numbers[0]}"
        else:
            body = f"Divide {numbers[0]} by {_list(numbers[1:])}"
    else:
        body = f"Compute {expr}"
    if unit:
        body += f" to find the {unit}"
    return body + "."


def _unit(words: str | None) -> str | None:
    """The noun phrase after an equation's result ("clips in May"), at most four words, or None."""
    if not words:
        return None
    ws = words.split()[:4]
    if not ws or ws[0].lower() in _NOT_A_UNIT:
        return None
    while ws and ws[-1].lower() in _NOT_A_UNIT:
        ws.pop()
    return " ".join(ws) or None


def annotate_equations(text: str) -> str:
    """GSM8K-style solutions: before each sentence with an equation ("a op b = c"), a rationale derived from
    its first equation; before "The answer is", "State the final result."."""
    pieces = _SENTENCES.split(text)
    for i in range(0, len(pieces), 2):
        m = _EQUATION.search(pieces[i])
        if m:
            pieces[i] = f"{BOT}{equation_rationale(m.group(1), _unit(m.group(3)))}{EOT} {pieces[i]}"
    return _before_answer("".join(pieces))


ANNOTATORS = {"synthetic": annotate, "equations": annotate_equations}


class OracleAnnotator:
    """Backend answering the extraction prompt with a rule-based annotation (``style``: see ANNOTATORS)."""

    def __init__(self, style: str = "synthetic") -> None:
        if style not in ANNOTATORS:
            raise ValueError(f"unknown oracle annotator {style!r}; choose one of {', '.join(ANNOTATORS)}")
        self.style = style
        self._annotate = ANNOTATORS[style]
        self.name = self.model_name = "oracle-annotator" if style == "synthetic" else f"oracle-annotator:{style}"

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        out = []
        for p in prompts:
            text = p.rsplit("Text: ", 1)[-1].removesuffix("\nWith rationales:")
            out.append([Generation(text=self._annotate(text))] * params.n)
        return out

    def score(self, prompts, continuations):  # pragma: no cover - not a scoring model
        raise NotImplementedError("the oracle annotator only annotates; score with a language model")
