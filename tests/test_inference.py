"""Self-consistency voting, records, metrics and resume."""

from __future__ import annotations

import json

import pytest

from raftlab.inference import EvalInterrupted, SettingsMismatch, evaluate, majority_vote, read_records
from raftlab.schema import INVALID
from raftlab.tasks import get_task
from tests._backend_helpers import ScriptedBackend


@pytest.mark.parametrize(
    "answers, pred, conf",
    [
        (["5", "5", "7"], "5", 2 / 3),
        ([INVALID, INVALID, "7"], INVALID, 2 / 3),  # invalid outputs are a vote of their own
        ([INVALID, "7"], "7", 1 / 2),  # a tie goes to the valid answer
        (["3", "4", "4", "3"], "3", 1 / 2),  # then to the answer seen first
        (["9"], "9", 1.0),
    ],
)
def test_majority_vote(answers, pred, conf):
    p, c, votes = majority_vote(answers)
    assert (p, c) == (pred, pytest.approx(conf))
    assert sum(votes.values()) == len(answers)


def _math_examples(n=7):
    return get_task("synth_arith").load("test", limit=n, seed=0)


def _script(examples):
    gold = {ex.question: ex.label for ex in examples}

    def script(prompt, j):
        label = next(v for q, v in gold.items() if q in prompt)
        # 7 of 10 samples right, 2 wrong, 1 unparseable
        if j < 7:
            return f"Some steps. The answer is {label}."
        if j < 9:
            return f"Oops. The answer is {int(label) + 1}."
        return "I have no idea"

    return script


def test_sc_records_and_metrics(tmp_path):
    examples = _math_examples()
    task = get_task("synth_arith")
    m = evaluate(ScriptedBackend(_script(examples)), task, examples, k=10, out_dir=tmp_path, progress=False)
    recs = read_records(tmp_path / "records.jsonl")
    assert [r["id"] for r in recs] == [e.id for e in examples]
    r = recs[0]
    assert r["confidence"] == pytest.approx(0.7) and r["correct"] and r["k"] == 10
    assert r["votes"][INVALID] == 1 and sum(r["votes"].values()) == 10
    assert m["accuracy"] == 1.0 and m["ece"] == pytest.approx(0.3) and m["n"] == len(examples)
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["sampling"]["temperature"] == 0.8 and settings["sampling"]["n"] == 10
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == 1.0


def test_direct_prompt_is_used_for_label_only_models():
    examples = _math_examples(2)
    backend = ScriptedBackend(_script(examples))
    evaluate(backend, get_task("synth_arith"), examples, k=2, prompt_mode="direct", progress=False)
    assert all("step by step" not in p for p in backend.calls[0])
    evaluate(backend, get_task("synth_arith"), examples, k=2, progress=False)
    assert all("step by step" in p for p in backend.calls[1])


class _HashAnswers:
    """Real tiny-model sampling, mapped to varied (but deterministic) answers: the option picked by a hash of
    each sampled text, so votes, confidences and ECE are non-trivial."""

    name = "hash-answers"

    def __init__(self, backend, letters):
        self.backend, self.letters = backend, letters

    def generate(self, prompts, params):
        import zlib

        from raftlab.backends.base import Generation

        rows = self.backend.generate(prompts, params)
        return [[Generation(text=f"The answer is {self.letters[zlib.crc32(g.text.encode()) % len(self.letters)]}.")
                 for g in row] for row in rows]


@pytest.mark.slow
def test_interrupted_eval_resumes_with_identical_metrics(tmp_path):
    from raftlab.backends.hf import HFBackend

    task = get_task("synth_topic")
    examples = task.load("test", limit=6, seed=1)
    backend = _HashAnswers(HFBackend("tiny"), examples[0].option_letters[:2])
    kw = dict(k=4, max_new_tokens=12, batch_size=2, progress=False)
    full = evaluate(backend, task, examples, out_dir=tmp_path / "a", **kw)
    assert 0 < full["ece"] and len({r["confidence"] for r in read_records(tmp_path / "a" / "records.jsonl")}) > 1
    with pytest.raises(EvalInterrupted):
        evaluate(backend, task, examples, out_dir=tmp_path / "b", stop_after=1, **kw)
    assert len(read_records(tmp_path / "b" / "records.jsonl")) == 2
    resumed = evaluate(backend, task, examples, out_dir=tmp_path / "b", **kw)
    timing = ("seconds_per_question",)  # wall time: measured, not reproducible
    assert json.dumps({k: v for k, v in resumed.items() if k not in timing}, sort_keys=True) == json.dumps(
        {k: v for k, v in full.items() if k not in timing}, sort_keys=True)
    assert resumed["seconds_per_question"] > 0 and full["seconds_per_question"] > 0

    def untimed(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_records(path)]

    assert untimed(tmp_path / "a" / "records.jsonl") == untimed(tmp_path / "b" / "records.jsonl")


def test_resume_skips_finished_questions_and_drops_a_torn_line(tmp_path):
    examples = _math_examples(6)
    task = get_task("synth_arith")
    backend = ScriptedBackend(_script(examples))
    with pytest.raises(EvalInterrupted):
        evaluate(backend, task, examples, k=3, batch_size=2, out_dir=tmp_path, stop_after=2, progress=False)
    with open(tmp_path / "records.jsonl", "a") as fh:
        fh.write('{"id": "torn')  # crash in the middle of a write
    backend.calls.clear()
    evaluate(backend, task, examples, k=3, batch_size=2, out_dir=tmp_path, progress=False)
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 2  # only the last batch is recomputed
    assert len(read_records(tmp_path / "records.jsonl")) == 6


def test_other_settings_in_the_same_dir_are_refused(tmp_path):
    examples = _math_examples(2)
    backend = ScriptedBackend(_script(examples))
    evaluate(backend, get_task("synth_arith"), examples, k=3, out_dir=tmp_path, progress=False)
    with pytest.raises(SettingsMismatch, match="sampling"):
        evaluate(backend, get_task("synth_arith"), examples, k=5, out_dir=tmp_path, progress=False)


def test_direct_prob_confidence_is_a_softmax_over_options(tmp_path):
    task = get_task("sst2")
    examples = task.load("test", limit=3)
    m = evaluate(ScriptedBackend(lambda p, j: ""), task, examples, mode="direct_prob", progress=False,
                 out_dir=tmp_path)
    recs = read_records(tmp_path / "records.jsonl")
    for r in recs:
        assert sum(r["probs"].values()) == pytest.approx(1.0)
        assert r["confidence"] == pytest.approx(max(r["probs"].values()))
    assert m["mode"] == "direct_prob"
    with pytest.raises(ValueError, match="choice task"):
        evaluate(ScriptedBackend(lambda p, j: ""), get_task("synth_arith"), _math_examples(1), mode="direct_prob",
                 progress=False)


@pytest.mark.slow
def test_eval_cli_writes_and_resumes(tmp_path):
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    args = ["eval", "--model", "tiny", "--task", "synth_topic", "--limit", "3", "--k", "2",
            "--max-new-tokens", "6", "--out", str(tmp_path)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and json.loads((tmp_path / "metrics.json").read_text())["n"] == 3
    bad = CliRunner().invoke(app, [a if a != "2" else "3" for a in args])  # --k 3 into the same --out
    assert bad.exit_code == 2 and "other settings" in bad.output


def test_eval_cli_hands_the_backend_64_questions_per_call_as_a_study_does(tmp_path, monkeypatch):
    """``--batch-size`` is what a local backend decodes at once (the next questions join as samples finish); the
    CLI's calls carry QUESTIONS_PER_CALL questions, as a study's do, so the batch does not drain every few."""
    import raftlab.backends as backends
    from typer.testing import CliRunner

    from raftlab.cli.main import app
    from raftlab.inference import QUESTIONS_PER_CALL

    seen: dict = {}
    backend = ScriptedBackend(lambda p, j: "The answer is (A).")

    def fake_get_backend(spec, options=None, **kwargs):
        seen.update(kwargs)
        return backend

    monkeypatch.setattr(backends, "get_backend", fake_get_backend)
    res = CliRunner().invoke(app, ["eval", "--model", "tiny", "--task", "synth_topic", "--limit", "70", "--k", "2",
                                   "--batch-size", "4", "--max-new-tokens", "6", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert seen["batch_size"] == 4  # decoded at once
    assert [len(c) for c in backend.calls] == [QUESTIONS_PER_CALL, 70 - QUESTIONS_PER_CALL]
