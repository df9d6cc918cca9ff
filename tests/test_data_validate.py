"""`raftlab data validate` / `raftlab data export`: clear errors naming line and field, non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from raftlab.cli.main import app
from raftlab.tasks import get_task
from raftlab.tasks.validate import validate_jsonl

runner = CliRunner()

GOOD = {"id": "1", "task": "cb", "category": "nlu", "question": "Premise: p\nHypothesis: h\nOptions: (A) entailment "
        "(B) contradiction (C) neutral", "label": "C", "option_letters": ["A", "B", "C"],
        "options": ["entailment", "contradiction", "neutral"]}


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_valid_file_passes(tmp_path: Path) -> None:
    rows = [GOOD, {**GOOD, "id": "2", "label": "A", "rationale": "because"}]
    path = _write(tmp_path, [json.dumps(r) for r in rows])
    res = runner.invoke(app, ["data", "validate", str(path), "--task", "commitmentbank"])
    assert res.exit_code == 0, res.output
    assert "OK - 2 examples" in res.output and "1 with rationale" in res.output


def test_each_problem_is_reported_with_line_and_field(tmp_path: Path) -> None:
    lines = [
        json.dumps(GOOD),                                              # 1 ok
        '{"id": "2", "task": "cb", ',                                  # 2 bad JSON
        json.dumps({k: v for k, v in GOOD.items() if k != "label"} | {"id": "3"}),  # 3 missing label
        json.dumps({**GOOD, "id": "4", "label": "E"}),                 # 4 label outside options
        json.dumps({**GOOD, "id": "5", "category": "poetry"}),         # 5 bad enum value
        json.dumps({**GOOD, "id": "6", "options": ["x", "y"]}),        # 6 options/letters mismatch
        json.dumps({**GOOD, "id": "1"}),                               # 7 duplicate id
        "[1, 2]",                                                      # 8 not an object
        json.dumps({**GOOD, "id": "9", "extra": 1}),                   # 9 unknown field
        "",                                                            # blank lines are fine
    ]
    path = _write(tmp_path, lines)
    res = runner.invoke(app, ["data", "validate", str(path)])
    assert res.exit_code == 1
    out = res.output
    assert f"{path}:2: invalid JSON" in out
    assert f"{path}:3: field 'label': missing" in out
    assert f"{path}:4: field 'label': 'E' is not one of the options ['A', 'B', 'C']" in out
    assert f"{path}:5: field 'category'" in out
    assert f"{path}:6: field 'options': 2 option texts for 3 letters" in out
    assert f"{path}:7: field 'id': duplicate id '1' (first on line 1)" in out
    assert f"{path}:8: expected a JSON object" in out
    assert f"{path}:9: field 'extra'" in out
    assert "8 error(s); 1 valid example(s)" in out


def test_number_labels_and_task_consistency(tmp_path: Path) -> None:
    math = {"id": "m1", "task": "gsm8k", "category": "math", "question": "q", "label": "twelve", "answer_type": "number"}
    path = _write(tmp_path, [json.dumps(math), json.dumps(GOOD)])
    report = validate_jsonl(path, get_task("gsm8k"))
    assert any(":1: field 'label': 'twelve' is not a number" in e for e in report.errors)
    assert any(":2: field 'answer_type': 'choice' but task 'gsm8k' expects 'number'" in e for e in report.errors)
    res = runner.invoke(app, ["data", "validate", str(path), "--task", "no_such_task"])
    assert res.exit_code == 2


def test_missing_and_empty_files(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "validate", str(tmp_path / "absent.jsonl")])
    assert res.exit_code == 2 and "absent.jsonl: no such file" in res.output  # a usage error, not a bad file
    path = _write(tmp_path, [""])
    res = runner.invoke(app, ["data", "validate", str(path)])
    assert res.exit_code == 1 and "no examples" in res.output


def test_max_errors_stops_early(tmp_path: Path) -> None:
    path = _write(tmp_path, ["{bad"] * 30)
    report = validate_jsonl(path, max_errors=5)
    assert len(report.errors) == 6 and "stopped after 5 errors" in report.errors[-1]


def test_export_round_trips_through_validate(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "topic.jsonl"
    res = runner.invoke(app, ["data", "export", "synth_topic", "--split", "train", "--limit", "25", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 25 examples" in res.output
    res = runner.invoke(app, ["data", "validate", str(out), "--task", "synth_topic"])
    assert res.exit_code == 0, res.output
    report = validate_jsonl(out)
    assert [e.id for e in report.examples] == [e.id for e in get_task("synth_topic").load("train", limit=25)]
    assert runner.invoke(app, ["data", "export", "nope", "-o", str(out)]).exit_code == 2
