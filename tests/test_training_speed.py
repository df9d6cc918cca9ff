"""Training speed features keep the loss exact: target-only logits and packing (padding-free batches) give the
same loss, gradients and per-example logits as the plain padded forward, on tokenizers with and without BOS."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from raftlab.models import load_model
from raftlab.tasks import get_task, write_jsonl
from raftlab.training import IGNORE, TrainConfig, build_features, train
from raftlab.training.collate import PackCollator, PadCollator
from raftlab.training.loss import model_inputs, shifted_targets, supports_target_logits, target_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATIONALES = ("3 + 2 = 5.", "First add the two numbers of apples, then count them all again to be sure.", "Sum.")


def _features(tok, objective="raft"):
    task = get_task("synth_arith_easy")
    examples = [e.model_copy(update={"rationale": r}) for e, r in zip(task.load("train", limit=3), RATIONALES)]
    return [f for e in examples for f in build_features(e, task, tok, objective)]


@pytest.fixture(autouse=True)
def _trainer_output_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "_OUT", tmp_path / "trainer")


_OUT = None


def _trainer(model, target_logits, cls="grouped", **kw):
    from transformers import TrainingArguments

    from raftlab.training.trainer import _align_trainer_cls, raft_trainer_cls

    args = TrainingArguments(output_dir=str(_OUT), report_to=[], use_cpu=True)  # never written: no training
    make = _align_trainer_cls() if cls == "align" else raft_trainer_cls()
    return make(model=model, args=args, target_logits=target_logits, **kw)


def _loss_and_grads(trainer, model, batch, **kw):
    model.zero_grad()
    loss = trainer.compute_loss(model, batch, **kw)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "tiny-nobos"])
def test_target_only_logits_give_the_full_loss_and_gradients(name):
    model, tok = load_model(name)
    feats = _features(tok)
    batch = PadCollator(tok.pad_token_id)(feats)
    full_loss, full_grads = _loss_and_grads(_trainer(model, False), model, batch)
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    trainer = _trainer(model, True, fused_loss=False)
    assert trainer.target_logits and not trainer.fused_loss
    loss, grads = _loss_and_grads(trainer, model, batch)
    hook.remove()
    assert loss == pytest.approx(full_loss, rel=1e-5)
    assert grads.keys() == full_grads.keys()
    for n in grads:
        torch.testing.assert_close(grads[n], full_grads[n], rtol=1e-4, atol=1e-6, msg=n)
    # the LM head saw only the positions that predict a target, far fewer than the padded width
    n_target_cols = int((shifted_targets(batch["labels"]) != IGNORE).any(0).sum())
    assert seen == [n_target_cols] and n_target_cols < batch["input_ids"].shape[1]


@pytest.mark.slow
def test_target_only_loss_is_a_sum_over_items_under_gradient_accumulation():
    model, tok = load_model("tiny")
    batch = PadCollator(tok.pad_token_id)(_features(tok))
    trainer = _trainer(model, True)
    n = int((batch["labels"][:, 1:] != IGNORE).sum())
    with torch.no_grad():
        mean = trainer.compute_loss(model, batch).item()
        half = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(2 * n)).item()
    assert half == pytest.approx(mean / 2, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "tiny-nobos"])
def test_packed_row_keeps_examples_apart(name):
    """Each example's logits inside the packed row equal its logits alone: attention never crosses examples."""
    model, tok = load_model(name)
    feats = _features(tok)
    packed = PackCollator()(feats)
    assert packed["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in feats))
    starts = [0]
    for f in feats:
        starts.append(starts[-1] + len(f["input_ids"]))
    assert (packed["position_ids"][0, starts[:-1]] == 0).all()
    assert (packed["labels"][0, starts[:-1]] == IGNORE).all()  # no target across a boundary
    assert model.config.use_cache  # the packed mask must not depend on the caller turning the cache off
    with torch.no_grad():
        row = model(**model_inputs(packed)).logits[0]
        for f, a, b in zip(feats, starts, starts[1:]):
            alone = model(input_ids=torch.tensor([f["input_ids"]])).logits[0]
            torch.testing.assert_close(row[a:b], alone, rtol=1e-4, atol=1e-4)
    # and its loss is the padded batch's loss
    trainer = _trainer(model, True)
    with torch.no_grad():
        padded_loss = trainer.compute_loss(model, PadCollator(tok.pad_token_id)(feats)).item()
        packed_loss = trainer.compute_loss(model, packed).item()
    assert packed_loss == pytest.approx(padded_loss, rel=1e-4)


@pytest.mark.slow
def test_packed_align_batch_gives_the_padded_align_loss():
    model, tok = load_model("tiny")
    feats = _features(tok, "align")
    trainer = _trainer(model, True, cls="align", align_lambda=0.3)
    with torch.no_grad():
        padded = trainer.compute_loss(model, PadCollator(tok.pad_token_id)(feats)).item()
        packed_batch = PackCollator()(feats)
        assert {"r_input_ids", "r_labels", "r_position_ids"} <= packed_batch.keys()
        packed = trainer.compute_loss(model, packed_batch).item()
    assert packed == pytest.approx(padded, rel=1e-4)


def test_target_inputs_select_the_union_of_target_columns():
    labels = torch.tensor([[IGNORE, IGNORE, 7, 8, IGNORE], [IGNORE, 5, 6, IGNORE, IGNORE]])
    got = target_inputs({"input_ids": torch.zeros_like(labels), "labels": labels})
    # position i predicts label i+1: row 0 targets sit at columns 1-2, row 1 at columns 0-1
    assert got["logits_to_keep"].tolist() == [0, 1, 2]
    assert got["shift_labels"].tolist() == [[IGNORE, 7, 8], [5, 6, IGNORE]]
    assert "attention_mask" not in got and got["labels"] is got["shift_labels"]


@pytest.mark.slow
def test_models_without_logits_to_keep_fall_back_to_the_full_forward():
    class NoKeep(torch.nn.Module):
        def forward(self, input_ids=None, labels=None):
            return None

    assert not supports_target_logits(NoKeep())
    model, _ = load_model("tiny")
    assert supports_target_logits(model)


@pytest.mark.slow
def test_packed_training_matches_padded_training(tmp_path):
    """Three full-finetuning steps with --pack end with the padded run's weights."""
    task = get_task("synth_arith_easy")
    examples = [e.model_copy(update={"rationale": f"Think {i} times."}) for i, e in
                enumerate(task.load("train", limit=8))]
    write_jsonl(examples, tmp_path / "d.jsonl")
    weights = {}
    for pack in (False, True):
        out = train(TrainConfig(model="tiny", data=str(tmp_path / "d.jsonl"), objective="raft", lora=False,
                                out=str(tmp_path / f"p{pack}"), max_steps=3, batch_size=4, learning_rate=1e-3,
                                pack=pack, logging_steps=1))
        model, _ = load_model(str(out))
        weights[pack] = {n: p.detach().clone() for n, p in model.named_parameters()}
    base, _ = load_model("tiny")
    moved = max((weights[False][n] - p).abs().max().item() for n, p in base.named_parameters())
    assert moved > 1e-3  # training changed the weights ...
    for n, w in weights[False].items():  # ... identically with and without packing
        torch.testing.assert_close(weights[True][n], w, rtol=1e-3, atol=1e-4, msg=n)


@pytest.mark.slow
def test_cli_pack_and_full_logits_flags_reach_the_config(tmp_path):
    import json

    from typer.testing import CliRunner

    from raftlab.cli.main import app

    task = get_task("synth_arith_easy")
    write_jsonl([e.model_copy(update={"rationale": "Add."}) for e in task.load("train", limit=4)], tmp_path / "d.jsonl")
    res = CliRunner().invoke(app, ["train", "--model", "tiny", "--data", str(tmp_path / "d.jsonl"), "--objective",
                                   "raft", "--out", str(tmp_path / "o"), "--max-steps", "1", "--batch-size", "2",
                                   "--pack", "--full-logits"])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "o" / "train_summary.json").read_text())["config"]
    assert config["pack"] is True and config["target_logits"] is False


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["eager", "raftlab"])
def test_plain_attentions_give_the_sdpa_loss_and_gradients(implementation):
    """Training on a CPU switches to a plain matmul attention where it fits (transformers' eager one, or raftlab's
    for Llama-family models): the same loss and gradients (fp32, rtol 1e-4)."""
    from raftlab.training.attention import register

    model, tok = load_model("tiny", dtype=torch.float32)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped key/value heads
    batch = PadCollator(tok.pad_token_id)(_features(tok))
    trainer = _trainer(model, True)
    sdpa_loss, sdpa_grads = _loss_and_grads(trainer, model, batch)
    model.set_attn_implementation(register() if implementation == "raftlab" else implementation)
    loss, grads = _loss_and_grads(trainer, model, batch)
    assert loss == pytest.approx(sdpa_loss, rel=1e-5)
    for n in grads:
        torch.testing.assert_close(grads[n], sdpa_grads[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.slow
def test_raftlab_attention_in_bf16_gives_eager_outputs_and_gradients_up_to_bf16_rounding():
    """In bf16 the attention output is eager attention's (the same products, the same softmax rounded once to
    bf16); the gradients differ by bf16 rounding only, since the softmax's backward uses the bf16 probabilities
    instead of an fp32 copy. Stated tolerance: each input gradient within 2% relative error (norm of the
    difference over the norm, measured ~0.4%) of eager attention's, and no further from the fp64 result than
    eager's error plus 0.2%."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from raftlab.training.attention import cpu_training_attention

    class Module:
        num_key_value_groups, training = 3, True

    batch, heads, kv_heads, length, dim = 2, 9, 3, 40, 64
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, n, length, dim, generator=g).bfloat16() for n in (heads, kv_heads, kv_heads))
    mask = torch.full((length, length), torch.finfo(torch.bfloat16).min).triu(1).bfloat16()[None, None]
    mask = mask.expand(batch, 1, length, length).clone()
    mask[0, :, :, :5] = torch.finfo(torch.bfloat16).min  # a left-padded row
    mask[0, :, :5, :5] = 0
    grad_out = torch.randn(batch, length, heads, dim, generator=g).bfloat16()
    results = {}
    for name, fn, dtype in (("eager", eager_attention_forward, torch.bfloat16),
                            ("raftlab", cpu_training_attention, torch.bfloat16),
                            ("fp64", cpu_training_attention, torch.float64)):
        inputs = [t.to(dtype).clone().requires_grad_() for t in (q, k, v)]
        out, _ = fn(Module(), *inputs, mask.to(dtype).clamp(min=-1e30), 0.125)
        out.backward(grad_out.to(dtype))
        results[name] = [out.detach().double()] + [t.grad.double() for t in inputs]
    torch.testing.assert_close(results["raftlab"][0], results["eager"][0], rtol=0, atol=0)
    for ours, eager, exact in zip(results["raftlab"][1:], results["eager"][1:], results["fp64"][1:]):
        assert (ours - eager).norm() / eager.norm() < 0.02
        assert (ours - exact).norm() / exact.norm() < (eager - exact).norm() / exact.norm() + 0.002


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "tiny-nobos"])
@pytest.mark.parametrize("bf16", [False, True])
def test_fused_loss_gives_the_target_only_loss_and_gradients(name, bf16, monkeypatch):
    """The LM head and the loss fused over target positions, a few rows per chunk: the loss and gradients of the
    unfused target-only logits, as a mean and as a sum over items (gradient accumulation). Stated tolerance: fp32
    loss rel 1e-5 and gradients rtol 1e-4 / atol 1e-6; under bf16 autocast (the head's products in bf16, its weight
    trained: full finetuning of a tied embedding) loss rel 1e-5 and each gradient within 1% of its largest
    element (the head's gradient is summed over chunks in fp32 instead of one bf16 product; measured ~0.2%)."""
    import raftlab.training.fused_loss as fused_loss

    model, tok = load_model(name, dtype=torch.float32)
    model.train()
    batch = PadCollator(tok.pad_token_id)(_features(tok))
    monkeypatch.setattr(fused_loss, "CHUNK_BYTES", 4 * model.config.vocab_size * 3)  # three rows per chunk
    lm_head_calls = []
    model.lm_head.register_forward_hook(lambda *a: lm_head_calls.append(1))
    results = {}
    for fused in (False, True):
        trainer = _trainer(model, True, fused_loss=fused)
        assert trainer.fused_loss == fused
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            results[fused] = [_loss_and_grads(trainer, model, batch),
                              _loss_and_grads(trainer, model, batch, num_items_in_batch=torch.tensor(37))]
        assert len(lm_head_calls) == (0 if fused else 2)
        lm_head_calls.clear()
    for (ref_loss, ref_grads), (loss, grads) in zip(results[False], results[True]):
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        assert grads.keys() == ref_grads.keys()
        assert {"lm_head.weight", "model.embed_tokens.weight"} & grads.keys()  # the tied head trains
        for n in grads:
            if bf16:
                assert (grads[n] - ref_grads[n]).abs().max() <= 0.01 * ref_grads[n].abs().max(), n
            else:
                torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.slow
def test_fused_loss_only_in_training_steps_and_a_gradient_scale_reaches_it():
    """Evaluation (eval mode or no gradients) runs the model's own forward with logits; a backward gradient other
    than 1 (a scaled loss) scales the fused gradients."""
    model, tok = load_model("tiny", dtype=torch.float32)
    batch = PadCollator(tok.pad_token_id)(_features(tok))
    trainer = _trainer(model, True)
    assert trainer.fused_loss
    kwargs = trainer.view_inputs(batch)
    model.train()
    with torch.no_grad():
        assert model(**kwargs).logits is not None
    model.eval()
    assert model(**kwargs).logits is not None
    model.train()
    out = model(**kwargs)
    assert out.logits is None
    model.zero_grad()
    (3 * out.loss).backward()
    tripled = {n: p.grad.clone() for n, p in model.named_parameters()}
    _, grads = _loss_and_grads(trainer, model, batch)
    for n, g in grads.items():
        torch.testing.assert_close(tripled[n], 3 * g, rtol=1e-5, atol=1e-7, msg=n)


@pytest.mark.slow
def test_fused_loss_gives_lora_gradients_on_a_bf16_base():
    """LoRA as raftlab trains it on a CPU with bf16 (frozen bf16 base and head, fp32 adapters, autocast): the fused
    loss gives the unfused loss (rel 1e-5) and adapter gradients within 1% of each one's largest element."""
    from peft import LoraConfig, get_peft_model

    model, tok = load_model("tiny", dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                             init_lora_weights=False))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.train()
    batch = PadCollator(tok.pad_token_id)(_features(tok))
    results = {}
    for fused in (False, True):
        trainer = _trainer(model, True, fused_loss=fused)
        assert trainer.fused_loss == fused
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results[fused] = _loss_and_grads(trainer, model, batch)
    (ref_loss, ref_grads), (loss, grads) = results[False], results[True]
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert grads.keys() == ref_grads.keys() and all("lora_" in n for n in grads)
    for n in grads:
        assert (grads[n] - ref_grads[n]).abs().max() <= 0.01 * ref_grads[n].abs().max(), n


@pytest.mark.slow
@pytest.mark.parametrize("grad_accum", [1, 2])
def test_fused_loss_trains_through_the_trainer(tmp_path, monkeypatch, grad_accum):
    """Through ``train()`` (accelerate's autocast around the model's forward, bf16 LoRA, gradient accumulation):
    the fused loss runs in every training step and the logged losses are the unfused run's (rel 1e-3: bf16)."""
    import raftlab.training.fused_loss as fused_loss
    from raftlab.rationales.oracle import oracle_rationale

    data = tmp_path / "d.jsonl"
    task = get_task("synth_arith_easy")
    write_jsonl([e.model_copy(update={"rationale": oracle_rationale(e)}) for e in task.load("train", limit=8)], data)
    calls = []
    real = fused_loss.target_cross_entropy
    monkeypatch.setattr(fused_loss, "target_cross_entropy", lambda *a: calls.append(1) or real(*a))
    losses = {}
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(fused_loss, "supports_fused_loss", lambda model: False)
        out = train(TrainConfig(model="tiny", data=str(data), objective="raft", out=str(tmp_path / f"o{fused}"),
                                lora=True, lora_dropout=0.0, bf16=True, batch_size=2, grad_accum=grad_accum,
                                epochs=1, logging_steps=1, save_steps=10_000))
        summary = json.loads((out / "train_summary.json").read_text())
        losses[fused] = [h["loss"] for h in summary["log_history"] if "loss" in h]
        if fused:
            assert len(calls) == 4  # one per batch of two rows
    assert len(calls) == 4 and len(losses[True]) == 4 // grad_accum
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_raftlab_attention_keeps_bf16_scores_for_fp32_weights_under_autocast(monkeypatch):
    """Full finetuning under bf16 autocast hands fp32 queries, keys, values and mask: the softmax still runs on
    bf16 scores (the mask is clamped to bf16's range and cast first), and the output is eager attention's up to
    bf16 rounding."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from raftlab.training.attention import cpu_training_attention

    class Module:
        num_key_value_groups, training = 2, True

    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, n, 12, 16, generator=g) for n in (4, 2, 2))
    mask = torch.full((12, 12), torch.finfo(torch.float32).min).triu(1)[None, None].expand(2, 1, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eager, _ = eager_attention_forward(Module(), q, k, v, mask, 0.25)
        softmax_inputs = []
        real_softmax = torch.softmax
        monkeypatch.setattr(torch, "softmax", lambda x, **kw: softmax_inputs.append(x.dtype) or real_softmax(x, **kw))
        ours, _ = cpu_training_attention(Module(), q, k, v, mask, 0.25)
    assert softmax_inputs == [torch.bfloat16]
    assert ours.dtype == eager.dtype == torch.bfloat16 and torch.isfinite(ours).all()
    torch.testing.assert_close(ours.float(), eager.float(), rtol=2e-2, atol=2e-2)


def test_fused_loss_and_raftlab_attention_only_for_plain_llama_family_heads():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    from raftlab.training.attention import NAME, attention_for_cpu_training
    from raftlab.training.fused_loss import supports_fused_loss

    model, _ = load_model("tiny")
    assert supports_fused_loss(model)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert supports_fused_loss(lora)
    adapted_head = get_peft_model(load_model("tiny")[0], LoraConfig(r=2, target_modules=["q_proj", "lm_head"]))
    assert not supports_fused_loss(adapted_head)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, attn_implementation="sdpa"))
    assert not supports_fused_loss(gpt2)
    if torch.cuda.is_available():
        return  # CPU attention only
    attention_for_cpu_training(lora, longest=32, batch_size=2, checkpointing=False)
    assert lora.get_base_model().config._attn_implementation == NAME
    attention_for_cpu_training(gpt2, longest=32, batch_size=2, checkpointing=False)
    assert gpt2.config._attn_implementation == "eager"
    big = load_model("tiny")[0]
    attention_for_cpu_training(big, longest=100_000, batch_size=8, checkpointing=False)  # too large: sdpa stays
    assert big.config._attn_implementation == "sdpa"


@pytest.mark.slow
def test_bf16_lora_base_stays_close_to_fp32(tmp_path):
    """LoRA under bf16 keeps the frozen base in bf16 and the adapters in fp32 (autocast on). Stated tolerance
    against fp32 on one batch of the tiny model: loss within 0.5% relative, every adapter gradient within cosine
    similarity 0.995 and norm within 10% (measured: 4e-5, 0.9999)."""
    from raftlab.training.trainer import prepare

    data = tmp_path / "d.jsonl"
    task = get_task("synth_arith_easy")
    write_jsonl([e.model_copy(update={"rationale": r}) for e, r in zip(task.load("train", limit=3), RATIONALES)],
                data)
    results = {}
    for bf16 in (False, True):
        config = TrainConfig(model="tiny", data=str(data), objective="raft", out=str(tmp_path / "o"), lora=True,
                             bf16=bf16, batch_size=4)
        torch.manual_seed(0)
        model, tok, rows = prepare(config)
        model.eval()  # no LoRA dropout: the two runs see the same computation
        assert next(model.get_base_model().parameters()).dtype == (torch.bfloat16 if bf16 else torch.float32)
        lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
        assert lora and all(p.dtype == torch.float32 for p in lora.values())
        for n, p in lora.items():  # the same adapters in both runs (lora_B starts at zero: give it values)
            g = torch.Generator().manual_seed(hash(n) % 2**31)
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        batch = PadCollator(tok.pad_token_id)(rows[:4])
        trainer = _trainer(model, True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            results[bf16] = _loss_and_grads(trainer, model, batch)
    (loss32, grads32), (loss16, grads16) = results[False], results[True]
    assert loss16 == pytest.approx(loss32, rel=0.005)
    assert grads16.keys() == grads32.keys()
    for n in grads32:
        a, b = grads32[n].flatten(), grads16[n].float().flatten()
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.995, n
        assert b.norm() == pytest.approx(a.norm().item(), rel=0.1), n


def test_mask_dropout_is_inverted_dropout_of_the_same_rate():
    from raftlab.training.fast_dropout import MaskDropout

    torch.manual_seed(0)
    drop = MaskDropout(0.05)
    assert abs(drop.p - 0.05) < 2**-15 and drop.scale == pytest.approx(1 / (1 - drop.p))
    x = torch.ones(1000, 577, dtype=torch.bfloat16, requires_grad=True)  # an element count not divisible by 4
    y = drop(x)
    kept = y != 0
    assert y.dtype == x.dtype and y.shape == x.shape
    assert abs(1 - kept.float().mean().item() - drop.p) < 0.002  # 577k draws: several standard deviations
    assert torch.allclose(y[kept].float(), torch.tensor(drop.scale), rtol=1e-2)  # the survivors scaled
    y.float().sum().backward()
    assert torch.equal(x.grad != 0, kept)  # the gradient flows through the kept elements only
    assert not torch.equal(drop(x) != 0, kept)  # a fresh mask per call
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        MaskDropout(1.0)
    with pytest.raises(ValueError, match="rounds to 1"):
        MaskDropout(0.99999)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("p", [2**-15, 0.05, 0.5, 0.9])
def test_mask_dropout_builds_the_mask_of_a_plain_comparison(dtype, p):
    """The mask built in integers and reinterpreted as floats is, bit for bit, the comparison of the same 15-bit
    draws with the threshold, scaled and converted to the input's type."""
    from raftlab.training.fast_dropout import MASK_BITS, MaskDropout

    drop = MaskDropout(p)
    x = torch.randn(401, 1001, dtype=dtype)  # not a multiple of four; every 15-bit value about 12 times
    torch.manual_seed(3)
    words = torch.empty(-(-x.numel() // 4), dtype=torch.int64).random_()
    bits = words.view(torch.int16)[:x.numel()].view(x.shape) & (2**MASK_BITS - 1)
    expected = ((bits >= drop.threshold) * drop.scale).to(dtype)
    torch.manual_seed(3)
    mask = drop.mask(x)
    assert mask.dtype == dtype and torch.equal(mask, expected)
    assert 0 < int((mask == 0).sum()) < x.numel() or p == 2**-15  # both kinds of element where p allows


def test_every_lora_dropout_becomes_a_mask_dropout():
    from peft import LoraConfig, get_peft_model

    from raftlab.training.fast_dropout import MaskDropout, use_mask_dropout

    model, _ = load_model("tiny", dtype=torch.float32, device="cpu")
    model = get_peft_model(model, LoraConfig(r=4, lora_dropout=0.1, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    layers = len(model.base_model.model.model.layers)
    assert use_mask_dropout(model) == 2 * layers
    drops = [m for m in model.modules() if isinstance(m, MaskDropout)]
    assert len(drops) == 2 * layers and all(abs(d.p - 0.1) < 2**-15 for d in drops)
    assert not any(type(m) is torch.nn.Dropout and m.p > 0 for m in model.modules())


@pytest.mark.parametrize("p", [0.0, 0.1])
def test_lora_dropout_setting_reaches_every_adapter(tmp_path, p):
    """``lora_dropout`` sets every adapter's input dropout (a MaskDropout of that rate on a CPU, torch's dropout on
    a GPU; none at 0)."""
    from raftlab.training.fast_dropout import MaskDropout
    from raftlab.training.trainer import prepare

    data = tmp_path / "d.jsonl"
    task = get_task("synth_arith_easy")
    write_jsonl([e.model_copy(update={"rationale": r}) for e, r in zip(task.load("train", limit=3), RATIONALES)],
                data)
    config = TrainConfig(model="tiny", data=str(data), objective="raft", out=str(tmp_path / "o"), lora=True,
                         lora_dropout=p)
    model = prepare(config)[0]
    drops = [m for m in model.modules() if isinstance(m, (MaskDropout, torch.nn.Dropout)) and m.p > 0]
    adapters = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    assert adapters and len(drops) == (len(adapters) if p else 0)
    assert all(abs(d.p - p) < 2**-15 for d in drops)


def _prefix_calls(model):
    """(rows, positions) of every forward call's input ids, through a hook on the token embeddings."""
    calls = []
    hook = model.get_input_embeddings().register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    return calls, hook


@pytest.mark.slow
@pytest.mark.parametrize(("name", "cls", "objective"), [("tiny", "grouped", "raft"), ("tiny-nobos", "grouped", "raft"),
                                                       ("tiny", "align", "align")])
def test_shared_prefix_gives_the_whole_rows_loss_and_gradients(name, cls, objective):
    """The instruction every row starts with, run once per batch, gives the loss and gradients of running every
    row whole; the prefix pass is one row of the common prefix and the rest continues its cache."""
    from raftlab.training.shared_prefix import MIN_PREFIX, shared_prefix_length

    model, tok = load_model(name)
    model.train()
    batch = PadCollator(tok.pad_token_id)(_features(tok, objective))
    kw = {"align_lambda": 0.3} if cls == "align" else {}
    whole_loss, whole_grads = _loss_and_grads(_trainer(model, True, cls, shared_prefix=False, **kw), model, batch)
    trainer = _trainer(model, True, cls, **kw)
    assert trainer.shared_prefix
    length = shared_prefix_length(trainer.view_inputs(batch))
    assert length >= MIN_PREFIX
    calls, hook = _prefix_calls(model)
    loss, grads = _loss_and_grads(trainer, model, batch)
    hook.remove()
    rows, width = batch["input_ids"].shape
    assert calls[:2] == [(1, length), (rows, width - length)]
    assert loss == pytest.approx(whole_loss, rel=1e-5)
    assert grads.keys() == whole_grads.keys()
    for n in grads:
        torch.testing.assert_close(grads[n], whole_grads[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.slow
def test_shared_prefix_gives_the_whole_rows_gradients_of_lora_adapters():
    from peft import LoraConfig, get_peft_model

    model, tok = load_model("tiny")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                             init_lora_weights=False))
    model.train()
    batch = PadCollator(tok.pad_token_id)(_features(tok))
    whole_loss, whole_grads = _loss_and_grads(_trainer(model, True, shared_prefix=False), model, batch)
    trainer = _trainer(model, True)
    assert trainer.shared_prefix
    loss, grads = _loss_and_grads(trainer, model, batch)
    assert loss == pytest.approx(whole_loss, rel=1e-5)
    assert grads.keys() == whole_grads.keys() and any("lora_A" in n for n in grads)
    for n in grads:
        torch.testing.assert_close(grads[n], whole_grads[n], rtol=1e-4, atol=1e-6, msg=n)


def test_shared_prefix_length_stops_at_the_first_difference_the_mask_and_the_first_kept_logit():
    from raftlab.training.shared_prefix import MIN_PREFIX, shared_prefix_length

    common = list(range(10, 10 + MIN_PREFIX + 4))
    ids = torch.tensor([common + [1, 2, 3], common + [4, 5, 0]])
    mask = torch.tensor([[1] * 15, [1] * 14 + [0]])
    keep = torch.arange(13, 15)
    assert shared_prefix_length({"input_ids": ids, "attention_mask": mask, "logits_to_keep": keep}) == len(common)
    # a kept logit inside the common tokens ends the prefix there (its position's logits are needed)
    early = torch.arange(MIN_PREFIX + 1, 15)
    assert shared_prefix_length({"input_ids": ids, "logits_to_keep": early}) == MIN_PREFIX + 1
    # too short, one row, packed rows (position ids), or no target-only logits: not shared
    assert shared_prefix_length({"input_ids": ids, "logits_to_keep": torch.arange(MIN_PREFIX - 1, 15)}) == 0
    assert shared_prefix_length({"input_ids": ids[:1], "logits_to_keep": keep}) == 0
    assert shared_prefix_length({"input_ids": ids, "position_ids": ids, "logits_to_keep": keep}) == 0
    assert shared_prefix_length({"input_ids": ids, "logits_to_keep": 0}) == 0
    # a padded position of one row is not common even where the ids agree
    padded = mask.clone()
    padded[1, 3] = 0
    assert shared_prefix_length({"input_ids": ids, "attention_mask": padded, "logits_to_keep": keep}) == 0


@pytest.mark.slow
def test_shared_prefix_trains_through_the_trainer_under_bf16_lora(tmp_path, monkeypatch):
    """Through ``train()`` (accelerate's autocast on the model's forward, bf16 base, fp32 adapters): the prefix
    pass runs under the same autocast, and the first step's loss (LoRA's B starts at zero, so dropout cannot
    change it) is the whole rows' loss."""
    import raftlab.training.shared_prefix as sp
    from raftlab.rationales.oracle import oracle_rationale

    data = tmp_path / "d.jsonl"
    task = get_task("synth_arith_easy")
    write_jsonl([e.model_copy(update={"rationale": oracle_rationale(e)}) for e in task.load("train", limit=8)], data)
    passes = []
    real_pass = sp.prefix_pass
    monkeypatch.setattr(sp, "prefix_pass", lambda *a: passes.append(a[2]) or real_pass(*a))
    first_loss = {}
    for shared in (True, False):
        out = train(TrainConfig(model="tiny", data=str(data), objective="raft", out=str(tmp_path / f"o{shared}"),
                                lora=True, bf16=True, batch_size=4, epochs=1, logging_steps=1, save_steps=10_000,
                                shared_prefix=shared))
        summary = json.loads((out / "train_summary.json").read_text())
        first_loss[shared] = next(h["loss"] for h in summary["log_history"] if "loss" in h)
        if shared:
            assert passes and min(passes) >= sp.MIN_PREFIX  # every step's batch shared its instruction
            n_passes = len(passes)
    assert len(passes) == n_passes  # none with shared_prefix off
    assert first_loss[True] == pytest.approx(first_loss[False], rel=1e-2)


def test_shared_prefix_only_for_cached_llama_family_models_with_static_rotary_frequencies():
    from types import SimpleNamespace as NS

    from raftlab.training.shared_prefix import supports_shared_prefix

    def model(**config):
        return NS(config=NS(**{"model_type": "llama", "rope_parameters": {"rope_type": "default"}, **config}))

    assert supports_shared_prefix(model())
    assert supports_shared_prefix(model(rope_parameters={"rope_type": "llama3"}))
    # frequencies recomputed from a call's longest position: a prefix alone would get other ones
    assert not supports_shared_prefix(model(rope_parameters={"rope_type": "dynamic"}))
    assert not supports_shared_prefix(model(rope_parameters={"rope_type": "longrope"}))
    assert not supports_shared_prefix(model(model_type="gpt2"))
    assert not supports_shared_prefix(model(layer_types=["full_attention", "sliding_attention"]))
