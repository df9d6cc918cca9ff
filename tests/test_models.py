"""Model loading: tiny test models, the packaged SmolLM2, LoRA adapter directories."""

from __future__ import annotations

import pytest
import torch

from raftlab.models import build_tiny_model, load_model, load_tokenizer, resolve_model_path


@pytest.mark.slow
def test_tiny_variants_differ_only_in_bos():
    tok_bos = load_tokenizer("tiny")
    tok_nobos = load_tokenizer("tiny-nobos")
    with_bos = tok_bos("The answer is 42.").input_ids
    without = tok_nobos("The answer is 42.").input_ids
    assert with_bos[0] == tok_bos.bos_token_id
    assert with_bos[1:] == without
    assert tok_bos.decode(without) == "The answer is 42."


@pytest.mark.slow
def test_tiny_model_generates_and_is_deterministic(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    ma, tok = load_model(str(a))
    mb, _ = load_model(str(b))
    ids = tok("Question: 2 + 3 = ?", return_tensors="pt")
    with torch.no_grad():
        la, lb = ma(**ids).logits, mb(**ids).logits
    assert torch.equal(la, lb)
    out = ma.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids.input_ids.shape[1] + 5


@pytest.mark.slow
def test_smollm2_packaged_model_loads_offline():
    model, tok = load_model("smollm2")
    assert model.config.model_type == "llama"
    assert model.num_parameters() > 100_000_000
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    assert tok.decode(int(logits.argmax())).strip() == "Paris"


@pytest.mark.slow
def test_lora_adapter_dir_loads_on_its_base(tmp_path):
    from peft import LoraConfig, get_peft_model

    base_dir = build_tiny_model(tmp_path / "base", seed=1)
    base, tok = load_model(str(base_dir))
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    tok.save_pretrained(tmp_path / "adapter")
    ids = tok("hello world", return_tensors="pt")
    with torch.no_grad():
        expected = peft_model(**ids).logits
    merged, _ = load_model(str(tmp_path / "adapter"))
    with torch.no_grad():
        got = merged(**ids).logits
    assert torch.allclose(expected, got, atol=1e-5)


def test_bad_specs_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path("./no/such/model")
    f = tmp_path / "file.bin"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        resolve_model_path(str(f))


def test_a_directory_without_a_model_is_refused_with_a_hint(tmp_path):
    from raftlab.models import resolve_model_path

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"not a model directory.*a model is in .*model"):
        resolve_model_path(str(tmp_path))
    assert resolve_model_path(str(tmp_path / "model")) == str(tmp_path / "model")
