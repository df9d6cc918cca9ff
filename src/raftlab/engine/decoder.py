"""The sampling loop: ``n`` seeded samples of every prompt, a batch of prompts decoded together.

Each prompt is prefilled once (a prefix shared by the prompts once for all of them, :mod:`.prefill`); its
``n`` samples then share its KV cache, through cascade attention on a CPU (:mod:`.cascade_attention`) or as
repeated cache rows otherwise. Every step samples all rows at once from their own seeds (:mod:`.sampling`) and
drops finished rows from the batch (EOS, a stop condition, or an abort), so no compute is spent on sequences that
are done. Under cascade attention the batch is continuous: as rows finish, the next prompts are prefilled and
join, so the batch stays full until the prompts run out instead of draining batch after batch. On a CPU, decoding
steps of supported models run without transformers' per-call machinery (:mod:`.decode_step`, with prepacked bf16
linears from :mod:`.cpu_kernels`), and a lone bf16 row runs one native call per token (:mod:`.one_row_step`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

#: Rows (prompts x samples) whose weight layout the prepacked bf16 linears are prepared for: a layout hint only
#: (oneDNN computes the same outputs for any row count).
PACKING_ROWS_HINT = 40


#: Under cascade attention, prompt slots per prompt in flight: a prompt whose last sample runs long holds its slot
#: while the next prompt already decodes in another (continuous batching, :meth:`Decoder.sample`).
PROMPT_SLOTS = 2


class Decoder:
    """Batched sampling from one loaded causal LM (see the module docstring).

    ``cascade``: on a CPU, decode ``n`` > 1 samples per prompt with cascade attention (False: the model's own
    attention over repeated caches); ``cpu_kernels``: on a CPU, fused RMSNorm and (with bf16 instructions) bf16
    linear layers that keep a oneDNN-prepacked copy of their weight (the weights held twice; ``model`` is changed
    in place), and the lean decoding step of Llama-family models (in bf16 with a stacked q/k/v copy of the
    attention weights), with a single bf16 sequence decoded by one native call per token."""

    def __init__(self, model: Any, *, device: Any, pad_token_id: int, eos_ids: set[int], cascade: bool = True,
                 cpu_kernels: bool = True) -> None:
        from raftlab.engine.cascade_attention import supports_cascade
        from raftlab.engine.decode_step import decode_step_for
        from raftlab.engine.prefill import cache_argument

        self.model, self.device, self.pad_token_id, self.eos_ids = model, device, pad_token_id, eos_ids
        on_cpu = not str(device).startswith("cuda")
        #: the KV-cache argument of the model's forward (``cache`` or ``past_key_values``)
        self.cache_arg = cache_argument(model)
        if cpu_kernels and on_cpu:
            from raftlab.engine.cpu_kernels import speed_up_for_cpu_inference

            speed_up_for_cpu_inference(model, batch_hint=PACKING_ROWS_HINT)
        #: the lean decoding step (None: the model's forward)
        self.decode_step = decode_step_for(model) if cpu_kernels and on_cpu else None
        #: batch-1 decoding in one native call per token, set up on first use (False: not available)
        self.one_row: Any = None if self.decode_step is not None else False
        #: sampling n > 1 per prompt decodes with cascade attention (CPU only: a CPU's decoding attention is bound
        #: by reading the prompts' caches, which cascade attention reads once per prompt instead of once per row)
        self.cascade = cascade and on_cpu and supports_cascade(model)

    def warm_up(self) -> None:
        """Build now what the first generation would otherwise build: the native batch-1 step, compiled on first
        use on a new machine."""
        self.one_row_step()

    def one_row_step(self) -> Any:
        """The native batch-1 decoding step (compiled on first use), or None where it does not apply."""
        if self.one_row is None:
            from raftlab.engine.one_row_step import one_row_step_for

            self.one_row = one_row_step_for(self.model) or False
        return self.one_row or None

    def prompts_within_kv_budget(self, megabytes: int, longest: int, n: int, max_new_tokens: int) -> int | None:
        """How many prompts of at most ``longest`` tokens, each with ``n`` samples of ``max_new_tokens``, keep the
        KV cache of one batch within ``megabytes`` (None where the model's config does not tell its cache size).
        Under cascade attention a prompt's cache is held once, plus every sample's own tokens, and continuous
        batching holds PROMPT_SLOTS prompt slots per prompt in flight (see :meth:`sample`)."""
        if self.cascade and n > 1:
            positions = PROMPT_SLOTS * longest + n * max_new_tokens
        else:
            positions = n * (longest + max_new_tokens)
        cfg = self.model.config
        layers = getattr(cfg, "num_hidden_layers", None)
        heads = getattr(cfg, "num_key_value_heads", None) or getattr(cfg, "num_attention_heads", None)
        head_dim = getattr(cfg, "head_dim", None) or (getattr(cfg, "hidden_size", 0)
                                                      // max(1, getattr(cfg, "num_attention_heads", None) or 1))
        if not (layers and heads and head_dim):
            return None
        per_position = 2 * layers * heads * head_dim * next(self.model.parameters()).element_size()
        return max(1, int(megabytes * 2**20 // (per_position * max(1, positions))))

    def prefill(self, encoded: list[list[int]], budget: int = 0, prefix: Any = None):
        """``(cache, last logits, attention mask, position ids)`` of the prompts ``encoded``
        (:func:`raftlab.engine.prefill.prefill`)."""
        from raftlab.engine.prefill import prefill

        return prefill(self.model, encoded, pad_token_id=self.pad_token_id, device=self.device,
                       cache_arg=self.cache_arg, budget=budget, prefix=prefix)

    @contextlib.contextmanager
    def decoding_attention(self, n: int) -> Iterator[str | None]:
        """For decoding ``n`` > 1 samples per prompt on a CPU with cascade attention (each prompt's KV cache read
        once for all its samples): yields the name of the model's own attention implementation, which prefills
        keep (decoding steps switch to cascade attention), and restores it on exit. Yields None when cascade
        attention does not apply."""
        if not self.cascade or n < 2:
            yield None
            return
        from raftlab.engine import cascade_attention

        cascade_attention.register()
        config = self.model.config
        before = config._attn_implementation
        try:
            yield before
        finally:
            config._attn_implementation = before

    def sample(self, encoded: list[list[int]], seeds: Sequence[int], n: int, *, max_new_tokens: int,
               temperature: float, top_k: int = 0, top_p: float = 1.0,
               finished: Callable[[list[int]], bool] | None = None,
               should_stop: Callable[[int], bool] | None = None,
               concurrency: int | None = None) -> tuple[list[list[int]], list[str]]:
        """Decode ``n`` samples of every prompt of ``encoded`` (token ids): ``(tokens, reasons)``, one entry per
        sample, prompt-major (``i * n + j`` is sample ``j`` of prompt ``i``; ``seeds`` in the same order, see
        :func:`raftlab.engine.sampling.row_seeds`).

        ``concurrency``: prompts decoding at once (default: all). Under cascade attention the batch is continuous:
        as a prompt's samples finish, the next prompts are prefilled and join, so the batch stays full until the
        prompts run out (a sample's draws depend only on its seed and its token index, not on when it joined).
        Otherwise the prompts are decoded ``concurrency`` at a time.

        A sample ends with reason ``"stop"`` at an end-of-sequence token (not kept) or once ``finished(tokens)``
        says so after a token was added (kept), with ``"abort"`` once ``should_stop(prompt_index)`` (checked once
        per step for every prompt still decoding) says so, else with ``"length"`` after ``max_new_tokens``."""
        import torch

        from raftlab.engine.cascade_attention import ATTENTION_NAME, CascadeCache
        from raftlab.engine.prefill import shared_prefix
        from raftlab.engine.sampling import next_tokens

        model, dev = self.model, self.device
        prompts = len(encoded)
        concurrency = prompts if concurrency is None else max(1, min(concurrency, prompts))
        all_seeds = torch.tensor(list(seeds), device=dev)
        tokens: list[list[int]] = [[] for _ in range(prompts * n)]
        reasons = ["length"] * (prompts * n)
        if not prompts or max_new_tokens < 1:
            return tokens, reasons
        with torch.inference_mode(), self.decoding_attention(n) as own_attention:
            cascade_on = own_attention is not None
            # cascade: prompt slots beyond the rows' worth, so a prompt whose last sample runs long holds a slot,
            # not the rows of its finished samples; its shared prefix is prefilled once for every prompt that joins
            slots = min(prompts, PROMPT_SLOTS * concurrency) if cascade_on else concurrency
            width = max(len(e) for e in encoded)
            prefix = (shared_prefix(model, encoded, device=dev, cache_arg=self.cache_arg, capacity=width)
                      if cascade_on and prompts > concurrency else None)
            free, slot_of, rows_left = list(range(slots)), {}, {}
            cache = cascade = attn = logits = None
            active: list[int] = []  # row -> sequence index
            row_seeds = steps = next_pos = chosen = None
            joined = 0
            while True:
                take = min((concurrency * n - len(active)) // n, len(free), prompts - joined)
                if take > 0 and (cascade_on or not active):  # new prompts join
                    group = list(range(joined, joined + take))
                    joined += take
                    group_slots = [free.pop(0) for _ in group]
                    if cascade_on:  # prefills use the model's own attention
                        model.config._attn_implementation = own_attention
                    part, part_logits, part_attn, positions = self.prefill(
                        [encoded[i] for i in group], 0 if cascade_on else max_new_tokens, prefix)
                    if cascade_on:
                        model.config._attn_implementation = ATTENTION_NAME
                        if cascade is None:
                            cascade = cache = CascadeCache(part, part_attn, n, max_new_tokens, slots=slots,
                                                           width=width, rows=concurrency * n)
                        else:
                            cascade.admit(part, part_attn, group_slots)
                    else:  # a new batch
                        cache, attn = part, part_attn
                        if n > 1:
                            cache.batch_repeat_interleave(n)
                            attn = attn.repeat_interleave(n, dim=0)
                    for i, s in zip(group, group_slots):
                        slot_of[i], rows_left[i] = s, n
                    fresh = [i * n + j for i in group for j in range(n)]
                    pieces = [part_logits.repeat_interleave(n, dim=0), all_seeds[fresh],
                              torch.zeros(len(fresh), dtype=torch.long, device=dev),
                              (positions[:, -1] + 1).repeat_interleave(n, dim=0)]
                    if active:
                        pieces = [torch.cat([old, new]) for old, new in
                                  zip((logits, row_seeds, steps, next_pos), pieces)]
                    logits, row_seeds, steps, next_pos = pieces
                    active += fresh
                if not active:
                    break
                chosen = next_tokens(logits, row_seeds, steps, temperature, top_k, top_p)
                picked = chosen.tolist()  # one device-to-host copy per step
                aborted = ({i for i in {seq // n for seq in active} if should_stop(i)} if should_stop is not None
                           else set())
                keep = []
                for row, seq in enumerate(active):
                    if seq // n in aborted:
                        reasons[seq] = "abort"
                    elif (t := picked[row]) in self.eos_ids:
                        reasons[seq] = "stop"
                    else:
                        tokens[seq].append(t)
                        if finished is not None and finished(tokens[seq]):
                            reasons[seq] = "stop"
                        elif len(tokens[seq]) < max_new_tokens:
                            keep.append(row)
                            continue
                    rows_left[seq // n] -= 1
                    if not rows_left[seq // n]:  # the prompt's last sample ended: its slot is free
                        free.append(slot_of[seq // n])
                if len(keep) < len(active):
                    idx = torch.tensor(keep, dtype=torch.long, device=dev)
                    if cascade is not None:
                        cascade.select_rows(idx)
                    elif keep:
                        cache.batch_select_indices(idx)
                        attn = attn[idx]
                    chosen, row_seeds, steps, next_pos = chosen[idx], row_seeds[idx], steps[idx], next_pos[idx]
                    active = [active[r] for r in keep]
                if not active:
                    continue
                if cascade is None:
                    attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=1)
                logits = self._step(chosen, next_pos, cache, cascade, attn)
                steps, next_pos = steps + 1, next_pos + 1
        return tokens, reasons

    def _step(self, chosen, positions, cache: Any, cascade: Any, attn: Any):
        """The logits after feeding every active row its token ``chosen`` at ``positions`` (``attn``: the rows'
        padding mask including this position, without cascade attention)."""
        if cascade is not None:  # no mask: the cache knows each row's prompt padding
            step_args = {"cascade": cascade}
        else:
            step_args = {"attention_mask": attn}
        if self.decode_step is not None:
            padding = step_args.pop("attention_mask", None)
            mask = None if padding is None else self.decode_step.padding_mask(padding)
            one_row = self.one_row_step() if len(chosen) == 1 and mask is None and not step_args else None
            if one_row is not None:  # batch 1: the whole step in one native call
                return one_row(int(chosen.view(-1)[0]), int(positions.view(-1)[0]), cache)
            return self.decode_step(chosen.view(-1, 1), positions.view(-1, 1), cache, mask, **step_args)
        out = self.model(input_ids=chosen.view(-1, 1), position_ids=positions.view(-1, 1), use_cache=True,
                         **{self.cache_arg: cache}, **step_args)
        return out.logits[:, -1, :].float()
