"""The sampling knobs, declared once: each knob's meaning (its description), its bounds and raftlab's default for
its own evaluation.

Every place that takes a knob derives its declaration from :class:`SamplingKnobs` instead of declaring it again:

* settings models (a study's ``eval``, ``teacher``, ``reference`` and ``judge`` sections) declare a knob field with
  :func:`knob_field` (the knob's bounds and description; a default of their own where theirs differs);
* command-line options (``raftlab eval``, ``raftlab rationales generate``, ...) with
  :func:`raftlab.cli.options.knob_option` (min/max from the bounds, help from the description);
* :func:`raftlab.inference.evaluate`'s keyword defaults are :data:`EVAL_DEFAULTS`;
* :class:`raftlab.backends.base.SamplingParams`, the engine-facing carrier every backend receives, checks its values
  with :func:`check_knob` (where a request may go beyond a knob's bounds, e.g. 0 new tokens to score only, it says
  so);
* the server's request models keep the OpenAI API's own defaults and names (``temperature`` 1.0, ``max_tokens``),
  which are the protocol's rather than raftlab's, and take the bounds and descriptions from here where they
  coincide.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from raftlab.schema import Strict

#: The bound kinds pydantic records on a field (``Field(ge=...)``) and how each reads in an error message.
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


class SamplingKnobs(Strict):
    """How a model's continuations are drawn; the defaults are raftlab's self-consistency evaluation's."""

    temperature: float = Field(0.8, ge=0.0, description="sampling temperature (0: greedy)")
    top_p: float = Field(1.0, ge=0.0, le=1.0, description="nucleus sampling: draw from the fewest most likely "
                         "tokens whose probabilities reach this share (1: all tokens)")
    top_k: int = Field(0, ge=0, description="draw from this many most likely tokens (0: no limit)")
    max_new_tokens: int = Field(256, ge=1, description="generation budget: new tokens per sample")
    seed: int | None = Field(0, description="sampling seed (None: unseeded)")


#: raftlab's own defaults (what ``raftlab eval`` and :func:`raftlab.inference.evaluate` sample with unless told).
EVAL_DEFAULTS = SamplingKnobs()


def knob_bounds(name: str) -> dict[str, float]:
    """The bounds of knob ``name`` as ``{"ge": 0.0, "le": 1.0}`` (pydantic's ``Field`` keywords)."""
    bounds: dict[str, float] = {}
    for constraint in SamplingKnobs.model_fields[name].metadata:  # annotated_types.Ge(ge=0.0), Le(...), ...
        bounds.update({k: v for k in _BOUNDS if (v := getattr(constraint, k, None)) is not None})
    return bounds


def knob_description(name: str) -> str:
    """What knob ``name`` means (its help text)."""
    return SamplingKnobs.model_fields[name].description or ""


def _bounds(name: str, replaced: dict[str, float | None]) -> dict[str, float]:
    """Knob ``name``'s bounds with some ``replaced`` (None: that bound dropped)."""
    return {k: v for k, v in {**knob_bounds(name), **replaced}.items() if v is not None}


def knob_field(name: str, default: Any = ..., *, description: str | None = None, **bounds: float | None) -> Any:
    """A pydantic ``Field`` for knob ``name`` in another settings model: the knob's bounds and description, with
    that model's own ``default`` (default: :data:`EVAL_DEFAULTS`'s) and ``description`` where given; ``bounds``
    replace the knob's (``ge=None`` drops one) where a protocol's differ, e.g. the OpenAI API's."""
    if default is ...:
        default = getattr(EVAL_DEFAULTS, name)
    return Field(default, description=knob_description(name) if description is None else description,
                 **_bounds(name, bounds))


def check_knob(name: str, value: Any, **bounds: float | None) -> None:
    """Raise a ValueError naming knob ``name`` when ``value`` is outside its bounds (``bounds`` replace some, as in
    :func:`knob_field`)."""
    if value is None:
        return
    for kind, limit in _bounds(name, bounds).items():
        ok = {"ge": value >= limit, "gt": value > limit, "le": value <= limit, "lt": value < limit}[kind]
        if not ok:
            raise ValueError(f"{name} must be {_BOUNDS[kind]} {limit}, not {value!r}")
