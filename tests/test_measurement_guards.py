"""Guards against measurement artifacts (issue: a too-small generation budget read as 'RAFT hurts').

The student here is a scripted backend that writes exactly its training target (the oracle rationale and the
answer sentence) cut at ``max_new_tokens`` tokens of the student's tokenizer: a model that has learned the
task perfectly. Whatever the study then reports is an artifact of how it measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftlab.analysis import analyze_study
from raftlab.analysis.checks import ArmContext, arm_checks, baselines, verdict
from raftlab.analysis.records import EvalRecords
from raftlab.backends.base import Generation
from raftlab.rationales.oracle import oracle_rationale
from raftlab.schema import INVALID
from raftlab.study import StudySteps, load_config, run_study
from raftlab.study.work.analysis import analyze
from raftlab.study.work.data import prepare_data
from raftlab.study.work.evaluate import evaluate
from raftlab.study.work.rationales import rationales


class TargetWriter:
    """Writes each question's training target for the prompt it gets (direct: the label; cot: the rationale)."""

    name = "target-writer"
    thread_safe = False

    def __init__(self, task, examples, tokenizer):
        self.tok = tokenizer
        self.targets = {}
        for e in examples:
            self.targets[task.prompt(e, "direct")] = task.target(e)
            self.targets[task.prompt(e, "cot")] = task.target(e, oracle_rationale(e))

    def generate(self, prompts, params):
        out = []
        for p in prompts:
            ids = self.tok(self.targets[p], add_special_tokens=False).input_ids
            finished = len(ids) + 1 <= params.max_new_tokens  # the EOS is a token too
            text = self.tok.decode(ids if finished else ids[: params.max_new_tokens])
            gen = Generation(text, num_tokens=min(len(ids) + 1, params.max_new_tokens),
                             finish_reason="stop" if finished else "length")
            out.append([gen] * params.n)
        return out


def _no_training(cfg, spec, arm, rat_out, out):
    (out / "model").mkdir()
    return {"model": "model"}


def _study(tmp_path: Path, monkeypatch, eval_settings: dict):
    import raftlab.backends
    from raftlab.models import load_tokenizer
    from raftlab.tasks import get_task

    task = get_task("synth_coinflip")
    test = task.load("test", limit=12, seed=0)
    writer = TargetWriter(task, test, load_tokenizer("tiny"))
    monkeypatch.setattr(raftlab.backends, "get_backend", lambda spec, options=None, **kw: writer)
    cfg = load_config({"model": "tiny", "tasks": [{"name": "synth_coinflip", "train_limit": 16, "test_limit": 12}],
                       "eval": {"k": 3, **eval_settings}})
    steps = StudySteps(prepare_data=prepare_data, rationales=rationales, train=_no_training,
                       evaluate=evaluate, analyze=analyze, report=lambda *a: {})
    run_study(cfg, tmp_path, steps=steps)
    return json.loads((tmp_path / "analysis" / "analysis.json").read_text())


@pytest.mark.slow
def test_a_budget_shorter_than_the_rationales_is_flagged_and_the_derived_budget_is_not(tmp_path, monkeypatch):
    forced = _study(tmp_path / "forced", monkeypatch, {"max_new_tokens": 12})
    (row,) = forced["tasks"]
    assert row["trustworthy"] is False
    assert any("raft: 100% of samples were cut off at 12 tokens" in r for r in row["reasons"]), row["reasons"]
    assert any("rerun with max_new_tokens >=" in r for r in row["reasons"])
    assert row["delta"]["acc_raft"] == 0.0  # what the unguarded number said: RAFT fails every question
    assert any("not trustworthy" in n for n in forced["notes"])
    budget = json.loads((tmp_path / "forced" / "eval" / "raft" / "synth_coinflip" / "budget.json").read_text())
    assert budget["max_new_tokens"] == 12 and budget["need"] > 12
    # the report opens with the failed check, before any number
    from raftlab.report import render_report

    page = render_report(tmp_path / "forced", tmp_path / "report").read_text()
    assert page.index('id="checks"') < page.index('id="summary"')
    assert "synth_coinflip: not trustworthy" in page and "cut off at 12 tokens" in page

    derived = _study(tmp_path / "derived", monkeypatch, {})
    (row,) = derived["tasks"]
    assert row["trustworthy"] is True, row["reasons"]
    assert row["delta"]["acc_raft"] == 1.0 and row["delta"]["acc_ft"] == 1.0  # what the model writes
    assert {c["name"] for c in row["checks"] if c["arm"] == "raft"} >= {"truncated", "invalid", "constant"}


def _rec(qid, answers, gold="A", labels=("A", "B"), finish=None, k=None, question=None):
    from raftlab.inference import majority_vote

    pred, conf, votes = majority_vote(answers)
    return {"id": qid, "gold": gold, "prediction": pred, "confidence": conf, "correct": pred == gold,
            "votes": votes, "k": k or len(answers), "answers": list(answers), "labels": list(labels),
            "finish": finish or ["stop"] * len(answers), "num_tokens": [5] * len(answers),
            "question": question or f"q{qid}"}


def test_each_check_fires_past_its_threshold_and_not_below():
    good = [_rec(str(i), ["A", "A", "B"] if i % 2 else ["B", "A", "B"], gold="A" if i % 2 else "B")
            for i in range(10)]
    assert not any(c.failed for c in arm_checks("raft", good))
    cut = [_rec(str(i), [INVALID, INVALID, "A"], finish=["length", "length", "stop"]) for i in range(10)]
    failed = {c.name for c in arm_checks("raft", cut, ArmContext(max_new_tokens=64, budget_need=96)) if c.failed}
    assert failed == {"truncated", "invalid"}
    msg = next(c.message for c in arm_checks("raft", cut, ArmContext(max_new_tokens=64, budget_need=96))
               if c.name == "truncated")
    assert msg == "raft: 67% of samples were cut off at 64 tokens before an answer; rerun with max_new_tokens >= 96"
    constant = [_rec(str(i), ["B", "B"]) for i in range(6)]
    assert {c.name for c in arm_checks("ft", constant) if c.failed} == {"constant"}
    outside = [_rec(str(i), ["C", "A"], labels=("A", "B")) for i in range(10)]
    assert "outside_labels" in {c.name for c in arm_checks("ft", outside) if c.failed}
    ctx = ArmContext(prompt_mode="cot", trained_prompt_modes=["direct"], objective="label",
                     train_questions=["q1", "q2"])
    failed = {c.name for c in arm_checks("ft", good, ctx) if c.failed}
    assert failed == {"prompt_mismatch", "train_test_overlap"}
    ok, reasons = verdict(arm_checks("ft", constant), ("ft", "raft"))
    assert not ok and reasons == ["ft: every sample of all 6 questions answers 'B'"]
    assert verdict(arm_checks("blank", constant), ("ft", "raft")) == (True, [])  # only compared arms count


def test_baselines_majority_class_and_chance():
    recs = [_rec("1", ["A"], gold="A"), _rec("2", ["A"], gold="A"), _rec("3", ["A"], gold="B", labels="ABCD")]
    b = baselines(recs)
    assert b["majority_class"] == pytest.approx(2 / 3) and b["chance"] == pytest.approx((0.5 + 0.5 + 0.25) / 3)


def test_invalid_answer_policies():
    """vote: a unanimous invalid vote is a confident (1.0) wrong answer; exclude: majority of valid votes;
    abstain: the question is left out."""
    recs = [_rec("1", [INVALID, INVALID, INVALID]), _rec("2", [INVALID, INVALID, "A"]), _rec("3", ["A", "A", "B"])]
    vote = EvalRecords.from_dicts(recs, invalid="vote")
    assert vote.ids == ["1", "2", "3"] and list(vote.confidence) == [1.0, pytest.approx(2 / 3), pytest.approx(2 / 3)]
    assert list(vote.correct) == [False, False, True]
    exclude = EvalRecords.from_dicts(recs, invalid="exclude")
    assert list(exclude.confidence) == [0.0, pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert list(exclude.correct) == [False, True, True]
    abstain = EvalRecords.from_dicts(recs, invalid="abstain")
    assert abstain.ids == ["3"]
    with pytest.raises(ValueError, match="policy must be one of"):
        EvalRecords.from_dicts(recs, invalid="ignore")


def test_flagged_tasks_leave_the_fit_unless_included(tmp_path):
    def write(task, arm, recs):
        folder = tmp_path / "eval" / arm / task
        folder.mkdir(parents=True)
        (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))

    def rec(i, ok):  # golds alternate A/B (majority class and chance 0.5); a right or wrong 2-of-3 vote
        gold, other = "AB"[i % 2], "BA"[i % 2]
        return _rec(str(i), [gold, gold, other] if ok else [other, other, gold], gold=gold)

    for t, n_ok, gain in (("a", 12, 6), ("b", 14, 4), ("c", 17, 0), ("d", 12, 4)):
        write(t, "ft", [rec(i, i < n_ok) for i in range(20)])
        raft = [rec(i, i < n_ok + gain) for i in range(20)]
        if t == "d":  # RAFT cut off: every sample invalid
            raft = [_rec(str(i), [INVALID] * 3, finish=["length"] * 3) for i in range(20)]
        write(t, "raft", raft)
    result = analyze_study(tmp_path, n_boot=50)
    assert [r.task for r in result.tasks if not r.trustworthy] == ["d"]
    assert result.fit.n == 3 and any("task d is not trustworthy" in n for n in result.notes)
    assert analyze_study(tmp_path, n_boot=50, include_flagged=True).fit.n == 4
    d = result.task("d")
    assert d.invalid_policies["raft"]["vote"]["n"] == 20 and "abstain" not in d.invalid_policies["raft"]
