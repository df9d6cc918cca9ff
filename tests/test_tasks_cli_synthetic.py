"""`raftlab tasks` CLI and the synthetic generators."""

from __future__ import annotations

import collections

import pytest
from typer.testing import CliRunner

from raftlab.cli.main import app
from raftlab.tasks import DataNotFoundError, get_task, resolve_data_dir
from raftlab.tasks.answers import extract_answer
from raftlab.tasks.synthetic import generate_coinflip, generate_keyword_topic, generate_multistep_arith

runner = CliRunner()


def _have_data() -> bool:
    try:
        resolve_data_dir(None, "gsm8k")
        return True
    except DataNotFoundError:
        return False


needs_data = pytest.mark.skipif(not _have_data(), reason="staged datasets not found")


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow
@needs_data
def test_tasks_table_lists_counts() -> None:
    res = runner.invoke(app, ["tasks"])
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
            for line in res.output.splitlines() if line.startswith("│")}
    assert len(rows) >= 23
    assert rows["gsm8k"][4:6] == ["7473", "1319"]
    assert rows["cb"][4:6] == ["250", "56"] and rows["cb"][1] == "nlu"
    assert rows["synth_topic"][4:6] == ["2000", "500"]


def test_tasks_table_category_filter_and_missing_data(tmp_path) -> None:
    res = runner.invoke(app, ["tasks", "--category", "math", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "gsm8k" in res.output and "sst2" not in res.output and "no local files" in res.output
    res = runner.invoke(app, ["tasks", "--category", "poetry"])
    assert res.exit_code == 2 and "no tasks in category 'poetry'; categories: " in res.output


@needs_data
def test_tasks_show_eval_prompt_and_target() -> None:
    res = runner.invoke(app, ["tasks", "show", "SST-2", "--index", "2", "--mode", "direct", "--target"])
    assert res.exit_code == 0, res.output
    task = get_task("sst2")
    ex = task.load("test")[2]
    assert task.prompt(ex, "direct") + task.target(ex) in res.output
    assert "Let's think step by step" not in res.output


@needs_data
def test_tasks_show_teacher_prompt() -> None:
    res = runner.invoke(app, ["tasks", "show", "cb", "--style", "C", "--length", "5"])
    assert res.exit_code == 0, res.output
    task = get_task("cb")
    assert task.teacher_prompt(task.load("test")[0], "C", 5) in res.output


def test_tasks_show_errors() -> None:
    assert runner.invoke(app, ["tasks", "show", "nope"]).exit_code == 2
    assert runner.invoke(app, ["tasks", "show", "synth_arith", "--mode", "fewshot"]).exit_code == 2
    assert runner.invoke(app, ["tasks", "show", "synth_arith", "--style", "Z"]).exit_code == 2
    res = runner.invoke(app, ["tasks", "show", "synth_arith", "--index", "999999"])
    assert res.exit_code == 2 and "out of range" in res.output
    res = runner.invoke(app, ["tasks", "show", "synth_arith", "--index", "3"])
    assert res.exit_code == 0 and "How many" in res.output


def test_tasks_info() -> None:
    res = runner.invoke(app, ["tasks", "info", "PAWS"])
    assert res.exit_code == 0, res.output
    assert "google-research-datasets/paws [labeled_final]" in res.output
    assert "(A) Different / no / not paraphrase" in res.output and "dev (8,000) is the training pool" in res.output
    res = runner.invoke(app, ["tasks", "info", "synth_arith"])
    assert "generated: multistep_arith" in res.output and "options: number" in res.output
    assert runner.invoke(app, ["tasks", "info", "nope"]).exit_code == 2


# ----------------------------------------------------------------------------- generators


def test_coinflip_generator_labels_follow_the_flips() -> None:
    exs = generate_coinflip(200, steps=5, seed=3)
    for e in exs:
        flips = e.question.count(" flips the coin.")
        assert e.meta["flips"] == flips and e.meta["steps"] == 5
        assert e.label == ("A" if flips % 2 == 0 else "B")
        assert e.question.count("the coin.") == 5
        assert e.question.startswith("A coin is heads up.")
    counts = collections.Counter(e.label for e in exs)
    assert 60 < counts["A"] < 140  # roughly balanced
    assert [e.question for e in generate_coinflip(20, 5, 3)] == [e.question for e in exs[:20]]
    assert [e.question for e in generate_coinflip(20, 5, 4)] != [e.question for e in exs[:20]]
    long = generate_coinflip(3, steps=40, seed=0)
    assert long[0].question.count("the coin.") == 40


def test_coinflip_generator_matches_the_real_template() -> None:
    gen = generate_coinflip(1, steps=4, seed=0)[0]
    task = get_task("coinflip")
    assert gen.options == ["yes", "no"] and gen.task == "coinflip"
    assert gen.question.split("\n")[0].endswith('Is the coin still heads up? Note that "flip" here means "reverse".')
    if _have_data():
        real = task.load("test", limit=1)[0]
        assert real.question.split(".")[0] == gen.question.split(".")[0]
        train_q = {e.question for e in task.load("train")}
        assert not train_q & {e.question for e in task.load("test")}


def _solve(question: str) -> int:
    """Independent re-computation of a generated arithmetic problem from its text."""
    import re

    value = int(re.search(r"has (\d+) ", question).group(1))
    for sent in re.split(r"(?<=\.) ", question)[1:]:
        if m := re.search(r"(?:finds|gives \w+) (\d+) more", sent):
            value += int(m.group(1))
        elif m := re.search(r"(?:gives away|loses) (\d+)", sent):
            value -= int(m.group(1))
        elif m := re.search(r"(doubles|triples|quadruples)", sent):
            value *= {"doubles": 2, "triples": 3, "quadruples": 4}[m.group(1)]
        elif m := re.search(r"among (\d+) boxes", sent):
            assert value % int(m.group(1)) == 0
            value //= int(m.group(1))
    return value


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_multistep_arith_answers_are_right(steps: int) -> None:
    exs = generate_multistep_arith(100, steps=steps, seed=1)
    for e in exs:
        assert e.meta["steps"] == steps and e.answer_type == "number"
        assert int(e.label) == _solve(e.question) >= 0
    assert len({e.question for e in exs}) > 90


@pytest.mark.slow
def test_multistep_arith_step_range_and_task() -> None:
    task = get_task("synth_arith")
    train, test = task.load("train"), task.load("test")
    assert (len(train), len(test)) == (2000, 500)
    assert {e.meta["steps"] for e in train} == {1, 2, 3, 4, 5}
    assert not {e.question for e in train} & {e.question for e in test}
    other = task.load("test", seed=7)
    assert [e.question for e in other] != [e.question for e in test]
    assert [e.question for e in task.load("test", seed=7)] == [e.question for e in other]
    ex = test[0]
    assert task.is_correct(extract_answer(f"Step... The answer is {ex.label}.", ex), ex)
    with pytest.raises(ValueError):
        generate_multistep_arith(1, min_steps=3, max_steps=2)


def test_arith_difficulty_variants() -> None:
    easy, hard = get_task("synth_arith_easy").load("test"), get_task("synth_arith_hard").load("test")
    assert {e.meta["steps"] for e in easy} == {1, 2} and {e.meta["steps"] for e in hard} == {6, 7, 8}
    assert sum(len(e.question) for e in hard) > 2 * sum(len(e.question) for e in easy)


def test_verbalizers_map_both_ways() -> None:
    cb = get_task("commitmentbank")
    assert cb.option_letters == ["A", "B", "C"]
    assert [cb.label_text(x) for x in cb.option_letters] == ["Entailment", "Contradiction", "Neutral"]
    assert cb.letter_of("Contradiction") == "B" and cb.letter_of("cannot be determined") == "C"
    assert cb.letter_of("maybe") is None


def test_keyword_topic_is_keyword_determined() -> None:
    from raftlab.tasks.synthetic import TOPIC_KEYWORDS

    exs = generate_keyword_topic(300, seed=2)
    for e in exs:
        topics = [t for t, kws in TOPIC_KEYWORDS.items() if any(k in e.question for k in kws)]
        assert topics == [e.label_text()]
    assert len({e.label for e in exs}) == 4
    task = get_task("synth_topic")
    assert task.category == "synthetic" and len(task.load("train", limit=50)) == 50
