"""Every task's teacher prompt against Zhu et al. (2025), Appendix D, whose text is held here verbatim.

raftlab's annotator-A prompt is the official code's (github Ignoramus0817/rationales: template
``data/data_synthesize.py``, instructions ``data/task_instructions.json``); where that differs from the printed
appendix the difference is listed below (``OFFICIAL_CODE``, ``FIELD_DEPARTURES``) and in docs/fidelity.md, and
the tests check that exactly these differences remain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raftlab.tasks import DataNotFoundError, get_task, resolve_data_dir
from raftlab.tasks.prompts import ANSWER_FORMAT

PAPER = Path(__file__).resolve().parents[2] / "shared" / "papers" / "rationales-not-silver-bullets.txt"

# Appendix D.1, "Prompt Templates for Rationales Generation (Annotator A)", verbatim: category -> its lines
# (the paper file separates them by blank lines).
D1 = {
    "Math Reasoning": [
        'Solve the following math problems. Add a line "The answer is n" at the end where n is the answer value.',
        "Question: {question}",
    ],
    "Natural Language Inference": [
        "Following is a premise and a hypothesis, determine whether the hypothesis is entailed by the premise, "
        "contradictory with the premise, or can not be determined. "
        'Add a line "The answer is x" in the end where x is your choice.',
        "Premise: {premise}",
        "Hypothesis: {hypothesis}",
        "Options: (A) Entailment (B) Contradiction (C) Neutral",
    ],
    "Sentiment Analysis": [
        "Following is a statement, determine whether the sentiment is negative or positive. "
        'Add a line "The answer is x" in the end where x is your choice.',
        "Statement: {statement}",
        "Options: (A) positive (B) negative",
    ],
    "Topic Classification (TREC)": [
        "Following is a question, determine which topic it is about. "
        'Add a line "The answer is x" in the end where x is your choice.',
        "Question: {question}",
        "Options: (A) Description and abstract concept (B) Entity (C) Abbreviation (D) Human being (E) Location "
        "(F) Numeric value",
    ],
    "Topic Classification (AGNews)": [
        "Following is a piece of news and its brief description, determine which topic it is about. "
        'Add a line "The answer is x" in the end where x is your choice.',
        "News: {news}",
        "Options: (A) World (B) Sports (C) Business (D) Science and Technology",
    ],
    "Common Sense (ARC&CSQA)": [
        "Following is a selective question and its answer options. Select the most possible one. "
        'Add a line "The answer is x" in the end where x is your choice.',
        "Question: {question}",
        "Options: {options}",
    ],
    "Common Sense (CREAK)": [
        "Following is a statement, determine whether it is true or false based on common sense and fact. "
        'Add a line "The answer is x" in the end where x is your choice.',
        "Statement: {statement}",
        "Options: (A) False (B) True",
    ],
    "Paraphrase": [
        "Following are two similar sentences. Determine whether they are asking the same question or describing "
        'the same situation. Add a line "The answer is x" in the end where x is your choice.',
        "Sentence1: {sentence1}",
        "Sentence2: {sentence2}",
        "Options: (A) Different (B) Same",
    ],
    "Coreference Resolution": [
        'Following is a sentence where a word is replaced with a blank symbol "_". You will be given two options '
        "and you should choose the most possible one to fill in the blank. "
        'Add a line "The answer is x" in the end where x is your choice.',
        "Sentence: {sentence}",
        "Options: {options}",
    ],
    "Word Sense Disambiguation": [
        "Following is a target word and two sentences. Determine whether the words in the two sentences have the "
        'same semantic meaning. Add a line "The answer is x" in the end where x is your choice.',
        "Target word: {target word}",
        "Sentence1: {sentence1}",
        "Sentence2: {sentence2}",
        "Options: (A) Different (B) Same",
    ],
}
D1_SYSTEM = "You are a helpful assistant."
D1_END = "Answer: Let's think step by step. {LLM output}"

# Appendix D.3 (annotator B) and D.4 (annotator C), verbatim: category -> text
D3 = {
    "Natural Language Inference": "You are now required to perform a natural language inference task. I will provide "
    "you with a premise and a hypothesis, and you need to determine whether the hypothesis can be inferred from the "
    "premise.",
    "Sentiment Analysis": "You are now required to perform a sentiment analysis task. I will give you a text passage, "
    "and you need to determine whether it is positive or negative.",
    "Topic Classification": "You are now required to perform a topic classification task. I will give you a sentence, "
    "and you need to determine which of the six possible topics it belongs to.",
    "Common Sense (ARC)": "You are now required to perform a coreference resolution task. I will give you a text "
    "passage in which I intentionally omit a word, and then provide you with two options. You need to determine which "
    "option is more fitting in the context.",
    "Coreference Resolution": "You are now required to perform a coreference resolution task. I will give you a text "
    "passage in which I intentionally omit a word, and then provide you with two options. You need to determine which "
    "option is more fitting in the context.",
}
D4 = {
    "Natural Language Inference": "Review a given premise, determine whether the relevant hypothesis can be logically "
    "inferred from the premise.",
    "Sentiment Analysis": "You will see a passage of text, please determine the sentiment of the text.",
    "Topic Classification": "Given a sentence, please determine which of the six categories it belongs to.",
    "Common Sense (ARC)": "You will be shown a question and four answers, from which you need to choose one based on "
    "your common sense.",
    "Coreference Resolution": "Given a passage of text where a word is left blank, and you will see two options, each "
    "corresponding to a word. Please infer, based on the context, which word is more suitable to fill in the blank.",
}

# The paper's 18 tasks (App. B.1) -> their D.1 category
TASKS = {
    "multiarith": "Math Reasoning", "asdiv": "Math Reasoning", "svamp": "Math Reasoning", "gsm8k": "Math Reasoning",
    "arc_easy": "Common Sense (ARC&CSQA)", "arc_challenge": "Common Sense (ARC&CSQA)",
    "commonsenseqa": "Common Sense (ARC&CSQA)", "creak": "Common Sense (CREAK)",
    "cr": "Sentiment Analysis", "sst2": "Sentiment Analysis", "trec": "Topic Classification (TREC)",
    "agnews": "Topic Classification (AGNews)", "paws": "Paraphrase", "qqp": "Paraphrase",
    "cb": "Natural Language Inference", "anli": "Natural Language Inference", "wic": "Word Sense Disambiguation",
    "winogrande": "Coreference Resolution",
}

# Where raftlab's instruction is the official code's task_instructions.json text rather than the appendix's:
# (the official code's words, the appendix's words). docs/fidelity.md lists them.
OFFICIAL_CODE = {
    "cb": [("Follwing", "Following"), ("premise or", "premise, or")],
    "anli": [("Follwing", "Following"), ("premise or", "premise, or")],
    "cr": [("Follwing", "Following")],
    "sst2": [("Follwing", "Following")],
    "creak": [("whether is is", "whether it is")],
    "commonsenseqa": [("selective question about common senses and", "selective question and")],
}
#: the official template's answer-format line for choice tasks, in place of the appendix's
OFFICIAL_CHOICE_LINE = 'Give your answer ending with "The answer is x" where x is your choice.'
#: field labels of the appendix that raftlab's questions do not carry (docs/fidelity.md)
FIELD_DEPARTURES = {"Math Reasoning": {"Question:"}, "Common Sense (ARC&CSQA)": {"Question:"}}


def _split(category: str) -> tuple[str, str, list[str], str | None]:
    """(instruction, answer-format line, field labels, options line or None) of a D.1 block."""
    first, *fields = D1[category]
    cut = first.index(' Add a line "The answer is')
    options = next((f for f in fields if f.startswith("Options: (A)")), None)
    labels = [f.split(" {")[0] for f in fields if not f.startswith("Options:")]
    return first[:cut], first[cut + 1:], labels, options


@pytest.fixture(scope="module")
def data_dir() -> Path:
    try:
        return resolve_data_dir(None, "gsm8k")
    except DataNotFoundError as exc:  # pragma: no cover - only without the staged datasets
        pytest.skip(str(exc))


def test_held_text_is_verbatim_from_the_paper() -> None:
    if not PAPER.exists():  # pragma: no cover - the paper is reference text outside the package
        pytest.skip(f"{PAPER} not found")
    text = PAPER.read_text(encoding="utf-8")
    assert f"[System Prompt]\n\n{D1_SYSTEM}\n\n" in text
    for category, lines in D1.items():
        assert f"[{category}]\n\n" + "\n\n".join([*lines, D1_END]) in text, category
    b, c = text.index("D.3 Prompt Templates"), text.index("D.4 Prompt Templates")
    for category, instruction in D3.items():
        assert f"[{category}]\n\n{instruction}\n\n" in text[b:c], category
    for category, instruction in D4.items():
        assert f"[{category}]\n\n{instruction}\n\n" in text[c:], category


@pytest.mark.parametrize("name", list(TASKS))
def test_annotator_a_instruction_is_the_papers_up_to_the_official_code(name: str) -> None:
    paper, _, _, _ = _split(TASKS[name])
    ours = get_task(name).instructions["A"].strip()
    fixed = ours
    for code_words, paper_words in OFFICIAL_CODE.get(name, []):
        assert code_words in ours, (name, code_words)  # the listed difference is still there
        fixed = fixed.replace(code_words, paper_words)
    assert fixed == paper


def test_answer_format_lines() -> None:
    _, math_line, _, _ = _split("Math Reasoning")
    assert ANSWER_FORMAT["number"] == math_line
    _, choice_line, _, _ = _split("Paraphrase")
    assert choice_line == 'Add a line "The answer is x" in the end where x is your choice.'
    assert ANSWER_FORMAT["choice"] == OFFICIAL_CHOICE_LINE  # the official template's line (docs/fidelity.md)


@pytest.mark.parametrize("name", [n for n, c in TASKS.items() if _split(c)[3]])
def test_fixed_options_are_the_papers(name: str) -> None:
    task = get_task(name)
    rendered = "Options: " + " ".join(f"({x}) {task.label_text(x)}" for x in task.option_letters)
    assert rendered == _split(TASKS[name])[3]


@pytest.mark.parametrize("name", list(TASKS))
def test_question_fields_carry_the_papers_labels(name: str, data_dir: Path) -> None:
    category = TASKS[name]
    ex = get_task(name).load("test", data_dir, limit=1)[0]
    lines = ex.question.split("\n")
    departures = FIELD_DEPARTURES.get(category, set())
    for label in _split(category)[2]:
        present = any(line.startswith(label + " ") for line in lines)
        assert present == (label not in departures), (name, label, ex.question)
    assert lines[-1].startswith("Options: (A) ") or ex.answer_type == "number"


@pytest.mark.parametrize("category, names", [
    ("Natural Language Inference", ["cb", "anli"]), ("Sentiment Analysis", ["cr", "sst2"]),
    ("Topic Classification", ["trec"]), ("Coreference Resolution", ["winogrande"]),
])
def test_annotators_b_and_c_are_the_papers(category: str, names: list[str]) -> None:
    for name in names:
        task = get_task(name)
        assert task.instructions["B"] == D3[category] and task.instructions["C"] == D4[category]


def test_annotator_departures_are_the_documented_ones() -> None:
    agnews = get_task("agnews")  # four topics, not TREC's six
    assert agnews.instructions["B"] == D3["Topic Classification"].replace("six", "four")
    assert agnews.instructions["C"] == D4["Topic Classification"].replace("six", "four")
    for name in ("arc_easy", "arc_challenge"):  # D.4's ARC text; D.3's ARC text is its coreference one (a copy error)
        task = get_task(name)
        assert task.instructions["C"] == D4["Common Sense (ARC)"]
        assert task.instructions["B"] != D3["Common Sense (ARC)"]


def test_the_teacher_system_prompt_is_the_papers() -> None:
    from raftlab.backends.openai_backend import TEACHER_SYSTEM_PROMPT

    assert TEACHER_SYSTEM_PROMPT == D1_SYSTEM


# The paper's option text of each TREC coarse class and AG News class, for the label mapping checks.
TREC_TEXT = {"DESC": "Description and abstract concept", "ENTY": "Entity", "ABBR": "Abbreviation",
             "HUM": "Human being", "LOC": "Location", "NUM": "Numeric value"}


def test_trec_labels_map_to_the_papers_options(data_dir: Path) -> None:
    """Every local TREC example's letter shows the paper's text of its raw coarse class; the hub's coarse_label
    ids (CogComp/trec: 0 ABBR, 1 ENTY, 2 DESC, 3 HUM, 4 LOC, 5 NUM) map the same way."""
    from raftlab.tasks.records import CONVERTERS

    task = get_task("trec")
    for split in ("train", "test"):
        for ex in task.load(split, data_dir):
            assert ex.label_text() == TREC_TEXT[ex.meta["coarse_label"]], ex.id
    rows = [{"text": f"q{i}?", "coarse_label": i, "_index": i} for i, _ in enumerate(TREC_TEXT)]
    hub = CONVERTERS["template"](task, rows, "test", **task.hub.convert)
    assert [e.label_text() for e in hub] == [TREC_TEXT[c] for c in ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")]


def test_agnews_labels_map_to_the_papers_options(data_dir: Path) -> None:
    """AG News class ids 1..4 (World, Sports, Business, Sci/Tech; the source's classes.txt) -> (A)..(D)."""
    from raftlab.tasks.records import CONVERTERS

    task = get_task("agnews")
    rows = [{"title": "t", "description": "d", "label": str(i), "_index": i} for i in (1, 2, 3, 4)]
    local = CONVERTERS["template"](task, rows, "test", **task.data.convert)
    assert [e.label_text() for e in local] == ["World", "Sports", "Business", "Science and Technology"]
    assert local[0].question.startswith("News: t d\nOptions: (A) World")
    hub_rows = [{"text": "t d", "label": i, "_index": i} for i in range(4)]
    assert [e.label for e in CONVERTERS["template"](task, hub_rows, "test", **task.hub.convert)] == list("ABCD")


def test_tasks_show_trec_prints_the_papers_options(data_dir: Path) -> None:
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    for extra in ([], ["--style", "A"]):
        res = CliRunner().invoke(app, ["tasks", "show", "trec", "--data-dir", str(data_dir), *extra])
        assert res.exit_code == 0, res.output
        assert _split("Topic Classification (TREC)")[3] in res.output.splitlines()
