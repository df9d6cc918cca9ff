"""LoRA's input dropout with a cheaper mask on a CPU.

peft applies ``nn.Dropout`` to the input of every adapted linear layer. On a CPU, torch draws that mask with one
Bernoulli sample (a Mersenne-Twister draw and a float comparison) per element, a large share of a LoRA training
step of a small model (docs/performance.md). :class:`MaskDropout` draws 64 random bits per four elements instead and
keeps an element where its 15 bits are at least the threshold: the same inverted dropout, with the drop probability
rounded to a multiple of 2^-15 (0.05 becomes 1638 / 32768 = 0.04999).

The mask is built in integers as wide as the input's float type and then reinterpreted as floats (the bit pattern
of ``1 / (1 - p)`` where kept, of 0.0 where dropped): torch's CPU comparisons and bool-to-float conversions are
several times slower than its integer arithmetic, so this takes a few in-place integer passes and one multiply.
"""

from __future__ import annotations

from typing import Any

import torch

#: Uniform bits per element of the mask (the low 15 bits of each 16-bit quarter of a 63-bit random integer).
MASK_BITS = 15

#: The integer type each float type's mask is built in (the same width, so its bits reinterpret as that float).
_SAME_WIDTH_INT = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32,
                   torch.float64: torch.int64}


class MaskDropout(torch.nn.Module):
    """Inverted dropout (zero each element with probability ``p``, scale the rest by ``1 / (1 - p)``) with a mask
    from :data:`MASK_BITS`-bit random integers; the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.threshold = round(p * 2**MASK_BITS)
        if self.threshold == 2**MASK_BITS:
            raise ValueError(f"dropout probability {p} rounds to 1 at {MASK_BITS}-bit resolution: use at most "
                             f"{1 - 2**-MASK_BITS:.5f}")
        self.p = self.threshold / 2**MASK_BITS  # the probability actually used
        self.scale = 1.0 / (1.0 - self.p)
        self._bits: dict[torch.dtype, int] = {}  # the scale's bit pattern per float type (see _scale_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        return x * self.mask(x)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """A fresh mask shaped and typed like ``x``: ``1 / (1 - p)`` (as a float32 rounded to ``x``'s type) where
        an element is kept, 0 where it is dropped."""
        n = x.numel()
        words = torch.empty(-(-n // 4), dtype=torch.int64, device=x.device).random_()  # 63 uniform bits each
        bits = words.view(torch.int16)[:n].view(x.shape)
        bits &= 2**MASK_BITS - 1  # one 15-bit uniform per element
        as_int = _SAME_WIDTH_INT.get(x.dtype)
        if as_int is None:  # a float type without an integer of its width: the plain comparison
            return ((bits >= self.threshold) * self.scale).to(x.dtype)
        if as_int is not torch.int16:
            bits = bits.to(as_int)
        # (threshold - 1 - bits) is negative exactly where bits >= threshold (kept); an arithmetic shift by the
        # width - 1 turns it into all ones there and 0 elsewhere, and the AND leaves the scale's bit pattern
        bits.sub_(self.threshold - 1).neg_()
        bits >>= torch.iinfo(as_int).bits - 1
        bits &= self._scale_bits(x.dtype, as_int)
        return bits.view(x.dtype)

    def _scale_bits(self, dtype: torch.dtype, as_int: torch.dtype) -> int:
        """The bit pattern of ``1 / (1 - p)`` in ``dtype`` (rounded through float32, as a float32 mask converted to
        ``dtype`` would be), as an integer of type ``as_int``."""
        if dtype not in self._bits:
            self._bits[dtype] = int(torch.tensor(self.scale, dtype=torch.float32).to(dtype).view(as_int).item())
        return self._bits[dtype]

    def extra_repr(self) -> str:
        return f"p={self.p:.5f}"


def use_mask_dropout(model: Any) -> int:
    """Replace the ``nn.Dropout`` of every LoRA layer of ``model`` (peft's ``lora_dropout``) by
    :class:`MaskDropout` of the same probability; returns how many were replaced."""
    replaced = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            if isinstance(drop, torch.nn.Dropout) and drop.p > 0:
                drops[name] = MaskDropout(drop.p)
                replaced += 1
    return replaced
