"""Log-probs for ``raftlab serve``'s responses, scored on token ids.

The ids are the prompt's as given (or as the model tokenizes the prompt text), then the tokenization of the
returned text. ``text_offset`` comes from the tokenizer's character offsets (or from cumulative decoding for
token-id prompts), never from per-token decoded lengths, so multi-byte characters do not shift it. Everything here
uses the tokenizer, so it runs on the scheduler's worker thread only.
"""

from __future__ import annotations

from typing import Any


class TokenLogprobs:
    """Token-level views of a prompt plus generated text (the ids it is scored on, the token texts and their exact
    character offsets) and their log-probs from ``backend.score_ids`` (an hf backend)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.tok = backend.tokenizer

    def completion(self, prompt: str | list[int], generated: str | None, top: int, echo: bool) -> tuple[dict, str]:
        """Completions ``logprobs`` (``tokens``, ``token_logprobs``, ``text_offset``, ``top_logprobs``) and the
        response text: with ``echo`` the prompt's tokens too (the first has no log-prob) and the prompt's text."""
        ids, texts, offsets, n_prompt, full = self.sequence(prompt, generated)
        [(lps, tops)] = self.backend.score_ids([ids], top)
        values = [None, *lps]
        top_rows = [None, *[{self.tok.decode([t]): v for t, v in row.items()} for row in tops]] if tops else None
        keep = slice(0, None) if echo else slice(n_prompt, None)
        body = {"tokens": texts[keep], "token_logprobs": values[keep], "text_offset": offsets[keep],
                "top_logprobs": top_rows[keep] if top_rows is not None else None}
        return body, full if echo else (generated or "")

    def sequence(self, prompt: str | list[int], generated: str | None
                 ) -> tuple[list[int], list[str], list[int], int, str]:
        """``(ids, token texts, offsets, number of prompt tokens, full text)``.

        A text prompt is tokenized together with the generated text, as the model reads ``prompt + text`` (a token
        that merges across the boundary belongs to the continuation); offsets are the tokenizer's character
        offsets into that text. A token-id prompt is scored on its ids as given, followed by the tokenization of
        the generated text; its offsets come from cumulative decoding."""
        gen = generated or ""
        if isinstance(prompt, str):
            text = prompt + gen
            ids = self.backend.encode_prompt(text)
            ctx = self.backend.encode_prompt(prompt) if gen else ids
            n = 0
            while n < min(len(ctx), len(ids)) and ctx[n] == ids[n]:
                n += 1
            texts, offsets = self._spans(text, ids)
            return ids, texts, offsets, n, text
        p_text, p_texts, p_offsets = self._decoded(prompt)
        g_ids = self.tok(gen, add_special_tokens=False).input_ids if gen else []
        g_texts, g_offsets = self._spans(gen, g_ids) if gen else ([], [])
        return (list(prompt) + g_ids, p_texts + g_texts, p_offsets + [len(p_text) + o for o in g_offsets],
                len(prompt), p_text + gen)

    def _decoded(self, ids: list[int]) -> tuple[str, list[str], list[int]]:
        pieces, offsets, prev = [], [], ""
        for i in range(len(ids)):  # cumulative decoding: offsets never drift on byte fragments
            cur = self.tok.decode(ids[: i + 1])
            start = len(prev) if cur.startswith(prev) else len(cur)
            offsets.append(start)
            pieces.append(cur[start:])
            prev = cur
        return prev, pieces, offsets

    def _spans(self, text: str, ids: list[int]) -> tuple[list[str], list[int]]:
        for special in (False, True):
            try:
                enc = self.tok(text, add_special_tokens=special, return_offsets_mapping=True)
            except (NotImplementedError, ValueError, TypeError):  # slow tokenizers: no offsets
                break
            if list(enc.input_ids) == list(ids):
                starts = [s for s, _ in enc.offset_mapping]
                starts = [max(starts[: k + 1]) for k in range(len(starts))]  # specials report (0, 0)
                ends = starts[1:] + [len(text)]
                return [text[a:b] for a, b in zip(starts, ends)], starts
        _, pieces, offsets = self._decoded(ids)
        return pieces, offsets
