"""The gold filter keeps only rationales worth training on (the cases a real SmolLM2 teacher produced on SST-2)."""

from __future__ import annotations

import pytest

from raftlab.rationales import generate_rationales, run_stats
from raftlab.rationales.gold_filter import (
    ANSWER_INSIDE, CONFLICTING, NO_RATIONALE, RESTATES, UNPARSEABLE, WRONG, judge_output,
)
from raftlab.tasks import get_task

SST2 = get_task("sst2")


def _case(label: str = "B"):
    """An SST-2 example whose gold answer is ``label``, its teacher prompt, and the option words by letter."""
    example = next(e for e in SST2.load("train", limit=40) if e.label == label)
    words = dict(zip(example.option_letters, example.options))
    return example, SST2.teacher_prompt(example, "A", 3), words


def test_a_wrong_answer_stated_before_the_right_one_is_rejected():
    """Quoted case 1: the raw output went on past "The answer is (A). Negative." to the gold "(B)"; the last cue
    matched gold, and the stored rationale (cut at the last cue) still stated (A)."""
    ex, prompt, words = _case("B")
    raw = (f"We can either accept the {words['A']} option or the {words['B']} option. Option (A) {words['A']}. "
           f"The answer is (A). {words['A'].capitalize()}. The answer is (B). {words['B'].capitalize()}.")
    verdict = judge_output(SST2, ex, raw, prompt)
    assert verdict.answer == "B" and not verdict.kept and verdict.reason == CONFLICTING


def test_an_answer_without_reasoning_is_rejected():
    """Quoted case 2: "The answer is (B).\\nThe answer is (B)\\n\\nWhat is the answer?" has no reasoning at all."""
    ex, prompt, _ = _case("B")
    verdict = judge_output(SST2, ex, "The answer is (B).\nThe answer is (B)\n\nWhat is the answer?", prompt)
    assert not verdict.kept and verdict.reason == NO_RATIONALE
    assert judge_output(SST2, ex, "The answer is (B).", prompt).reason == NO_RATIONALE


def test_the_reasoning_before_the_first_of_agreeing_answers_is_kept():
    """Every answer statement agrees: what follows the first one only repeats it, and the rationale kept is the
    reasoning before it (no answer cue inside); a cue that cannot be cut off rejects the output."""
    ex, prompt, words = _case("B")
    raw = (f"The review sounds bored and {words['B']}. The answer is (B). It never praises anything, "
           "so again the answer is (B).")
    verdict = judge_output(SST2, ex, raw, prompt)
    assert verdict.kept and verdict.rationale == f"The review sounds bored and {words['B']}."
    inside = f"The review sounds {words['B']}, and (B) is the correct answer here for sure. The answer is (B)."
    assert judge_output(SST2, ex, inside, prompt).reason == ANSWER_INSIDE


def test_a_restated_prompt_is_rejected():
    """Quoted case 3: the teacher restates the question and the options, then answers."""
    ex, prompt, _ = _case("B")
    question = prompt.split("Here is the question:\n", 1)[1].split("\n\nAnswer:")[0]
    verdict = judge_output(SST2, ex, f"{question}\nThe answer is (B).", prompt)
    assert not verdict.kept and verdict.reason == RESTATES


def test_reasoning_that_agrees_with_gold_is_kept_without_its_answer_sentence():
    ex, prompt, words = _case("B")
    raw = (f"The reviewer describes the film with disappointment and boredom, which signals a {words['B']} "
           f"sentiment. The answer is (B).")
    verdict = judge_output(SST2, ex, raw, prompt)
    assert verdict.kept and verdict.reason is None
    assert verdict.rationale.endswith(f"{words['B']} sentiment.") and "answer" not in verdict.rationale.lower()
    assert judge_output(SST2, ex, raw.replace("(B)", "(A)"), prompt).reason == WRONG
    assert judge_output(SST2, ex, "I cannot tell.", prompt).reason == UNPARSEABLE


@pytest.mark.parametrize("name", ["synth_topic", "synth_arith", "synth_arith_easy", "synth_coinflip", "coinflip"])
def test_the_oracle_teachers_rationales_all_pass(tmp_path, name):
    """The programmatic teacher's rationales reason before they answer: every one is kept at its first attempt."""
    from raftlab.rationales.oracle import OracleTeacher

    task = get_task(name)
    examples = task.load("train", limit=30)
    stats = generate_rationales(OracleTeacher(task, examples), task, examples, tmp_path / "r.sqlite", max_retries=1,
                                progress=False)
    assert stats["kept"] == len(examples), stats["rejections"]


def test_rejections_are_counted_by_reason(tmp_path):
    from raftlab.backends.base import Generation

    ex, _, words = _case("B")

    class Teacher:
        name = model_name = "scripted"

        def __init__(self):
            self.outputs = iter([f"(A) is the correct answer, {words['A']}. The answer is (B).",
                                 f"Surely {words['A']}. The answer is (A). {words['A']}. The answer is (B).",
                                 "The answer is (B). The answer is (B)",
                                 f"Clearly a {words['B']} and unhappy review overall. The answer is (B)."])

        def generate(self, prompts, params):
            return [[Generation(text=next(self.outputs), num_tokens=5)] for _ in prompts]

    stats = generate_rationales(Teacher(), SST2, [ex], tmp_path / "r.sqlite", max_retries=4, progress=False)
    assert stats["kept"] == 1 and stats["attempts"] == 4
    # the teacher's first complete answer sentence decides: the second output is cut there, and is wrong
    assert stats["rejections"][CONFLICTING] == 1 and stats["rejections"][WRONG] == 1
    assert stats["rejections"][NO_RATIONALE] == 1
    assert run_stats(tmp_path / "r.sqlite")["rejections"] == stats["rejections"]
