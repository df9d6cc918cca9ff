"""transformers backend (CPU or GPU): the adapter between raftlab's :class:`~raftlab.backends.base.Backend`
protocol and a loaded causal LM.

It owns what a caller sees: prompt formatting (raw text, or a chat with an optional system message), tokenizing,
the batch size (in prompts, each with all its samples), stop strings and regexes applied to the text, the
:class:`~raftlab.backends.base.Generation` records, and scoring. Sampling itself runs in
:class:`raftlab.engine.decoder.Decoder` (shared-prefix prefill, cascade attention, CPU kernels, seeded per-row
sampling: results depend neither on batch composition nor on the device).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from typing import Any

from raftlab.backends.base import TEACHER_SYSTEM_PROMPT, ContinuationScore, Generation, SamplingParams

#: Sequences (prompts x samples) per generation forward when no batch size is given.
DEFAULT_ROWS_PER_FORWARD = 40


class HFBackend:
    """Generate and score with a transformers causal LM."""

    name = "hf"
    thread_safe = False
    #: ``generate`` takes ``should_stop(prompt_index)``, checked once per decoding step
    cancellable = True

    def __init__(
        self,
        model: str | Any = "tiny",
        *,
        tokenizer: Any = None,
        dtype: Any = None,
        device: str | None = None,
        batch_size: int | None = None,
        score_batch_size: int = 8,
        chat_template: bool | None = None,
        kv_cache_mb: int | None = None,
        cascade: bool = True,
        cpu_kernels: bool = True,
        **from_pretrained: Any,
    ) -> None:
        """``batch_size``: prompts per generation forward, each decoded with all its ``params.n`` samples
        (default: as many as make :data:`DEFAULT_ROWS_PER_FORWARD` sequences); ``score_batch_size``: texts per
        scoring forward (full-vocabulary logits of every position, so keep it small); ``kv_cache_mb``: the KV
        cache one generation batch may hold (prompt + budget, for every sample), which caps the batch for long
        prompts so that memory stays bounded (default: 512 on a CPU, a quarter of the free memory on a GPU);
        ``cascade`` and ``cpu_kernels``: the CPU decoding paths of :class:`raftlab.engine.decoder.Decoder` (cascade
        attention for k > 1 samples per prompt; prepacked bf16 linears, fused RMSNorm, the lean and the native
        decoding steps; a model object passed in is changed in place). Further keyword arguments go to
        transformers' ``from_pretrained`` (e.g. ``attn_implementation="sdpa"``)."""
        import torch

        from raftlab.engine.decoder import Decoder

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if isinstance(model, str):
            from raftlab.models import load_model

            self.model_name = model
            model, tokenizer = load_model(model, dtype=dtype, device=device, **from_pretrained)
        else:
            if from_pretrained:
                raise ValueError(f"options {sorted(from_pretrained)} need a model spec, not a loaded model")
            self.model_name = getattr(model.config, "name_or_path", "custom")
            if tokenizer is None:
                raise ValueError("pass the tokenizer together with a model object")
        self.model, self.tokenizer = model, tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = device
        #: prompts per generation forward (None: :data:`DEFAULT_ROWS_PER_FORWARD` sequences' worth)
        self.batch_size = None if batch_size is None else max(1, batch_size)
        if kv_cache_mb is None:  # CPU: 512 MB; GPU: a quarter of the memory free once the model is loaded
            kv_cache_mb = (int(torch.cuda.mem_get_info()[0] / 4 / 2**20) if str(device).startswith("cuda")
                           else 512)
        self.kv_cache_mb = max(1, kv_cache_mb)
        self.score_batch_size = max(1, score_batch_size)
        has_template = getattr(tokenizer, "chat_template", None) is not None
        #: None: raw prompts, except as a teacher (:meth:`as_teacher`); True/False: as the user set it
        self._chat_setting = chat_template
        self.chat_template = bool(chat_template) and has_template
        #: the system message of chat prompts (None: none; the model's template may add its own default)
        self.system_prompt: str | None = None
        self.eos_ids = self._eos_ids()
        #: the sampling machinery (prefill, cascade attention, CPU kernels, the decoding loop)
        self.decoder = Decoder(model, device=device, pad_token_id=self.tokenizer.pad_token_id, eos_ids=self.eos_ids,
                               cascade=cascade, cpu_kernels=cpu_kernels)

    # ----------------------------------------------------------------- helpers
    def warm_up(self) -> None:
        """Build now what the first generation would otherwise build: the native batch-1 step, compiled on first
        use on a new machine (``raftlab serve`` calls this before it accepts requests)."""
        self.decoder.warm_up()

    def _eos_ids(self) -> set[int]:
        ids = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(source)
        return ids

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        """Turn chat messages into the prompt text this model continues."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages)

    def _prompt_text(self, prompt: str | list[int]) -> str | list[int]:
        if not isinstance(prompt, str):  # token ids: used as given
            return prompt
        if not self.chat_template:
            return prompt
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return self.render_chat([*system, {"role": "user", "content": prompt}])

    def as_teacher(self) -> HFBackend:
        """This backend as a rationale teacher: an instruct model (its tokenizer has a chat template) is prompted
        as a chat with the paper's system message (App. D.1, :data:`TEACHER_SYSTEM_PROMPT`), as an API teacher
        is; ``chat_template=False`` keeps raw prompts."""
        if self._chat_setting is False or getattr(self.tokenizer, "chat_template", None) is None:
            return self
        teacher = copy.copy(self)
        teacher.chat_template, teacher.system_prompt = True, TEACHER_SYSTEM_PROMPT
        return teacher

    def describe(self) -> dict[str, Any]:
        """What run settings record: the model, its dtype, the device, and the chat format when prompts use it."""
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        out = {"backend": "hf", "model": self.model_name, "dtype": dtype, "device": str(self.device)}
        if self.chat_template:
            out["chat_template"] = True
            if self.system_prompt:
                out["system_prompt"] = self.system_prompt
        return out

    def _encode(self, texts: Sequence[str | list[int]]) -> list[list[int]]:
        """Token ids of prompts (texts are tokenized; token-id lists pass through unchanged)."""
        add_special = not self.chat_template  # chat templates already contain the BOS/special tokens
        return [list(t) if not isinstance(t, str) else self.tokenizer(t, add_special_tokens=add_special).input_ids
                for t in texts]

    def encode_prompt(self, prompt: str | list[int]) -> list[int]:
        """The token ids this backend feeds the model for ``prompt`` (text or token ids)."""
        return self._encode([self._prompt_text(prompt)])[0]

    # ---------------------------------------------------------------- generate
    def prompts_per_batch(self, n: int) -> int:
        """Prompts per generation forward when each has ``n`` samples: :attr:`batch_size`, or by default as many
        as make :data:`DEFAULT_ROWS_PER_FORWARD` sequences."""
        if self.batch_size is not None:
            return self.batch_size
        return max(1, DEFAULT_ROWS_PER_FORWARD // max(1, n)) if n > 1 else DEFAULT_ROWS_PER_FORWARD

    def generate(self, prompts: list[str], params: SamplingParams,
                 should_stop: Callable[[int], bool] | None = None) -> list[list[Generation]]:
        """``params.n`` samples per prompt, :meth:`prompts_per_batch` prompts decoding at once (fewer where their
        KV cache would exceed ``kv_cache_mb``); with several samples per prompt on a CPU the batch is continuous
        (:meth:`raftlab.engine.decoder.Decoder.sample`), so pass many prompts per call.

        ``should_stop(i)``, when given, is checked once per decoding step for every prompt still generating; once
        it returns True the prompt's samples stop there with ``finish_reason="abort"`` (the server's cancellation
        of a request whose client went away)."""
        from raftlab.engine.sampling import row_seeds

        if not prompts:
            return []
        tok, n = self.tokenizer, max(1, params.n)
        encoded = self._encode([self._prompt_text(p) for p in prompts])
        longest = max(len(e) for e in encoded)
        per_batch = self.prompts_per_batch(params.n)
        within = self.decoder.prompts_within_kv_budget(self.kv_cache_mb, longest, params.n, params.max_new_tokens)
        if within is not None:
            per_batch = min(per_batch, within)
        stops = [s for s in params.stop if s]
        stop_re = re.compile(params.stop_regex) if params.stop_regex else None
        finished = None
        if stops or stop_re is not None:
            tail = max((len(s) for s in stops), default=0) + 8
            if stop_re is not None:
                tail = max(tail, 64)  # tokens of context the regex sees (an answer sentence is shorter)

            def finished(tokens: list[int]) -> bool:
                text_tail = tok.decode(tokens[-tail:], skip_special_tokens=False)
                return any(s in text_tail for s in stops) or (stop_re is not None and bool(stop_re.search(text_tail)))

        tokens, reasons = self.decoder.sample(encoded, row_seeds(params.seed, prompts, n), n,
                                              max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                                              top_k=params.top_k, top_p=params.top_p, finished=finished,
                                              should_stop=should_stop, concurrency=per_batch)
        results: list[list[Generation]] = []
        for i in range(len(prompts)):
            row = []
            for j in range(n):
                seq = i * n + j
                text = tok.decode(tokens[seq], skip_special_tokens=True)
                for s in stops:
                    cut = text.find(s)
                    if cut >= 0:
                        text = text[:cut]
                if stop_re is not None and (m := stop_re.search(text)):
                    text = text[: m.end()]
                row.append(Generation(text=text, num_tokens=len(tokens[seq]), finish_reason=reasons[seq]))
            results.append(row)
        return results

    # ------------------------------------------------------------------- score
    def score_ids(self, sequences: list[list[int]], top_logprobs: int = 0
                  ) -> list[tuple[list[float], list[dict[int, float]] | None]]:
        """For each token-id sequence, the log-probability of every token after the first given the ones before
        it (``len - 1`` values; the ids are scored exactly as given), and optionally the ``top_logprobs`` most
        likely token ids at each of those positions."""
        import torch

        results: list[tuple[list[float], list[dict[int, float]] | None]] = [([], None)] * len(sequences)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        pad = self.tokenizer.pad_token_id
        for b in range(0, len(order), self.score_batch_size):
            idx = [i for i in order[b : b + self.score_batch_size] if len(sequences[i]) > 1]
            if not idx:
                continue
            width = max(len(sequences[i]) for i in idx)
            ids = torch.tensor([sequences[i] + [pad] * (width - len(sequences[i])) for i in idx])
            mask = torch.tensor([[1] * len(sequences[i]) + [0] * (width - len(sequences[i])) for i in idx])
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).cpu()
            for r, i in enumerate(idx):
                n = len(sequences[i]) - 1
                rows = logp[r, :n]
                lp = rows.gather(-1, torch.tensor(sequences[i][1:])[:, None])[:, 0].tolist()
                top = None
                if top_logprobs > 0:
                    best = rows.topk(top_logprobs, dim=-1)
                    top = [dict(zip(t.tolist(), v.tolist())) for v, t in zip(best.values, best.indices)]
                results[i] = (lp, top)
        return results


    def score(self, prompts: list[str], continuations: list[str], top_logprobs: int = 0) -> list[ContinuationScore]:
        """Token log-probabilities of each continuation given its prompt (batched, right-padded).

        The continuation's tokens are those of ``tokenize(prompt + continuation)`` after the longest common prefix
        with ``tokenize(prompt)``, so a token that merges across the boundary is scored as part of the
        continuation. ``top_logprobs > 0`` also returns the most likely tokens at each position.
        """
        import torch

        if len(prompts) != len(continuations):
            raise ValueError(f"score() needs as many prompts ({len(prompts)}) as continuations ({len(continuations)})")
        texts = [self._prompt_text(p) for p in prompts]
        full = self._encode([t + c for t, c in zip(texts, continuations)])
        ctx = self._encode(texts)
        starts = []
        for i, (c, f) in enumerate(zip(ctx, full)):
            k = 0
            while k < min(len(c), len(f)) and c[k] == f[k]:
                k += 1
            if k == 0:  # no context token (empty prompt, no BOS): condition on EOS
                full[i] = [self.tokenizer.eos_token_id] + f
                k = 1
            starts.append(k)
        results: list[ContinuationScore | None] = [None] * len(prompts)
        order = sorted(range(len(full)), key=lambda i: len(full[i]))
        for b in range(0, len(order), self.score_batch_size):
            idx = order[b : b + self.score_batch_size]
            width = max(len(full[i]) for i in idx)
            ids = torch.tensor([full[i] + [self.tokenizer.pad_token_id] * (width - len(full[i])) for i in idx])
            mask = torch.tensor([[1] * len(full[i]) + [0] * (width - len(full[i])) for i in idx])
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            for r, i in enumerate(idx):
                targets = torch.tensor(full[i][starts[i] :])
                lp = logp[r, starts[i] - 1 : len(full[i]) - 1].cpu().gather(-1, targets[:, None])[:, 0]
                top = None
                if top_logprobs > 0:
                    rows = logp[r, starts[i] - 1 : len(full[i]) - 1].topk(top_logprobs, dim=-1)
                    top = [{self.tokenizer.decode([t]): float(v) for t, v in zip(ids_.tolist(), vals.tolist())}
                           for vals, ids_ in zip(rows.values.cpu(), rows.indices.cpu())]
                results[i] = ContinuationScore(
                    token_logprobs=lp.tolist(),
                    tokens=[self.tokenizer.decode([t]) for t in targets.tolist()],
                    top_logprobs=top,
                )
        return results  # type: ignore[return-value]
