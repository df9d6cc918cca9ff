"""A KV cache that grows in place: keys and values live in preallocated buffers with headroom, so a decoding step
writes one position instead of copying the whole cache (transformers' ``DynamicLayer`` concatenates, which copies
every row's cache at every step: with long in-context prompts that copy costs more than the model)."""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import DynamicCache, DynamicLayer

#: Positions allocated beyond what is needed whenever a buffer is (re)allocated, unless the cache was told how
#: many positions it will hold (:func:`growing_cache`'s ``capacity``).
HEADROOM = 128


class GrowingLayer(DynamicLayer):
    """``DynamicLayer`` whose ``keys``/``values`` are views of buffers with spare capacity along the sequence."""

    #: positions every buffer should hold (prompt + generation budget), when known; else HEADROOM spare ones
    capacity: int | None = None

    def lazy_initialization(self, key_states, value_states) -> None:
        super().lazy_initialization(key_states, value_states)
        self._kbuf = self._vbuf = None
        self._len = 0

    def _adopt(self, keys, values, capacity: int, repeats: int = 1) -> None:
        """Take ``keys``/``values`` (each row ``repeats`` times, written straight into place: no temporary copy)
        as the cache contents, in new buffers of ``capacity`` positions."""
        import torch

        b, h, n, d = keys.shape
        capacity = max(capacity, self.capacity or 0, n)
        self._kbuf = torch.empty((b * repeats, h, capacity, d), dtype=keys.dtype, device=keys.device)
        self._vbuf = torch.empty((b * repeats, h, capacity, values.shape[-1]), dtype=values.dtype,
                                 device=values.device)
        self._kbuf.view(b, repeats, h, capacity, d)[:, :, :, :n] = keys[:, None]
        self._vbuf.view(b, repeats, h, capacity, values.shape[-1])[:, :, :, :n] = values[:, None]
        self._len = n
        self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

    def update(self, key_states, value_states, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        if self._kbuf is None or self._len + new > self._kbuf.shape[-2] or self._kbuf.shape[0] != key_states.shape[0]:
            old_k = self.keys if self._len else key_states[:, :, :0]
            old_v = self.values if self._len else value_states[:, :, :0]
            need = self._len + new
            self._adopt(old_k, old_v, need if self.capacity and self.capacity >= need else need + HEADROOM)
        end = self._len + new
        self._kbuf[:, :, self._len:end] = key_states
        self._vbuf[:, :, self._len:end] = value_states
        self._len = end
        self.keys, self.values = self._kbuf[:, :, :end], self._vbuf[:, :, :end]
        return self.keys, self.values

    def reserve(self, new: int):
        """The key and value buffers ``(rows, heads, capacity, dim)``, with room for ``new`` positions after the
        current ones (for a caller that writes them itself and then calls :meth:`advance`)."""
        if self._len + new > self._kbuf.shape[-2]:
            need = self._len + new
            self._adopt(self.keys, self.values, need if self.capacity and self.capacity >= need else need + HEADROOM)
        return self._kbuf, self._vbuf

    def advance(self, new: int) -> None:
        """Count ``new`` positions written into the buffers after the current ones (see :meth:`reserve`)."""
        self._len += new
        self.keys, self.values = self._kbuf[:, :, : self._len], self._vbuf[:, :, : self._len]

    def get_seq_length(self) -> int:
        return self._len if self.is_initialized else 0

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            self._adopt(self.keys, self.values, self._kbuf.shape[-2], repeats)

    def batch_select_indices(self, indices) -> None:
        if self.get_seq_length() > 0:
            self._kbuf, self._vbuf = self._kbuf[indices], self._vbuf[indices]
            self.keys, self.values = self._kbuf[:, :, : self._len], self._vbuf[:, :, : self._len]

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        if self.is_initialized and self.keys is not None and self._kbuf is not None:
            self._len = self.keys.shape[-2]

    def reset(self) -> None:
        super().reset()
        self._kbuf = self._vbuf = None
        self._len = 0


def full_attention_only(model_config: Any) -> bool:
    """Whether every layer of the model attends to all earlier positions (no sliding windows, no other layer
    types): the models whose KV cache raftlab's decoding replaces."""
    text = model_config.get_text_config(decoder=True) if hasattr(model_config, "get_text_config") else model_config
    return not getattr(text, "sliding_window", None) and set(
        getattr(text, "layer_types", None) or ["full_attention"]) == {"full_attention"}


def growing_cache(model_config: Any, capacity: int | None = None) -> DynamicCache | None:
    """A cache of :class:`GrowingLayer` for a model whose layers all use full attention (None for others, e.g.
    sliding-window models, which keep transformers' own cache). ``capacity``: the positions it will hold (prompt
    plus generation budget), allocated once."""
    if not full_attention_only(model_config):
        return None
    cache = DynamicCache()
    cache.layer_class_to_replicate = type("SizedGrowingLayer", (GrowingLayer,), {"capacity": capacity})
    return cache
