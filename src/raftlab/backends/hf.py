"""transformers backend (CPU or GPU) with a fast sampling loop for self-consistency.

For a batch of prompts the loop prefills each prompt once, repeats its KV cache for the ``n`` samples,
samples every row in one vectorised step from a counter-based hash of its own sequence seed and the step (so
results depend neither on batch composition nor on the device, and nothing leaves the device but the chosen ids),
and drops finished sequences from the batch at each step (EOS or a stop string), so that no compute is
spent on sequences that are done.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import random
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from raftlab.backends.base import TEACHER_SYSTEM_PROMPT, ContinuationScore, Generation, SamplingParams


def sequence_seed(seed: int | None, prompt: str, sample_index: int) -> int | None:
    """Stable per-(prompt, sample) seed, independent of batching and process."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}\x00{sample_index}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed64(0x9E3779B97F4A7C15)
_MIX1 = _signed64(0xBF58476D1CE4E5B9)
_MIX2 = _signed64(0x94D049BB133111EB)


def _shift_right(x, bits: int):
    """Logical right shift of int64 tensors holding uint64 bits (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _splitmix64(x):
    """SplitMix64 of an int64 tensor (uint64 bits; multiplication wraps), the same on every device."""
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def step_uniforms(seeds, step: int):
    """One uniform in [0, 1) per row for decoding step ``step``: a counter-based hash of the row's sequence seed
    and the step, so a row's draws depend on nothing else (not the batch, the device or the other rows)."""
    import torch

    bits = _splitmix64(_splitmix64(seeds) + step)
    return _shift_right(bits, 11).to(torch.float64) / float(1 << 53)


#: Tokens per block of the two-level inverse CDF in :func:`sample_rows`.
CDF_BLOCK = 256


def sample_rows(probs, seeds, step: int):
    """Inverse-CDF sampling of every row at once: the token whose cumulative probability first exceeds the row's
    uniform; cumulative sums in float64, and never a token of probability zero.

    Two levels, because a cumulative sum over a 50k vocabulary is sequential and was a twentieth of a CPU decoding
    step: the sums of blocks of :data:`CDF_BLOCK` tokens find the block, and a cumulative sum inside that block
    finds the token. Block sums are float32 sums of 256 float32 numbers; where their rounding disagrees with the
    float64 sum inside the block, the block's last token of non-zero probability is taken."""
    import torch

    rows, vocab = probs.shape
    blocks = -(-vocab // CDF_BLOCK)
    padded = probs if vocab == blocks * CDF_BLOCK else torch.nn.functional.pad(probs, (0, blocks * CDF_BLOCK - vocab))
    padded = padded.view(rows, blocks, CDF_BLOCK)
    block_cdf = padded.sum(dim=-1).to(torch.float64).cumsum_(dim=-1)  # (rows, blocks)
    target = step_uniforms(seeds, step).to(probs.device)[:, None] * block_cdf[:, -1:]
    block = torch.searchsorted(block_cdf, target, right=True).clamp_(max=blocks - 1)  # (rows, 1)
    before = torch.where(block > 0, block_cdf.gather(1, (block - 1).clamp(min=0)), 0.0)
    inside = padded.gather(1, block[:, :, None].expand(rows, 1, CDF_BLOCK))[:, 0].to(torch.float64)
    local = torch.searchsorted(inside.cumsum(dim=-1), target - before, right=True)  # (rows, 1)
    # rounding between the block sums and the cumulative sum inside a block can put the target past the block's
    # end: then the block's last token of non-zero probability
    last_nonzero = CDF_BLOCK - 1 - (inside > 0).flip(-1).to(torch.int8).argmax(dim=-1, keepdim=True)
    local = torch.minimum(local, last_nonzero)
    return (block * CDF_BLOCK + local)[:, 0].clamp_(max=vocab - 1)


#: Shared prompt tokens from which the prefix is prefilled once for a whole batch (shorter ones are not worth it).
MIN_SHARED_PREFIX = 16


def _common_prefix_length(rows: list[list[int]]) -> int:
    first, length = rows[0], min(len(r) for r in rows)
    for r in rows[1:]:
        i = 0
        while i < length and r[i] == first[i]:
            i += 1
        length = i
    return length


def _filter_logits(logits, top_k: int, top_p: float):
    import torch

    if top_k and top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        remove = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, sorted_idx, sorted_logits)
    return logits


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
        batch_size: int = 40,
        score_batch_size: int = 8,
        chat_template: bool | None = None,
        kv_cache_mb: int | None = None,
        cascade: bool = True,
        cpu_kernels: bool = True,
        **from_pretrained: Any,
    ) -> None:
        """``batch_size``: sequences (prompts x samples) per generation forward; ``score_batch_size``: texts per
        scoring forward (full-vocabulary logits of every position, so keep it small); ``kv_cache_mb``: the KV
        cache one generation batch may hold (prompt + budget, for every sample), which caps the batch for long
        prompts so that memory stays bounded (default: 512 on a CPU, a quarter of the free memory on a GPU);
        ``cascade``: on a CPU, decode k > 1 samples per prompt with cascade attention (each prompt's KV cache read
        once for its samples, :mod:`raftlab.backends.cascade`; False: the model's own attention over repeated
        caches); ``cpu_kernels``: on a CPU, fused RMSNorm and (with bf16 instructions) bf16 linear layers that keep
        a oneDNN-prepacked copy of their weight (:mod:`raftlab.backends.cpu_kernels`; the weights held twice; a
        model object passed in is changed in place), and decoding steps of Llama-family models without
        transformers' per-call machinery (:mod:`raftlab.backends.decode_step`; in bf16 a stacked q/k/v copy, ~20%
        of the layers' weights once more), with a single bf16 sequence decoded by one native call per token
        (:mod:`raftlab.backends.native_step`). Further keyword arguments go to transformers' ``from_pretrained``
        (e.g. ``attn_implementation="sdpa"``)."""
        import torch

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
        self.batch_size = max(1, batch_size)
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
        # transformers >= 5.2x names the KV-cache argument and output `cache` (`past_key_values` is deprecated)
        import inspect

        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        from raftlab.backends.cascade import supports_cascade

        if cpu_kernels and not str(device).startswith("cuda"):
            from raftlab.backends.cpu_kernels import speed_up_for_cpu_inference

            speed_up_for_cpu_inference(model, batch_hint=self.batch_size)
        from raftlab.backends.decode_step import decode_step_for

        #: the lean decoding step (None: the model's forward)
        self._decode_step = (decode_step_for(model) if cpu_kernels and not str(device).startswith("cuda")
                             else None)
        #: batch-1 decoding in one native call per token (:mod:`raftlab.backends.native_step`), set up on first use
        self._one_row: Any = None if self._decode_step is not None else False
        #: sampling k > 1 per prompt decodes with cascade attention (CPU only: measured there; see cascade.py)
        self._cascade = cascade and not str(device).startswith("cuda") and supports_cascade(model)

    # ----------------------------------------------------------------- helpers
    def warm_up(self) -> None:
        """Build now what the first generation would otherwise build: the native batch-1 step, compiled on first
        use on a new machine (``raftlab serve`` calls this before it accepts requests)."""
        self._one_row_step()

    def _one_row_step(self) -> Any:
        """The native batch-1 decoding step (compiled on first use), or None where it does not apply."""
        if self._one_row is None:
            from raftlab.backends.native_step import one_row_step_for

            self._one_row = one_row_step_for(self.model) or False
        return self._one_row or None

    def _cache_of(self, out: Any) -> Any:
        return out.cache if self._cache_arg == "cache" else out.past_key_values
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
    def generate(self, prompts: list[str], params: SamplingParams,
                 should_stop: Callable[[int], bool] | None = None) -> list[list[Generation]]:
        """``params.n`` samples per prompt; prompts are processed in chunks of ``batch_size``.

        ``should_stop(i)``, when given, is checked once per decoding step for every prompt still generating; once
        it returns True the prompt's samples stop there with ``finish_reason="abort"`` (the server's cancellation
        of a request whose client went away)."""
        out: list[list[Generation]] = []
        per_chunk = max(1, self.batch_size // max(1, params.n)) if params.n > 1 else self.batch_size
        encoded = self._encode([self._prompt_text(p) for p in prompts])  # once; chunks reuse the ids
        longest = max((len(e) for e in encoded), default=1)
        if self._cascade and params.n > 1:  # each prompt's cache once, plus every sample's own tokens
            per_prompt = longest + params.n * params.max_new_tokens
        else:
            per_prompt = params.n * (longest + params.max_new_tokens)
        per_chunk = min(per_chunk, self._prompts_within_kv_budget(per_prompt))
        for start in range(0, len(prompts), per_chunk):
            stop_fn = None if should_stop is None else (lambda i, _s=start: should_stop(_s + i))
            out.extend(self._generate_chunk(prompts[start : start + per_chunk], params, stop_fn,
                                            encoded[start : start + per_chunk]))
        return out

    def _prompts_within_kv_budget(self, tokens: int) -> int:
        """How many prompts whose samples hold ``tokens`` cached positions in all fit ``kv_cache_mb``."""
        cfg = self.model.config
        layers = getattr(cfg, "num_hidden_layers", None)
        heads = getattr(cfg, "num_key_value_heads", None) or getattr(cfg, "num_attention_heads", None)
        head_dim = getattr(cfg, "head_dim", None) or (getattr(cfg, "hidden_size", 0) // max(1, heads or 1))
        if not (layers and heads and head_dim):
            return self.batch_size
        per_token = 2 * layers * heads * head_dim * next(self.model.parameters()).element_size()
        return max(1, int(self.kv_cache_mb * 2**20 // (per_token * max(1, tokens))))

    def _generate_chunk(self, prompts: list[str], params: SamplingParams,
                        should_stop: Callable[[int], bool] | None = None,
                        encoded: list[list[int]] | None = None) -> list[list[Generation]]:
        """Samples for ``prompts`` (``encoded``: their token ids, when already known; the prompts themselves
        still name the per-sample seeds)."""
        import torch

        model, tok, n = self.model, self.tokenizer, max(1, params.n)
        if encoded is None:
            encoded = self._encode([self._prompt_text(p) for p in prompts])
        seeds = torch.tensor([s if (s := sequence_seed(params.seed, p, j)) is not None
                              else random.getrandbits(63) for p in prompts for j in range(n)], device=self.device)
        cascade = None
        with torch.inference_mode(), self._decoding_attention(n) as switch_to_cascade:
            # under cascade attention the prompts' cache never grows (each sample's tokens go elsewhere)
            budget = 0 if switch_to_cascade is not None else params.max_new_tokens
            cache, logits, attn, positions = self._prefill(encoded, budget)
            if switch_to_cascade is not None:  # the samples of a prompt share its KV cache
                cascade = cache = switch_to_cascade(cache, attn, params.max_new_tokens)
            if n > 1:
                if cascade is None:
                    cache.batch_repeat_interleave(n)
                    attn = attn.repeat_interleave(n, dim=0)
                logits = logits.repeat_interleave(n, dim=0)
                positions = positions.repeat_interleave(n, dim=0)
            next_pos = positions[:, -1] + 1
            total = len(prompts) * n
            active = list(range(total))  # row -> sequence index
            tokens: list[list[int]] = [[] for _ in range(total)]
            reasons = ["length"] * total
            stops = [s for s in params.stop if s]
            tail = max((len(s) for s in stops), default=0) + 8
            stop_re = re.compile(params.stop_regex) if params.stop_regex else None
            if stop_re is not None:
                tail = max(tail, 64)  # tokens of context the regex sees (an answer sentence is shorter)
            for step in range(params.max_new_tokens):
                chosen = self._sample(logits, params, seeds, step)
                picked = chosen.tolist()  # one device-to-host copy per step
                keep = []
                aborted = ({i for i in {seq // n for seq in active} if should_stop(i)} if should_stop is not None
                           else set())
                for row, seq in enumerate(active):
                    if seq // n in aborted:
                        reasons[seq] = "abort"
                        continue
                    t = picked[row]
                    if t in self.eos_ids:
                        reasons[seq] = "stop"
                        continue
                    tokens[seq].append(t)
                    if stops or stop_re is not None:
                        text_tail = tok.decode(tokens[seq][-tail:], skip_special_tokens=False)
                        if any(s in text_tail for s in stops) or (stop_re is not None and stop_re.search(text_tail)):
                            reasons[seq] = "stop"
                            continue
                    keep.append(row)
                if not keep or step == params.max_new_tokens - 1:
                    break
                if len(keep) < len(active):
                    idx = torch.tensor(keep, device=self.device)
                    if cascade is not None:
                        cascade.select_rows(idx)
                    else:
                        cache.batch_select_indices(idx)
                        attn = attn[idx]
                    next_pos, chosen, seeds = next_pos[idx], chosen[idx], seeds[idx]
                    active = [active[r] for r in keep]
                if cascade is not None:  # no mask: the cache knows each row's prompt padding
                    step_args = {"cascade": cascade}
                else:
                    attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=1)
                    step_args = {"attention_mask": attn}
                if self._decode_step is not None:
                    padding = step_args.pop("attention_mask", None)
                    mask = None if padding is None else self._decode_step.padding_mask(padding)
                    one_row = self._one_row_step() if len(active) == 1 and mask is None and not step_args else None
                    if one_row is not None:  # batch 1: the whole step in one native call
                        logits = one_row(int(chosen.view(-1)[0]), int(next_pos.view(-1)[0]), cache)
                    else:
                        logits = self._decode_step(chosen.view(-1, 1), next_pos.view(-1, 1), cache, mask,
                                                   **step_args)
                else:
                    out = model(
                        input_ids=chosen.view(-1, 1),
                        position_ids=next_pos.view(-1, 1),
                        use_cache=True,
                        **{self._cache_arg: cache},
                        **step_args,
                    )
                    cache, logits = self._cache_of(out), out.logits[:, -1, :].float()
                next_pos = next_pos + 1
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

    @contextlib.contextmanager
    def _decoding_attention(self, n: int) -> Iterator[Callable[..., Any] | None]:
        """Cascade attention for decoding ``n`` > 1 samples per prompt on a CPU (each prompt's KV cache is read
        once for all its samples; :mod:`raftlab.backends.cascade`). Yields None when it does not apply, else
        ``switch(prefill_cache, prompt_mask, budget) -> CascadeCache``, which the caller calls after the prefill
        (which keeps the model's own attention); the model's attention setting is restored on exit."""
        if not self._cascade or n < 2:
            yield None
            return
        from raftlab.backends import cascade

        cascade.register()
        config = self.model.config
        before = config._attn_implementation

        def switch(prefill_cache: Any, prompt_mask: Any, budget: int) -> Any:
            cache = cascade.CascadeCache(prefill_cache, prompt_mask, n, budget)
            config._attn_implementation = cascade.ATTENTION_NAME
            return cache

        try:
            yield switch
        finally:
            config._attn_implementation = before

    def _new_cache(self, capacity: int | None = None) -> dict[str, Any]:
        """The cache argument of a prefill: a cache that grows in place where the model allows it, sized for
        ``capacity`` positions when known."""
        from raftlab.backends.kv_cache import growing_cache

        cache = growing_cache(self.model.config, capacity)
        return {} if cache is None else {self._cache_arg: cache}

    def _prefill(self, encoded: list[list[int]], budget: int = 0):
        """Run the prompts through the model: ``(cache, last logits, attention mask, position ids)``.

        When the prompts share a long token prefix (the same instruction and in-context demonstrations), that
        prefix is computed once and its KV cache repeated for every prompt; each prompt's own tokens follow it,
        right-aligned behind masked padding (``[prefix][pad..][suffix]``), with positions that continue the
        prefix. Otherwise the prompts are left-padded."""
        import torch

        pad, dev = self.tokenizer.pad_token_id, self.device
        shared = _common_prefix_length(encoded) if len(encoded) > 1 else 0
        shared = min(shared, min(len(e) for e in encoded) - 1)  # every prompt keeps a token to predict from
        if shared < MIN_SHARED_PREFIX:
            width = max(len(e) for e in encoded)
            input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=dev)
            attn = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=dev)
            positions = (attn.cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=positions, use_cache=True,
                             logits_to_keep=1, **self._new_cache(width + budget))
            return self._cache_of(out), out.logits[:, -1, :].float(), attn, positions
        prefix = torch.tensor([encoded[0][:shared]], device=dev)
        capacity = max(len(e) for e in encoded) + budget
        out = self.model(input_ids=prefix, position_ids=torch.arange(shared, device=dev)[None], use_cache=True,
                         logits_to_keep=1, **self._new_cache(capacity))
        cache = self._cache_of(out)
        cache.batch_repeat_interleave(len(encoded))
        tails = [e[shared:] for e in encoded]
        width = max(len(t) for t in tails)
        input_ids = torch.tensor([[pad] * (width - len(t)) + t for t in tails], device=dev)
        tail_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails], device=dev)
        attn = torch.cat([tail_mask.new_ones((len(tails), shared)), tail_mask], dim=1)
        positions = ((tail_mask.cumsum(-1) - 1).clamp(min=0) + shared)
        out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self._cache_arg: cache})
        return self._cache_of(out), out.logits[:, -1, :].float(), attn, positions

    @staticmethod
    def _sample(logits, params: SamplingParams, seeds, step: int) -> Any:
        """The next token of every row, on the model's device (argmax at temperature 0)."""
        import torch

        if params.temperature <= 0:
            return logits.argmax(dim=-1)
        scaled = logits.mul_(1.0 / params.temperature)  # in place: this step's logits are not used after sampling
        probs = torch.softmax(_filter_logits(scaled, params.top_k, params.top_p), dim=-1)
        return sample_rows(probs, seeds, step)

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
