"""The oracle teacher: programmatic rationales that reach the gold answer, and honest refusals."""

from __future__ import annotations

import pytest

from raftlab.backends.base import SamplingParams
from raftlab.rationales.oracle import OracleTeacher, arith_rationale, coinflip_rationale, human_rationale
from raftlab.schema import Example
from raftlab.tasks import get_task


@pytest.mark.parametrize("name", ["synth_arith", "synth_topic", "synth_coinflip"])
def test_oracle_rationales_reach_gold(name: str) -> None:
    task = get_task(name)
    examples = task.load("train", limit=60, seed=3)
    teacher = OracleTeacher(task, examples)
    prompts = [task.teacher_prompt(e) for e in examples]
    gens = teacher.generate(prompts, SamplingParams(n=2, temperature=0.7))
    assert all(len(g) == 2 for g in gens)
    for ex, g in zip(examples, gens):
        text = g[0].text
        assert task.is_correct(task.extract(text, ex), ex), text
        assert len(text.split()) > 6  # a real rationale, not just the answer


def test_hand_checked_rationales() -> None:
    assert arith_rationale("Ana has 6 cards. Then Ana loses 4. Then Ana triples the number of cards. "
                           "Then Ana shares them equally among 3 boxes and keeps one box. How many cards does Ana "
                           "have now?") == "Ana starts with 6 cards. 6 - 4 = 2. 2 * 3 = 6. 6 / 3 = 2. So Ana has 2 cards now."
    assert coinflip_rationale("A coin is heads up. Bo flips the coin. Cy does not flip the coin. Is the coin still "
                              "heads up?").endswith("In the end the coin is tails up.")
    ex = Example(id="g", task="gsm8k", category="math", question="q", label="110", answer_type="number",
                 meta={"human_rationale": "He took 1/4*200 = <<1/4*200=50>>50 bars.\n#### 110"})
    assert human_rationale(ex) == "He took 1/4*200 = 50 bars."


def test_unknown_question_is_refused() -> None:
    task = get_task("synth_arith")
    teacher = OracleTeacher(task, task.load("train", limit=3))
    text = teacher.generate(["some other prompt"], SamplingParams())[0][0].text
    assert task.extract(text) == "[invalid]"


def test_coinflip_dataset_questions_without_generator_meta() -> None:
    from raftlab.tasks import DataNotFoundError

    task = get_task("coinflip")
    try:
        examples = task.load("test", limit=20)
    except DataNotFoundError as exc:
        pytest.skip(f"CoinFlip test file not available: {exc}")
    teacher = OracleTeacher(task, examples)
    for ex in examples:
        text = teacher.answer(task.teacher_prompt(ex))
        assert task.is_correct(task.extract(text, ex), ex), (ex.question, text)
