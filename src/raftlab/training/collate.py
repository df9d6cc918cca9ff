"""Batch collators: dynamic padding, and packing (padding-free) that never crosses loss masks."""

from __future__ import annotations

from typing import Any

from raftlab.training.features import IGNORE

VIEW_PREFIXES = ("", "r_")  # the label view, and the rationale view of the align objective


class PadCollator:
    """Right-pads ``input_ids`` with the pad id and ``labels`` with -100; ``pad_to`` forces a fixed width
    (the official recipe's padding, used by the benchmark as a reference)."""

    def __init__(self, pad_id: int, pad_to: int | None = None) -> None:
        self.pad_id, self.pad_to = pad_id, pad_to

    def _pad(self, rows: list[list[int]], value: int, width: int):
        import torch

        return torch.tensor([r + [value] * (width - len(r)) for r in rows])

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        out = {}
        for prefix in VIEW_PREFIXES:
            key = f"{prefix}input_ids"
            if key not in batch[0]:
                continue
            ids = [b[key] for b in batch]
            width = self.pad_to or max(len(r) for r in ids)
            out[key] = self._pad(ids, self.pad_id, width)
            out[f"{prefix}attention_mask"] = self._pad([[1] * len(r) for r in ids], 0, width)
            out[f"{prefix}labels"] = self._pad([b[f"{prefix}labels"] for b in batch], IGNORE, width)
        return out


class PackCollator:
    """Concatenates a batch into one row per view (transformers' ``DataCollatorWithFlattening``): no padding,
    ``position_ids`` restart at 0 for each example and each example's first label is -100, so attention is
    block-diagonal (transformers builds the mask from the position ids; flash-attention runs varlen) and no loss
    target crosses from one example into the next."""

    def __init__(self) -> None:
        from transformers import DataCollatorWithFlattening

        self.flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        out = {}
        for prefix in VIEW_PREFIXES:
            if f"{prefix}input_ids" not in batch[0]:
                continue
            view = self.flatten([{"input_ids": b[f"{prefix}input_ids"], "labels": b[f"{prefix}labels"]}
                                 for b in batch], return_tensors="pt")
            out.update({f"{prefix}{k}": view[k] for k in ("input_ids", "labels", "position_ids")})
        return out
