"""The study's judge stage (App. C on a sample of kept rationales) and the report's rationale section."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from raftlab import layout
from raftlab.backends.base import Generation, SamplingParams
from raftlab.rationales import RationaleStore
from raftlab.study import StudySteps, load_config, plan, run_study
from raftlab.study.work import judge as judge_step
from raftlab.study.work.analysis import analyze
from raftlab.study.work.data import prepare_data
from raftlab.study.work.outputs import DataOutput
from raftlab.study.work import rationales as rationale_step
from raftlab.study.work.rationales import rationales
from raftlab.study.work.report import report

from test_study_pipeline import fake_eval, fake_prompt_eval, fake_train

MARKUP = "<b>&amp;</b>"  # in every teacher rationale: the report must show it as text


class Teacher:
    """Example i answers correctly from attempt i % 3 + 1 on (max_retries 2: every third example fails); every
    third example's first answer cannot be parsed."""

    name = model_name = "fake-teacher"

    def __init__(self, examples) -> None:
        self.first = {e.question: i % 3 + 1 for i, e in enumerate(examples)}
        self.labels = {e.question: e.label for e in examples}

    def generate(self, prompts, params: SamplingParams):
        out = []
        for p in prompts:
            q = max((q for q in self.labels if q in p), key=len)
            out.append([self._answer(q, params.seed % 1000 + j) for j in range(params.n)])  # sample j: attempt + j
        return out

    def _answer(self, q: str, attempt: int) -> Generation:
        if attempt >= self.first[q]:
            text = f"Step one {MARKUP} adds things up. The answer is {self.labels[q]}."
        elif self.first[q] == 3 and attempt == 1:
            text = "I am not sure."
        else:
            text = f"A wrong path. The answer is {int(self.labels[q]) + 1000}."
        return Generation(text=text, num_tokens=len(text.split()))


class Judge:
    """Helpful, Unhelpful, then a judgement without a verdict, in turn."""

    name = model_name = "fake-judge"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate(self, prompts, params: SamplingParams):
        self.prompts += prompts
        texts = ("Clear steps. Helpful", "It skips the arithmetic. Unhelpful", "Hard to say.")
        return [[Generation(text=texts[(len(self.prompts) - len(prompts) + i) % 3])] for i in range(len(prompts))]


CONFIG = {"model": "tiny", "tasks": [{"name": "synth_arith", "train_limit": 9, "test_limit": 4}],
          "teacher": {"backend": "hf:tiny", "max_retries": 2}, "judge": {"sample": 4},
          "eval": {"k": 2}, "samples_per_task": 0, "executor": {"isolate": False}}


def steps() -> StudySteps:
    return StudySteps(prepare_data=prepare_data, rationales=rationales, train=fake_train,
                      evaluate=fake_eval, analyze=analyze, report=report, prompt_eval=fake_prompt_eval,
                      judge=judge_step.judge)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """A real-teacher study (teacher and judge faked, model stages stood in) with the real data, rationale, judge,
    analysis and report steps."""
    cfg = load_config(CONFIG)
    run = tmp_path_factory.mktemp("judged")
    judge = Judge()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rationale_step, "teacher_backend", lambda c, task, examples: Teacher(examples))
        mp.setattr(judge_step, "judge_backend", lambda spec, options: judge)
        result = run_study(cfg, run, steps=steps())
    return cfg, run, result, judge


def test_the_judge_stage_is_planned_for_a_real_teacher_only() -> None:
    kinds = lambda cfg: [s.kind for s in plan(load_config(cfg), StudySteps.real(), Path("unused"))]  # noqa: E731
    assert "judge" not in kinds("default") and "judge" not in kinds("quick")  # the oracle teacher
    real_teacher = {"tasks": ["synth_arith", "synth_topic"], "teacher": {"backend": "openai:m@http://h:1/v1"}}
    stages = plan(load_config(real_teacher), StudySteps.real(), Path("unused"))
    judges = [s for s in stages if s.kind == "judge"]
    assert [s.name for s in judges] == ["judge/synth_arith", "judge/synth_topic"]
    assert judges[0].deps == ("rationales/synth_arith",) and judges[0].inputs["judge.sample"] == 20
    assert judges[0].inputs["teacher.backend"] == "openai:m"  # the teacher judges; its endpoint is not keyed
    assert {s.name for s in judges} <= set(next(s for s in stages if s.kind == "report").deps)
    assert "judge" not in kinds({**real_teacher, "judge": {"sample": 0}})
    assert kinds({"tasks": ["synth_arith"], "judge": {"backend": "hf:tiny"}}).count("judge") == 1  # named
    with pytest.raises(ValueError, match="judge.backend: the oracle"):
        load_config({"tasks": ["synth_arith"], "judge": {"backend": "oracle"}})


def test_the_judge_stores_its_verdicts_and_a_summary(study) -> None:
    cfg, run, result, judge = study
    assert "judge/synth_arith" in result.executed
    summary = json.loads((run / layout.judge("synth_arith") / layout.JUDGE_FILE).read_text())
    kept = json.loads((run / "rationales/synth_arith/stats.json").read_text())["kept"]
    assert summary["judged"] == summary["sampled"] == min(4, kept) == len(judge.prompts)
    assert (summary["helpful"], summary["unhelpful"], summary["unknown"]) == (2, 1, 1)
    assert summary["backend"] == "hf:tiny" and summary["max_new_tokens"] == 256 and summary["pending"] == 0
    with RationaleStore(run / "rationales/synth_arith" / layout.RATIONALE_STORE, writer=False) as store:
        assert store.judgments() == summary["verdicts"]
    assert all("Give your analysis first" in p and "The answer is" not in p.split("Rationale:")[1]
               for p in judge.prompts)


def test_another_judge_forgets_the_earlier_verdicts(study, tmp_path: Path) -> None:
    import shutil

    _, run, _, _ = study
    store_file = tmp_path / "r.sqlite"
    shutil.copy(run / "rationales/synth_arith" / layout.RATIONALE_STORE, store_file)
    settings = json.loads((run / layout.judge("synth_arith") / layout.JUDGE_FILE).read_text())
    with RationaleStore(store_file) as store:
        same = {k: settings[k] for k in ("backend", "options", "max_new_tokens")}
        assert store.bind_judge(same) == 0 and len(store.judgments()) == 4  # a resumed judge keeps them
        assert store.bind_judge({**same, "backend": "openai:other"}) == 4 and store.judgments() == {}


def test_the_report_shows_the_rationale_section(study) -> None:
    _, run, result, _ = study
    page = result.report.read_text()
    stats = json.loads((run / "rationales/synth_arith/stats.json").read_text())
    section = page[page.index('id="rationales"'):]
    row = re.search(r'<tr data-task="synth_arith">(.*?)</tr>', section).group(1)
    assert f"{stats['kept']} / {stats['examples_attempted']}" in row
    assert f"{100 * stats['kept'] / stats['attempts']:.1f}% of {stats['attempts']}" in row
    assert "2 / 1 / 1 of 4 (hf:tiny)" in row
    rejections = page[page.index('id="rationale-rejections"'):]
    header = re.findall(r"<th>(.*?)</th>", rejections.split("</tr>")[0])[1:]
    counts = re.search(r'<tr data-task="synth_arith">(.*?)</tr>', rejections).group(1)
    assert header == ["unparseable answer", "wrong answer"] and stats["rejections"]["wrong answer"] > 0
    assert re.findall(r"<td>(\d+)</td>", counts) == [str(stats["rejections"][r]) for r in header]
    shown = re.findall(r'<pre class="sample" data-rationale="[^"]+">(.*?)</pre>', page, re.S)
    assert len(shown) == 3 and MARKUP not in page
    assert all(html.unescape(text) == f"Step one {MARKUP} adds things up." for text in shown)
    assert 'data-figure="rationale_lengths"' in page


def test_an_oracle_study_reports_its_rationales_without_a_judge(tmp_path: Path) -> None:
    cfg = load_config({**CONFIG, "teacher": {"backend": "oracle"}, "judge": {}})
    result = run_study(cfg, tmp_path, steps=steps())
    assert not any(name.startswith("judge/") for name in result.executed)
    page = result.report.read_text()
    row = re.search(r'<tr data-task="synth_arith">(.*?)</tr>', page[page.index('id="rationales"'):]).group(1)
    assert "9 / 9" in row and "not judged" in row
    assert "The gold filter rejected no attempt." in page
    assert len(re.findall(r'data-rationale="', page)) == 3


def test_a_kept_target_exports_exactly_that_many_in_the_examples_order(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The teacher stops at ``kept_target``; its last call may keep a few more (a local teacher's call carries a
    whole decoding batch), which stay in the store; training gets the first ``kept_target`` in the data's order."""
    cfg = load_config({**CONFIG, "tasks": [{"name": "synth_arith", "train_limit": 30, "test_limit": 4}],
                       "teacher": {"backend": "hf:tiny", "max_retries": 1, "samples_per_prompt": 1,
                                   "batch_size": 8, "kept_target": 5}})
    data = prepare_data(cfg, cfg.tasks[0], tmp_path / "data")
    monkeypatch.setattr(rationale_step, "teacher_backend", lambda c, task, examples: Teacher(examples))
    out = rationales(cfg, cfg.tasks[0], data, tmp_path / "rationales")
    exported = [json.loads(line)["id"] for line in (tmp_path / "rationales" / layout.RATIONALES_FILE).open()]
    with RationaleStore(tmp_path / "rationales" / layout.RATIONALE_STORE, writer=False) as store:
        stored = {ex.id for ex, _, _ in store.kept()}
    # every third question is kept (attempt 1 only): 8 prompts keep 3, the next 8 (not 2) keep 3 more
    order = [json.loads(line)["id"] for line in DataOutput.of(data).train_path.open()]
    assert len(stored) == 6 and out.kept == len(exported) == 5
    assert exported == [i for i in order if i in stored][:5]  # the first 5 kept in the data's order


def test_the_judge_samples_only_the_rationales_training_gets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``kept_target`` the store may hold a few kept rationales beyond it (never trained on): the judge's
    sample comes from the first ``kept_target``, the ones exported."""
    cfg = load_config({**CONFIG, "tasks": [{"name": "synth_arith", "train_limit": 30, "test_limit": 4}],
                       "teacher": {"backend": "hf:tiny", "max_retries": 1, "samples_per_prompt": 1,
                                   "batch_size": 16, "kept_target": 3}, "judge": {"sample": 50}})
    data = prepare_data(cfg, cfg.tasks[0], tmp_path / "data")
    monkeypatch.setattr(rationale_step, "teacher_backend", lambda c, task, examples: Teacher(examples))
    rat = rationales(cfg, cfg.tasks[0], data, tmp_path / "rationales")
    with RationaleStore(tmp_path / "rationales" / layout.RATIONALE_STORE, writer=False) as store:
        stored = [ex.id for ex, _, _ in store.kept()]
    assert len(stored) > 3  # one call of 16 prompts keeps every third: more than the 3 asked for
    monkeypatch.setattr(judge_step, "judge_backend", lambda spec, options: Judge())
    judge_step.judge(cfg, cfg.tasks[0], rat, tmp_path / "judge")
    verdicts = json.loads((tmp_path / "judge" / layout.JUDGE_FILE).read_text())["verdicts"]
    assert sorted(verdicts) == sorted(stored[:3])
