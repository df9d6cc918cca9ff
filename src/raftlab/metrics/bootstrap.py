"""Percentile bootstrap confidence intervals for any metric.

The interval is the one ``scipy.stats.bootstrap(..., paired=True, method="percentile")`` computes (a test checks
that they agree). raftlab keeps its own resampler for what scipy's cannot do: resamples on which a metric is
undefined (AUROC on a one-class resample) are dropped instead of turning the interval into NaN, and the
resample indices are exposed (:func:`resample_indices`) so that the paired ΔAcc/ΔECE of two arms and their
metrics are all computed on one and the same set of resamples (:mod:`raftlab.analysis.deltas`).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

#: Upper bound on elements per resampled array held in memory at once (vectorised path).
_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate (the metric on the full data) with a percentile bootstrap interval."""

    value: float
    low: float
    high: float
    alpha: float = 0.05
    n_boot: int = 0

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def is_vectorized(fn: Callable[..., Any]) -> bool:
    """True if ``fn`` (or the function wrapped by a ``functools.partial``) is marked ``vectorized``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return bool(getattr(fn, "vectorized", False))


def resample_indices(n: int, n_boot: int, seed: int | None = 0) -> np.ndarray:
    """``(n_boot, n)`` indices drawn with replacement from ``range(n)``."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _check_arrays(arrays: tuple[Any, ...]) -> list[np.ndarray]:
    if not arrays:
        raise ValueError("bootstrap needs at least one data array")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0]) if arrs[0].ndim else 0
    if n == 0:
        raise ValueError("bootstrap needs at least one sample")
    for i, a in enumerate(arrs):
        if a.ndim != 1 or len(a) != n:
            raise ValueError(f"array {i}: expected a 1-D array of length {n}, got shape {a.shape}")
    return arrs


def bootstrap_stats(metric_fn: Callable[..., Any], *arrays: Any, n_boot: int = 1000, seed: int | None = 0,
                    vectorized: bool | None = None) -> np.ndarray:
    """The metric on ``n_boot`` joint resamples of ``arrays`` (the same rows drawn from every array).

    With ``vectorized`` (default: read from the function, see
    :func:`raftlab.metrics.calibration.vectorized`) the metric is called on 2-D arrays, one
    resample per row, in a few large calls; otherwise once per resample.
    """
    arrs = _check_arrays(arrays)
    n = len(arrs[0])
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    idx = resample_indices(n, n_boot, seed)
    if vectorized is None:
        vectorized = is_vectorized(metric_fn)
    if vectorized:
        chunk = max(1, _CHUNK_ELEMENTS // n)
        parts = []
        for start in range(0, n_boot, chunk):
            rows = idx[start:start + chunk]
            out = np.asarray(metric_fn(*[a[rows] for a in arrs]), dtype=float)
            if out.shape != (len(rows),):
                raise ValueError(f"vectorized metric returned shape {out.shape}, expected ({len(rows)},)")
            parts.append(out)
        return np.concatenate(parts)
    return np.array([float(metric_fn(*[a[row] for a in arrs])) for row in idx])


def bootstrap_ci(metric_fn: Callable[..., Any], *arrays: Any, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int | None = 0, vectorized: bool | None = None) -> ConfidenceInterval:
    """Percentile bootstrap ``1 - alpha`` interval of ``metric_fn(*arrays)``.

    Rows are resampled jointly across ``arrays`` (pass paired data as separate arrays of the
    same length). Resamples on which the metric is undefined (NaN, e.g. AUROC with only
    correct answers) are left out; if all are, the bounds are NaN. Use ``functools.partial``
    to fix keyword arguments such as ``k`` or ``n_bins``.

    Note: binned ECE is biased upwards on resamples (duplicated rows fill fewer bins), so for
    small ``n`` its percentile interval can lie above the point estimate; differences of ECEs
    (as in ΔECE) largely cancel this bias.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    value = float(metric_fn(*_check_arrays(arrays)))
    stats = bootstrap_stats(metric_fn, *arrays, n_boot=n_boot, seed=seed, vectorized=vectorized)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return ConfidenceInterval(value, float("nan"), float("nan"), alpha, n_boot)
    low, high = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return ConfidenceInterval(value, float(low), float(high), alpha, n_boot)
