"""Fidelity of the statistics to the paper: one-tailed p-values in the hypothesised direction (Tables 5, 9, 10),
and Eq. 8's length metric with the teacher's rationales as demonstrations (`raftlab predict --length-from`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import raftlab.analysis as A
from raftlab.cli.main import app

from _report_helpers import write_fake_run

runner = CliRunner()

# ------------------------------------------------------------------ the paper's (r, n, p), verbatim

#: Table 5 (RAFT of 6 datasets on other models; ΔECE ~ ΔAcc): model, Pearson, n, P-value
TABLE_5 = [("Qwen-7B", "0.9883", 6, "1.024e-4"),  # printed 1.024×10^{-4}
           ("LLaMA2-7B-Chat", "0.9902", 6, "7.248e-5"),
           ("LLaMA2-13B", "0.9943", 6, "2.469e-5")]
#: Table 9 (rationale-augmented prompting, 18 tasks; ΔECE ~ ΔAcc): PEARSON, n, P-VALUE
TABLE_9 = [("RAP", "0.955723", 18, "3.230854e-10")]
#: Table 10 (18 tasks): setting, metric, Pearson and p-Value of Accuracy, Pearson and p-Value of ECE. The
#: "Accuracy" metric is Acc_FT on a reversed axis (Fig. 5 e, f), so its printed r is −r(Acc_FT, ·).
TABLE_10 = [("RAFT", "GPT-3.5", "0.0010", "0.4984", "0.1161", "0.3232"),
            ("RAFT", "LLaMA2", "0.7059", "5.3e-4", "0.7802", "6.7e-5"),
            ("RAFT", "Accuracy", "0.9295", "1.2e-8", "0.9718", "9.3e-12"),
            ("RAP", "GPT-3.5", "0.1861", "0.2298", "0.3078", "0.1070"),
            ("RAP", "LLaMA2", "0.5633", "0.0075", "0.649", "0.0018"),
            ("RAP", "Accuracy", "0.5953", "0.0046", "0.6240", "0.0028")]
TABLE_10_METRIC = {"GPT-3.5": "reference_length", "LLaMA2": "length", "Accuracy": "acc_ft"}


def _with_r(r: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n points whose Pearson correlation is exactly r."""
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    x = (x - x.mean()) / np.linalg.norm(x - x.mean())
    z = rng.normal(size=n)
    z -= z.mean() + (z @ x) * x
    z /= np.linalg.norm(z)
    return x, r * x + math.sqrt(1 - r * r) * z


def _p_range(r_printed: str, n: int, x_name: str, sign: int, **kw) -> tuple[float, float]:
    """fit_ols's one-tailed p over every r that rounds to the printed one (r is printed to 3-6 digits)."""
    half = 0.5 * 10.0 ** -len(r_printed.split(".")[1])
    ps = []
    for r in (float(r_printed) - half, float(r_printed) + half):
        x, y = _with_r(sign * r, n)
        fit = A.fit_ols(0.5 + 0.1 * x, y, x_name=x_name, y_name="delta_acc", **kw)
        assert fit.r == pytest.approx(sign * r, abs=1e-12) and fit.n == n
        ps.append(fit.p_one_sided)
    return min(ps), max(ps)


def _agrees_to_2_digits(p_range: tuple[float, float], p_printed: str) -> bool:
    """The printed p and a p of the range agree to two significant digits (within half a unit of the second)."""
    p = float(p_printed)
    tol = 0.5 * 10.0 ** (math.floor(math.log10(p)) - 1)
    return p_range[0] - tol <= p <= p_range[1] + tol


CASES = ([(f"table5-{m}", r, n, p, "delta_acc", 1) for m, r, n, p in TABLE_5]
         + [(f"table9-{m}", r, n, p, "delta_acc", 1) for m, r, n, p in TABLE_9]
         + [(f"table10-{s}-{m}-{y}", r, 18, p, TABLE_10_METRIC[m], -1 if m == "Accuracy" else 1)
            for s, m, ra, pa, re, pe in TABLE_10 for y, r, p in (("acc", ra, pa), ("ece", re, pe))])


@pytest.mark.parametrize("case, r, n, p, metric, sign", CASES, ids=[c[0] for c in CASES])
def test_one_tailed_p_in_the_hypothesised_direction_reproduces_the_papers_tables(case, r, n, p, metric, sign):
    """Tables 5, 9 and 10 print one-tailed p-values of the t-test of r (n − 2 df) in the hypothesised direction:
    fit_ols, given data with the printed r and the table's n, agrees with them to two significant digits (the
    Acc_FT rows with r < 0, since lower accuracy is the harder task). The two-sided p does not."""
    p_range = _p_range(r, n, metric, sign)
    assert _agrees_to_2_digits(p_range, p), (p_range, p)
    assert not _agrees_to_2_digits((2 * p_range[0], 2 * p_range[1]), p)
    x, y = _with_r(sign * float(r), n)
    assert A.fit_ols(x, y, x_name=metric).direction == ("negative" if sign < 0 else "positive")


def test_a_paper_like_negative_accuracy_relation_is_significant_not_p_near_1():
    x, y = _with_r(-0.9997, 18)
    fit = A.fit_ols(0.6 + 0.2 * x, y, x_name="acc_ft", y_name="delta_acc")
    assert fit.direction == "negative" and fit.h1() == "H1: r < 0" and fit.p_one_sided < 1e-20
    assert "one-tailed (H1: r < 0)" in fit.stats_text()
    wrong = A.fit_ols(0.6 + 0.2 * x, y, x_name="acc_ft", direction="positive")
    assert wrong.p_one_sided == pytest.approx(1.0)
    with pytest.raises(ValueError, match="direction"):
        A.fit_ols(x, y, direction="up")


@pytest.mark.parametrize("metric, direction", [("delta_acc", "positive"), ("reference_length", "positive"),
                                               ("length", "positive"), ("teacher_rationale_length", "positive"),
                                               ("acc_ft", "negative"), ("acc_label", "negative"),
                                               ("mean_of_task_accuracy", "negative"), ("my_metric", "positive")])
def test_each_metric_has_the_papers_hypothesised_sign(metric, direction):
    assert A.hypothesised_direction(metric) == direction


def test_analyze_prints_and_saves_the_direction_of_each_one_tailed_p(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", {"a": (0.3, 0.6), "b": (0.6, 0.65), "c": (0.8, 0.7), "d": (0.5, 0.6)},
                         n=40)
    out = tmp_path / "analysis.json"
    res = runner.invoke(app, ["analyze", str(run), "--out", str(out), "--n-boot", "0"])
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["fit"]["direction"] == "positive" and saved["fit"]["task_set"] == "all"
    acc_fit = next(f for f in saved["difficulty_fits"] if f["x"] == "acc_ft" and f["y"] == "delta_acc")
    assert acc_fit["direction"] == "negative"
    text = " ".join(res.output.split())
    assert f"{acc_fit['p_one_sided']:.3g} one-tailed (H1: r < 0)" in text
    assert f"{saved['fit']['p_one_sided']:.3g} one-tailed (H1: r > 0)" in text


# ------------------------------------------------------------------ Eq. 8: teacher rationales as demonstrations

OTHERS = ("synth_coinflip", "synth_topic", "synth_arith_hard")


def _rationale_stores(root: Path, tasks=("synth_arith", *OTHERS)) -> Path:
    """RUN/rationales/<task>/rationales.jsonl with marked teacher rationales (and one example without)."""
    from raftlab.tasks import get_task

    for name in tasks:
        examples = get_task(name).load("train", limit=3, seed=0)
        rows = [e.model_copy(update={"rationale": f"TEACHER {name} {i} thinks."}) for i, e in enumerate(examples)]
        rows[-1] = rows[-1].model_copy(update={"rationale": None})  # not kept: never a demonstration
        folder = root / "rationales" / name
        folder.mkdir(parents=True)
        (folder / "rationales.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in rows))
    return root


class FakeBase:
    """A base model that writes a 4-word rationale, recording the prompts it is given."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate(self, prompts, params):
        from raftlab.backends.base import Generation

        self.prompts += prompts
        return [[Generation(text="one two three four. So the answer is 5.")] * params.n for _ in prompts]


def test_teacher_demonstrations_read_a_runs_rationale_stores_or_a_folder(tmp_path: Path) -> None:
    run = _rationale_stores(tmp_path / "run")
    pool = A.teacher_demonstrations(run)
    assert sorted(pool) == sorted(("synth_arith", *OTHERS))
    assert all(len(v) == 2 and all(e.rationale.startswith("TEACHER") for e in v) for v in pool.values())
    assert A.teacher_demonstrations(run / "rationales") == pool
    with pytest.raises(FileNotFoundError, match="rationales.jsonl"):
        A.teacher_demonstrations(tmp_path)


def test_length_metric_prompts_with_teacher_rationales_of_three_other_tasks_in_words(tmp_path: Path) -> None:
    from raftlab.analysis.difficulty import base_model_rationale_length
    from raftlab.tasks import get_task

    task = get_task("synth_arith")
    backend = FakeBase()
    pool = A.teacher_demonstrations(_rationale_stores(tmp_path))
    length = base_model_rationale_length(backend, task, task.load("test", limit=2, seed=0), pool, k=3)
    assert length == 4.0  # words before the answer sentence
    for prompt in backend.prompts:
        assert all(f"TEACHER {name}" in prompt for name in OTHERS) and "TEACHER synth_arith " not in prompt


def test_predict_length_from_needs_and_uses_the_teacher_rationales(tmp_path: Path, monkeypatch) -> None:
    import raftlab.backends

    backend = FakeBase()
    monkeypatch.setattr(raftlab.backends, "get_backend", lambda spec, options=None, **kw: backend)
    args = ["predict", "--task", "synth_arith", "--length-from", "hf:base", "--questions", "2", "--k", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--rationales" in res.output
    res = runner.invoke(app, [*args, "--rationales", str(tmp_path)])
    assert res.exit_code == 2 and "no <task>/rationales.jsonl" in res.output
    res = runner.invoke(app, [*args, "--rationales", str(_rationale_stores(tmp_path / "run"))])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["metric"] == "length" and out["value"] == 4.0
    assert "length = 4.0 words" in res.output and "mix-of-task prompting, 2 questions x 2 samples" in res.output
    assert "demonstrations: teacher rationales of" in res.output
    assert all(name in res.output for name in OTHERS)
    assert len(backend.prompts) == 2 and all("TEACHER synth_coinflip" in p for p in backend.prompts)


@pytest.mark.slow
def test_predict_length_from_a_real_base_model(tmp_path: Path) -> None:
    """End to end with a tiny hf model (replaces test_study_cli's version without --rationales)."""
    res = runner.invoke(app, ["predict", "--task", "synth_arith", "--length-from", "hf:tiny", "--questions", "2",
                              "--k", "2", "--rationales", str(_rationale_stores(tmp_path))])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["metric"] == "length" and out["value"] >= 0 and -1 <= out["delta_acc"] <= 1
    assert "words (hf:tiny, mix-of-task prompting, 2 questions x 2 samples" in res.output
