"""Kernels for CPU inference with a loaded transformers model: prepacked bf16 linear layers and fused RMSNorm.

**Prepacked linears.**
``torch.nn.functional.linear`` in bf16 on a CPU hands oneDNN a plain weight, which it reorders into its blocked
(AMX / AVX-512-BF16) layout at every call. Reordering once and calling the packed kernel gives exactly the same
outputs without that per-call reorder, which dominates a layer's time at decoding batch sizes. This is the packing
that ``torch.compile``'s CPU freezing pass applies; here it is applied in eager mode, without a compiler.

The packed copy is kept next to the original weight (state dicts, tied embeddings and training keep working), so
a packed model holds its linear weights twice.

**Fused RMSNorm.** Llama-style RMSNorm modules (:data:`FUSABLE_RMSNORMS`) run as one
``torch.nn.functional.rms_norm`` call instead of eight tensor operations. It normalises in float32 like the
original and rounds once at the end, where the original rounds the normalised activations to the model's dtype
before multiplying by the weight: outputs agree within one unit of the last place in bf16 and to float32 rounding
in float32.
"""

from __future__ import annotations

import logging
import types
from typing import Any

log = logging.getLogger(__name__)


def packing_available() -> bool:
    """Whether this torch build has oneDNN's packed linear kernels and the CPU has bf16 instructions."""
    import torch

    from raftlab.machine import cpu_has_fast_bf16

    if not torch.backends.mkldnn.is_available() or not cpu_has_fast_bf16():
        return False
    try:
        torch.ops.mkldnn._reorder_linear_weight
        torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return False
    return True


def _packed_forward(self: Any, x):
    import torch
    import torch.nn.functional as F

    if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
        return F.linear(x, self.weight, self.bias)  # the packed kernel has no backward
    return torch.ops.mkldnn._linear_pointwise(x, self._raftlab_packed, self.bias, "none", [], "")


#: RMSNorm classes computing ``weight * (x / rms(x))`` in float32 (the formula F.rms_norm implements).
FUSABLE_RMSNORMS = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "Phi3RMSNorm"})


def _fused_rmsnorm_forward(self: Any, hidden_states):
    import torch

    return torch.nn.functional.rms_norm(hidden_states, self.weight.shape, self.weight, self.variance_epsilon)


def fuse_rmsnorms(model: Any) -> int:
    """Run every RMSNorm module of a class in :data:`FUSABLE_RMSNORMS` as ``torch.nn.functional.rms_norm``;
    returns how many were changed."""
    fused = 0
    for module in model.modules():
        if type(module).__name__ in FUSABLE_RMSNORMS and hasattr(module, "variance_epsilon") and getattr(
                module, "weight", None) is not None and module.weight.dim() == 1:
            module.forward = types.MethodType(_fused_rmsnorm_forward, module)
            fused += 1
    return fused


def speed_up_for_cpu_inference(model: Any, batch_hint: int = 40) -> dict[str, int]:
    """Apply both kernels to ``model`` (in place; meant for a model that is only used for inference on a CPU)."""
    return {"packed_linears": pack_linear_layers(model, batch_hint), "fused_rmsnorms": fuse_rmsnorms(model)}


def pack_linear_layers(model: Any, batch_hint: int = 40) -> int:
    """Give every bf16 ``nn.Linear`` of ``model`` on the CPU a prepacked copy of its weight and a forward that
    uses it; returns how many layers were packed (0 when :func:`packing_available` is False)."""
    import torch

    if not packing_available():
        return 0
    packed = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear) or hasattr(module, "_raftlab_packed"):
            continue
        weight = module.weight
        if weight.dtype != torch.bfloat16 or weight.device.type != "cpu":
            continue
        with torch.no_grad():
            module._raftlab_packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_hint)
        module.forward = types.MethodType(_packed_forward, module)
        packed += 1
    if packed:
        log.debug("prepacked %d bf16 linear layers for oneDNN", packed)
    return packed
