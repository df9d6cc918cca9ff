"""The LM head and the cross-entropy at target positions, fused and in chunks: the vocabulary logits never exist whole.

With target-only logits (``loss.py``) a training step still builds a (kept positions x vocabulary) logit matrix,
its fp32 copy, the log-softmax and its gradient (for SmolLM2's 49,152-token vocabulary about 0.8 MB per position,
hundreds of MB per step), passing over each several times. :func:`target_cross_entropy` takes the hidden states at the
target positions only (not the union of a padded batch's target columns) and, :data:`CHUNK_BYTES` of logits at a
time, computes the logits (the same product, in the same dtype, as the LM head under the same autocast), the loss and
the gradient with respect to the hidden states (and the head's weight, where it trains), keeping only those for the
backward. The loss and the gradients are those of the LM head followed by transformers' ``ForCausalLMLoss``, up to
the order of the loss's sum over rows.

Because the gradient is computed in the forward, this is for training steps (the trainer installs it with
:func:`use_fused_loss`, on a CPU, in one process or under DDP); evaluation and generation run the model's own
forward. A batch without targets gives a zero loss (the stock mean would be NaN).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from raftlab.training.features import IGNORE
from raftlab.training.loss import unwrapped

#: Logits (in fp32) computed at a time: large enough for efficient products, small enough to stay out of the peak.
CHUNK_BYTES = 32 * 2**20

#: Architectures whose causal-LM forward is exactly ``loss = ForCausalLMLoss(lm_head(decoder(...)[kept]))``: no
#: logit scaling or soft-capping, no bias on the head.
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


class _TargetCrossEntropy(torch.autograd.Function):
    """Mean (or sum / ``divisor``) cross-entropy of ``hidden @ weight.T`` against ``targets``, gradients computed in
    the forward chunk by chunk (for a backward gradient of 1; another one scales them)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, divisor, dtype):
        with torch.autocast(hidden.device.type, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            n, vocab = h.shape[0], w.shape[0]
            rows = max(1, CHUNK_BYTES // (4 * vocab))
            scale = 1.0 / float(divisor)
            grad_h = torch.empty_like(h) if hidden.requires_grad else None
            grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if weight.requires_grad else None
            total = torch.zeros((), dtype=torch.float32, device=h.device)
            for start in range(0, n, rows):
                hc, tc = h[start:start + rows], targets[start:start + rows]
                logp = torch.log_softmax(torch.mm(hc, w.t()).float(), dim=-1)
                picked = logp.gather(1, tc[:, None])
                total -= picked.sum()
                # d loss / d logits = (softmax - one-hot) / divisor, rounded to the products' dtype as autocast
                # rounds the stock path's fp32 gradient
                probs = logp.exp_()
                probs.scatter_add_(1, tc[:, None], torch.full_like(picked, -1.0))
                grad_logits = probs.mul_(scale) if dtype == probs.dtype else torch.mul(
                    probs, scale, out=torch.empty(probs.shape, dtype=dtype, device=probs.device))
                if grad_h is not None:
                    torch.mm(grad_logits, w, out=grad_h[start:start + rows])
                if grad_w is not None:
                    grad_w += torch.mm(grad_logits.t(), hc)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        one = bool(grad_out == 1)
        if grad_h is not None:
            grad_h = (grad_h if one else grad_h * grad_out).to(hidden_dtype)
        if grad_w is not None:
            grad_w = (grad_w if one else grad_w * grad_out).to(weight_dtype)
        return grad_h, grad_w, None, None, None


def target_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         num_items_in_batch: Any = None) -> torch.Tensor:
    """Cross-entropy of the logits ``hidden @ weight.T`` (``hidden``: rows x hidden size, every row a target position;
    ``targets``: the rows' next tokens): the mean over rows, or the sum divided by ``num_items_in_batch`` when it is
    given (as ``ForCausalLMLoss`` under gradient accumulation). The products run in autocast's dtype where autocast
    is on (as the LM head's would), else in the promoted dtype of ``hidden`` and ``weight``."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    else:
        dtype = torch.promote_types(hidden.dtype, weight.dtype)
    if not hidden.shape[0]:  # no target in the batch: a zero loss (the stock mean is NaN) with zero gradients
        return (hidden.sum() + weight.sum()) * 0.0
    divisor = num_items_in_batch if num_items_in_batch is not None else hidden.shape[0]
    if torch.is_tensor(divisor):
        divisor = divisor.item()
    return _TargetCrossEntropy.apply(hidden, weight, targets, divisor, dtype)


def supports_fused_loss(model: Any) -> bool:
    """Whether ``model`` (possibly peft-wrapped) is of :data:`PLAIN_HEAD_TYPES` with a plain bias-free linear head
    (not an adapted one) and the standard causal-LM loss."""
    from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss

    base = unwrapped(model)
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_TYPES:
        return False
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return False
    head = getattr(base, "lm_head", None)
    if type(head) is not torch.nn.Linear or head.bias is not None or not hasattr(base, "model"):
        return False
    return LOSS_MAPPING.get(getattr(base, "loss_type", None) or "ForCausalLM") is ForCausalLMLoss


def use_fused_loss(model: Any, on: bool = True) -> None:
    """Route ``model``'s training forward with target-only labels (``loss.target_inputs``: ``logits_to_keep`` as an
    index tensor and ``shift_labels``) through :func:`target_cross_entropy` (``on``), or back to the model's own
    (``on=False``). Any other call (evaluation, no gradients, full logits) always runs the model's own forward.
    Installed on the causal-LM module itself, so wrappers (peft, DDP, accelerate's autocast) still run theirs
    around it."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    base = unwrapped(model)
    if on and not hasattr(base, "_fused_loss"):
        stock = base.forward

        @functools.wraps(stock)  # the stock signature for whoever inspects it (loss.py, the cache keyword)
        def forward(*args: Any, labels=None, shift_labels=None, logits_to_keep=0, **kwargs: Any):
            if not (base._fused_loss and base.training and torch.is_grad_enabled() and shift_labels is not None
                    and torch.is_tensor(logits_to_keep) and not args):
                return stock(*args, labels=labels, shift_labels=shift_labels, logits_to_keep=logits_to_keep,
                             **kwargs)
            num_items = kwargs.pop("num_items_in_batch", None)
            out = base.model(**kwargs)
            rows, cols = (shift_labels != IGNORE).nonzero(as_tuple=True)
            hidden = out.last_hidden_state[rows, logits_to_keep.to(cols.device)[cols]]
            loss = target_cross_entropy(hidden, base.lm_head.weight, shift_labels[rows, cols], num_items)
            return CausalLMOutputWithPast(loss=loss, logits=None)

        base.forward = forward
    if hasattr(base, "_fused_loss") or on:
        base._fused_loss = on
