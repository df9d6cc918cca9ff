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


def _flag(run: Path, task: str) -> None:
    """Make the RAFT arm of ``task`` fail the truncation check: its invalid votes become cut-off samples (the
    scored numbers stay the same)."""
    path = run / "eval" / "raft" / task / "records.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r["answers"] = [a for a, c in r["votes"].items() for _ in range(c)]
        r["finish"] = ["length" if a == "[invalid]" else "stop" for a in r["answers"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def flagged_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tasks = {**TASKS, "t_bad": (0.2, 0.9)}  # an outlier that fails an artifact check
    run = write_fake_run(tmp_path_factory.mktemp("flagged"), tasks, n=50)
    _flag(run, "t_bad")
    return run


def test_a_flagged_task_is_fitted_both_ways(flagged_run: Path) -> None:
    """The paper fits all its tasks; raftlab's main fit leaves flagged tasks out, and reports the fit over all
    tasks beside it (and the other way round with include_flagged)."""
    result = analyze_study(flagged_run, n_boot=0)
    assert [t.task for t in result.tasks if not t.trustworthy] == ["t_bad"]
    main, other = result.fit, result.other_fit
    assert (main.task_set, main.n, main.left_out) == ("trustworthy", 4, ["t_bad"])
    assert (other.task_set, other.n, other.left_out) == ("all", 5, [])
    assert "t_bad" in {p["label"] for p in other.points} - {p["label"] for p in main.points}
    assert main.slope != pytest.approx(other.slope) and main.r != pytest.approx(other.r)
    assert {(f.x, f.y, f.task_set) for f in result.other_difficulty_fits} == {
        (f.x, f.y, "all") for f in result.difficulty_fits}
    kept = analyze_study(flagged_run, n_boot=0, include_flagged=True)
    assert kept.fit.task_set == "all" and kept.fit.slope == pytest.approx(other.slope)
    assert kept.other_fit.task_set == "trustworthy" and kept.other_fit.slope == pytest.approx(main.slope)
    assert analyze_study(write_fake_run(flagged_run.parent / "clean", TASKS, n=50), n_boot=0).other_fit is None


def test_report_and_analyze_show_both_fits_and_mark_the_flagged_point(flagged_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from raftlab.cli.main import app
    from raftlab.report.figures import FLAGGED_STYLE, delta_scatter

    result = analyze_study(flagged_run, n_boot=0)
    main, other = result.fit, result.other_fit
    html = render_report(flagged_run, tmp_path / "report").read_text()
    for fid, f in (("fit", main), ("other-fit", other)):
        para = re.search(rf'<p id="{fid}">(.*?)</p>', html).group(1)
        assert f"ΔECE = {f.slope:.4f}·ΔAcc" in para and f"{f.p_one_sided:.3g} one-tailed (H1: r &gt; 0)" in para
    assert "over 4 trustworthy tasks (left out: t_bad)" in html and "over all 5 tasks" in html
    # the ΔECE~ΔAcc figure: the flagged point has its own marker and legend entry, and both fit lines are drawn
    data = report_data(result)
    ax = delta_scatter(data).axes[0]
    _, labels = ax.get_legend_handles_labels()
    assert FLAGGED_STYLE["label"] in labels
    assert any(lab.startswith("4 trustworthy tasks: ΔECE") for lab in labels)
    assert any(lab.startswith("all 5 tasks: ΔECE") for lab in labels)
    bad = data.task("t_bad")
    marked = [line for line in ax.lines if line.get_marker() == FLAGGED_STYLE["marker"]]
    assert [(float(x), float(y)) for line in marked for x, y in zip(*line.get_data())] == [
        (pytest.approx(bad.delta_acc.value), pytest.approx(bad.delta_ece.value))]
    res = CliRunner().invoke(app, ["analyze", str(flagged_run), "--out", str(tmp_path / "a.json"), "--n-boot", "0"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"OLS over 4 trustworthy tasks (left out: t_bad): ΔECE = {main.slope:.4f}·ΔAcc" in text
    assert f"OLS over all 5 tasks: ΔECE = {other.slope:.4f}·ΔAcc" in text
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["fit"]["task_set"] == "trustworthy" and saved["other_fit"]["task_set"] == "all"


def test_the_answer_line_uses_the_tables_sign_convention(tmp_path):
    """One convention everywhere: the answer line's ΔECE is the table's −(ECE_RAFT − ECE_FT), same value and CI."""
    from raftlab.analysis import analyze_study
    from raftlab.analysis.headline import headline

    from _report_helpers import write_fake_run

    run = write_fake_run(tmp_path / "run", {"alpha": (0.3, 0.8), "beta": (0.6, 0.6), "gamma": (0.5, 0.2)}, n=60)
    result = analyze_study(run, n_boot=200, seed=0)
    lines = headline(result)
    for row in result.tasks:
        line = next(line for line in lines if line.startswith(f"{row.task}:"))
        d = row.delta.delta_ece
        shown = f"ΔECE {d.value:+.2f} [{d.low:+.2f}, {d.high:+.2f}]".replace("-", "−")
        assert shown in line, line
        if d.low > 0:
            assert "better calibrated" in line
        if d.high < 0:
            assert "worse calibrated" in line
    assert any("calibrated" in line for line in lines)  # at least one CI resolves, so the words are checked
