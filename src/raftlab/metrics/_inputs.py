"""Validation and coercion of (confidence, correctness) inputs shared by every metric."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Confidences further than this outside [0, 1] are rejected; closer ones are clipped.
RANGE_TOL = 1e-9


def _samples(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr``, checked to be 1-D (or 2-D, one resample per row) and not empty."""
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name}: expected a 1-D array (or 2-D, one resample per row), got shape {arr.shape}")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name}: no samples (empty array)")
    return arr


def _refuse(arr: np.ndarray, bad: np.ndarray, name: str, must_be: str) -> None:
    """A ValueError naming the first ``bad`` value of ``arr`` and its index, if any."""
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: values must be {must_be}; index {pos[-1] if len(pos) == 1 else pos} "
                         f"is {arr[pos]!r}")


def as_confidence(conf: Any, name: str = "conf") -> np.ndarray:
    """Return ``conf`` as a float array (1-D, or 2-D with one resample per row), checked to lie in [0, 1]."""
    arr = _samples(np.asarray(conf, dtype=float), name)
    _refuse(arr, ~np.isfinite(arr) | (arr < -RANGE_TOL) | (arr > 1 + RANGE_TOL), name, "finite and in [0, 1]")
    return np.clip(arr, 0.0, 1.0)


def as_correct(correct: Any, name: str = "correct") -> np.ndarray:
    """Return ``correct`` as a float array of 0.0/1.0 (accepts bools, 0/1 ints or floats)."""
    arr = _samples(np.asarray(correct), name).astype(float)
    _refuse(arr, (arr != 0.0) & (arr != 1.0), name, "booleans or 0/1")
    return arr


def as_pair(conf: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (confidence, correctness) pair of equal shape."""
    c, y = as_confidence(conf), as_correct(correct)
    if c.shape != y.shape:
        raise ValueError(f"conf and correct must have the same shape, got {c.shape} and {y.shape}")
    return c, y


def vote_counts(conf: np.ndarray, k: Any, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Recover integer vote counts ``v = conf * k`` (and ``k`` broadcast to ``conf``'s shape).

    Raises if a confidence is not (within ``tol``) a multiple of ``1/k``: such a value
    cannot be a self-consistency vote share with ``k`` samples.
    """
    k_arr = np.broadcast_to(np.asarray(k), conf.shape)
    if not np.issubdtype(k_arr.dtype, np.number) or (k_arr != np.round(k_arr)).any() or (k_arr < 1).any():
        raise ValueError(f"k must be a positive integer (or an array of them), got {k!r}")
    k_int = k_arr.astype(np.int64)
    scaled = conf * k_int
    votes = np.rint(scaled)
    off = np.abs(scaled - votes) > tol
    if off.any():
        pos = tuple(int(i) for i in np.argwhere(off)[0])
        raise ValueError(f"conf[{pos[-1] if len(pos) == 1 else pos}] = {conf[pos]!r} is not a multiple of 1/k "
                         f"(k={int(k_int[pos])}); pass k=None for confidences that are not vote shares")
    return votes.astype(np.int64), k_int
