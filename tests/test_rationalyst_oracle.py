"""RATIONALYST offline pieces: the rule-based GSM8K equation annotator (on real GSM8K lines) and the paired
comparison of two decoding methods (exact McNemar)."""

from __future__ import annotations

import json

import pytest

from raftlab.rationalyst import (
    BOT, EOT, faithful, mcnemar_exact, open_store, paired_comparison, paired_counts, split_triples,
)
from raftlab.rationalyst.oracle import OracleAnnotator, annotate_equations, equation_rationale

# GSM8K train (MIT), annotations removed as the gsm8k loader does
NATALIA = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May? Natalia sold 48/2 = 24 clips in May.\n"
           "Natalia sold 48+24 = 72 clips altogether in April and May. The answer is 72.")


@pytest.mark.parametrize("expr, unit, expected", [
    ("48/2", "clips in May", "Divide 48 by 2 to find the clips in May."),
    ("48+24", None, "Add 48 and 24."),
    ("3.79+4.5+3.95+3.09+4.67", "inches", "Add 3.79, 4.5, 3.95, 3.09 and 4.67 to find the inches."),
    ("$100-$38", None, "Subtract $38 from $100."),
    ("0.2 x 50", None, "Multiply 0.2 by 50."),
    ("20000*.8", None, "Multiply 20000 by .8."),
    ("3000/3*4", "jelly beans", "Compute 3000/3*4 to find the jelly beans."),
    ("(4+5)*2", None, "Compute (4+5)*2."),
])
def test_equation_rationale(expr, unit, expected):
    assert equation_rationale(expr, unit) == expected


def test_equation_annotator_on_real_gsm8k_solutions():
    annotated = annotate_equations(NATALIA)
    assert faithful(NATALIA, annotated, max_ratio=0.0)
    triples = split_triples(annotated)
    assert [(t.rationale, t.following) for t in triples] == [
        ("Divide 48 by 2 to find the clips in May.", "Natalia sold 48/2 = 24 clips in May."),
        ("Add 48 and 24 to find the clips altogether in April.", "Natalia sold 48+24 = 72 clips altogether in April and May."),
        ("State the final result.", "The answer is 72."),
    ]
    # "$15 +$23=$38" (spaces, dollars), ".4 liters * 1000" has words between operands: no equation, no rationale
    text = ("So far, Mary has paid back $15 +$23=$38 of the credit.\nSo she still needs to pay $100-$38=$62\n"
            "Jack gets .4 liters * 1000 ml/liter = 400 ml")
    got = [t.rationale for t in split_triples(annotate_equations(text))]
    assert got == ["Add $15 and $23.", "Subtract $38 from $100."]
    assert annotate_equations("No numbers here. None at all.") == "No numbers here. None at all."


def test_oracle_annotator_styles_and_cli(tmp_path):
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    assert OracleAnnotator("equations").model_name == "oracle-annotator:equations"
    with pytest.raises(ValueError, match="unknown oracle annotator 'llm'"):
        OracleAnnotator("llm")
    res = CliRunner().invoke(app, ["rationalyst", "mine", "--model", "oracle", "--task", "gsm8k", "--data-dir",
                                   "packaged", "--limit", "5", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output[res.output.index("{"):])  # after the progress bar
    assert stats["faithful"] == 5 and stats["triples"] >= 10  # >= one equation + the answer per solution
    rows = [v for _, v in open_store(tmp_path).items("mine")]
    assert all(BOT in r["annotated"] and EOT in r["annotated"] for r in rows)
    assert dict(open_store(tmp_path).items("settings"))["mine"]["model"] == "oracle-annotator:equations"
    res = CliRunner().invoke(app, ["rationalyst", "mine", "--model", "oracle:llm", "--task", "gsm8k",
                                   "--data-dir", "packaged", "--out", str(tmp_path / "b")])
    assert res.exit_code != 0 and "unknown oracle annotator" in res.output


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 1) == pytest.approx(2 * (1 + 6) / 64)
    assert mcnemar_exact(1, 5) == mcnemar_exact(5, 1)
    assert mcnemar_exact(7, 7) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_counts_and_comparison_from_the_store(tmp_path):
    got = paired_counts([True, True, False, False, True], [True, False, True, False, False])
    assert (got["both"], got["a_only"], got["b_only"], got["neither"]) == (1, 2, 1, 1)
    assert got["acc_a"] == pytest.approx(0.6) and got["acc_b"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="differ in length"):
        paired_counts([True], [])
    store = open_store(tmp_path)
    for i, (a, b) in enumerate([(True, False)] * 6 + [(False, False)]):
        store.put("solve", f"t|implicit|q{i}", {"correct": a})
        store.put("solve", f"t|random|q{i}", {"correct": b})
    store.put("solve", "t|implicit|q9", {"correct": True})  # no random result: not paired
    p = paired_comparison(store, "t", [f"q{i}" for i in range(10)])
    assert (p["n"], p["a_only"], p["b_only"], p["neither"]) == (7, 6, 0, 1)
    assert p["p_mcnemar"] == pytest.approx(2 / 64)
