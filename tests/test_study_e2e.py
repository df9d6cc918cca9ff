"""`raftlab study --quick` end to end with the real stages (tiny model), then a rerun that skips everything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raftlab.analysis import AnalysisResult
from raftlab.cli.main import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    run = tmp_path_factory.mktemp("quick")
    res = CliRunner().invoke(app, ["study", "--quick", "--out", str(run)])
    return run, res


def test_quick_study_produces_report(quick_run) -> None:
    run, res = quick_run
    assert res.exit_code == 0, res.output + repr(res.exception)
    page = run / "report" / "report.html"
    assert Path(res.output.strip().splitlines()[-1]) == page
    html = page.read_text()
    for task in ("synth_topic", "synth_coinflip", "synth_arith"):
        for arm in ("ft", "raft"):
            records = (run / "eval" / arm / task / "records.jsonl").read_text().splitlines()
            assert len(records) == 8 and json.loads(records[0])["k"] == 4
            assert (run / "train" / arm / task / "model").is_dir()
        assert f'data-figure="reliability_{task}"' in html
        assert (run / "rationales" / task / "rationales.jsonl").stat().st_size > 0
    analysis = AnalysisResult.load(str(run / "analysis" / "analysis.json"))
    summary = {r["task"]: r for r in json.loads((run / "report/tables/summary.json").read_text())["rows"]}
    for row in analysis.tasks:
        assert summary[row.task]["delta_acc"] == pytest.approx(row.delta.delta_acc.value)
        assert summary[row.task]["delta_ece"] == pytest.approx(row.delta.delta_ece.value)
    manifest = json.loads((run / "manifest.json").read_text())["stages"]
    assert all(s["status"] == "done" for s in manifest.values()) and len(manifest) == 26


def test_quick_study_has_the_papers_four_arms(quick_run) -> None:
    """The untrained arms ① and ② are standard: evaluated with the same demonstrations, analysed with FT and RAFT,
    and in the report, the CSV/JSON/LaTeX tables."""
    run, res = quick_run
    assert res.exit_code == 0
    manifest = json.loads((run / "manifest.json").read_text())["stages"]
    for task in ("synth_topic", "synth_coinflip", "synth_arith"):
        label, rationale = (manifest[f"eval/{arm}/{task}"]["outputs"] for arm in ("icl_label", "icl_rationale"))
        assert label["shots"] == rationale["shots"] == 3 and label["demonstrations"] == rationale["demonstrations"]
        records = [json.loads(x) for x in (run / "eval/icl_rationale" / task / "records.jsonl").read_text().splitlines()]
        assert len(records) == 8 and records[0]["k"] == 4
    analysis = AnalysisResult.load(str(run / "analysis" / "analysis.json"))
    for row in analysis.tasks:
        assert set(row.contrasts) == {"④−③", "③−①", "④−②", "②−①"}
        c = row.contrasts["③−①"]  # task_deltas(①, ③): the 'raft' fields hold ③
        assert c.acc_raft == pytest.approx(row.metrics["ft"]["accuracy"])
        assert c.acc_ft == pytest.approx(row.metrics["icl_label"]["accuracy"])
    four = (run / "report/tables/four_arms.csv").read_text().splitlines()
    assert four[0].startswith("task,n,acc_①,ece_①") and four[-1].startswith("average,24,")
    assert "tab:four-arms" in (run / "report/tables/summary.tex").read_text()
    html = (run / "report/report.html").read_text()
    assert 'id="four-arms-ece"' in html and 'id="four-arms-acc"' in html
    assert json.loads((run / "report/tables/summary.json").read_text())["four_arms"][-1]["task"] == "average"


def test_quick_study_rerun_skips_finished_stages(quick_run) -> None:
    run, first = quick_run
    assert first.exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != "study_result.json"}
    res = CliRunner().invoke(app, ["study", "--quick", "--out", str(run)])
    assert res.exit_code == 0, res.output
    assert "0 stages run, 26 reused" in res.output
    after = {p: p.stat().st_mtime_ns for p in before}
    changed = [str(p) for p in before if after[p] != before[p] and p.name != "study.yaml"
               and not p.name.endswith(".lock")]  # the one-writer locks name their holder
    assert changed == []


def test_quick_study_records_the_cost_of_every_arm(quick_run) -> None:
    """Tokens and seconds per question for every arm, training time and trained tokens for the finetuned ones, the
    machine; in the analysis, the report's cost table and the CSV; the report opens with the answer in words."""
    run, res = quick_run
    assert res.exit_code == 0
    analysis = AnalysisResult.load(str(run / "analysis" / "analysis.json"))
    for row in analysis.tasks:
        for arm in ("icl_label", "icl_rationale", "ft", "raft"):
            cost = row.cost[arm]
            records = [json.loads(x) for x in (run / "eval" / arm / row.task / "records.jsonl").read_text().splitlines()]
            assert cost["tokens_per_question"] == pytest.approx(sum(sum(r["num_tokens"]) for r in records) / len(records))
            assert cost["seconds_per_question"] > 0 and all(r["seconds"] > 0 for r in records)
            assert cost["machine"]["cores"] >= 1 and cost["backend"].startswith("hf:")
        for arm in ("ft", "raft"):
            summary = json.loads((run / "train" / arm / row.task / "model" / "train_summary.json").read_text())
            assert row.cost[arm]["train_seconds"] == summary["train_seconds"] > 0
            assert row.cost[arm]["trained_tokens"] == summary["trained_tokens"] > summary["trained_target_tokens"] > 0
    html = (run / "report/report.html").read_text()
    assert 'id="cost"' in html and "Measured on: " in html
    assert html.index('id="answer"') < html.index('id="checks"')
    assert "at " in html and "× the tokens per question" in html
    header = (run / "report/tables/summary.csv").read_text().splitlines()[0]
    assert "tokens_per_question_raft" in header and "train_seconds_ft" in header
    assert "answer:" in res.output and "synth_arith: RAFT " in " ".join(res.output.split())


@pytest.mark.slow
def test_plan_after_a_run_says_done_and_names_what_changed(quick_run, tmp_path) -> None:
    run, _ = quick_run
    res = CliRunner().invoke(app, ["study", "--quick", "--out", str(run), "--plan", "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)["stages"]
    assert plan and {s["status"] for s in plan} == {"done"}
    manifest = json.loads((run / "manifest.json").read_text())["stages"]
    assert {s["stage"]: s["key"] for s in plan} == {n: r["hash"] for n, r in manifest.items()}
    config = tmp_path / "k3.yaml"
    config.write_text("include: quick\neval: {k: 3}\n")
    res = CliRunner().invoke(app, ["study", str(config), "--out", str(run), "--plan", "--json"])
    by_name = {s["stage"]: s for s in json.loads(res.stdout)["stages"]}
    assert by_name["eval/ft/synth_topic"]["status"] == "changed"
    assert by_name["eval/ft/synth_topic"]["changed_inputs"] == ["eval.k"]
    assert by_name["train/ft/synth_topic"]["status"] == "done"  # training does not read eval.k
    assert by_name["analysis"]["changed_deps"] and by_name["data/synth_topic"]["status"] == "done"


@pytest.mark.slow
def test_a_damaged_rationale_store_stops_the_study_with_one_line(tmp_path) -> None:
    run = tmp_path / "run"
    store = run / "rationales" / "synth_topic" / "rationales.sqlite"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"half a database " * 512)
    res = CliRunner().invoke(app, ["study", "--quick", "--out", str(run)])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(store) in errors[0] and "move it aside" in errors[0]
    assert "Traceback" not in res.output
