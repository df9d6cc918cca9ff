"""Accuracy and calibration metrics (numpy; AUROC ranks with scipy's rankdata).

``conf`` is the confidence of each answer (for self-consistency: the vote share of the
chosen answer, ``votes / k``), ``correct`` whether the answer is right.
"""

from raftlab.metrics.binning import (
    ReliabilityBins,
    bin_index,
    equal_mass_bin_index,
    equal_width_bin_index,
    reliability_bins,
)
from raftlab.metrics.bootstrap import ConfidenceInterval, bootstrap_ci, bootstrap_stats, is_vectorized
from raftlab.metrics.calibration import (
    accuracy,
    brier,
    ece,
    ece_equal_mass,
    mce,
    mean_confidence,
    rms_ce,
    vectorized,
)
from raftlab.metrics.ranking import auroc
from raftlab.metrics.summary import METRIC_NAMES, summarize

__all__ = [
    "METRIC_NAMES", "ConfidenceInterval", "ReliabilityBins", "accuracy", "auroc", "bin_index", "bootstrap_ci",
    "bootstrap_stats", "brier", "ece", "ece_equal_mass", "equal_mass_bin_index", "equal_width_bin_index",
    "is_vectorized", "mce", "mean_confidence", "reliability_bins", "rms_ce", "summarize", "vectorized",
]
