"""Validation tasks (study ``role: validation``, the paper's SUBJ and CoinFlip): analysed like every task, left out
of the across-task fits, and checked against the main fit's prediction."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from raftlab.analysis import analyze_study
from raftlab.analysis.headline import headline
from raftlab.cli.main import app
from raftlab.study import load_config

from _report_helpers import write_fake_run

TASKS = {"t1": (0.9, 0.85), "t2": (0.5, 0.6), "t3": (0.2, 0.45), "t4": (0.6, 0.6), "v1": (0.4, 0.7)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_run(tmp_path_factory.mktemp("run"), TASKS, n=60)


def test_validation_tasks_are_left_out_of_the_fit_and_checked_against_it(run: Path) -> None:
    result = analyze_study(run, n_boot=50, validation=["v1"])
    assert result.fit is not None and result.fit.n == 4
    assert {p["label"] for p in result.fit.points} == {"t1", "t2", "t3", "t4"}
    assert result.task("v1").role == "validation" and result.task("t1").role == "fit"
    (point,) = result.validation
    row = result.task("v1")
    assert point.task == "v1" and point.delta_acc == row.delta.delta_acc.value
    assert point.predicted_delta_ece == pytest.approx(result.fit.predict(point.delta_acc))
    assert point.interval is not None and point.inside == (point.interval.low <= point.delta_ece <= point.interval.high)
    assert any(line.startswith("Validation task v1 (left out of the fit)") for line in headline(result))
    everything = analyze_study(run, n_boot=50)
    assert everything.fit.n == 5 and not everything.validation


def test_analyze_cli_takes_validation_tasks(run: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["analyze", str(run), "--n-boot", "20", "--validation", "v1",
                                   "--out", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    assert "Validation task v1" in res.stdout and "(validation)" in res.stdout


def test_the_report_draws_validation_tasks(run: Path, tmp_path: Path) -> None:
    from raftlab.report.build import from_analysis
    from raftlab.report.figures import delta_scatter

    data = from_analysis(analyze_study(run, n_boot=20, validation=["v1"]))
    assert data.task("v1").role == "validation"
    fig = delta_scatter(data)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "validation tasks (not in the fit)" in labels


def test_the_paper_preset_validates_on_subj_and_coinflip() -> None:
    cfg = load_config("paper")
    roles = {t.name: t.role for t in cfg.tasks}
    assert len(roles) == 20
    assert {t for t, r in roles.items() if r == "validation"} == {"subj", "coinflip"}
    assert cfg.teacher.kept_target == 20000 and cfg.teacher.traversals > 1
