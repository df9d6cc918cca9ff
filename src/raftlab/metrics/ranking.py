"""AUROC of confidence as a score for telling correct from wrong answers."""

from __future__ import annotations

from typing import Any

import numpy as np

from raftlab.metrics._inputs import as_pair
from raftlab.metrics.calibration import _out, vectorized


@vectorized
def auroc(conf: Any, correct: Any) -> float | np.ndarray:
    """Area under the ROC curve of ``conf`` for predicting ``correct``.

    Computed from the Mann-Whitney U statistic with average ranks for ties, which equals
    ``sklearn.metrics.roc_auc_score(correct, conf)`` (ties count one half). Undefined, and
    returned as NaN, when all answers are correct or all are wrong.
    """
    from scipy.stats import rankdata

    c, y = as_pair(conf, correct)
    ranks = rankdata(c, axis=-1)  # ties get the average of their ranks
    n_pos = y.sum(axis=-1)
    n_neg = y.shape[-1] - n_pos
    rank_sum = (ranks * y).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return _out(auc)
