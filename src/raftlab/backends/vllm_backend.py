"""vLLM backend (optional extra ``pip install raftlab[vllm]``, GPUs).

Uses ``SamplingParams(n=k)`` so the k samples of a prompt share its prefill, automatic prefix caching across
prompts that share an instruction, and tensor parallelism for models that need several GPUs.
"""

from __future__ import annotations

from typing import Any

from raftlab.backends.base import ContinuationScore, Generation, SamplingParams


class VLLMBackend:
    name = "vllm"
    thread_safe = False

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("the vllm backend needs the optional extra: pip install 'raftlab[vllm]'") from exc
        from raftlab.models import resolve_model_path
        from raftlab.models.loading import named_damage

        self.model_name = model
        path = resolve_model_path(model)
        with named_damage(path):  # a damaged model file is named, not reported as vLLM's traceback
            self.llm = LLM(model=path, tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                           gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                           enable_prefix_caching=True, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        from vllm import SamplingParams as VSP

        sp = VSP(n=params.n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or -1,
                 max_tokens=params.max_new_tokens, stop=list(params.stop) or None, seed=params.seed)
        outs = self.llm.generate(prompts, sp, use_tqdm=False)
        return [[Generation(text=o.text, num_tokens=len(o.token_ids), finish_reason=o.finish_reason or "stop")
                 for o in out.outputs] for out in outs]

    def score(self, prompts: list[str], continuations: list[str]) -> list[ContinuationScore]:
        from vllm import SamplingParams as VSP

        sp = VSP(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outs = self.llm.generate([p + c for p, c in zip(prompts, continuations)], sp, use_tqdm=False)
        scores = []
        for p, out in zip(prompts, outs):
            ctx, full = self.tokenizer(p).input_ids, out.prompt_token_ids
            n_ctx = 0  # longest common prefix: a token merging across the boundary belongs to the continuation
            while n_ctx < min(len(ctx), len(full)) and ctx[n_ctx] == full[n_ctx]:
                n_ctx += 1
            if n_ctx == 0:
                raise ValueError("vllm score(): the first token has no log-prob; give a non-empty prompt "
                                 "(or a tokenizer that adds BOS)")
            ids = full[n_ctx:]
            lps = out.prompt_logprobs[n_ctx:]
            scores.append(ContinuationScore(token_logprobs=[lp[t].logprob for t, lp in zip(ids, lps)],
                                            tokens=[self.tokenizer.decode([t]) for t in ids]))
        return scores
