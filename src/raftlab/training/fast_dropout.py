"""LoRA's input dropout with a cheaper mask on a CPU.

peft applies ``nn.Dropout`` to the input of every adapted linear layer. On a CPU, torch draws that mask with one
Bernoulli sample (a Mersenne-Twister draw and a float comparison) per element, a large share of a LoRA training
step of a small model (docs/performance.md). :class:`MaskDropout` draws 64 random bits per four elements instead and
keeps an element where its 15 bits are at least the threshold: the same inverted dropout, with the drop probability
rounded to a multiple of 2^-15 (0.05 becomes 1638 / 32768 = 0.04999).
"""

from __future__ import annotations

from typing import Any

import torch

#: Uniform bits per element of the mask (the low 15 bits of each 16-bit quarter of a 63-bit random integer).
MASK_BITS = 15


class MaskDropout(torch.nn.Module):
    """Inverted dropout (zero each element with probability ``p``, scale the rest by ``1 / (1 - p)``) with a mask
    from :data:`MASK_BITS`-bit random integers; the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.threshold = round(p * 2**MASK_BITS)
        self.p = self.threshold / 2**MASK_BITS  # the probability actually used
        self.scale = 1.0 / (1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        words = torch.empty(-(-n // 4), dtype=torch.int64, device=x.device).random_()  # 63 uniform bits each
        bits = words.view(torch.int16)[:n].view(x.shape) & (2**MASK_BITS - 1)
        return x * ((bits >= self.threshold) * self.scale).to(x.dtype)

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
