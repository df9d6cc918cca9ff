"""``raftlab serve``: an OpenAI-compatible HTTP server over a local backend (hf by default), speaking the protocol
the way real clients (the openai client, lm-evaluation-harness, vLLM-style tokenizer endpoints) use it.

Endpoints:

* ``GET /v1/models``.
* ``POST /v1/completions``. ``prompt`` is a string, a list of strings, a list of token ids, or a list of token-id
  lists. Also ``n``, ``temperature``, ``top_p``, ``top_k``, ``max_tokens``/``max_completion_tokens``, ``stop``,
  ``seed``, ``logprobs``, ``stream``. ``echo`` with ``logprobs`` returns the prompt's token log-probs (the first
  is null), followed by the generated tokens' when ``max_tokens`` >= 1, as vLLM does.
* ``POST /v1/chat/completions``. ``content`` is a string or a list of text parts. Messages are rendered with the
  model's chat template when it has one. Also ``logprobs``, ``top_logprobs``, ``stream``.
* ``GET /tokenizer_info``, ``POST /tokenize``, ``POST /detokenize`` (vLLM's tokenizer endpoints; lm-eval uses them
  as its "remote" tokenizer).

Log-probs are scored on token ids: the prompt's ids as given (or as the model tokenizes the prompt text), then the
tokenization of the returned text. ``text_offset`` comes from the tokenizer's character offsets (or from cumulative
decoding for token-id prompts), never from per-token decoded lengths, so multi-byte characters do not shift
it. Streaming sends each choice's text as one chunk once generation finishes (not token by token), then
``[DONE]``. Fields that would change the result and that raftlab does not implement (penalties, ``logit_bias``,
``suffix``, ``best_of`` != n, non-text ``response_format``, unknown fields) are refused with 400, not ignored.
Errors use OpenAI's ``{"error": {...}}`` bodies.

Concurrency: one worker thread owns the model (:mod:`raftlab.serve.scheduler`). Requests that wait together
with the same sampling settings are decoded in one batch; a full queue answers 503; a client that disconnects has
its request cancelled (the hf backend stops at the next token). The tokenizer, too, is used only from that thread
(HF fast tokenizers are not thread-safe): prompts are rendered, counted and tokenized there, the tokenizer
endpoints included.

Modules, in the order a request meets them: ``guard`` (API key, body-size limit: ASGI middleware), ``routes``
(paths -> handlers), ``protocol`` (request models; response, stream and error shapes), ``serving`` (the handlers:
a request becomes scheduler jobs, their results a response), ``logprobs`` (log-probs on token ids), ``scheduler``
(the worker thread, its queue and batching); ``app`` wires them (:func:`create_app`, :func:`serve_in_thread`).
"""

from raftlab.serve.app import create_app, free_port, serve_in_thread

__all__ = ["create_app", "free_port", "serve_in_thread"]
