"""run_study with the real data / analysis / report steps (oracle rationales; model stages stood in)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftlab.analysis import AnalysisResult
from raftlab.backends.base import SamplingParams
from raftlab.study import StudySteps, load_config, run_study
from raftlab.study.work.analysis import analyze, generated_lengths
from raftlab.study.work.common import read_examples, write_examples
from raftlab.study.work.data import prepare_data
from raftlab.study.work.mean_of_task import mean_of_task, mean_of_task_prompting
from raftlab.study.work.outputs import DataOutput
from raftlab.study.work.reference import reference
from raftlab.study.work.report import report
from raftlab.study.work.train import train
from raftlab.rationales.oracle import OracleTeacher
from raftlab.tasks import get_task

from _report_helpers import fake_records

ACC = {("synth_topic", "ft"): 0.9, ("synth_topic", "raft"): 0.85, ("synth_coinflip", "ft"): 0.5,
       ("synth_coinflip", "raft"): 0.7, ("synth_arith", "ft"): 0.1, ("synth_arith", "raft"): 0.4}


def oracle_rationales(cfg, spec, data_out, out):
    task = get_task(spec.name)
    examples = read_examples(DataOutput.of(data_out).train_path)
    teacher = OracleTeacher(task, examples)
    texts = teacher.generate([task.teacher_prompt(e) for e in examples], SamplingParams())
    kept = [e.model_copy(update={"rationale": t[0].text.rsplit(" The answer is", 1)[0]}) for e, t in zip(examples, texts)]
    write_examples(kept, out / "rationales.jsonl")
    return {"rationales": "rationales.jsonl", "kept": len(kept)}


def fake_train(cfg, spec, arm, rat_out, out):
    (out / "model").mkdir()
    return {"model": "model"}


def fake_eval(cfg, spec, arm, train_out, data_out, out, rat_out):
    arm = str(arm)  # an ArmEval: the eval folder's name
    n = len(read_examples(DataOutput.of(data_out).test_path))
    recs = fake_records(spec.name, arm, n, ACC[(spec.name, arm)], k=cfg.eval.k)
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return {"n": n}


def fake_prompt_eval(cfg, spec, mode, data_out, out, rat_out):
    n = len(read_examples(DataOutput.of(data_out).test_path))
    recs = fake_records(spec.name, mode, n, 0.3 if mode == "direct" else 0.6, k=cfg.eval.k)
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return {"n": n}


def fake_info_gain(cfg, spec, train_outs, rat_out, out):
    curves = {arm: [0.1, 0.3, 0.8] for arm in train_outs}
    (out / "curves.json").write_text(json.dumps({"task": spec.name, "curves": curves}))
    return {"curves": "curves.json"}


def steps() -> StudySteps:
    return StudySteps(prepare_data=prepare_data, rationales=oracle_rationales, train=fake_train,
                      evaluate=fake_eval, analyze=analyze, report=report, prompt_eval=fake_prompt_eval,
                      info_gain=fake_info_gain)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    cfg = load_config({**load_config("quick").model_dump(), "samples_per_task": 1, "info_gain_examples": 2,
                       "prompting": {"backend": "hf:smollm2"}})
    run = tmp_path_factory.mktemp("study")
    return cfg, run, run_study(cfg, run, steps=steps())


def test_report_and_analysis_written(study) -> None:
    cfg, run, res = study
    assert res.report == run / "report" / "report.html" and res.report.is_file()
    analysis = AnalysisResult.load(str(run / "analysis" / "analysis.json"))
    assert [t.task for t in analysis.tasks] == sorted(t.name for t in cfg.tasks)
    summary = {r["task"]: r for r in json.loads((run / "report/tables/summary.json").read_text())["rows"]}
    for row in analysis.tasks:
        assert summary[row.task]["delta_acc"] == pytest.approx(row.delta.delta_acc.value)
        assert summary[row.task]["delta_ece_low"] == pytest.approx(row.delta.delta_ece.low)
        # raftlab's teacher-rationale length variant came from the kept rationales (student tokens)
        assert row.difficulty["teacher_rationale_length"] > 3
    # the tiny random-init student may learn nothing on 8 questions (check no_arm_learned): then the fits over
    # every task, as the paper fits them, are the other ones
    flagged = any(not t.trustworthy for t in analysis.tasks)
    fit, d_fits = ((analysis.other_fit, analysis.other_difficulty_fits) if flagged
                   else (analysis.fit, analysis.difficulty_fits))
    assert fit is not None and fit.n == 3 and fit.task_set == "all"
    html = res.report.read_text()
    assert "student: tiny" in html and "teacher: oracle" in html and "k=4" in html
    assert any(f.x == "teacher_rationale_length" for f in d_fits)
    data = json.loads((run / "data/synth_coinflip/train.jsonl").read_text().splitlines()[0])
    assert data["task"] == "synth_coinflip"
    assert len((run / "data/synth_coinflip/test.jsonl").read_text().splitlines()) == cfg.task("synth_coinflip").test_limit


@pytest.mark.slow
def test_rerun_skips_everything(study) -> None:
    cfg, run, first = study
    before = (run / "report" / "report.html").stat().st_mtime_ns
    res = run_study(cfg, run, steps=steps())
    assert res.executed == [] and set(res.skipped) == set(first.executed)
    assert (run / "report" / "report.html").stat().st_mtime_ns == before


def test_untrained_arms_four_arm_table_answer_and_info_gain_in_report(study) -> None:
    cfg, run, res = study
    analysis = AnalysisResult.load(str(run / "analysis" / "analysis.json"))
    html = res.report.read_text()
    assert 'id="four-arms-ece"' in html and 'id="answer"' in html
    assert html.index('id="answer"') < html.index('id="checks"')  # the report opens with the answer
    for row in analysis.tasks:
        assert {"icl_label", "icl_rationale", "ft", "raft"} <= set(row.metrics)
        c = row.contrasts["②−①"]  # task_deltas(①, ②): fields 'ft' = ①, 'raft' = ②
        assert f"{0.0 - c.delta_ece.value:+.3f} [" in html  # the raw ECE difference ② − ① with its CI
        assert f"{row.task}: RAFT " in html
    for spec in cfg.tasks:
        assert f'data-figure="info_gain_{spec.name}"' in html
        assert (run / "eval" / "icl_label" / spec.name).is_dir()  # the untrained arms are eval arms


@pytest.mark.slow
def test_mean_of_task_prompting_with_real_eval(tmp_path: Path) -> None:
    """The mean-of-task eval puts 3 other tasks' demonstrations before each question (untrained tiny model)."""
    from raftlab.inference import read_records

    cfg = load_config({"model": "tiny", "tasks": ["synth_topic", "synth_coinflip", "synth_arith", "synth_arith_easy"],
                       "mean_of_task": True, "eval": {"k": 2, "max_new_tokens": 8}})
    rat_outs, data_outs = {}, {}
    for spec in cfg.tasks:
        d = tmp_path / "data" / spec.name
        r = tmp_path / "rat" / spec.name
        d.mkdir(parents=True), r.mkdir(parents=True)
        spec = spec.model_copy(update={"train_limit": 3, "test_limit": 2})
        data_outs[spec.name] = {**prepare_data(cfg, spec, d).record(), "_stage_dir": str(d)}
        rat_outs[spec.name] = {**oracle_rationales(cfg, spec, data_outs[spec.name], r), "_stage_dir": str(r)}
    out = tmp_path / "mot"
    out.mkdir()
    res = mean_of_task(cfg, cfg.task("synth_coinflip"), rat_outs, data_outs["synth_coinflip"], out)
    assert 0.0 <= res.accuracy <= 1.0
    task = mean_of_task_prompting(get_task("synth_coinflip"), {n: read_examples(Path(o["_stage_dir"]) / "rationales.jsonl")
                                                           for n, o in rat_outs.items()}, seed=0)
    ex = read_examples(Path(data_outs["synth_coinflip"]["_stage_dir"]) / "test.jsonl")[0]
    prompt = task.prompt(ex)
    assert prompt.endswith(get_task("synth_coinflip").prompt(ex, "cot")) and prompt.count("Let's think step by step.") == 4
    assert len(read_records(out / "records.jsonl")) == 2
    # paper metric 2: the mean length (words) of what the untrained model wrote under this prompt
    samples = [s for r in read_records(out / "records.jsonl") for s in r["samples"]]
    from raftlab.analysis import generated_rationale_length

    assert generated_lengths(out) == pytest.approx(generated_rationale_length(samples))


@pytest.mark.slow
def test_reference_rationales_stage_samples_zero_shot_cot(tmp_path: Path) -> None:
    """Paper metric 1: k zero-shot CoT samples of a reference model on the first `questions` test questions."""
    from raftlab.inference import read_records

    cfg = load_config({"model": "tiny", "tasks": ["synth_arith"],
                       "reference": {"backend": "hf:tiny", "questions": 3, "k": 2, "max_new_tokens": 6}})
    d, out = tmp_path / "d", tmp_path / "ref"
    d.mkdir(), out.mkdir()
    spec = cfg.tasks[0].model_copy(update={"train_limit": 2, "test_limit": 5})
    data_out = {**prepare_data(cfg, spec, d).record(), "_stage_dir": str(d)}
    assert reference(cfg, spec, data_out, out).n == 3
    recs = read_records(out / "records.jsonl")
    assert len(recs) == 3 and all(len(r["samples"]) == 2 for r in recs)
    assert generated_lengths(out) is not None


@pytest.mark.slow
def test_training_through_a_launcher_command(tmp_path: Path) -> None:
    """`train.launcher` runs `raftlab train` as a subprocess (here with plain python; accelerate launch on GPUs)."""
    import sys

    cfg = load_config({"model": "tiny", "tasks": ["synth_topic"],
                       "train": {"launcher": sys.executable, "max_steps": 1, "batch_size": 2, "max_length": 128}})
    spec = cfg.tasks[0].model_copy(update={"train_limit": 4, "test_limit": 2})
    d, r, t = (tmp_path / x for x in ("d", "r", "t"))
    for p in (d, r, t):
        p.mkdir()
    data_out = {**prepare_data(cfg, spec, d).record(), "_stage_dir": str(d)}
    rat_out = {**oracle_rationales(cfg, spec, data_out, r), "_stage_dir": str(r)}
    out = train(cfg, spec, "raft", rat_out, t)
    model_dir = out.model_path
    summary = json.loads((model_dir / "train_summary.json").read_text())
    assert summary["config"]["objective"] == "raft" and summary["global_step"] == 1
    # the launcher got one config file, and it holds exactly the config that was trained
    from raftlab.training import TrainConfig

    assert TrainConfig.from_file(t / "train_config.yaml").model_dump(mode="json") == summary["config"]
