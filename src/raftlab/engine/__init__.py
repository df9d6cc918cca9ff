"""raftlab's decoding engine: fast, seeded sampling of ``n`` continuations per prompt from a loaded transformers
causal LM, on a CPU or a GPU.

**What it is for.** Self-consistency evaluation and local rationale teachers draw several samples of many prompts
that share long in-context prefixes; on a CPU in particular, transformers' ``generate`` spends most of its time
re-reading caches and dispatching small operations. The engine decodes a batch of prompts with all their samples
together, and every sample depends only on its own seed (never on the batch it ran in or the device).

**Who calls it.** Only :class:`raftlab.backends.hf.HFBackend` (and tests): the backend keeps the adapter's duties
(prompt formatting, tokenizing, batch size, stop strings, :class:`~raftlab.backends.base.Generation` records,
scoring) and hands token ids to the engine. Nothing else in raftlab imports ``raftlab.engine``, and the engine
imports no backend (both checked by import-linter contracts in ``pyproject.toml``).

**What it offers** (the public surface; everything else is internal to the engine):

* :class:`raftlab.engine.decoder.Decoder` ``(model, device=, pad_token_id=, eos_ids=, cascade=, cpu_kernels=)``:
  ``sample(encoded, seeds, n, max_new_tokens=, temperature=, top_k=, top_p=, finished=, should_stop=)`` ->
  per-sample token ids and finish reasons; ``prompts_within_kv_budget`` (how many prompts fit a KV-cache budget);
  ``prefill`` (a shared prompt prefix computed once); ``warm_up`` (builds the native kernels ahead of use).
* :mod:`raftlab.engine.sampling`: ``sequence_seed`` / ``row_seeds`` (a stable seed per prompt and sample),
  ``step_uniforms`` and ``sample_rows`` (counter-based per-row draws), ``filter_logits`` (top-k / top-p) and
  ``next_tokens`` (temperature, filters, draw).

Inside: :mod:`.prefill` (shared-prefix prefill), :mod:`.kv_cache` (a KV cache that grows in place),
:mod:`.cascade_attention` (the k samples of a prompt read its cache once, CPU), :mod:`.cpu_kernels` (prepacked
bf16 linears, fused RMSNorm), :mod:`.decode_step` (a Llama-family decoding step without transformers' per-call
machinery), :mod:`.one_row_step` (a whole batch-1 step in one native call) and :mod:`.native_build` (compiles
``csrc/one_row_step.cpp`` on first use under a build lock; ``RAFTLAB_NATIVE=0`` turns it off).
"""
