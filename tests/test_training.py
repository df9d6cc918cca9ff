"""Training: loss masks token by token for every objective on two tokenizers, Align loss by hand, a tiny
model that learns, LoRA save/reload/eval, mixtures, clear errors, the debug view."""

from __future__ import annotations

import json
import random

import pytest
import torch

from raftlab.models import load_model, load_tokenizer
from raftlab.schema import Example
from raftlab.tasks import get_task, task_for, write_jsonl
from raftlab.training import IGNORE, OBJECTIVES, TrainConfig, build_features, build_mixture, train, views
from raftlab.training.collate import PadCollator
from raftlab.rationales.blank import add_think_tokens, think_tokens


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _example(rationale="Ann has 3 apples and buys 2, so 3 + 2 = 5."):
    task = get_task("synth_arith_easy")
    ex = task.load("train", limit=1)[0]
    return task, ex.model_copy(update={"rationale": rationale})


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer_name", ["tiny", "tiny-nobos"])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_loss_mask_token_by_token(tokenizer_name, objective):
    tok = load_tokenizer(tokenizer_name)
    task, ex = _example()
    add_think_tokens(tok, 12)
    pairs = views(ex, task, objective, blank_len=12)
    feats = build_features(ex, task, tok, objective, blank_len=12)
    flat = []
    for f in feats:  # align packs both views into one feature
        flat.append((f["input_ids"], f["labels"]))
        if "r_input_ids" in f:
            flat.append((f["r_input_ids"], f["r_labels"]))
    assert len(flat) == len(pairs) == (2 if objective in ("mix", "align") else 1)
    for (prompt, target), (ids, labels) in zip(pairs, flat):
        # nothing dropped: the sequence is exactly prompt+target (+BOS if the tokenizer adds one) + EOS
        assert ids == tok(prompt + target).input_ids + [tok.eos_token_id]
        assert len(ids) == len(labels)
        trained = [t for t, lab in zip(ids, labels) if lab != IGNORE]
        masked = [t for t, lab in zip(ids, labels) if lab == IGNORE]
        assert all(lab in (IGNORE, t) for t, lab in zip(ids, labels))
        first_trained = next(i for i, lab in enumerate(labels) if lab != IGNORE)
        assert all(lab == IGNORE for lab in labels[:first_trained])
        assert all(lab != IGNORE for lab in labels[first_trained:])  # one contiguous target span
        assert tok.decode(masked, skip_special_tokens=True) == prompt
        assert trained[-1] == tok.eos_token_id
        assert tok.decode(trained[:-1], skip_special_tokens=False) == target
        if tokenizer_name == "tiny":
            assert ids[0] == tok.bos_token_id and labels[0] == IGNORE
        else:
            assert ids[0] != tok.bos_token_id
    if objective == "label":
        assert pairs[0][1] == task.target(ex) and "step by step" not in pairs[0][0]
    if objective in ("raft", "reason"):
        assert pairs[0][1] == task.target(ex, ex.rationale) and "step by step" in pairs[0][0]
    if objective == "blank":
        assert pairs[0][1].strip().startswith("<Think_0> <Think_1>") and "apples" not in pairs[0][1]
        assert sum(tok.convert_tokens_to_ids(t) in flat[0][0] for t in think_tokens(12)) == 12
    if objective == "explain":
        assert pairs[0][1].index("The answer is") < pairs[0][1].index("apples")


@pytest.mark.slow
def test_align_loss_is_the_weighted_sum_of_the_two_view_losses(tmp_path):
    from transformers import TrainingArguments

    from raftlab.training.trainer import _align_trainer_cls

    model, tok = load_model("tiny")
    task, ex = _example()
    feats = [build_features(e, task, tok, "align")[0] for e in (ex, ex.model_copy(update={"rationale": "x y"}))]
    batch = PadCollator(tok.pad_token_id)(feats)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = _align_trainer_cls()(model=model, args=args, align_lambda=0.3)
    got = trainer.compute_loss(model, batch)

    def mean_ce(ids, mask, labels):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        tgt = labels[:, 1:]
        keep = tgt != IGNORE
        lp = torch.log_softmax(logits.float(), -1).gather(-1, tgt.clamp(min=0)[..., None])[..., 0]
        return -(lp * keep).sum() / keep.sum()

    with torch.no_grad():
        expected = 0.3 * mean_ce(batch["input_ids"], batch["attention_mask"], batch["labels"]) + \
            0.7 * mean_ce(batch["r_input_ids"], batch["r_attention_mask"], batch["r_labels"])
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.slow
def test_align_loss_is_divided_over_gradient_accumulation_steps(tmp_path):
    """Each micro-batch's Align loss is a mean, so with accumulation over 2 batches Trainer must halve it."""
    from transformers import TrainingArguments

    from raftlab.training.trainer import _align_trainer_cls

    model, tok = load_model("tiny")
    task, ex = _example()
    batch = PadCollator(tok.pad_token_id)(build_features(ex, task, tok, "align"))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True,
                             gradient_accumulation_steps=2)
    trainer = _align_trainer_cls()(model=model, args=args, align_lambda=0.5)
    trainer.current_gradient_accumulation_steps = 2
    with torch.no_grad():
        whole = trainer.compute_loss(model, batch).item()
    n_items = torch.tensor(int((batch["labels"][:, 1:] != IGNORE).sum()))
    step = trainer.training_step(model, batch, num_items_in_batch=n_items).item()
    assert step == pytest.approx(whole / 2, rel=1e-4)


@pytest.mark.slow
def test_blank_lora_trains_think_rows_of_an_untied_output_layer(tmp_path):
    """With an untied lm_head the think tokens' output rows must train too, or all <Think_i> share one logit."""
    from safetensors.torch import load_file

    model, tok = load_model("tiny")
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    model.save_pretrained(tmp_path / "untied")
    tok.save_pretrained(tmp_path / "untied")
    task, _ = _example()
    examples = [e.model_copy(update={"rationale": "one two three"}) for e in task.load("train", limit=4)]
    write_jsonl(examples, tmp_path / "d.jsonl")
    out = train(TrainConfig(model=str(tmp_path / "untied"), data=str(tmp_path / "d.jsonl"), objective="blank",
                            out=str(tmp_path / "b"), max_steps=2, batch_size=4, learning_rate=1e-2))
    saved = load_file(out / "adapter_model.safetensors")
    assert any("lm_head" in k and "token_adapter" in k for k in saved), sorted(saved)
    assert any("embed_tokens" in k and "token_adapter" in k for k in saved), sorted(saved)
    reloaded, tok2 = load_model(str(out))
    think = tok2.convert_tokens_to_ids(think_tokens(3))
    rows = reloaded.get_output_embeddings().weight[think]
    assert not torch.allclose(rows[0], rows[1])  # the think tokens' output rows were trained apart


WORDS = {"A": ["rain", "snow", "sunny"], "B": ["pizza", "bread", "soup"]}


def _keyword_task(n: int, seed: int) -> list[Example]:
    r = random.Random(seed)
    out = []
    for i in range(n):
        label = r.choice("AB")
        out.append(Example(id=f"kw-{seed}-{i}", task="kwtopic", category="synthetic",
                           question=f"Text: {r.choice(WORDS[label])}\nOptions: (A) weather (B) food",
                           label=label, option_letters=["A", "B"], options=["weather", "food"]))
    return out


@pytest.mark.slow
def test_tiny_model_learns_a_synthetic_task(tmp_path):
    """Full finetuning of the random-init tiny model: loss falls and held-out accuracy rises above chance."""
    from raftlab.backends.hf import HFBackend
    from raftlab.inference import evaluate

    write_jsonl(_keyword_task(32, 0), tmp_path / "train.jsonl")
    test = _keyword_task(40, 1)
    task = task_for(test[0])
    before = evaluate(HFBackend("tiny"), task, test, mode="direct", max_new_tokens=10, progress=False)
    out = train(TrainConfig(model="tiny", data=str(tmp_path / "train.jsonl"), objective="label",
                            out=str(tmp_path / "ft"), lora=False, learning_rate=1e-2, epochs=40, batch_size=8,
                            logging_steps=10, save_steps=10_000))  # 160 steps
    losses = [h["loss"] for h in json.loads((out / "train_summary.json").read_text())["log_history"] if "loss" in h]
    assert losses[-1] < 0.25 * losses[0]
    after = evaluate(HFBackend(str(out)), task, test, mode="direct", max_new_tokens=10, progress=False)
    assert after["accuracy"] >= 0.8 > before["accuracy"]


@pytest.mark.slow
def test_lora_adapter_saves_reloads_and_evaluates(tmp_path):
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    task, ex = _example()
    examples = [e.model_copy(update={"rationale": "3 + 2 = 5."}) for e in task.load("train", limit=16)]
    write_jsonl(examples, tmp_path / "d.jsonl")
    out = train(TrainConfig(model="tiny", data=str(tmp_path / "d.jsonl"), objective="raft", out=str(tmp_path / "lora"),
                            lora=True, max_steps=3, batch_size=4, learning_rate=1e-2))
    assert (out / "adapter_config.json").exists()
    reloaded, tok = load_model(str(out))
    base, _ = load_model("tiny")
    ids = tok(task.prompt(ex, "cot"), return_tensors="pt")
    with torch.no_grad():
        assert not torch.allclose(reloaded(**ids).logits, base(**ids).logits)  # the adapter changed the model
    res = CliRunner().invoke(app, ["eval", "--model", str(out), "--task", "synth_arith_easy", "--limit", "2",
                                   "--k", "2", "--max-new-tokens", "6", "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n"] == 2


@pytest.mark.slow
def test_blank_objective_trains_think_tokens_with_lora(tmp_path):
    task, _ = _example()
    examples = [e.model_copy(update={"rationale": "one two three four"}) for e in task.load("train", limit=8)]
    write_jsonl(examples, tmp_path / "d.jsonl")
    out = train(TrainConfig(model="tiny", data=str(tmp_path / "d.jsonl"), objective="blank", out=str(tmp_path / "b"),
                            max_steps=2, batch_size=4))
    model, tok = load_model(str(out))
    assert tok.convert_tokens_to_ids("<Think_0>") != tok.unk_token_id
    assert model.get_input_embeddings().num_embeddings == len(tok)


@pytest.mark.slow
def test_missing_rationale_error_names_the_line(tmp_path):
    task, ex = _example()
    rows = [ex, ex.model_copy(update={"id": "no-rationale", "rationale": None})]
    write_jsonl(rows, tmp_path / "d.jsonl")
    with pytest.raises(ValueError, match=r"d\.jsonl:2: field 'rationale'"):
        train(TrainConfig(model="tiny", data=str(tmp_path / "d.jsonl"), objective="raft", out=str(tmp_path / "o")))


def test_mixture_follows_the_sampling_weights():
    a = [Example(id=f"a{i}", task="ta", category="nlu", question="q", label="A", option_letters=["A", "B"],
                 options=["x", "y"]) for i in range(50)]
    b = [e.model_copy(update={"id": f"b{i}", "task": "tb"}) for i, e in enumerate(a)]
    mix = build_mixture(a + b, {"ta": 3, "tb": 1}, size=80, seed=0)
    assert sum(e.task == "ta" for e in mix) == 60 and sum(e.task == "tb" for e in mix) == 20
    polarity = build_mixture(a + b, {"ta": 1}, seed=0)  # one polarity only
    assert {e.task for e in polarity} == {"ta"}
    with pytest.raises(ValueError, match="no data: tc"):
        build_mixture(a, {"tc": 1})


@pytest.mark.slow
def test_debug_tokens_cli(tmp_path):
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    task, ex = _example()
    write_jsonl([ex], tmp_path / "d.jsonl")
    res = CliRunner().invoke(app, ["train", "--model", "tiny", "--data", str(tmp_path / "d.jsonl"), "--objective",
                                   "align", "--debug-tokens", "1"])
    assert res.exit_code == 0, res.output
    assert "rationale view" in res.output and ", T)" in res.output and ", -)" in res.output


def test_length_grouped_sampler_groups_even_small_datasets():
    from raftlab.training.sampler import GroupedByLengthSampler

    lengths = [10, 100] * 8  # 16 examples, batch 4: transformers' sampler would not group these at all
    order = list(GroupedByLengthSampler(lengths, 4, seed=3))
    assert sorted(order) == list(range(16))
    batches = [[lengths[i] for i in order[b : b + 4]] for b in range(0, 16, 4)]
    assert all(len(set(b)) == 1 for b in batches)  # every batch is homogeneous: no padding wasted
    assert batches[0][0] == 100  # longest batch first
    assert order != list(GroupedByLengthSampler(lengths, 4, seed=4))  # seeded shuffle


@pytest.mark.slow
def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    """A run cut off after checkpoint-4 and resumed ends with the same weights as one that never stopped."""
    import shutil

    from safetensors.torch import load_file

    write_jsonl(_keyword_task(12, 2), tmp_path / "d.jsonl")  # 3 batches per epoch: checkpoints fall mid-epoch

    def config(out: str, resume: bool = False) -> TrainConfig:
        return TrainConfig(model="tiny", data=str(tmp_path / "d.jsonl"), objective="label", out=str(tmp_path / out),
                           lora=False, learning_rate=1e-3, max_steps=5, batch_size=4, save_steps=2, resume=resume,
                           logging_steps=1)

    full = train(config("full"))
    cut = train(config("cut"))
    for p in [cut / "checkpoints" / "checkpoint-5", cut / "model.safetensors", cut / "train_summary.json"]:
        shutil.rmtree(p) if p.is_dir() else p.unlink()  # as if killed during step 5
    assert [p.name for p in (cut / "checkpoints").iterdir()] == ["checkpoint-4"]
    from transformers import Trainer

    trained_steps = []
    original = Trainer.training_step
    monkeypatch.setattr(Trainer, "training_step",
                        lambda self, *a, **k: trained_steps.append(1) or original(self, *a, **k))
    resumed = train(config("cut", resume=True))
    assert len(trained_steps) == 1  # steps 1-4 came from the checkpoint (mid-epoch 2); only step 5 ran
    summary = json.loads((resumed / "train_summary.json").read_text())
    assert summary["global_step"] == 5
    assert [h["step"] for h in summary["log_history"] if "loss" in h] == [1, 2, 3, 4, 5]
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


@pytest.mark.slow
def test_cli_reads_a_rationale_run_directory_and_names_a_missing_export(tmp_path):
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    task, ex = _example("Two plus three is five.")
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl([ex], run / "rationales.jsonl")
    res = CliRunner().invoke(app, ["train", "--model", "tiny", "--data", str(run), "--objective", "raft",
                                   "--debug-tokens", "1"])
    assert res.exit_code == 0, res.output
    n_trained = sum(lab != IGNORE for lab in build_features(ex, task, load_tokenizer("tiny"), "raft")[0]["labels"])
    assert f"{n_trained} trained" in res.output and n_trained > 10  # the rationale from the run dir is the target
    empty = tmp_path / "empty-run"
    empty.mkdir()
    res = CliRunner().invoke(app, ["train", "--model", "tiny", "--data", str(empty), "--objective", "raft",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not found" in res.output and "rationale run dir" in res.output


@pytest.mark.parametrize("name", ["fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_shipped_accelerate_configs_parse_and_request_a_full_final_save(name):
    """Parses each shipped config and checks the settings that make the final save a whole model (no training)."""
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    import raftlab.training

    path = Path(raftlab.training.__file__).parent / "configs" / f"{name}.yaml"
    cfg = ClusterConfig.from_yaml_file(path)
    assert cfg.num_processes > 1 and cfg.mixed_precision == "bf16"
    if name == "fsdp":  # Trainer.save_model writes nothing to OUT under SHARDED_STATE_DICT
        assert cfg.distributed_type == "FSDP" and cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    else:
        assert cfg.distributed_type == "DEEPSPEED"
        assert cfg.deepspeed_config["zero_stage"] == int(name[-1])
        if name.endswith("3"):  # gather the ZeRO-3 shards into one 16-bit model at the final save
            assert cfg.deepspeed_config["zero3_save_16bit_model"]


@pytest.mark.parametrize("name", ["fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_launch_config_batch_arithmetic_is_checked_without_a_gpu(name, tmp_path):
    """World size from the accelerate config, the accumulation raftlab will use, the global batch; a DeepSpeed
    accumulation that disagrees is refused before anything is launched."""
    from pathlib import Path

    import yaml

    import raftlab.training
    from raftlab.training import TrainConfig
    from raftlab.training.trainer import check_accelerate_config

    path = Path(raftlab.training.__file__).parent / "configs" / f"{name}.yaml"
    got = check_accelerate_config(path, TrainConfig(model="tiny", data="d.jsonl", out="o", batch_size=4))
    assert got == {"world_size": 8, "grad_accum": 1, "global_batch": 32}
    with pytest.raises(ValueError, match="not a multiple of batch_size 4 x 8"):
        check_accelerate_config(path, TrainConfig(model="tiny", data="d.jsonl", out="o", batch_size=4, global_batch=48))
    if name.startswith("deepspeed"):
        with pytest.raises(ValueError, match="gradient_accumulation_steps is 1, but this training accumulates 2"):
            check_accelerate_config(path, TrainConfig(model="tiny", data="d.jsonl", out="o", batch_size=4,
                                                      global_batch=64))
        cfg = yaml.safe_load(path.read_text())
        cfg["deepspeed_config"]["gradient_accumulation_steps"] = "auto"
        (tmp_path / "auto.yaml").write_text(yaml.safe_dump(cfg))
        got = check_accelerate_config(tmp_path / "auto.yaml", TrainConfig(model="tiny", data="d.jsonl", out="o",
                                                                           batch_size=4, global_batch=64))
        assert got["grad_accum"] == 2 and got["global_batch"] == 64
