"""The report of a run directory shows exactly the numbers raftlab.analysis computes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raftlab.analysis import analyze_study
from raftlab.report import render_report
from raftlab.report.build import report_data

from _report_helpers import write_fake_run

TASKS = {"t_easy": (0.9, 0.85), "t_mid": (0.5, 0.6), "t_hard": (0.2, 0.45), "t_flat": (0.6, 0.6)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_run(tmp_path_factory.mktemp("run"), TASKS, n=50)


@pytest.mark.slow
def test_report_numbers_match_analysis(run: Path) -> None:
    page = render_report(run)
    assert page == run / "report" / "report.html"
    expected = analyze_study(run)
    summary = json.loads((run / "report/tables/summary.json").read_text())
    rows = {r["task"]: r for r in summary["rows"]}
    assert set(rows) == set(TASKS)
    html = page.read_text()
    for row in expected.tasks:
        got = rows[row.task]
        d = row.delta
        assert got["delta_acc"] == pytest.approx(d.delta_acc.value, abs=1e-12)
        assert got["delta_acc_low"] == pytest.approx(d.delta_acc.low) and got["delta_acc_high"] == pytest.approx(d.delta_acc.high)
        assert got["delta_ece"] == pytest.approx(d.delta_ece.value, abs=1e-12)
        assert got["ece_ft"] == pytest.approx(d.ece_ft) and got["accuracy_raft"] == pytest.approx(d.acc_raft)
        # the HTML table shows the same values (4 decimals)
        cells = re.search(rf'<tr data-task="{row.task}">(.*?)</tr>', html).group(1)
        assert f"{d.delta_acc.value:+.4f} [{d.delta_acc.low:+.4f}, {d.delta_acc.high:+.4f}]" in cells
        assert f"{d.delta_ece.value:+.4f}" in cells
    fit = summary["fit"]
    assert fit["slope"] == pytest.approx(expected.fit.slope) and fit["r"] == pytest.approx(expected.fit.r)
    assert f"ΔECE = {expected.fit.slope:.4f}·ΔAcc {expected.fit.intercept:+.4f}" in html


def test_hand_computed_delta(tmp_path: Path) -> None:
    """Two tasks of 4 questions with known accuracies: ΔAcc is the plain difference of correct counts."""
    for arm, flags in (("ft", [1, 0, 0, 0]), ("raft", [1, 1, 1, 0])):
        folder = tmp_path / "eval" / arm / "toy"
        folder.mkdir(parents=True)
        folder.joinpath("records.jsonl").write_text("".join(
            json.dumps({"id": f"q{i}", "task": "toy", "gold": "1", "prediction": "1" if c else "2",
                        "confidence": 1.0, "correct": bool(c), "k": 2, "samples": ["x"]}) + "\n"
            for i, c in enumerate(flags)))
    data = report_data(tmp_path)
    t = data.task("toy")
    assert t.delta_acc.value == pytest.approx(0.75 - 0.25)
    # all confidence 1.0: ECE = 1 - accuracy, so ΔECE = -((1-0.75) - (1-0.25)) = 0.5
    assert t.delta_ece.value == pytest.approx(0.5)
    assert data.reliability["toy"]["ft"][-1].count == 4


def test_saved_analysis_is_used_when_present(run: Path, tmp_path: Path) -> None:
    result = analyze_study(run, n_boot=50, seed=7)
    (run / "analysis").mkdir(exist_ok=True)
    result.save(str(run / "analysis" / "analysis.json"))
    try:
        data = report_data(run)
        assert data.task("t_mid").delta_acc.low == pytest.approx(result.task("t_mid").delta.delta_acc.low)
        assert data.meta.get("n_boot") == 50
    finally:
        (run / "analysis" / "analysis.json").unlink()


@pytest.mark.slow
def test_further_arms_are_reported_against_ft(tmp_path: Path) -> None:
    from _report_helpers import fake_records

    run = write_fake_run(tmp_path, {"t1": (0.4, 0.6), "t2": (0.5, 0.5), "t3": (0.7, 0.4)}, n=30)
    for task in ("t1", "t2", "t3"):
        folder = run / "eval" / "blank" / task
        folder.mkdir(parents=True)
        folder.joinpath("records.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in fake_records(task, "blank", 30, 0.2)))
    page = render_report(run).read_text()
    expected = analyze_study(run)
    assert "ΔAcc BLANK vs FT" in page
    for row in expected.tasks:
        d = row.arm_deltas["blank"].delta_acc
        assert f"{d.value:+.4f} [{d.low:+.4f}, {d.high:+.4f}]" in page
    assert 'data-figure="reliability_t1"' in page
