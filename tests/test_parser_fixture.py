"""The answer parser against 336 real SmolLM2 outputs read by a person (tests/data/parser_fixture.md)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from raftlab.tasks.answers import AnswerSpec, extract_answer

FIXTURE = Path(__file__).parent / "data" / "parser_fixture.jsonl"


def _rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def test_fixture_covers_real_outputs_of_both_answer_types_before_and_after_finetuning():
    rows = _rows()
    assert len(rows) >= 300
    types = Counter(r["spec"]["answer_type"] for r in rows)
    assert types["number"] >= 100 and types["choice"] >= 100
    sources = {r["source"].split(" (")[0] for r in rows}
    assert {"smollm2 ft", "smollm2 raft", "smollm2 untrained, zero-shot CoT"} <= sources
    assert len({r["task"] for r in rows}) >= 6


def test_parser_agrees_with_the_person_on_at_least_98_percent():
    rows = _rows()
    disagreements = []
    for r in rows:
        s = r["spec"]
        got = extract_answer(r["output"], AnswerSpec(s["answer_type"], s["option_letters"], s["verbalizers"]))
        if got != r["person"]:
            disagreements.append((r["id"], got, r["person"], r["note"]))
    assert all(note for *_, note in disagreements), [d for d in disagreements if not d[3]]
    agreement = 1 - len(disagreements) / len(rows)
    assert agreement >= 0.98, (agreement, disagreements)
