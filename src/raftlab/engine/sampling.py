"""Seeded, vectorised token sampling: every row of a decoding batch draws its next token from a counter-based hash
of its own sequence seed and the step, so a sample depends neither on the batch it was decoded in nor on the
device, and only the chosen ids leave the device."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


def sequence_seed(seed: int | None, prompt: str, sample_index: int) -> int | None:
    """Stable per-(prompt, sample) seed, independent of batching and process."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}\x00{sample_index}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def row_seeds(seed: int | None, prompts: Sequence[str], n: int) -> list[int]:
    """The seeds of the ``n`` samples of every prompt, prompt-major (row ``i * n + j`` is sample ``j`` of prompt
    ``i``): :func:`sequence_seed` of each, or, without a seed, fresh random ones."""
    return [s if (s := sequence_seed(seed, p, j)) is not None else random.getrandbits(63)
            for p in prompts for j in range(n)]


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

    Two levels, because a cumulative sum over a whole vocabulary is sequential: the sums of blocks of
    :data:`CDF_BLOCK` tokens find the block, and a cumulative sum inside that block finds the token. Block sums are
    float32 sums of 256 float32 numbers; where their rounding disagrees with the float64 sum inside the block, the
    block's last token of non-zero probability is taken."""
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


def filter_logits(logits, top_k: int, top_p: float):
    """``logits`` with every token outside the ``top_k`` most likely (0: no limit) and outside the smallest set
    whose probability reaches ``top_p`` (1.0: no limit) set to -inf; the token that crosses ``top_p`` is kept."""
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


def next_tokens(logits, seeds, step: int, temperature: float, top_k: int = 0, top_p: float = 1.0):
    """The next token of every row, on the logits' device: argmax at temperature 0, else a seeded draw
    (:func:`sample_rows`) from the temperature-scaled, filtered distribution. ``logits`` are scaled in place (a
    decoding step's logits are not used after sampling)."""
    import torch

    if temperature <= 0:
        return logits.argmax(dim=-1)
    scaled = logits.mul_(1.0 / temperature)
    probs = torch.softmax(filter_logits(scaled, top_k, top_p), dim=-1)
    return sample_rows(probs, seeds, step)
