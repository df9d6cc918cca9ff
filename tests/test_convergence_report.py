"""How training ended reaches the answer: caveats next to ΔAcc (an arm still improving at its maximum, an arm that
did not learn while the other did) in the analysis, the answer lines, the report and `raftlab analyze`, and the
``no_arm_learned`` check that flags a task on which no finetuned arm beat majority class / chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftlab.analysis import analyze_study, headline

STILL_IMPROVING = "RAFT was still improving when it stopped at its maximum of 48 steps"
FT_DID_NOT_LEARN = "FT did not learn in 16 steps: this ΔAcc measures what 64 examples teach, not rationales in general"


def _records(task: str, n_ok: int, n: int = 60) -> list[dict]:
    """Two-option questions with alternating golds (majority class and chance 0.5); the first ``n_ok`` right."""
    out = []
    for i in range(n):
        gold, other = "AB"[i % 2], "BA"[i % 2]
        answers = [gold, gold, other] if i < n_ok else [other, other, gold]
        pred = answers[0]
        out.append({"id": f"{task}-{i}", "task": task, "gold": gold, "prediction": pred, "confidence": 2 / 3,
                    "correct": pred == gold, "votes": {gold: 2, other: 1} if i < n_ok else {other: 2, gold: 1},
                    "k": 3, "mode": "sc", "answers": answers, "labels": ["A", "B"], "finish": ["stop"] * 3,
                    "question": f"test question {task} {i}", "samples": ["..."]})
    return out


def _arm(run: Path, task: str, arm: str, n_ok: int, stopping: dict | None = None) -> None:
    """An eval folder; with ``stopping`` also the trained model's train_summary.json it points to."""
    folder = run / "eval" / arm / task
    folder.mkdir(parents=True)
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(task, n_ok)))
    if stopping is None:
        return
    model = run / "train" / arm / task / "model"
    model.mkdir(parents=True)
    objective = "label" if arm == "ft" else "raft"
    (model / "train_summary.json").write_text(json.dumps({
        "config": {"objective": objective, "data": str(run / "missing.jsonl")}, "global_step": stopping["steps"],
        "stopping": {"train_examples": 64, "dev_examples": 8, "dev_losses": [], **stopping}}))
    (folder / "settings.json").write_text(json.dumps({
        "model": {"backend": "hf", "model": str(model)}, "prompt_mode": "direct" if arm == "ft" else "cot",
        "sampling": {"max_new_tokens": 64}}))


def _stopped(reason: str, steps: int, max_steps: int, best: int | None, improving: bool | None) -> dict:
    return {"reason": reason, "steps": steps, "max_steps": max_steps, "best_step": best, "still_improving": improving}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    # FT at chance after its 16 steps; RAFT learned and was still improving at its maximum of 48
    _arm(run, "t_caveat", "ft", 30, _stopped("max_steps", 16, 16, 16, False))
    _arm(run, "t_caveat", "raft", 54, _stopped("max_steps", 48, 48, 48, True))
    # both learned; RAFT stopped early: nothing to say
    _arm(run, "t_clean", "ft", 50, _stopped("max_steps", 48, 48, 40, False))
    _arm(run, "t_clean", "raft", 54, _stopped("early_stopping", 30, 48, 24, False))
    # neither finetuned arm learned; the untrained CoT arm did (it does not count: it was not finetuned)
    _arm(run, "t_flat", "ft", 30, _stopped("max_steps", 16, 16, None, None))
    _arm(run, "t_flat", "raft", 32, _stopped("max_steps", 16, 16, None, None))
    _arm(run, "t_flat", "icl_rationale", 58)
    return run


def test_caveats_and_the_learning_check_in_the_analysis(run: Path) -> None:
    result = analyze_study(run, n_boot=300)
    caveat, clean, flat = (result.task(t) for t in ("t_caveat", "t_clean", "t_flat"))
    assert caveat.caveats == [STILL_IMPROVING, FT_DID_NOT_LEARN]
    assert caveat.learned == {"ft": False, "raft": True} and caveat.trustworthy
    assert caveat.training["raft"] == {"stop_reason": "max_steps", "steps": 48, "max_steps": 48, "best_step": 48,
                                       "still_improving": True, "train_examples": 64}
    assert clean.caveats == [] and clean.trustworthy
    assert [c.failed for c in clean.checks if c.name == "no_arm_learned"] == [False]
    assert flat.learned == {"ft": False, "raft": False} and not flat.trustworthy
    assert flat.reasons == [next(c.message for c in flat.checks if c.name == "no_arm_learned")]
    assert flat.reasons[0].startswith("no finetuned arm learned: accuracy FT 0.50 [")
    assert "is not above majority class (0.50) beyond its 95% CI" in flat.reasons[0]
    assert any(n.startswith("task t_flat is not trustworthy") and "left out of the main fits" in n
               for n in result.notes)
    lines = {line.split(":")[0]: line for line in headline(result)}
    assert lines["t_caveat"].endswith(f"(caveats: {STILL_IMPROVING}; {FT_DID_NOT_LEARN})")
    assert "caveat" not in lines["t_clean"] and "NOT TRUSTWORTHY: no finetuned arm learned" in lines["t_flat"]


def test_the_learning_check_passes_when_one_arm_beats_the_bar_beyond_its_ci(tmp_path: Path) -> None:
    """Above the bar but inside the CI is not learning; above it beyond the CI is."""
    _arm(tmp_path, "t", "ft", 33)  # 0.55: above 0.5, but its CI includes 0.5
    _arm(tmp_path, "t", "raft", 35)
    assert analyze_study(tmp_path, n_boot=300).task("t").learned == {"ft": False, "raft": False}
    _arm(tmp_path, "u", "ft", 33)
    _arm(tmp_path, "u", "raft", 48)  # 0.80 [0.70, 0.90]
    row = analyze_study(tmp_path, n_boot=300).task("u")
    assert row.learned == {"ft": False, "raft": True} and row.trustworthy
    assert row.caveats == ["FT did not learn: this ΔAcc measures what this training set teaches, not rationales "
                           "in general"]  # no train_summary.json: nothing known about steps or examples


def test_report_and_analyze_show_the_caveats_and_how_each_arm_stopped(run: Path, tmp_path: Path) -> None:
    import re

    from typer.testing import CliRunner

    from raftlab.cli.main import app
    from raftlab.report.build import report_data
    from raftlab.report.html_page import render_page

    html = render_page(report_data(run), [], {}, "")
    cell = re.search(r'<tr data-task="t_caveat">(.*?)</tr>', html).group(1)
    assert f'<div class="caveat">{STILL_IMPROVING}</div><div class="caveat">{FT_DID_NOT_LEARN}</div>' in cell
    assert "caveat" not in re.search(r'<tr data-task="t_clean">(.*?)</tr>', html).group(1)
    training = re.search(r'<table id="training">(.*?)</table>', html).group(1)
    assert ("<tr><td>t_clean</td><td>raft</td><td>early stopping (dev loss)</td><td>30 of 48</td><td>24</td>"
            "<td>no</td><td>64</td><td>yes</td></tr>") in training
    assert "<tr><td>t_caveat</td><td>raft</td><td>max_steps reached</td><td>48 of 48</td>" in training
    assert "Artifact checks passed on every task" not in html and "t_flat: not trustworthy" in html
    res = CliRunner().invoke(app, ["analyze", str(run), "--n-boot", "300", "--out", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())  # rich wraps long lines
    assert "passed on every task" not in out and "NOT TRUSTWORTHY t_flat: no finetuned arm learned" in out
    assert f"(caveats: {STILL_IMPROVING}; {FT_DID_NOT_LEARN})" in out
    assert "training t_clean: FT: max_steps at step 48 of 48 (best step 40); RAFT: early_stopping at step 30 of " \
           "48 (best step 24)" in out
