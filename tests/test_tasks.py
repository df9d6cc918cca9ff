"""Task registry, local loading of all 20 tasks (counts from each dataset's NOTE.md), prompts, scoring."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from raftlab.schema import INVALID, Example
from raftlab.tasks import (
    DataNotFoundError,
    Task,
    TaskDataError,
    get_task,
    list_tasks,
    register_task,
    resolve_data_dir,
)
from raftlab.tasks.datadir import ENV_VAR
from raftlab.tasks.registry import load_config

# (train, test) per task, from /work/shared/datasets/<task>/NOTE.md and the split choices documented in
# each task's YAML (dev-as-test etc.). ASDiv: 2,084 numeric-answer problems, seeded 70/30.
EXPECTED_COUNTS = {
    "multiarith": (420, 180), "asdiv": (1459, 625), "svamp": (700, 300), "gsm8k": (7473, 1319),
    "arc_easy": (2251, 2376), "arc_challenge": (1119, 1172), "commonsenseqa": (9741, 1221),
    "creak": (10176, 1371), "cr": (1775, 2000), "sst2": (6920, 1821), "trec": (5452, 500),
    "agnews": (10429, 7600), "paws": (8000, 8000), "qqp": (10000, 10000), "cb": (250, 56),
    "anli": (3200, 3200), "wic": (5428, 638), "winogrande": (1767, 1267), "subj": (8000, 2000),
    "coinflip": (2000, 500),
}
CATEGORIES = {
    "math": {"multiarith", "asdiv", "svamp", "gsm8k"},
    "commonsense": {"arc_easy", "arc_challenge", "commonsenseqa", "creak"},
    "nlu": {"cr", "sst2", "trec", "agnews", "paws", "qqp", "cb", "anli", "wic", "winogrande", "subj"},
}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    try:
        return resolve_data_dir(None, "gsm8k")
    except DataNotFoundError as exc:  # pragma: no cover - only without the staged datasets
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def loaded(data_dir: Path) -> dict[str, dict[str, list[Example]]]:
    return {name: {s: get_task(name).load(s, data_dir=data_dir) for s in ("train", "test")}
            for name in EXPECTED_COUNTS}


def test_registry_has_the_20_paper_tasks_in_paper_order() -> None:
    names = list_tasks()
    assert names[:20] == list(EXPECTED_COUNTS)
    assert {"synth_arith", "synth_topic", "synth_coinflip"} <= set(names)
    assert set(list_tasks("synthetic")) >= {"coinflip", "synth_arith", "synth_topic"}
    for cat, members in CATEGORIES.items():
        assert members <= set(list_tasks(cat)), cat


@pytest.mark.parametrize("alias,name", [
    ("SST-2", "sst2"), ("sst2", "sst2"), ("arc-easy", "arc_easy"), ("ARC_Easy", "arc_easy"), ("cb", "cb"),
    ("CommitmentBank", "cb"), ("commitment_bank", "cb"), ("csqa", "commonsenseqa"), ("GSM8K", "gsm8k"),
    ("coin_flip", "coinflip"), ("keyword_topic", "synth_topic"), ("ANLI", "anli"), ("arc-challenge", "arc_challenge"),
])
def test_get_task_aliases(alias: str, name: str) -> None:
    assert get_task(alias).name == name


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="gsm8k"):
        get_task("no_such_task")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_counts_and_schema(name: str, loaded) -> None:
    task = get_task(name)
    train, test = loaded[name]["train"], loaded[name]["test"]
    assert (len(train), len(test)) == EXPECTED_COUNTS[name]
    for split in (train, test):
        ids = [e.id for e in split]
        assert len(set(ids)) == len(ids), "ids must be unique within a split"
        for e in split[:: max(1, len(split) // 50)]:
            assert e.task == task.name and e.category == task.category and e.answer_type == task.answer_type
            if task.answer_type == "choice":
                assert e.label in e.option_letters
                assert len(e.options) == len(e.option_letters) >= 2
                assert "Options: (A) " in e.question
            else:
                float(e.label)
                assert e.label == task.canonical_label(e)
    # train and test are different sources (a few exact duplicate questions exist upstream:
    # MultiArith 8/180, TREC 10/500)
    overlap = {e.question for e in train} & {e.question for e in test}
    assert len(overlap) <= 0.05 * len(test), f"{len(overlap)} test questions also in train"


def test_label_distributions_match_sources(loaded) -> None:
    qqp = collections.Counter(e.label for e in loaded["qqp"]["test"])
    assert qqp == {"A": 5000, "B": 5000}
    subj = collections.Counter(e.label for e in loaded["subj"]["test"])
    assert subj == {"A": 1000, "B": 1000}
    agnews = collections.Counter(e.label for e in loaded["agnews"]["train"])
    assert agnews == {"A": 2630, "B": 2452, "C": 2594, "D": 2753}  # NOTE.md class counts 1..4
    assert len({e.label for e in loaded["trec"]["test"]}) == 6
    assert len({e.label for e in loaded["cb"]["test"]}) == 3


def test_spot_checks_against_raw_files(loaded) -> None:
    gsm = loaded["gsm8k"]["test"][0]
    assert gsm.question.startswith("Janet\u2019s ducks lay 16 eggs") and gsm.label == "18"
    assert "<<" not in gsm.meta["human_rationale"] and "####" not in gsm.meta["human_rationale"]
    trec = {e.question.split("\n")[0]: e for e in loaded["trec"]["test"]}
    jewels = trec["Question: Where are the British crown jewels kept ?"]
    assert jewels.label_text() == "Location" and jewels.label == "E"  # App. D.1 order: (E) Location
    arc = loaded["arc_easy"]["test"]
    numeric = [e for e in arc if e.meta["source"].endswith("item 0")]
    assert numeric and all(e.option_letters[0] == "A" for e in arc)
    wino = loaded["winogrande"]["test"][0]
    assert wino.options == ["Sarah", "Maria"] and wino.label == "B"
    cb = loaded["cb"]["test"][0]
    assert cb.label_text() == "Contradiction" and cb.question.startswith("Premise: Valence")
    subj_obj = [e for e in loaded["subj"]["test"] if e.label == "A"][0]
    assert not subj_obj.question.startswith('Statement: "')  # surrounding quotes removed
    agnews = loaded["agnews"]["test"][1]
    assert "#36;" not in agnews.question and "$10 million" in agnews.question
    creak = loaded["creak"]["test"][0]
    assert creak.label_text() == "False" and creak.meta["human_rationale"].startswith("Soup is mainly liquid")


def test_seeded_splits_are_disjoint_and_stable(data_dir: Path) -> None:
    for name, total in (("multiarith", 600), ("svamp", 1000), ("asdiv", 2084)):
        task = get_task(name)
        train, test = task.load("train", data_dir), task.load("test", data_dir)
        assert not {e.id for e in train} & {e.id for e in test}
        assert len(train) + len(test) == total
        assert [e.id for e in task.load("test", data_dir)] == [e.id for e in test]


def test_limit_and_seed(data_dir: Path) -> None:
    task = get_task("sst2")
    a = task.load("test", data_dir, limit=10, seed=0)
    b = task.load("test", data_dir, limit=10, seed=0)
    c = task.load("test", data_dir, limit=10, seed=1)
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 10
    assert [e.id for e in a] != [e.id for e in c]
    assert len(task.load("test", data_dir, limit=10**6)) == 1821
    with pytest.raises(ValueError, match="split"):
        task.load("validation", data_dir)


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match=ENV_VAR):
        get_task("cb").load("test")
    monkeypatch.setenv(ENV_VAR, str(data_dir))
    assert len(get_task("cb").load("test")) == 56
    # explicit argument beats the environment
    (tmp_path / "cb").mkdir()
    with pytest.raises(DataNotFoundError, match="missing file"):
        get_task("cb").load("test", data_dir=tmp_path)


def test_bad_source_file_error_names_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "cb").mkdir()
    good = {"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0}
    lines = [json.dumps(good), json.dumps({**good, "idx": 1, "label": "maybe"})]
    (tmp_path / "cb" / "data__cb__val.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskDataError, match=r"data__cb__val.jsonl:2: field 'label': 'maybe'"):
        get_task("cb").load("test", data_dir=tmp_path)
    (tmp_path / "cb" / "data__cb__val.jsonl").write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(TaskDataError, match=r"data__cb__val.jsonl:2: invalid JSON"):
        get_task("cb").load("test", data_dir=tmp_path)
    (tmp_path / "cb" / "data__cb__val.jsonl").write_text(json.dumps({"premise": "p", "label": "neutral"}) + "\n")
    with pytest.raises(TaskDataError, match="missing field 'hypothesis'"):
        get_task("cb").load("test", data_dir=tmp_path)


# ----------------------------------------------------------------------------- prompts and targets


def _example(name: str, data_dir: Path) -> Example:
    return get_task(name).load("test", data_dir, limit=1, seed=3)[0]


def test_prompt_modes(data_dir: Path) -> None:
    task = get_task("cb")
    ex = _example("cb", data_dir)
    direct, cot = task.prompt(ex, "direct"), task.prompt(ex, "cot")
    assert direct.startswith(task.instructions["A"].strip())
    assert 'Give your answer ending with "The answer is x"' in direct
    assert ex.question in direct and direct.endswith("\n\nAnswer:")
    assert cot == direct + " Let's think step by step."
    assert get_task("gsm8k").prompt(_example("gsm8k", data_dir)).count('"The answer is n"') == 1
    with pytest.raises(ValueError):
        task.prompt(ex, "fewshot")


def test_target_forms(data_dir: Path) -> None:
    task = get_task("gsm8k")
    ex = _example("gsm8k", data_dir)
    assert task.target(ex) == f" The answer is {ex.label}."
    assert task.target(ex, "3 + 4 = 7") == f" 3 + 4 = 7. The answer is {ex.label}."
    # a teacher rationale's own answer line is replaced by the canonical sentence (no duplicates)
    out = task.target(ex, "We add 3 and 4.\nThe answer is 7")
    assert out == f" We add 3 and 4. The answer is {ex.label}." and out.count("The answer is") == 1
    out = task.target(ex, "Step one. Therefore, the answer is $7.00.")
    assert out == f" Step one. The answer is {ex.label}."
    assert task.target(ex, "   ") == f" The answer is {ex.label}."
    cb = get_task("cb")
    cbex = _example("cb", data_dir)
    assert cb.target(cbex) == f" The answer is {cbex.label}."


@pytest.mark.parametrize("style", ["A", "B", "C"])
def test_teacher_prompts(style: str, data_dir: Path) -> None:
    task = get_task("sst2")
    ex = _example("sst2", data_dir)
    prompts = [task.teacher_prompt(ex, style, n) for n in range(1, 6)]
    assert len(set(prompts)) == 5
    for p in prompts:
        assert ex.question in p and "The answer is" in p
    # the paper's Appendix D.2 levels, same numbering: 1 the most thorough ... 5 the shortest
    assert prompts[0].endswith("Answer: Give a thorough analysis of the problem and explain your solution.\n")
    assert prompts[1].endswith("Answer: Analyze the problems and explain your solution as detailed as possible.\n")
    assert prompts[2].endswith("Answer: Let's think step by step.\n")
    assert prompts[3].endswith("Answer: Explain your solution with a few words.\n")
    assert prompts[4].endswith("Answer: Explain the solution as short as you can.\n")
    assert prompts[2].startswith(task.instructions[style])
    with pytest.raises(ValueError):
        task.teacher_prompt(ex, style, 6)


@pytest.mark.parametrize("task_name, style, start", [
    ("cb", "B", "You are now required to perform a natural language inference task."),
    ("anli", "C", "Review a given premise, determine whether the relevant hypothesis can be logically inferred"),
    ("sst2", "B", "You are now required to perform a sentiment analysis task."),
    ("cr", "C", "You will see a passage of text, please determine the sentiment of the text."),
    ("trec", "B", "You are now required to perform a topic classification task. I will give you a sentence, and "
                  "you need to determine which of the six possible topics"),
    ("trec", "C", "Given a sentence, please determine which of the six categories it belongs to."),
    ("agnews", "C", "Given a sentence, please determine which of the four categories it belongs to."),
    ("arc_challenge", "C", "You will be shown a question and four answers, from which you need to choose one"),
    ("arc_easy", "C", "You will be shown a question and four answers, from which you need to choose one"),
    ("winogrande", "B", "You are now required to perform a coreference resolution task."),
    ("winogrande", "C", "Given a passage of text where a word is left blank, and you will see two options"),
])
def test_annotators_b_and_c_use_the_papers_instructions(task_name: str, style: str, start: str) -> None:
    """Appendix D.3 (B) and D.4 (C), for the categories the paper gives them (AG News: 'four', a departure)."""
    task = get_task(task_name)
    assert task.instructions[style].startswith(start)
    ex = Example(id="x", task=task.name, category=task.category, question="Q?", label="A", answer_type="choice",
                 option_letters=["A", "B"], options=["a", "b"])
    assert task.teacher_prompt(ex, style).startswith(start)


def test_winogrande_is_coreference_resolution_as_in_the_paper() -> None:
    assert get_task("winogrande").group == "coreference resolution"


def test_teacher_prompt_A_is_the_paper_template(data_dir: Path) -> None:
    ex = _example("gsm8k", data_dir)
    expected = ("Solve the following math problems.\nAdd a line \"The answer is n\" at the end where n is the answer "
                f"value.\n\nHere is the question:\n{ex.question}\n\nAnswer: Let's think step by step.\n")
    assert get_task("gsm8k").teacher_prompt(ex, "A", 3) == expected
    assert get_task("gsm8k").teacher_prompt(ex, "B") != expected
    with pytest.raises(ValueError):
        get_task("gsm8k").teacher_prompt(ex, "D")


# ----------------------------------------------------------------------------- scoring


def test_is_correct(data_dir: Path) -> None:
    math = get_task("gsm8k")
    ex = Example(id="1", task="gsm8k", category="math", question="q", label="2.5", answer_type="number")
    assert math.is_correct("2.5", ex) and math.is_correct("2.50009", ex) and not math.is_correct("2.5002", ex)
    assert not math.is_correct(INVALID, ex) and not math.is_correct("", ex)
    nli = get_task("cb")
    cbex = _example("cb", data_dir)
    text = cbex.label_text()
    assert nli.is_correct(cbex.label, cbex) and nli.is_correct(text, cbex) and nli.is_correct(text.upper(), cbex)
    wrong = next(x for x in cbex.option_letters if x != cbex.label)
    assert not nli.is_correct(wrong, cbex) and not nli.is_correct(INVALID, cbex)


# ----------------------------------------------------------------------------- registration


def test_register_task_from_yaml_with_include(tmp_path: Path) -> None:
    (tmp_path / "data" / "mysent").mkdir(parents=True)
    rows = [{"text": "great stuff", "y": "pos"}, {"text": "awful", "y": "neg"}]
    (tmp_path / "data" / "mysent" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = tmp_path / "mysent.yaml"
    from raftlab.tasks.registry import CONFIG_DIR

    cfg.write_text(f"""
include: {CONFIG_DIR / '_sentiment.yaml'}
name: my_sentiment_test_task
aliases: [my-sent]
data:
  dir: mysent
  reader: jsonl
  splits: {{test: [test.jsonl], train: [test.jsonl]}}
  convert: {{question: "Statement: {{text}}", label: "{{y}}", label_map: {{neg: A, pos: B}}}}
""")
    merged = load_config(cfg)
    assert merged["group"] == "sentiment analysis" and merged["instructions"]["A"].startswith("Follwing")
    task = register_task(cfg)
    assert get_task("MY-SENT") is task
    exs = task.load("test", data_dir=tmp_path / "data")
    assert [e.label for e in exs] == ["B", "A"] and exs[0].options == ["positive", "negative"]
    with pytest.raises(ValueError, match="already"):
        register_task(cfg)
    register_task(cfg, replace=True)


def test_register_task_decorator_and_config_errors() -> None:
    @register_task
    def make() -> Task:
        return Task.from_config({"include": None, "name": "deco_task_test", "category": "synthetic",
                                 "answer_type": "number", "instructions": {"A": "Solve."},
                                 "data": {"synthetic": {"generator": "multistep_arith",
                                                        "sizes": {"train": 5, "test": 3}}}})

    assert callable(make)
    task = get_task("deco_task_test")
    assert len(task.load("train")) == 5 and len(task.load("test")) == 3
    with pytest.raises(ValueError, match="category"):
        Task.from_config({"name": "x", "category": "poetry", "answer_type": "number", "instructions": {"A": "."}})
    with pytest.raises(ValueError, match="field 'instructions': Field required"):
        Task.from_config({"name": "x", "category": "math", "answer_type": "number"})
    with pytest.raises(ValueError, match="field 'instrucions': Extra inputs are not permitted"):
        Task.from_config({"name": "x", "category": "math", "answer_type": "number", "instructions": {"A": "."},
                          "instrucions": {}})


def test_load_hub_offline_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="Offline\\? Use Task.load"):
        get_task("cb").load_hub("test")
    with pytest.raises(ValueError, match="no hub source"):
        get_task("creak").load_hub("test")


def test_hub_rows_convert_with_the_same_code() -> None:
    """Hub-schema rows (as datasets yields them) go through the task's hub converter."""
    from raftlab.tasks.records import CONVERTERS

    arc = get_task("arc_easy")
    rows = [{"id": "x1", "question": "Q?", "choices": {"text": ["a", "b", "c"], "label": ["1", "2", "3"]},
             "answerKey": "2", "_index": 0}]
    (ex,) = CONVERTERS["mcqa"](arc, rows, "test")
    assert ex.label == "B" and ex.option_letters == ["A", "B", "C"]
    anli = get_task("anli")
    rows = [{"uid": "u", "premise": "p", "hypothesis": "h", "label": 2, "_index": 0}]
    (ex,) = CONVERTERS["template"](anli, rows, "test", **anli.hub.convert)
    assert ex.label_text() == "Contradiction"


# ----------------------------------------------------------------------------- packaged samples, user data


def test_packaged_samples_load_with_the_normal_loaders() -> None:
    from raftlab.data import SAMPLE_TASKS, SAMPLES_DIR

    sizes = {"gsm8k": (50, 50), "svamp": (70, 30), "creak": (400, 400)}
    for name in SAMPLE_TASKS:
        task = get_task(name)
        train, test = task.load("train", data_dir="packaged"), task.load("test", data_dir="packaged")
        assert (len(train), len(test)) == sizes[name]
        assert (SAMPLES_DIR / name / "LICENSE.txt").read_text().startswith("MIT License")
    with pytest.raises(DataNotFoundError, match="packaged"):
        get_task("cb").load("test", data_dir="packaged")


def test_user_data_gets_a_generic_task(tmp_path: Path) -> None:
    from raftlab.tasks import load_jsonl, task_for, write_jsonl

    ex = Example(id="1", task="my_poll", category="nlu", question="Is tea good?\nOptions: (A) yes (B) no",
                 label="A", option_letters=["A", "B"], options=["yes", "no"])
    task = task_for(ex)
    assert task.name == "my_poll" and task.answer_type == "choice"
    assert ex.question in task.prompt(ex) and task.is_correct(task.extract("The answer is yes.", ex), ex)
    assert task_for(Example(id="2", task="SST-2", category="nlu", question="q", label="A",
                            option_letters=["A", "B"], options=["negative", "positive"])) is get_task("sst2")
    path = tmp_path / "u.jsonl"
    write_jsonl([ex], path)
    assert load_jsonl(path) == [ex]
    path.write_text(path.read_text() + "{broken\n")
    with pytest.raises(ValueError, match="u.jsonl:2: invalid JSON"):
        load_jsonl(path)


@pytest.mark.slow
def test_every_gold_answer_round_trips(loaded) -> None:
    """For every task: the canonical target, and the option text in place of the letter, parse back to gold."""
    from raftlab.tasks.answers import extract_answer

    for name, splits in loaded.items():
        task = get_task(name)
        test = splits["test"]
        for ex in test[:: max(1, len(test) // 200)]:
            assert extract_answer(task.target(ex, "Some reasoning."), ex) == task.canonical_label(ex), (name, ex.id)
            if ex.answer_type == "choice":
                text = ex.label_text()
                unique = sum(t.strip().lower().rstrip(".") == text.strip().lower().rstrip(".") for t in ex.options) == 1
                if unique:
                    got = extract_answer(f"Reasoning. The answer is {text}", ex)
                    assert got == ex.label, (name, ex.id, text, ex.options, got)


def test_load_hub_converts_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_hub with a stand-in for datasets.load_dataset (no network): split names, converters, seeded split."""
    import datasets

    rows = {
        ("ChilleD/MultiArith", None, "test"): [{"question": "2 + 2?", "final_ans": "4"}],
        ("aps/super_glue", "cb", "validation"): [{"premise": "p", "hypothesis": "h", "idx": 7, "label": 1}],
        ("allenai/winogrande", "winogrande_xl", "validation"): [
            {"sentence": "_ won.", "option1": "Ann", "option2": "Bo", "answer": "2", "qID": "q1"}],
        ("allenai/ai2_arc", "ARC-Easy", "train"): [
            {"id": "a1", "question": "Q?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "A"}],
        ("EleutherAI/asdiv", None, "validation"): [
            {"body": f"b{i}", "question": "q?", "answer": f"{i} (apples)"} for i in range(10)]
            + [{"body": "b", "question": "q?", "answer": "3:4"}],
        ("facebook/anli", None, "test_r1"): [{"uid": "u1", "premise": "p", "hypothesis": "h", "label": 0}],
        ("facebook/anli", None, "test_r2"): [{"uid": "u2", "premise": "p", "hypothesis": "h", "label": 1}],
        ("facebook/anli", None, "test_r3"): [{"uid": "u3", "premise": "p", "hypothesis": "h", "label": 2}],
    }
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return rows[(path, name, split)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (ma,) = get_task("multiarith").load_hub("test")
    assert ma.label == "4" and ma.question == "2 + 2?"
    (cb,) = get_task("cb").load_hub("test")
    assert cb.label_text() == "Contradiction" and cb.id == "cb-test-7"
    (wg,) = get_task("winogrande").load_hub("test")
    assert wg.options == ["Ann", "Bo"] and wg.label == "B"
    (arc,) = get_task("arc_easy").load_hub("train")
    assert arc.label == "A" and arc.options == ["x", "y"]
    asdiv_test, asdiv_train = get_task("asdiv").load_hub("test"), get_task("asdiv").load_hub("train")
    assert (len(asdiv_train), len(asdiv_test)) == (7, 3)  # 10 numeric rows, seeded 70/30; "3:4" dropped
    assert not {e.id for e in asdiv_train} & {e.id for e in asdiv_test}
    anli = get_task("anli").load_hub("test")
    assert [e.label_text() for e in anli] == ["Entailment", "Neutral", "Contradiction"]
    assert ("facebook/anli", None, "test_r3") in calls


def test_few_shot_prompt_shows_rationales_only_in_cot_mode():
    from raftlab.schema import Example
    from raftlab.tasks import get_task

    task = get_task("synth_arith")
    demo = Example(id="d", task="synth_arith", category="synthetic", question="Ann has 2 pens and buys 3. How many?",
                   label="5", answer_type="number", rationale="2 + 3 = 5.")
    ex = Example(id="q", task="synth_arith", category="synthetic", question="Bo has 4 cups. How many?", label="4",
                 answer_type="number")
    cot, direct = task.few_shot_prompt([demo], ex, "cot"), task.few_shot_prompt([demo], ex, "direct")
    assert cot.startswith(task.prompt(demo, "cot") + task.target(demo, "2 + 3 = 5.")) and "2 + 3 = 5." in cot
    assert "2 + 3 = 5." not in direct and direct.startswith(task.prompt(demo, "direct") + task.target(demo))
    assert cot.endswith(task.prompt(ex, "cot")) and direct.endswith(task.prompt(ex, "direct"))
    assert task.few_shot_prompt([], ex, "cot") == task.prompt(ex, "cot")
