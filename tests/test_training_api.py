"""Training API: LoRA adapters reload with the trained model's logits, resumable checkpoints, Examples given
directly, the default profile from configs/paper.yaml."""

from __future__ import annotations

import json

import pytest
import torch

from raftlab.models import load_model
from raftlab.tasks import get_task, write_jsonl
from raftlab.training import PAPER_PROFILE, TrainConfig, train
from raftlab.training.trainer import run_training, training_arguments


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _examples(n: int, rationale: str | None = "3 + 2 = 5."):
    task = get_task("synth_arith_easy")
    return task, [e.model_copy(update={"rationale": rationale}) for e in task.load("train", limit=n)]


@pytest.mark.slow
def test_lora_adapter_reloads_with_the_trained_models_logits(tmp_path):
    task, examples = _examples(8)
    out, trainer = run_training(TrainConfig(model="tiny", data=examples, objective="raft", out=str(tmp_path / "lora"),
                                            lora=True, max_steps=2, batch_size=4, learning_rate=5e-2))
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] != "tiny" and (out / "tokenizer_config.json").exists()
    reloaded, tok = load_model(str(out))
    base, _ = load_model("tiny")
    trained = trainer.model.eval()
    ids = tok(task.prompt(examples[0], "cot"), return_tensors="pt")
    with torch.no_grad():
        got, want, before = reloaded(**ids).logits, trained(**ids).logits, base(**ids).logits
    assert not torch.allclose(want, before, atol=1e-4)  # training changed the model
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)  # the merged adapter is that model


@pytest.mark.slow
def test_resume_continues_from_the_newest_checkpoint_and_skips_finished_runs(tmp_path):
    _, examples = _examples(8)
    write_jsonl(examples, tmp_path / "d.jsonl")
    common = dict(model="tiny", data=str(tmp_path / "d.jsonl"), objective="label", out=str(tmp_path / "o"),
                  lora=False, batch_size=4, save_steps=1, learning_rate=1e-3, logging_steps=1)
    train(TrainConfig(**common, max_steps=2))
    state_file = tmp_path / "o" / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"].append({"step": 2, "marker": "from checkpoint-2"})
    state_file.write_text(json.dumps(state))
    out, trainer = run_training(TrainConfig(**common, max_steps=3, resume=True))
    assert trainer.state.global_step == 3
    assert {"step": 2, "marker": "from checkpoint-2"} in trainer.state.log_history  # resumed from checkpoint-2
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1, 2, 3]  # step 3 only was trained
    summary = (out / "train_summary.json").stat().st_mtime_ns
    assert train(TrainConfig(**common, max_steps=3, resume=True)) == out  # finished: nothing to do
    assert (out / "train_summary.json").stat().st_mtime_ns == summary


@pytest.mark.slow
def test_examples_given_directly_need_rationales_for_rationale_objectives(tmp_path):
    _, examples = _examples(2, rationale=None)
    with pytest.raises(ValueError, match=r"data\[0\].*'rationale'"):
        train(TrainConfig(model="tiny", data=examples, objective="align", out=str(tmp_path / "o")))


@pytest.mark.slow
def test_default_profile_is_the_papers_recipe(tmp_path):
    full = TrainConfig(model="tiny", data="x.jsonl", out=str(tmp_path), lora=False)
    lora = TrainConfig(model="tiny", data="x.jsonl", out=str(tmp_path), lora=True)
    assert (full.epochs, full.lr(), PAPER_PROFILE["scheduler"]) == (3, 5e-6, "cosine")
    assert lora.lr() > full.lr()
    args = training_arguments(full, 100)
    assert args.lr_scheduler_type.value == "cosine" and args.get_warmup_steps(1000) == 30
    assert args.seed == 0 and args.bf16 == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def test_polarity_mixtures_keep_the_tasks_of_one_sign():
    from raftlab.training.data import polarity_weights

    weights, sign = {"a": 1.0, "b": 2.0, "c": 1.0}, {"a": 1, "b": -1, "c": 1}
    assert polarity_weights(weights, sign, "full") == weights
    assert polarity_weights(weights, sign, "positive") == {"a": 1.0, "c": 1.0}
    assert polarity_weights(weights, sign, "negative") == {"b": 2.0}
    with pytest.raises(ValueError, match="no sign for: c"):
        polarity_weights(weights, {"a": 1, "b": -1}, "positive")


@pytest.mark.slow
def test_cli_rejects_a_malformed_task_polarity(tmp_path):
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    res = CliRunner().invoke(app, ["train", "--model", "tiny", "--data", str(tmp_path / "d.jsonl"), "--out",
                                   str(tmp_path / "o"), "--mixture", "a=1", "--task-polarity", "a=plus"])
    assert res.exit_code == 2 and "task=value" in res.output


@pytest.mark.slow
def test_cli_options_are_the_train_config_fields_and_config_file_is_overridden_by_flags(tmp_path, monkeypatch):
    """Every TrainConfig field is a `raftlab train` option; --config FILE gives the rest, flags override it."""
    import inspect

    from typer.testing import CliRunner

    from raftlab.cli import train_cmd
    from raftlab.cli.main import app
    from raftlab.training import TrainConfig

    options = set(inspect.signature(train_cmd.train_cmd).parameters)
    assert options == set(TrainConfig.model_fields) | {"config", "debug_tokens"}

    seen = {}
    monkeypatch.setattr("raftlab.training.train", lambda config: seen.setdefault("config", config) and "done")
    cfg = TrainConfig(model="tiny", data=str(tmp_path / "d.jsonl"), out=str(tmp_path / "o"), objective="raft",
                      lora=False, learning_rate=0.01, mixture={"a": 2.0}, max_steps=5)
    cfg.to_file(tmp_path / "c.yaml")
    res = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "c.yaml"), "--lr", "0.5", "--lora",
                                   "--task-polarity", "a=-1"])
    assert res.exit_code == 0, res.output
    got = seen["config"]
    assert got.model_dump() == cfg.model_copy(update={"learning_rate": 0.5, "lora": True,
                                                      "task_polarity": {"a": -1}}).model_dump()
    # a bad value in the file names the file, the field and its option
    (tmp_path / "bad.yaml").write_text("model: tiny\ndata: x\nout: o\nbatch_size: 0\n")
    res = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "bad.yaml")])
    assert res.exit_code == 2 and "bad.yaml: field 'batch_size' (--batch-size)" in res.output


def test_paper_profile_is_table_2_scaled_to_a_global_batch_of_64():
    from raftlab.training import TrainConfig
    from raftlab.training.trainer import training_arguments

    cfg = TrainConfig(model="tiny", data="d.jsonl", out="o", profile="paper")
    assert (cfg.epochs, cfg.lr(), cfg.batch_size, cfg.max_length, cfg.weight_decay) == (3, 5e-6, 4, 2048, 0.0)
    assert cfg.lora is False and cfg.gradient_checkpointing is True and cfg.bf16 is True
    assert [cfg.accumulation(n) for n in (1, 2, 4, 8, 16)] == [16, 8, 4, 2, 1]  # 4 x 4 x 4 GPUs = 64
    with pytest.raises(ValueError, match="not a multiple"):
        cfg.accumulation(3)
    args = training_arguments(cfg.model_copy(update={"bf16": False}), n_rows=64)  # bf16 needs a GPU here
    assert (args.lr_scheduler_type.value, args.warmup_steps, args.weight_decay) == ("cosine", 0.03, 0.0)
    assert args.gradient_accumulation_steps == 16
    assert getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing
    # explicit values still win over the profile
    assert TrainConfig(model="tiny", data="d", out="o", profile="paper", max_length=512, lora=True).lora


def test_a_run_recorded_before_a_later_setting_counts_as_finished(tmp_path):
    """A finished run whose saved config predates a setting (``LATER_FIELDS``) is the same run at that setting's
    earlier value, and another run at any other value."""
    from raftlab.training.config import LATER_FIELDS
    from raftlab.training.trainer import _finished

    config = TrainConfig(model="tiny", data=str(tmp_path / "d.jsonl"), objective="raft", out=str(tmp_path / "o"))
    saved = {k: v for k, v in config.model_dump(mode="json").items() if k not in LATER_FIELDS}
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "train_summary.json").write_text(json.dumps({"config": saved}))
    assert _finished(tmp_path / "o", config)
    assert not _finished(tmp_path / "o", config.model_copy(update={"lora_dropout": 0.1}))
