"""``raftlab study --plan``'s estimate (raftlab.study.estimate): the arithmetic on small fake inputs, the
reading of tasks and model sizes, and the paper preset's plan offline and fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raftlab.cli.main import app
from raftlab.study import load_config
from raftlab.study.estimate import (
    LABEL_TOKENS, TaskSize, estimate, gpu_row, load_throughput, measure_tasks, params_from_config, params_from_name,
)
from raftlab.study.teacher_cost import (
    TeacherPlan, expected_attempts, judge_estimate, kept_share, request_rounds, teacher_estimate, teacher_plan,
)

runner = CliRunner()
TABLE = {"reference_params": 7e9, "gpus": {"fake": {"name": "Fake GPU", "memory_gb": 10, "train_tokens_per_s": 1000,
                                                    "generate_tokens_per_s": 2000, "status": "estimated",
                                                    "source": "a test"}}}
SIZES = [TaskSize("a", train_examples=100, test_questions=10, teacher_prompt_tokens=50, eval_prompt_tokens=40),
         TaskSize("b", train_examples=200, test_questions=20, teacher_prompt_tokens=30, eval_prompt_tokens=20)]
STAGES = [{"stage": "data/a", "kind": "data"}, {"stage": "rationales/a", "kind": "rationales"},
          {"stage": "train/ft/a", "kind": "train"}, {"stage": "eval/ft/a", "kind": "eval"},
          {"stage": "train/raft/a", "kind": "train"}, {"stage": "eval/raft/a", "kind": "eval"},
          {"stage": "analysis", "kind": "analysis"}]


def _cfg(**over):
    raw = {"model": "tiny", "tasks": ["a", "b"], "teacher": {"backend": "openai:m@http://127.0.0.1:1/v1",
                                                              "max_retries": 3, "max_new_tokens": 100},
           "train": {"epochs": 1, "lora": False, "gradient_checkpointing": True, "max_length": 4096},
           "eval": {"k": 4}}
    raw.update(over)
    return load_config(raw)


def test_attempts_and_kept_share() -> None:
    assert expected_attempts(1.0, 5) == 1.0
    assert expected_attempts(0.5, 3) == pytest.approx(1 + 0.5 + 0.25)
    assert kept_share(0.5, 3) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="kept rate"):
        expected_attempts(0.0, 3)


def test_teacher_tokens_and_cost() -> None:
    plans = [TeacherPlan("a", visits=100, requests=200, samples=200, kept=100),
             TeacherPlan("b", visits=200, requests=400, samples=400, kept=200)]
    prompts = {"a": 50.0, "b": 30.0}
    out = teacher_estimate(plans, prompts, rationale_tokens=10, price_in=1.0, price_out=2.0)
    assert out["requests"] == 600
    assert out["tokens"] == {"input": (100 * 50 + 200 * 30) * 2, "output": 6000, "total": 22000 + 6000}
    assert out["cost_usd"] == pytest.approx(round((22000 * 1 + 6000 * 2) / 1e6, 2))
    for price in ((None, None), (0, 0), (0.0, None)):
        assert teacher_estimate(plans, prompts, rationale_tokens=10, price_in=price[0],
                                price_out=price[1])["cost_usd"] is None


def test_samples_per_prompt_trade_requests_for_samples() -> None:
    # one sample per request: the requests are the attempts
    assert request_rounds(0.5, 3, 1) == pytest.approx((1.75, 1.75))
    # 2 per request, 3 attempts: a request of 2 always, a second of 1 when both missed (p = 0.25)
    assert request_rounds(0.5, 3, 2) == pytest.approx((1.25, 2.25))
    # all at once: one request, every sample billed
    assert request_rounds(0.5, 3, 4) == pytest.approx((1.0, 3.0))
    cfg_api = _cfg(teacher={"backend": "openai:m@http://127.0.0.1:1/v1", "max_retries": 3})
    cfg_n = _cfg(teacher={"backend": "openai:m@http://127.0.0.1:1/v1", "max_retries": 3, "samples_per_prompt": 3})
    one = estimate(cfg_api, STAGES, SIZES, params=None, table=TABLE, gpu="fake", kept_rate=0.5, rationale_tokens=10)
    three = estimate(cfg_n, STAGES, SIZES, params=None, table=TABLE, gpu="fake", kept_rate=0.5, rationale_tokens=10)
    assert one["teacher_requests"] == round(300 * 1.75) and three["teacher_requests"] == 300
    assert three["teacher_tokens"]["output"] == 300 * 3 * 10 > one["teacher_tokens"]["output"]


def test_kept_target_traverses_the_data_again() -> None:
    once = teacher_plan("a", 100, kept_rate=0.5, max_retries=1)
    assert (once.visits, once.kept) == (100, 50)
    again = teacher_plan("a", 100, kept_rate=0.5, max_retries=1, kept_target=120, traversals=10)
    assert again.visits == pytest.approx(240) and again.kept == pytest.approx(120)
    capped = teacher_plan("a", 100, kept_rate=0.5, max_retries=1, kept_target=1000, traversals=3)
    assert capped.visits == 300 and capped.kept == pytest.approx(150)
    early = teacher_plan("a", 100, kept_rate=1.0, max_retries=3, kept_target=10)
    assert early.visits == 10 and early.requests == 10
    est = estimate(_cfg(teacher={"backend": "openai:m@http://127.0.0.1:1/v1", "max_retries": 1,
                                 "kept_target": 120, "traversals": 10}),
                   STAGES, SIZES, params=7e9, table=TABLE, gpu="fake", kept_rate=0.5, rationale_tokens=50)
    assert est["kept_rationales"] == {"a": 120, "b": 120}
    assert est["teacher_requests"] == 240 + 240
    # the training rows are the kept rationales: 120 of task a
    assert est["gpu_hours"]["by_stage"]["train/ft/a"] == pytest.approx(round(120 * (40 + LABEL_TOKENS) / 1000 / 3600, 4))


def test_the_judge_is_estimated_for_a_real_teacher() -> None:
    out = judge_estimate({"a": 20, "b": 5}, {"a": 50.0, "b": 30.0}, judge_prompt_tokens=100, rationale_tokens=10,
                         output_tokens=64, price_in=1.0, price_out=1.0)
    assert out["requests"] == 25
    assert out["tokens"]["input"] == 20 * (100 + 50 + 10) + 5 * (100 + 30 + 10)
    assert out["tokens"]["output"] == 25 * 64
    est = estimate(_cfg(judge={"sample": 20, "max_new_tokens": 64}), STAGES, SIZES, params=None, table=TABLE,
                   gpu="fake", kept_rate=1.0, rationale_tokens=10, judge_prompt_tokens=100)
    assert est["judge"]["requests"] == 40 and est["judge"]["tokens"]["output"] == 40 * 64
    assert any("judge" in a for a in est["assumptions"])
    oracle = estimate(_cfg(teacher={"backend": "oracle"}), STAGES, SIZES, params=None, table=TABLE, gpu="fake")
    assert oracle["judge"]["requests"] == 0


def test_estimate_gpu_hours_per_stage_and_assumptions() -> None:
    cfg = _cfg()
    est = estimate(cfg, STAGES, SIZES, params=7e9, table=TABLE, gpu="FAKE", kept_rate=1.0, rationale_tokens=50)
    hours = est["gpu_hours"]
    assert hours["gpu"] == "fake" and set(hours["by_stage"]) == {"train/ft/a", "eval/ft/a", "train/raft/a",
                                                                  "eval/raft/a"}
    # every example kept (rate 1), one epoch, 1000 tokens/s: FT rows are prompt + answer, RAFT adds the rationale
    assert hours["by_stage"]["train/ft/a"] == pytest.approx(round(100 * (40 + LABEL_TOKENS) / 1000 / 3600, 4))
    assert hours["by_stage"]["train/raft/a"] == pytest.approx(round(100 * (40 + 50 + LABEL_TOKENS) / 1000 / 3600, 4))
    # eval: 10 questions x k = 4 samples of the answer (FT, direct) or rationale + answer (RAFT, CoT), plus reading
    ft_eval = 10 * (4 * LABEL_TOKENS / 2000 + 40 / 4000) / 3600
    assert hours["by_stage"]["eval/ft/a"] == pytest.approx(round(ft_eval, 4))
    assert hours["total"] == pytest.approx(sum(hours["by_stage"].values()), abs=1e-3)
    assert est["teacher_requests"] == 300 and est["teacher_cost_usd"] is None
    assert est["disk_gb"]["models"] > 7e9 * 2 / 1e9  # the base model and two trained copies
    text = " ".join(est["assumptions"])
    assert "--kept-rate" in text and "no price given" in text and "Fake GPU" in text


def test_estimate_oracle_unknown_size_and_unknown_gpu() -> None:
    cfg = _cfg(teacher={"backend": "oracle"})
    est = estimate(cfg, STAGES, SIZES, params=None, table=TABLE, gpu="fake")
    assert est["teacher_requests"] == 0 and est["teacher_tokens"]["total"] == 0 and est["teacher_cost_usd"] is None
    assert est["gpu_hours"] is None and est["disk_gb"]["models"] is None
    assert any("unknown" in a for a in est["assumptions"])
    with pytest.raises(ValueError, match="unknown GPU kind 'v100'.*known: fake"):
        estimate(cfg, STAGES, SIZES, params=1e9, table=TABLE, gpu="v100")


def test_lora_and_leave_one_task_out_change_training_hours() -> None:
    base = estimate(_cfg(), STAGES, SIZES, params=7e9, table=TABLE, gpu="fake", kept_rate=1.0)
    lora = estimate(_cfg(train={"epochs": 1, "lora": True, "gradient_checkpointing": True}), STAGES, SIZES,
                    params=7e9, table=TABLE, gpu="fake", kept_rate=1.0)
    loo = estimate(_cfg(protocol="leave_one_task_out"), STAGES, SIZES, params=7e9, table=TABLE, gpu="fake",
                   kept_rate=1.0)
    ft = "train/ft/a"
    assert lora["gpu_hours"]["by_stage"][ft] < base["gpu_hours"]["by_stage"][ft]
    assert loo["gpu_hours"]["by_stage"][ft] == pytest.approx(2 * base["gpu_hours"]["by_stage"][ft], rel=0.01)


def test_model_sizes() -> None:
    assert params_from_name("meta-llama/Llama-2-7b-hf") == 7e9
    assert params_from_name("meta-llama/Llama-3.1-8B-Instruct") == 8e9
    assert params_from_name("Qwen/Qwen2.5-0.5B") == 0.5e9
    assert params_from_name("HuggingFaceTB/SmolLM2-135M-Instruct") == 135e6
    assert params_from_name("gpt2") is None
    llama7b = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 32000, "intermediate_size": 11008,
               "num_attention_heads": 32}
    assert params_from_config(llama7b) == pytest.approx(6.74e9, rel=0.01)
    assert params_from_config({"hidden_size": 8}) is None


def test_throughput_table_rows_are_marked() -> None:
    table = load_throughput()
    for kind, row in table["gpus"].items():
        assert row["status"] in ("measured", "estimated") and row["source"], kind
        assert row["train_tokens_per_s"] > 0 and row["generate_tokens_per_s"] > 0
    assert gpu_row(table, "H100")["kind"] == "h100"


def test_measure_tasks_reads_the_data_stage_subsets() -> None:
    cfg = load_config({"tasks": [{"name": "synth_arith", "train_limit": 16, "test_limit": 8},
                                 {"name": "no_such_task", "train_limit": 5, "test_limit": None}]})
    sizes, notes = measure_tasks(cfg, lambda texts: [len(t.split()) for t in texts])
    arith, missing = sizes
    assert (arith.train_examples, arith.test_questions, arith.measured) == (16, 8, True)
    assert arith.teacher_prompt_tokens > 0 and arith.eval_prompt_tokens > 0
    assert (missing.train_examples, missing.test_questions, missing.measured) == (5, 1000, False)
    assert "no_such_task" in notes[0]


def test_paper_plan_json_is_offline_fast_and_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the plan tried to reach the network")

    # the paper's student is a hub id: accepted as such (HF_HUB_OFFLINE would demand it cached), and any
    # attempt to connect anywhere fails the test
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    out = tmp_path / "run"
    start = time.monotonic()
    res = runner.invoke(app, ["study", "--preset", "paper", "--plan", "--json", "--out", str(out),
                              "--price-in", "0.5", "--price-out", "1.5", "--gpu", "a100"])
    elapsed = time.monotonic() - start
    assert res.exit_code == 0, res.output
    assert elapsed < 60
    assert not out.exists()
    est = json.loads(res.stdout)["estimate"]
    assert set(est) == {"teacher_requests", "teacher_tokens", "teacher_cost_usd", "kept_rationales", "judge",
                        "gpu_hours", "disk_gb", "assumptions"}
    assert est["teacher_requests"] > 0 and est["teacher_cost_usd"] > 0
    # all 20 tasks (the 18 and the two validation tasks), 20k kept rationales each, the judge on 20 of them
    stages = json.loads(res.stdout)["stages"]
    tasks = {s["stage"].rsplit("/", 1)[-1] for s in stages if s["kind"] == "rationales"}
    assert len(tasks) == 20 and {"subj", "coinflip"} <= tasks
    assert all(f"eval/raft/{t}" in {s["stage"] for s in stages} for t in tasks)
    assert est["kept_rationales"] == {t: 20000 for t in tasks}
    assert est["judge"]["requests"] == 20 * 20 and est["judge"]["cost_usd"] > 0
    assert est["gpu_hours"]["gpu"] == "a100" and est["gpu_hours"]["total"] > 0
    assert est["disk_gb"]["total"] > 0 and est["assumptions"]


def test_plan_text_shows_the_estimate_and_options_need_plan(tmp_path: Path) -> None:
    res = runner.invoke(app, ["study", "--quick", "--plan", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "estimate: teacher 0 requests" in res.stdout and "assumed:" in res.stdout
    res = runner.invoke(app, ["study", "--quick", "--price-in", "1", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--price-in goes with --plan" in res.output
    res = runner.invoke(app, ["study", "--quick", "--plan", "--gpu", "v100", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "unknown GPU kind" in res.output and "Traceback" not in res.output


def test_disk_counts_the_checkpoints_of_the_trainings_that_run_at_once() -> None:
    """Two workers keep two trainings' checkpoints at once, but only where two can run: on one core (or one GPU)
    the stages run one at a time (the plan passes ``effective_workers``), and the estimate counts one."""
    cfg = _cfg(executor={"workers": 2})
    disk = {w: estimate(cfg, STAGES, SIZES, params=7e9, table=TABLE, gpu="FAKE", workers=w)["disk_gb"]["models"]
            for w in (1, 2, None)}
    assert disk[2] > disk[1] and disk[None] == disk[2]  # default: the configured workers
