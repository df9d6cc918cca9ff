"""The paper's "recursively traverse the dataset until we get enough data" (``traversals``, ``kept_target``) and
``--plan --pilot N`` (a few real teacher requests replace the estimate's assumptions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raftlab.backends.base import Generation, SamplingParams
from raftlab.cli.main import app
from raftlab.rationales import RationaleStore, export_jsonl, generate_rationales
from raftlab.rationales.generate import TRAVERSAL_SEED_STRIDE
from raftlab.rationales.oracle import OracleTeacher
from raftlab.tasks import get_task, load_jsonl

runner = CliRunner()


class SeedRecorder(OracleTeacher):
    """The oracle, remembering the seed of every request."""

    def __init__(self, task, examples) -> None:
        super().__init__(task, examples)
        self.seeds: list[int] = []

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        self.seeds.append(params.seed)
        return super().generate(prompts, params)


def test_traversals_keep_fresh_copies_until_the_target(tmp_path: Path) -> None:
    task = get_task("synth_arith")
    examples = task.load("train", limit=5, seed=0)
    teacher = SeedRecorder(task, examples)
    store = tmp_path / "r.sqlite"
    stats = generate_rationales(teacher, task, examples, store, n=11, traversals=3, max_retries=1, concurrency=2,
                                progress=False)
    assert stats["kept"] == 12  # the last call carries a whole decoding batch (2 prompts) for the 11th
    db = RationaleStore(store, writer=False)
    ids = [ex.id for ex, _, _ in db.kept()]
    db.close()
    originals = [e.id for e in examples]
    assert ids[:5] == originals
    assert ids[5:10] == [f"{i}#t1" for i in originals] and len(ids) == 12
    assert all(i.startswith(tuple(originals)) and i.endswith("#t2") for i in ids[10:])
    assert export_jsonl(store, tmp_path / "out.jsonl", limit=11) == 11
    assert [e.id for e in load_jsonl(tmp_path / "out.jsonl")] == ids[:11]  # originals, then #t1, then one #t2
    # each traversal draws with its own seeds: a question kept before gets a fresh rationale
    assert {s // TRAVERSAL_SEED_STRIDE for s in teacher.seeds} == {0, 1, 2}


def test_traversals_stop_at_their_limit_and_resume_to_a_higher_one(tmp_path: Path) -> None:
    task = get_task("synth_arith")
    examples = task.load("train", limit=4, seed=0)
    store = tmp_path / "r.sqlite"
    first = generate_rationales(OracleTeacher(task, examples), task, examples, store, n=100, traversals=2,
                                max_retries=1, progress=False)
    assert first["kept"] == 8
    again = generate_rationales(OracleTeacher(task, examples), task, examples, store, n=10, traversals=3,
                                max_retries=1, concurrency=2, progress=False)
    assert again["kept"] == 10 and again["attempts"] == 10  # the first 8 were reused, not redone


def test_a_traversal_that_keeps_nothing_ends_the_run(tmp_path: Path) -> None:
    task = get_task("synth_arith")
    examples = task.load("train", limit=3, seed=0)
    stats = generate_rationales(OracleTeacher(task, []), task, examples, tmp_path / "r.sqlite", n=50,
                                traversals=40, max_retries=1, progress=False)
    assert stats["kept"] == 0 and stats["attempts"] == 3  # the first traversal kept nothing: no second one


@pytest.mark.slow
def test_plan_pilot_measures_the_teacher_and_writes_nothing(tmp_path: Path) -> None:
    from tests.test_teacher_soak import FakeTeacher, first_correct_attempt

    task = get_task("synth_arith")
    examples = task.load("train", limit=24, seed=0)  # the fake keeps 4 of them at the first attempt
    teacher = FakeTeacher({e.question: e.label for e in examples}, faults=False)
    teacher.start()
    try:
        config = tmp_path / "study.yaml"
        config.write_text(json.dumps({
            "name": "pilot", "model": "tiny", "tasks": [{"name": "synth_arith", "train_limit": 24, "test_limit": 2}],
            "teacher": {"backend": teacher.spec, "max_retries": 4, "backend_options": {"timeout": 30}}}))
        out = tmp_path / "run"
        res = runner.invoke(app, ["study", str(config), "--plan", "--json", "--pilot", "24", "--out", str(out)])
    finally:
        teacher.stop()
    assert res.exit_code == 0, res.output
    assert not out.exists()
    est = json.loads(res.stdout)["estimate"]
    expected = sum(first_correct_attempt(e.question) == 1 for e in examples) / 24
    assert expected > 0
    assert est["pilot"]["requests"] == 24 and est["pilot"]["answered"] == 24
    assert est["pilot"]["kept_rate"] == pytest.approx(expected)
    assert any(a.startswith("pilot: 24 requests") for a in est["assumptions"])
    assert any(f"probability {expected}" in a for a in est["assumptions"])


def test_pilot_needs_a_real_teacher(tmp_path: Path) -> None:
    res = runner.invoke(app, ["study", "--quick", "--plan", "--pilot", "2", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--pilot needs a real teacher" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["study", "--quick", "--pilot", "2", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--pilot goes with --plan" in res.output


def test_copies_of_one_question_stay_on_one_side_of_the_dev_split() -> None:
    from raftlab.rationales.generate import traversal_copy
    from raftlab.training.early_stopping import carve_dev

    examples = get_task("synth_arith").load("train", limit=20, seed=0)
    pool = [traversal_copy(e, t) for t in range(3) for e in examples]
    assert pool[25].source_id == examples[5].id and examples[5].source_id == examples[5].id
    train, dev = carve_dev(pool, 4, seed=0)
    held = {e.source_id for e in dev}
    assert len(held) == 4 and len(dev) == 12
    assert not held & {e.source_id for e in train}


def test_a_pilot_that_keeps_nothing_stops_the_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from raftlab.rationales.pilot import PilotResult

    monkeypatch.setattr("raftlab.study.pilot.pilot", lambda cfg, n: PilotResult(n, n, 0.0, 40.0, 0, 1.0,
                                                                                   {"wrong answer": n}))
    config = tmp_path / "study.yaml"
    config.write_text(json.dumps({"name": "p", "model": "tiny", "tasks": ["synth_arith"],
                                  "teacher": {"backend": "openai:m@http://127.0.0.1:9/v1"}}))
    res = runner.invoke(app, ["study", str(config), "--plan", "--pilot", "3", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "kept no rationale" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["study", str(config), "--plan", "--pilot", "3", "--kept-rate", "0.2",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
