"""RATIONALYST: mine implicit rationales from text, keep the helpful ones, train a rationale generator,
and use it to choose among an agent model's candidate reasoning steps."""

from raftlab.rationalyst.extract import (
    BOT, EOT, Triple, edit_distance_ratio, extraction_prompt, faithful, split_triples, strip_rationales,
)
from raftlab.rationalyst.pipeline import (
    docs_from_examples, docs_from_text_file, filter_triples, kept_triples, mine, mined_triples, open_store,
    source_text, summary,
)
from raftlab.rationalyst.paired import mcnemar_exact, paired_comparison, paired_counts
from raftlab.rationalyst.scoring import discounted_score, keeps_rationale, length_normalised
from raftlab.rationalyst.solve import (
    METHODS, best_candidate, close_step, solve, solve_example, solve_settings, solve_summary, stored_solve_settings,
)
from raftlab.rationalyst.store import StageStore
from raftlab.rationalyst.train import pair_features, train_generator

__all__ = [
    "BOT", "EOT", "METHODS", "StageStore", "Triple", "best_candidate", "close_step", "discounted_score",
    "docs_from_examples", "docs_from_text_file", "edit_distance_ratio",
    "extraction_prompt", "faithful", "filter_triples", "keeps_rationale", "kept_triples", "length_normalised",
    "mcnemar_exact", "mine", "mined_triples", "open_store", "pair_features", "paired_comparison", "paired_counts", "solve", "solve_example", "solve_settings",
    "solve_summary", "source_text", "stored_solve_settings", "split_triples", "strip_rationales", "summary", "train_generator",
]
