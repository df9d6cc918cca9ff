"""Prompt templates: the evaluation prompt, training targets and teacher (rationale-annotator) prompts.

Annotator **A** is the paper's template (official code: github Ignoramus0817/rationales,
``data/data_synthesize.py`` / ``evaluate.py``). Annotators **B** and **C** swap in the other annotators'
instructions; the paper's Appendix D.3/D.4 texts are used for the categories it gives (NLI, sentiment, topic,
ARC (C only), coreference; in the task configs), raftlab's own elsewhere (docs/fidelity.md). The five length
levels are the paper's Appendix D.2 triggers with its numbering: 1 = the most thorough ... 5 = the shortest,
3 = "Let's think step by step." (the default), each in the place of the CoT trigger.
"""

from __future__ import annotations


from raftlab.tasks.answers import answer_sentence, strip_answer_sentence

#: The answer-format line of the paper's templates (``x``/``n`` kept as in the paper).
ANSWER_FORMAT = {
    "number": 'Add a line "The answer is n" at the end where n is the answer value.',
    "choice": 'Give your answer ending with "The answer is x" where x is your choice.',
}

COT_TRIGGER = "Let's think step by step."

STYLES = ("A", "B", "C")
LENGTHS = (1, 2, 3, 4, 5)

#: Zhu et al. (2025), Appendix D.2, "Prompt Templates for Different Lengths" (verbatim, same numbering).
LENGTH_TRIGGERS = {
    1: "Give a thorough analysis of the problem and explain your solution.",
    2: "Analyze the problems and explain your solution as detailed as possible.",
    3: COT_TRIGGER,
    4: "Explain your solution with a few words.",
    5: "Explain the solution as short as you can.",
}


def eval_prompt(instruction: str, answer_type: str, question: str, mode: str = "cot") -> str:
    """The evaluation prompt (paper's ``evaluate.py`` template without chat markup).

    ``mode="cot"`` appends "Let's think step by step." after "Answer:".
    """
    if mode not in ("direct", "cot"):
        raise ValueError(f"mode must be 'direct' or 'cot', got {mode!r}")
    text = f"{instruction.strip()}\n{ANSWER_FORMAT[answer_type]}\n\nHere is the question:\n{question.strip()}\n\nAnswer:"
    if mode == "cot":
        text += " " + COT_TRIGGER
    return text


def target_text(answer: str, rationale: str | None = None) -> str:
    """``" The answer is X."`` or ``" {rationale} The answer is X."`` (leading space: appended to the prompt)."""
    if rationale is None or not rationale.strip():
        return " " + answer_sentence(answer)
    body = strip_answer_sentence(rationale)
    if not body:
        return " " + answer_sentence(answer)
    if body[-1] not in ".!?":
        body += "."
    return f" {body} {answer_sentence(answer)}"


def teacher_prompt(instructions: dict[str, str], answer_type: str, question: str,
                   style: str = "A", length: int = 3) -> str:
    """Prompt asking a teacher LLM for a rationale that ends in "The answer is X": the annotator's instruction,
    the answer-format line, the question, and ``Answer:`` followed by the length level's trigger (Appendix D)."""
    style = style.upper()
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if length not in LENGTHS:
        raise ValueError(f"length must be one of {LENGTHS}, got {length!r}")
    instruction = instructions.get(style) or instructions["A"]
    return (f"{instruction.strip()}\n{ANSWER_FORMAT[answer_type]}\n\nHere is the question:\n{question.strip()}\n\n"
            f"Answer: {LENGTH_TRIGGERS[length]}\n")
