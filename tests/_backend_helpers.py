"""Shared fakes for backend/inference tests: a scripted backend, and one whose tokenizer checks its threads."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from raftlab.backends.base import ContinuationScore, Generation, SamplingParams


class ScriptedBackend:
    """Returns, for each prompt, the texts produced by ``script(prompt, j)`` for j in range(n)."""

    name = "scripted"
    model_name = "scripted"

    def __init__(self, script):
        self.script = script
        self.calls: list[list[str]] = []

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        self.calls.append(list(prompts))
        return [[Generation(text=self.script(p, j), num_tokens=3) for j in range(params.n)] for p in prompts]

    def score(self, prompts: list[str], continuations: list[str]) -> list[ContinuationScore]:
        return [ContinuationScore(token_logprobs=[-float(len(c))]) for c in continuations]


class ThreadCheckingTokenizer:
    """A character-level tokenizer (id = code point) that records the thread of every call and whether two calls
    ever overlapped: HF fast tokenizers are not thread-safe."""

    eos_token, bos_token, pad_token, chat_template, model_max_length = "\0", None, "\0", None, 1000

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.overlapped = False
        self._inside = threading.Lock()

    def _enter(self) -> None:
        self.threads.add(threading.current_thread().name)
        if not self._inside.acquire(blocking=False):
            self.overlapped = True
            self._inside.acquire(timeout=10)

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        self._enter()
        try:
            return SimpleNamespace(input_ids=[ord(c) for c in text],
                                   offset_mapping=[(i, i + 1) for i in range(len(text))])
        finally:
            self._inside.release()

    def decode(self, ids):
        self._enter()
        try:
            return "".join(chr(i) for i in ids)
        finally:
            self._inside.release()


class TokenizingBackend:
    """Uses its tokenizer for everything, like the hf backend: a generation is the prompt's last character (encoded
    and decoded) and ``!``; every token scores -1."""

    name = model_name = "tokenizing"

    def __init__(self) -> None:
        self.tokenizer = ThreadCheckingTokenizer()

    def encode_prompt(self, prompt):
        return prompt if isinstance(prompt, list) else self.tokenizer(prompt).input_ids

    def render_chat(self, messages):
        return self.tokenizer.decode(self.tokenizer("\n".join(m["content"] for m in messages)).input_ids)

    def generate(self, prompts, params):
        return [[Generation(text=self.tokenizer.decode(self.encode_prompt(p))[-1:] + "!", num_tokens=2)
                 for _ in range(params.n)] for p in prompts]

    def score_ids(self, rows, top):
        return [([-1.0] * (len(ids) - 1), []) for ids in rows]
