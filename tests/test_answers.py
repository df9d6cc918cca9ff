"""Answer extraction: table-driven, including adversarial model outputs."""

from __future__ import annotations

import pytest

from raftlab.schema import INVALID, Example
from raftlab.tasks import get_task
from raftlab.tasks.answers import AnswerSpec, canonical_number, extract_answer, numbers_equal, parse_number

NLI = Example(id="x", task="cb", category="nlu", question="Premise: p\nHypothesis: h\nOptions: (A) entailment "
              "(B) contradiction (C) neutral", label="B", option_letters=["A", "B", "C"],
              options=["entailment", "contradiction", "neutral"])
MATH = Example(id="m", task="gsm8k", category="math", question="q", label="18", answer_type="number")
WINO = Example(id="w", task="winogrande", category="nlu", question="Sentence: _ won.\nOptions: (A) Maria "
               "(B) Katrina", label="A", option_letters=["A", "B"], options=["Maria", "Katrina"])
USER = Example(id="u", task="my_task", category="nlu", question="q", label="A", option_letters=["A", "B"],
               options=["positive", "negative"])

NUMBER_CASES = [
    ("The answer is 18.", "18"),
    ("The answer is 18", "18"),
    ("... so 9 * 2 = 18. The answer is $18.", "18"),
    ("The answer is $1,234.50.", "1234.5"),
    ("The answer is 1,000,000 dollars.", "1000000"),
    ("The answer is 2.50 hours.", "2.5"),
    ("The answer is -3.", "-3"),
    ("The answer is \u22123.", "-3"),
    ("The answer is 3/4.", "0.75"),
    ("The answer is 50%.", "50"),
    ("The answer is **42**.", "42"),
    ("The answer is: 7", "7"),
    ("The answer is five.", "5"),
    ("The answer is 12 - 4 = 8.", "8"),
    ("The answer is x = 8 apples.", "8"),
    ("The answer is 18.0", "18"),
    ("The answer is .5", "0.5"),
    # last "The answer is" wins
    ("The answer is 12. Wait, I made an error. The answer is 14.", "14"),
    ("The answer is 3.\nActually, recomputing: the answer is 30.", "30"),
    ("THE ANSWER IS 9", "9"),
    ("The answer is 7.\nQuestion: Tom has 5 apples. The answer is", "7"),   # cut-off final cue is skipped
    ("The answer is 7. Hmm, wait. The answer is unclear.", "7"),  # the last *parseable* cue wins
    ("The answer is 4. A line with \"The answer is\" is written at the end.", "4"),
    ("The answer could be 12.", "12"),                                   # hedged cues are answers
    ("The answer is probably 3 apples.", "3"),
    ("The answer is The answer is 4.", "4"),
    ("The final answer is 21.", "21"),
    ("So the answer would be 6 cookies.", "6"),
    ("The answer is:\n\n15", "15"),
    ("We get \\boxed{64}.", "64"),
    ("Answer: 11", "11"),
    ("18", "18"),
    ("  $18.  ", "18"),
    # adversarial / unparseable
    ("", INVALID),
    ("   ", INVALID),
    ("I don't know.", INVALID),
    ("She has 9 eggs and sells them for 2 dollars each, earning 18", INVALID),  # no answer cue: not guessed
    ("The answer is n", INVALID),
    ("The answer is", INVALID),
    ("The answer is unknown.", INVALID),
    ("The answer is 5/0.", INVALID),
    ("The answer is " + "9" * 60, "9" * 60),                 # no float/precision loss
]


@pytest.mark.parametrize("text,expected", NUMBER_CASES)
def test_extract_number(text: str, expected: str) -> None:
    assert extract_answer(text, MATH) == expected


CHOICE_CASES = [
    ("The answer is B.", "B"),
    ("The answer is B", "B"),
    ("The answer is (B).", "B"),
    ("The answer is (b)", "B"),
    ("The answer is B) contradiction", "B"),
    ("The answer is B: contradiction.", "B"),
    ("The answer is (B) contradiction.", "B"),
    ("The answer is **B**.", "B"),
    ("The answer is option B.", "B"),
    ("The answer is [C].", "C"),
    ("The answer is contradiction.", "B"),
    ("The answer is Contradiction", "B"),
    ("The answer is neutral!", "C"),
    ("The answer is: entailment", "A"),
    ("The answer is \"neutral\".", "C"),
    ("The answer is contradictory.", "B"),                      # synonym from the task's verbalizers
    ("The answer is can not be determined.", "C"),
    ("The answer is that the hypothesis is a contradiction.", "B"),  # exactly one option mentioned
    ("The answer is A. Hmm, no. The answer is C.", "C"),       # last wins
    ("The answer is (A) but the best answer is (B).", "B"),
    # an explicit letter wins whatever follows it, with or without the opening bracket (the same reading)
    ("The answer is A) contradiction.", "A"),
    ("The answer is (A) contradiction.", "A"),
    ("The answer is A. contradiction", "A"),
    ("The answer is C. The answer is written after the reasoning.", "C"),  # last *parseable* cue
    ("The answer could be neutral.", "C"),
    ("The correct answer is **(B) contradiction**.", "B"),
    ("The answer is C.\n\nPremise: x\nHypothesis: y\nThe answer is", "C"),
    ("(C)", "C"),
    ("B", "B"),
    ("B.", "B"),
    ("B) contradiction", "B"),
    ("I think so.", INVALID),                                  # a bare "I" is not option I
    ("neutral", "C"),
    ("Answer: A", "A"),
    # adversarial / invalid
    ("The answer is D.", INVALID),                              # not an option
    ("The answer is (E)", INVALID),
    ("The answer is not B.", INVALID),
    ("The answer is neither A nor B.", INVALID),
    ("The answer is x", INVALID),
    ("The answer is entailment or contradiction.", INVALID),   # two options named
    ("I think it is probably contradiction because...", INVALID),
    ("Because the premise says so, we conclude", INVALID),
    ("", INVALID),
    ("The answer is", INVALID),
    ("The answer is \n", INVALID),
]


@pytest.mark.parametrize("text,expected", CHOICE_CASES)
def test_extract_choice(text: str, expected: str) -> None:
    """Through the task, which adds its synonyms (\"contradictory\") to the example's options."""
    assert get_task("cb").extract(text, NLI) == expected


@pytest.mark.parametrize("text,expected", [
    ("The answer is Katrina.", "B"),
    ("The answer is (A) Maria.", "A"),
    ("The answer is A.", "A"),
    ("The answer is Maria", "A"),
    ("The answer is Mary.", INVALID),
])
def test_extract_per_example_options(text: str, expected: str) -> None:
    assert extract_answer(text, WINO) == expected


@pytest.mark.parametrize("text,expected", [
    ("The answer is A because the review praises it.", "A"),
    ("The answer is A positive review.", "A"),  # letter followed by its own option text
    ("The answer is A negative review.", INVALID),  # letter A followed by option B's text: contradictory
    ("The answer is positive.", "A"),
])
def test_letter_vs_article(text: str, expected: str) -> None:
    assert extract_answer(text, USER) == expected


def test_never_raises_on_odd_input() -> None:
    for bad in (None, 3, b"The answer is B", ["B"], "\x00\x00", "The answer is (", "The answer is )", "(((((" * 500):
        assert extract_answer(bad, NLI) == INVALID or extract_answer(bad, NLI) in NLI.option_letters
        assert extract_answer(bad, MATH) == INVALID or float(extract_answer(bad, MATH)) >= 0
    assert extract_answer("The answer is B", object()) == INVALID  # no usable spec: invalid, no exception


def test_synonym_containing_another_option() -> None:
    qqp = get_task("qqp")  # verbalizers (the paper's order): A = different/no/not paraphrase, B = same/yes/paraphrase
    assert extract_answer("The answer is not paraphrase.", qqp) == "A"
    assert extract_answer("The answer is paraphrase.", qqp) == "B"
    assert extract_answer("The answer is Same.", qqp) == "B" and extract_answer("The answer is (A) Different", qqp) == "A"
    assert extract_answer("The answer is not A.", qqp) == INVALID


def test_task_as_spec() -> None:
    sst2 = get_task("sst2")
    assert extract_answer("The answer is positive.", sst2) == "A"  # the paper's order: (A) positive (B) negative
    assert extract_answer("The answer is (A)", sst2) == "A"
    assert extract_answer("The answer is 1,024.", get_task("gsm8k")) == "1024"
    assert extract_answer("The answer is heads up.", get_task("coinflip")) == "A"


def test_answer_spec_from_example_adds_task_synonyms() -> None:
    spec = get_task("cb").answer_spec(NLI)
    assert "contradictory" in spec.verbalizers["B"]
    # answers.py is a leaf: an Example alone gives only its own options (no registry lookup)
    assert AnswerSpec.of(NLI).verbalizers["B"] == ["contradiction"]
    assert extract_answer("The answer is contradictory.", NLI) == INVALID


@pytest.mark.parametrize("value,expected", [
    (18, "18"), (18.0, "18"), ("18.000", "18"), ("2.50", "2.5"), ("1,000", "1000"), (-0.0, "0"),
    (0.1 + 0.2, "0.3"), ("1e3", "1000"), (1 / 3, "0.3333333333"), ("-7", "-7"),
])
def test_canonical_number(value, expected: str) -> None:
    assert canonical_number(value) == expected


@pytest.mark.parametrize("bad", ["abc", "", "nan", "inf", True, float("nan")])
def test_canonical_number_rejects(bad) -> None:
    with pytest.raises(ValueError):
        canonical_number(bad)


def test_numbers_equal_tolerance() -> None:
    assert numbers_equal("2.00001", "2")
    assert not numbers_equal("2.001", "2")
    assert not numbers_equal(INVALID, "2")
    assert parse_number("no digits") == INVALID


@pytest.mark.slow
def test_target_round_trips_through_extraction() -> None:
    """Every task's canonical target parses back to its gold label (the contract training relies on)."""
    for name in ["gsm8k", "svamp", "creak", "synth_arith", "synth_topic", "synth_coinflip"]:
        task = get_task(name)
        data_dir = "packaged" if task.category != "synthetic" else None  # runs without the staged datasets
        for ex in task.load("test", data_dir=data_dir, limit=20, seed=1):
            for rationale in (None, "First step. Second step. So the answer is wrong."):
                out = task.target(ex, rationale)
                assert extract_answer(out, ex) == task.canonical_label(ex)
                assert task.is_correct(extract_answer(out, ex), ex)


@pytest.mark.slow
def test_fuzz_never_raises_and_is_fast() -> None:
    import random
    import time

    rng = random.Random(0)
    pieces = ["The answer is", "the answer is:", " (", ")", "B", "b", "18", "1,000", "$", ".", "\n", " ",
              "contradiction", "neutral", "not", "\\boxed{", "}", "-", "/", "0", "%", "**", "Answer:", "é", "\x00"]
    start = time.perf_counter()
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        for target in (NLI, MATH, WINO):
            out = extract_answer(text, target)
            assert out == INVALID or (out in target.option_letters if target.answer_type == "choice" else float(out) == float(out))
    long = "The answer is B. " * 20000 + "x" * 100000
    assert extract_answer(long, NLI) == "B"
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("text,answer_type,cut", [
    ("Tom has 3. The answer is 2.5 apples. Then more", "number", "Tom has 3. The answer is 2.5 apples."),
    ("The answer is 2.", "number", None),  # the sentence may go on ("2.5"): not complete yet
    ("The answer is $1,200.\n\nQuestion", "number", "The answer is $1,200."),
    ("So the answer is: **18**. Next", "number", "So the answer is: **18**."),
    ("The answer is the number of apples left. 5 - 2 = 3. The answer is 3.\n", "number",
     "The answer is the number of apples left. 5 - 2 = 3. The answer is 3."),  # prose after a cue does not stop
    ("The answer is (D) Farm land. Because", "choice", "The answer is (D) Farm land."),
    ("The answer is B.\n\nHere is the question:", "choice", "The answer is B."),
])
def test_answer_sentence_stop_pattern(text, answer_type, cut):
    from raftlab.tasks.answers import answer_stop_pattern, cut_at_answer

    got, was_cut = cut_at_answer(text, answer_stop_pattern(answer_type))
    assert (got, was_cut) == ((cut, True) if cut else (text, False))
