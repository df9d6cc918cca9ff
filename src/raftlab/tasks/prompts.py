"""Prompt templates: the evaluation prompt, training targets and teacher (rationale-annotator) prompts.

Annotator **A** is the paper's template (official code: github Ignoramus0817/rationales,
``data/data_synthesize.py`` / ``evaluate.py``); annotators **B** and **C** are two other
annotators' instructions, written for this project. Length 3 is each annotator's default;
1 (very brief) ... 5 (very detailed) add an explicit length request.
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

#: Length requests per level (3 = the annotator's default: no explicit request).
LENGTH_REQUESTS = {
    1: "Keep the reasoning very brief: one short sentence.",
    2: "Keep the reasoning brief: two or three short sentences.",
    3: "",
    4: "Explain the reasoning in detail, covering each step.",
    5: "Explain the reasoning very thoroughly: state every fact and intermediate step you rely on, "
       "and say why the other possibilities are wrong.",
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
    """Prompt asking a teacher LLM for a rationale that ends in "The answer is X"."""
    style = style.upper()
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if length not in LENGTHS:
        raise ValueError(f"length must be one of {LENGTHS}, got {length!r}")
    instruction = instructions.get(style) or instructions["A"]
    request = LENGTH_REQUESTS[length]
    what = "the answer value" if answer_type == "number" else "the letter of the correct option"
    if style == "A":
        lines = [instruction.strip(), ANSWER_FORMAT[answer_type]]
        if request:
            lines.append(request)
        return "\n".join(lines) + f"\n\nHere is the question:\n{question.strip()}\n\nAnswer: {COT_TRIGGER}\n"
    if style == "B":
        request = request or "Reason step by step."
        return (
            f"{instruction.strip()}\n{request} Finish with a final line of the form \"The answer is X\", "
            f"where X is {what}.\n\nQuestion:\n{question.strip()}\n\nReasoning:"
        )
    request = request or "A few sentences are enough."
    return (
        "You are writing explanations for a dataset of solved problems.\n"
        f"Task: {instruction.strip()}\n\n{question.strip()}\n\n"
        f"Write an explanation that leads to the correct answer. {request} "
        f"The last sentence must be \"The answer is X.\" with X being {what}.\n\nExplanation:"
    )
