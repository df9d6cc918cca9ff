"""Teacher rationales: generation with the gold filter and retries into a resumable SQLite store,
LLM-as-judge quality check, blank-rationale ablation data."""

from raftlab.rationales.blank import add_think_tokens, make_blank_rationales, think_tokens
from raftlab.rationales.generate import (export_jsonl, generate_rationales, run_stats, strip_answer_sentence,
                                        default_samples_per_prompt, teacher_backend)
from raftlab.rationales.judge import JUDGE_PROMPT, judge_rationales, parse_verdict
from raftlab.rationales.store import RationaleStore
from raftlab.storage import SettingsMismatch

__all__ = [
    "JUDGE_PROMPT", "RationaleStore", "SettingsMismatch", "add_think_tokens", "export_jsonl", "generate_rationales",
    "judge_rationales", "make_blank_rationales", "parse_verdict", "run_stats", "strip_answer_sentence",
    "teacher_backend", "think_tokens", "default_samples_per_prompt",
]
