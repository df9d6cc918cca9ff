"""lm-evaluation-harness as a real third-party client of `raftlab serve` (local-completions with its default
arguments, and local-chat-completions), over a tiny local multiple-choice + generate_until task pair."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

DATA = Path(__file__).parent / "data" / "lm_eval"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    """The task YAMLs with their data paths made absolute."""
    out = tmp_path_factory.mktemp("lm_eval_tasks")
    for name in ("raftlab_mc.yaml", "raftlab_gen.yaml"):
        (out / name).write_text((DATA / name).read_text().replace("DATA_DIR", str(DATA)))
    return out


def _evaluate(model: str, model_args: str, tasks: list[str], task_dir: Path, **kw):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    return simple_evaluate(model=model, model_args=model_args, tasks=tasks, task_manager=TaskManager(
        include_path=str(task_dir)), log_samples=True, **kw)


def _loglikelihood(hf, context: str, continuation: str) -> float:
    """transformers' log P(continuation | context), split into tokens the way lm-eval does (no BOS)."""
    tok = hf.tokenizer
    ctx = tok(context, add_special_tokens=False).input_ids
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    with torch.no_grad():
        logp = torch.log_softmax(hf.model(torch.tensor([whole])).logits[0].float(), -1)
    return sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


@pytest.mark.slow
def test_lm_eval_local_completions_with_default_arguments(served_hf, hf, task_dir):
    """Default local-completions: token-id prompts, echo + logprobs + max_tokens=1 for loglikelihood, remote
    tokenizer via /tokenizer_info and /tokenize. The loglikelihoods lm-eval logs equal transformers'."""
    out = _evaluate("local-completions", f"model=tiny,base_url={served_hf}/completions",
                    ["raftlab_mc", "raftlab_gen"], task_dir)
    assert "acc,none" in out["results"]["raftlab_mc"] and "exact_match,none" in out["results"]["raftlab_gen"]
    samples = out["samples"]["raftlab_mc"]
    assert len(samples) == 4
    for s in samples:
        context = s["arguments"]["gen_args_0"]["arg_0"] if isinstance(s["arguments"], dict) else s["arguments"][0][0]
        for i, resp in enumerate(s["resps"]):
            continuation = (s["arguments"][f"gen_args_{i}"]["arg_1"] if isinstance(s["arguments"], dict)
                            else s["arguments"][i][1])
            assert resp[0][0] == pytest.approx(_loglikelihood(hf, context, continuation), abs=1e-3)
    assert all(isinstance(s["resps"][0][0], str) for s in out["samples"]["raftlab_gen"])


@pytest.mark.slow
def test_lm_eval_local_chat_completions(served_hf, task_dir):
    out = _evaluate("local-chat-completions", f"model=tiny,base_url={served_hf}/chat/completions",
                    ["raftlab_gen"], task_dir, apply_chat_template=True)
    assert "exact_match,none" in out["results"]["raftlab_gen"]
    assert len(out["samples"]["raftlab_gen"]) == 3
