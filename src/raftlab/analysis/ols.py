"""OLS line fits with Pearson correlation (scipy), and saving/loading fits as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from raftlab.analysis.directions import hypothesised_direction
from raftlab.analysis.models import OLSFit


def fit_ols(x: Sequence[float], y: Sequence[float], x_name: str = "delta_acc", y_name: str = "delta_ece",
            labels: Sequence[str] | None = None, direction: str | None = None) -> OLSFit:
    """Least-squares line ``y = slope * x + intercept`` with Pearson r, its two-sided p-value, the one-tailed
    p-value in ``direction`` (the t-test of r with n − 2 df, as the paper's Tables 5, 9 and 10), and R² = r².

    ``direction`` is the hypothesised sign of r, "positive" or "negative"; None takes the one the paper
    hypothesises for ``x_name`` (:func:`raftlab.analysis.directions.hypothesised_direction`). Needs at least 3
    points (with 2 the line passes through both and r = ±1 says nothing) and x values that are not all equal.
    """
    from scipy import stats

    direction = direction or hypothesised_direction(x_name)
    if direction not in ("positive", "negative"):
        raise ValueError(f"direction must be 'positive' or 'negative', not {direction!r}")

    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.ndim != 1 or xs.shape != ys.shape:
        raise ValueError(f"x and y must be 1-D arrays of equal length, got shapes {xs.shape} and {ys.shape}")
    if len(xs) < 3:
        raise ValueError(f"an OLS fit of {y_name} on {x_name} needs at least 3 points (tasks), got {len(xs)}")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError(f"OLS fit of {y_name} on {x_name}: x and y must be finite numbers")
    if np.ptp(xs) == 0:
        raise ValueError(f"OLS fit of {y_name} on {x_name}: all {x_name} values are equal ({xs[0]}), no line to fit")
    labels = [str(v) for v in labels] if labels is not None else [str(i) for i in range(len(xs))]
    if len(labels) != len(xs):
        raise ValueError(f"labels: expected {len(xs)}, got {len(labels)}")
    res = stats.linregress(xs, ys)
    r = float(res.rvalue) if np.isfinite(res.rvalue) else None
    p = float(res.pvalue) if np.isfinite(res.pvalue) else None
    one = stats.linregress(xs, ys, alternative="greater" if direction == "positive" else "less").pvalue
    p_one = float(one) if np.isfinite(one) else None
    return OLSFit(
        x=x_name, y=y_name, slope=float(res.slope), intercept=float(res.intercept), r=r, p=p, p_one_sided=p_one,
        direction=direction,
        x_range=[float(xs.min()), float(xs.max())],
        r2=None if r is None else r * r, n=len(xs),
        slope_stderr=float(res.stderr), intercept_stderr=float(res.intercept_stderr),
        points=[{"label": lab, "x": float(a), "y": float(b)} for lab, a, b in zip(labels, xs, ys)],
    )


def save_fit(fit: OLSFit | Sequence[OLSFit], path: str | Path) -> Path:
    """Write one fit or several to JSON (``{"fits": [...]}``), for :func:`load_fit` / ``predict_gain``."""
    fits = [fit] if isinstance(fit, OLSFit) else list(fit)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"fits": [f.model_dump(mode="json") for f in fits]}, indent=2), encoding="utf-8")
    return out


def _fits_in(data: Any, path: Path) -> list[OLSFit]:
    """Fits in a :func:`save_fit` file, a single fit object, or an analysis result (``analysis.json``)."""
    if isinstance(data, dict) and "fits" in data:
        raw = data["fits"]
    elif isinstance(data, dict) and ("difficulty_fits" in data or "fit" in data):
        raw = list(data.get("difficulty_fits") or []) + ([data["fit"]] if data.get("fit") else [])
    elif isinstance(data, dict) and "slope" in data:
        raw = [data]
    else:
        raise ValueError(f"{path}: no fits found (expected {{'fits': [...]}}, a fit, or an analysis.json)")
    fits = []
    for i, item in enumerate(raw):
        try:
            fits.append(OLSFit.model_validate(item))
        except Exception as exc:  # pydantic.ValidationError: say which entry
            raise ValueError(f"{path}: fit #{i} is invalid: {exc}") from None
    return fits


def load_fit(path: str | Path, x: str | None = None, y: str = "delta_acc") -> OLSFit:
    """The fit of ``y`` on ``x`` stored at ``path`` (a :func:`save_fit` file or an ``analysis.json``).

    With ``x=None`` the file must hold exactly one fit of ``y``.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such fit file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    fits = [f for f in _fits_in(data, p) if f.y == y and (x is None or f.x == x)]
    if len(fits) != 1:
        have = ", ".join(f"{f.y}~{f.x}" for f in _fits_in(data, p)) or "none"
        want = f"{y}~{x}" if x else f"{y}~<any>"
        raise ValueError(f"{p}: expected exactly one fit {want}, found {len(fits)} (fits in file: {have})")
    return fits[0]
