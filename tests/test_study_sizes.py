"""A study's ``train_sizes``: FT and RAFT on nested seeded subsets, the learning curve in analysis.json, the
report and ``raftlab analyze``; without it, the plan is exactly as before."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raftlab import layout
from raftlab.analysis import AnalysisResult, task_deltas
from raftlab.cli.main import app
from raftlab.study import StudySteps, load_config, plan, run_study
from raftlab.study.work.analysis import analyze
from raftlab.study.work.common import kept_examples, read_examples, write_examples
from raftlab.study.work.data import prepare_data
from raftlab.study.work.outputs import DataOutput
from raftlab.study.work.report import report
from raftlab.study.config import ConfigError
from raftlab.study.estimate import TaskSize, stage_gpu_hours
from raftlab.study.work.subset import nested_subset, train_subset

from _report_helpers import fake_records
from test_study_pipeline import oracle_rationales


def _quick(**over):
    return load_config({**load_config("quick").model_dump(), **over})


def _plan(cfg):
    return {s.name: s for s in plan(cfg, StudySteps.real(), Path("unused"))}


# ----------------------------------------------------------------------------- the config field


def test_train_sizes_are_positive_unique_sorted_and_below_each_training_pool() -> None:
    assert _quick(train_sizes=[12, 6]).train_sizes == [6, 12]
    assert _quick(train_sizes=[]).train_sizes is None and _quick().train_sizes is None
    for sizes, message in (([0, 4], "positive"), ([4, 4], "must not repeat"),
                           ([6, 24], r"field 'train_sizes': .*\[24\] not smaller than the 24 training examples "
                                     "of task 'synth_topic'")):
        with pytest.raises(ConfigError, match=message) as err:
            _quick(train_sizes=sizes)
        assert "\n" not in str(err.value)
    # leaving one task out, the pool is the other tasks' examples together (2 x 24)
    assert _quick(train_sizes=[30], protocol="leave_one_task_out").train_sizes == [30]
    with pytest.raises(ConfigError, match="48 training examples"):
        _quick(train_sizes=[48], protocol="leave_one_task_out")
    unlimited = [{"name": "synth_topic", "train_limit": None}]
    assert _quick(tasks=unlimited, train_sizes=[10_000]).train_sizes == [10_000]
    # a size must leave training examples besides the dev split
    train = {**load_config("quick").train.model_dump(), "dev_size": 6}
    with pytest.raises(ConfigError, match=r"\[4, 6\] leave no training example besides the 6-example dev split"):
        _quick(train=train, train_sizes=[4, 6, 12])
    assert _quick(train=train, train_sizes=[7, 12]).train_sizes == [7, 12]


# ----------------------------------------------------------------------------- the plan


@pytest.mark.parametrize("preset", ["quick", "default"])
def test_without_train_sizes_the_plan_is_unchanged(preset: str) -> None:
    """Unset (absent, None or empty): the same stages and keys; set: the same keys for every stage but the
    analysis and the report, which read the new evals."""
    base = load_config(preset)
    without = _plan(base)
    for off in (None, []):
        again = _plan(load_config({**base.model_dump(), "train_sizes": off}))
        assert {n: s.key for n, s in again.items()} == {n: s.key for n, s in without.items()}
    assert not [n for n, s in without.items() if s.kind == "subset" or n.startswith(layout.SIZES + "/")]
    with_sizes = _plan(load_config({**base.model_dump(), "train_sizes": [4, 8]}))
    changed = {n for n, s in without.items() if with_sizes[n].key != s.key}
    assert changed == {layout.ANALYSIS, layout.REPORT}


def test_each_size_trains_ft_and_raft_on_one_shared_subset() -> None:
    stages = _plan(_quick(train_sizes=[6, 12]))
    task = "synth_topic"
    for size in (6, 12):
        subset = layout.subset(size, task)
        assert stages[subset].kind == "subset" and stages[subset].deps == (layout.rationales(task),)
        for arm in ("ft", "raft"):
            train, ev = (layout.sized(size, f(arm, task)) for f in (layout.train, layout.evaluation))
            assert stages[train].kind == "train" and stages[train].deps == (subset,)
            assert stages[ev].kind == "eval" and stages[ev].deps == (train, layout.data(task), layout.rationales(task))
            assert ev in stages[layout.ANALYSIS].deps
            assert stages[train].inputs == stages[layout.train(arm, task)].inputs  # the arm's own settings
            assert stages[train].key != stages[layout.train(arm, task)].key
    assert stages[layout.subset(6, task)].key != stages[layout.subset(12, task)].key
    # leaving one task out, the subset is drawn from the rationales the arms train on: the other tasks'
    loto = _plan(_quick(train_sizes=[6], protocol="leave_one_task_out"))
    assert loto[layout.subset(6, task)].deps == (layout.rationales("synth_coinflip"), layout.rationales("synth_arith"))


def test_the_estimate_trains_a_size_on_its_subset() -> None:
    cfg = _quick(train_sizes=[6])
    sizes = {"synth_topic": TaskSize("synth_topic", train_examples=24, test_questions=8, teacher_prompt_tokens=50,
                                     eval_prompt_tokens=40)}
    stages = [{"stage": "train/raft/synth_topic", "kind": "train"}, {"stage": "sizes/6/subset/synth_topic",
                                                                      "kind": "subset"},
              {"stage": "sizes/6/train/raft/synth_topic", "kind": "train"},
              {"stage": "sizes/6/eval/raft/synth_topic", "kind": "eval"}]
    row = {"train_tokens_per_s": 1000, "generate_tokens_per_s": 2000}
    hours = stage_gpu_hours(cfg, stages, sizes, 1e6, row, 1e6, kept={"synth_topic": 24.0}, rationale_tokens=20)
    assert hours["sizes/6/train/raft/synth_topic"] == pytest.approx(hours["train/raft/synth_topic"] * 6 / 24)
    assert "sizes/6/subset/synth_topic" not in hours and hours["sizes/6/eval/raft/synth_topic"] > 0


# ----------------------------------------------------------------------------- the subsets


def test_subsets_are_nested_seeded_and_keep_the_original_order() -> None:
    items = list(range(50))
    small, large = nested_subset(items, 5, "0:t:train_sizes"), nested_subset(items, 20, "0:t:train_sizes")
    assert len(small) == 5 and len(large) == 20 and set(small) <= set(large)
    assert small == sorted(small) and nested_subset(items, 5, "0:t:train_sizes") == small
    assert nested_subset(items, 5, "1:t:train_sizes") != small
    assert nested_subset(items, 80, "0:t:train_sizes") == items


def test_a_size_above_the_kept_rationales_trains_on_all_of_them(tmp_path: Path, caplog) -> None:
    from raftlab.tasks import get_task

    examples = [e.model_copy(update={"rationale": "because."}) for e in get_task("synth_topic").load("train", limit=5)]
    write_examples(examples, tmp_path / "rationales.jsonl")
    cfg = _quick()
    out = tmp_path / "subset"
    out.mkdir()
    with caplog.at_level(logging.WARNING):
        got = train_subset(cfg, cfg.tasks[0], 8, [{"rationales": "rationales.jsonl", "_stage_dir": str(tmp_path)}],
                           out)
    assert got.n == got.pool == 5 and "kept only 5" in caplog.text
    saved = json.loads((out / layout.SUBSET_FILE).read_text())
    assert saved["size"] == 8 and saved["n"] == 5 and sorted(saved["ids"]) == sorted(e.id for e in examples)


# ----------------------------------------------------------------------------- a study (models stood in)

#: Fake accuracy of FT and RAFT by training-set size (None: the full-size arms).
CURVE = {("ft", 6): 0.25, ("raft", 6): 0.75, ("ft", 12): 0.5, ("raft", 12): 0.625, ("ft", None): 0.75,
         ("raft", None): 0.75}


def _size_of(out: Path) -> int | None:
    """The train size of a stage folder (``RUN/sizes/<n>/...``), None for a full-size one."""
    parts = out.parts
    return int(parts[-4]) if len(parts) > 5 and parts[-5] == layout.SIZES else None


def fake_train(cfg, spec, arm, rat_out, out):
    (out / "model").mkdir()
    n = len(kept_examples(rat_out))
    return {"model": "model", "n": n}


def fake_eval(cfg, spec, arm, train_out, data_out, out, rat_out):
    arm = str(arm)  # an ArmEval: the eval folder's name
    n = len(read_examples(DataOutput.of(data_out).test_path))
    recs = fake_records(spec.name, arm, n, CURVE[(arm, _size_of(out))], k=cfg.eval.k)
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return {"n": n}


def test_a_study_with_train_sizes_reports_the_learning_curve(tmp_path: Path) -> None:
    cfg = _quick(train_sizes=[6, 12], tasks=[{"name": "synth_topic", "train_limit": 24, "test_limit": 8},
                                              {"name": "synth_arith", "train_limit": 24, "test_limit": 8}])
    steps = StudySteps(prepare_data=prepare_data, rationales=oracle_rationales, train=fake_train,
                       evaluate=fake_eval, analyze=analyze, report=report, subset=train_subset)
    run = tmp_path / "run"
    res = run_study(cfg, run, steps=steps)
    outputs = res.outputs
    for task in ("synth_topic", "synth_arith"):
        ids = [json.loads((run / layout.subset(n, task) / layout.SUBSET_FILE).read_text())["ids"] for n in (6, 12)]
        assert len(ids[0]) == 6 and set(ids[0]) <= set(ids[1])  # nested
        for n in (6, 12):
            assert outputs[layout.sized(n, layout.train("ft", task))]["n"] == n
            assert outputs[layout.sized(n, layout.train("raft", task))]["n"] == n
    analysis = AnalysisResult.load(str(run / layout.ANALYSIS_FILE))
    for row in analysis.tasks:
        assert [(p.size, p.n_train, p.full) for p in row.sizes] == [(6, 6, False), (12, 12, False), (24, 24, True)]
        for p, n in zip(row.sizes, (6, 12)):
            folders = [run / layout.sized(n, layout.evaluation(arm, row.task)) for arm in ("ft", "raft")]
            expected = task_deltas(*folders, seed=cfg.seed, task=row.task)
            assert p.delta.delta_acc == expected.delta_acc and p.delta.delta_ece == expected.delta_ece
        assert row.sizes[-1].delta == row.delta
        assert set(row.metrics) == {"ft", "raft"}  # the sized arms are no arms of their own
    html = res.report.read_text()
    for task in ("synth_topic", "synth_arith"):
        assert (run / "report" / "figures" / f"learning_curve_{task}.png").is_file()
        assert f'data-figure="learning_curve_{task}"' in html
    assert 'id="learning-curves"' in html and "24 (full)" in html
    out = CliRunner().invoke(app, ["analyze", str(run), "--n-boot", "50", "--out", str(tmp_path / "a.json")])
    assert out.exit_code == 0, out.output
    assert "RAFT vs FT by training-set size" in out.output and "24 (full)" in out.output
    again = AnalysisResult.load(str(tmp_path / "a.json"))
    assert [len(t.sizes) for t in again.tasks] == [3, 3]


# ----------------------------------------------------------------------------- the quick study, real stages


@pytest.mark.slow
def test_quick_study_with_two_train_sizes_end_to_end(tmp_path: Path) -> None:
    """The built-in quick study (tiny random-init model) on one task at two training-set sizes."""
    config = tmp_path / "sizes.yaml"
    config.write_text("include: quick\ntasks: [{name: synth_topic, train_limit: 24, test_limit: 8}]\n"
                      "train_sizes: [6, 12]\n")
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["study", str(config), "--out", str(run)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for n in (6, 12):
        for arm in ("ft", "raft"):
            assert (run / layout.sized(n, layout.train(arm, "synth_topic")) / "model").is_dir()
            records = (run / layout.sized(n, layout.evaluation(arm, "synth_topic")) / "records.jsonl").read_text()
            assert len(records.splitlines()) == 8
    row = AnalysisResult.load(str(run / layout.ANALYSIS_FILE)).task("synth_topic")
    assert [(p.size, p.full) for p in row.sizes] == [(6, False), (12, False), (24, True)]
    assert all(p.delta.delta_acc.low is not None and p.delta.delta_ece.high is not None for p in row.sizes)
    html = (run / "report" / "report.html").read_text()
    assert (run / "report" / "figures" / "learning_curve_synth_topic.png").is_file()
    assert 'data-figure="learning_curve_synth_topic"' in html and 'id="learning-curves"' in html
