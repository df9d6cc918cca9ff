"""raftlab.analysis: records, deltas with bootstrap CIs, OLS, gain prediction, difficulty, study analysis."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _analysis_helpers import write_records

import raftlab.analysis as A
from raftlab.analysis.records import EvalRecords

# ------------------------------------------------------------------ records


def test_load_records_file_and_folder(tmp_path):
    f = write_records(tmp_path / "a.jsonl", "t", [1.0, 0.5, 0.3], [True, False, True])
    rec = A.load_records(f)
    assert rec.ids == ["t-0", "t-1", "t-2"] and rec.task == "t"
    np.testing.assert_allclose(rec.confidence, [1.0, 0.5, 0.3])
    assert rec.correct.tolist() == [True, False, True] and rec.k.tolist() == [10, 10, 10]
    # a resumed eval: a second file repeats an id -> the later record wins
    write_records(tmp_path / "b.jsonl", "t", [0.9], [False], ids=["t-0"])
    both = A.load_records(tmp_path)
    assert len(both) == 3 and both.confidence[0] == 0.9 and not both.correct[0]
    no_k = A.load_records(write_records(tmp_path / "c" / "r.jsonl", "t", [0.25], [True], k=None))
    assert no_k.k is None


@pytest.mark.parametrize("line,message", [
    ('{"id": "x", "confidence": 0.5', r"bad\.jsonl:2: invalid JSON"),
    ('[1, 2]', r"bad\.jsonl:2: expected a JSON object"),
    ('{"id": "x", "correct": true}', r"bad\.jsonl:2: missing field 'confidence'"),
    ('{"confidence": 0.5, "correct": true}', r"bad\.jsonl:2: missing field 'id'"),
    ('{"id": "x", "confidence": 1.5, "correct": true}', r"bad\.jsonl:2: field 'confidence' must be a number in"),
    ('{"id": "x", "confidence": 0.5, "correct": "yes"}', r"bad\.jsonl:2: field 'correct'"),
    ('{"id": "x", "confidence": 0.25, "correct": true, "k": 10}', r"bad\.jsonl:2: .*not a vote share"),
    ('{"id": "x", "confidence": 0.5, "correct": true, "k": 0}', r"bad\.jsonl:2: field 'k'"),
])
def test_bad_records_name_file_line_and_field(tmp_path, line, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok", "confidence": 0.5, "correct": true}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(A.RecordError, match=message):
        A.load_records(bad)


def test_torn_last_line_skipped_and_direct_prob_confidences(tmp_path):
    f = write_records(tmp_path / "r.jsonl", "t", [1.0, 0.5], [True, False])
    with f.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "t-2", "confid')  # interrupted mid-write
    assert len(A.load_records(f)) == 2
    # direct_prob records carry k=1 with a softmax confidence: not a vote share, so no vote-count binning
    g = tmp_path / "p.jsonl"
    g.write_text('{"id": "a", "confidence": 0.73, "correct": true, "k": 1, "mode": "direct_prob"}\n'
                 '{"id": "b", "confidence": 0.61, "correct": false, "k": 1, "mode": "direct_prob"}\n')
    rec = A.load_records(g)
    assert rec.k is None and rec.confidence.tolist() == [0.73, 0.61]


def test_empty_or_missing_records(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(A.RecordError, match="no eval records"):
        A.load_records(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError):
        A.load_records(tmp_path / "nope.jsonl")
    (tmp_path / "dir").mkdir()
    with pytest.raises(A.RecordError, match="no \\*.jsonl"):
        A.load_records(tmp_path / "dir")


# ------------------------------------------------------------------ deltas

def _recs(conf, correct, k=2, ids=None, task="t"):
    ids = ids or [f"q{i}" for i in range(len(conf))]
    return EvalRecords(list(ids), np.asarray(conf, float), np.asarray(correct, bool),
                       None if k is None else np.full(len(conf), k), task)


def test_task_deltas_hand_computed():
    # FT: bin (0.9, 1]: {1.0, 1.0} acc 0.5 -> gap 0.5; bin (0.4, 0.5]: {0.5, 0.5} acc 0.5 -> gap 0
    #     ECE_FT = 2/4 * 0.5 = 0.25, Acc_FT = 0.5
    ft = _recs([1.0, 1.0, 0.5, 0.5], [1, 0, 1, 0])
    # RAFT: {1.0 x3} acc 2/3 -> gap 1/3 (weight 3/4); {0.5} acc 1 -> gap 0.5 (weight 1/4)
    #     ECE_RAFT = 0.25 + 0.125 = 0.375, Acc_RAFT = 0.75
    raft = _recs([1.0, 1.0, 1.0, 0.5], [1, 1, 0, 1])
    d = A.task_deltas(ft, raft, n_boot=0)
    assert (d.acc_ft, d.acc_raft) == pytest.approx((0.5, 0.75))
    assert (d.ece_ft, d.ece_raft) == pytest.approx((0.25, 0.375))
    assert d.delta_acc.value == pytest.approx(0.25)  # Acc_RAFT - Acc_FT
    assert d.delta_ece.value == pytest.approx(-0.125)  # -(ECE_RAFT - ECE_FT): RAFT is worse calibrated
    assert d.delta_acc.low is None and d.paired
    with pytest.raises(ValueError, match="alpha"):
        A.task_deltas(ft, raft, alpha=0)


def test_task_deltas_pair_by_id_regardless_of_order():
    ft = _recs([1.0, 0.5, 0.5, 1.0], [1, 0, 1, 1], ids=["a", "b", "c", "d"])
    raft = _recs([1.0, 1.0, 0.5, 0.5], [1, 1, 0, 0], ids=["d", "c", "b", "a"])
    d = A.task_deltas(ft, raft, n_boot=300, seed=3)
    assert d.paired and d.n_ft == d.n_raft == 4
    assert d.delta_acc.value == pytest.approx(0.5 - 0.75)
    assert d.delta_acc.contains(d.delta_acc.value) and d.delta_ece.contains(d.delta_ece.value)
    unpaired = A.task_deltas(ft, _recs([1.0, 0.5, 0.5], [1, 1, 0], ids=["a", "b", "x"]), n_boot=100)
    assert not unpaired.paired and unpaired.n_raft == 3


def test_task_deltas_from_paths_and_dicts(tmp_path):
    f_ft = write_records(tmp_path / "ft.jsonl", "t", [1.0, 1.0, 0.5, 0.5], [1, 0, 1, 0], k=2)
    raft_dicts = [{"id": f"t-{i}", "confidence": c, "correct": y, "k": 2}
                  for i, (c, y) in enumerate(zip([1.0, 1.0, 1.0, 0.5], [1, 1, 0, 1]))]
    d = A.task_deltas(f_ft, raft_dicts, n_boot=0)
    assert d.paired and d.task == "t"
    assert (d.delta_acc.value, d.delta_ece.value) == pytest.approx((0.25, -0.125))


def _simulated_arms(n, seed, flip=0.1):
    rng = np.random.default_rng(seed)
    votes = rng.integers(1, 11, n)
    correct = rng.random(n) < votes / 10
    flips = rng.random(n) < flip  # RAFT differs from FT on a few questions only
    raft_correct = np.where(flips, ~correct, correct) | (rng.random(n) < 0.05)
    raft_votes = np.clip(votes + rng.integers(-1, 2, n), 1, 10)
    return _recs(votes / 10, correct, k=10), _recs(raft_votes / 10, raft_correct, k=10)


def test_bootstrap_cis_contain_estimate_shrink_with_n_and_pairing_helps():
    widths = []
    for n in (60, 240, 960):
        ft, raft = _simulated_arms(n, seed=n)
        d = A.task_deltas(ft, raft, n_boot=400, seed=0)
        assert d.delta_acc.contains(d.delta_acc.value), d
        assert d.delta_ece.contains(d.delta_ece.value), d
        widths.append(d.delta_acc.high - d.delta_acc.low)
    assert widths[0] > widths[1] > widths[2]
    # the paired bootstrap knows the arms share questions: much narrower than resampling arms separately
    ft, raft = _simulated_arms(400, seed=1)
    paired = A.task_deltas(ft, raft, n_boot=400)
    raft_renamed = EvalRecords([f"other-{i}" for i in raft.ids], raft.confidence, raft.correct, raft.k, "t")
    unpaired = A.task_deltas(ft, raft_renamed, n_boot=400)
    assert paired.delta_acc.value == pytest.approx(unpaired.delta_acc.value)
    assert (paired.delta_acc.high - paired.delta_acc.low) < 0.7 * (unpaired.delta_acc.high - unpaired.delta_acc.low)


def test_bootstrap_delta_matches_generic_bootstrap():
    """The vectorised paired bootstrap equals raftlab.metrics.bootstrap_ci on the same resamples."""
    from raftlab.metrics import bootstrap_ci

    ft, raft = _simulated_arms(80, seed=5)
    d = A.task_deltas(ft, raft, n_boot=250, seed=11)
    ci = bootstrap_ci(lambda yf, yr: yr.mean() - yf.mean(), ft.correct.astype(float),
                      raft.correct.astype(float), n_boot=250, seed=11)
    assert (d.delta_acc.low, d.delta_acc.high) == pytest.approx((ci.low, ci.high))


# ------------------------------------------------------------------ OLS

def test_fit_ols_hand_example():
    # x = 1,2,3; y = 1,2,2: Sxy = 1, Sxx = 2, Syy = 2/3 -> slope 1/2, intercept 2/3,
    # r = 1/sqrt(4/3) = sqrt(3)/2, t = r/sqrt(1-r^2) = sqrt(3); df=1 (Cauchy): p = 2*(1/2 - atan(sqrt3)/pi) = 1/3
    fit = A.fit_ols([1, 2, 3], [1, 2, 2], labels=["a", "b", "c"])
    assert fit.slope == pytest.approx(0.5) and fit.intercept == pytest.approx(2 / 3)
    assert fit.r == pytest.approx(math.sqrt(3) / 2) and fit.r2 == pytest.approx(0.75)
    assert fit.p == pytest.approx(1 / 3) and fit.n == 3
    assert fit.points[1] == {"label": "b", "x": 2.0, "y": 2.0}
    assert fit.predict(4) == pytest.approx(2 + 2 / 3)


def test_fit_ols_matches_numpy_polyfit_and_scipy_pearsonr():
    from scipy.stats import pearsonr

    rng = np.random.default_rng(0)
    x = rng.normal(size=18)
    y = 0.7 * x - 0.2 + rng.normal(scale=0.5, size=18)
    fit = A.fit_ols(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert (fit.slope, fit.intercept) == pytest.approx((slope, intercept))
    r, p = pearsonr(x, y)
    assert (fit.r, fit.p) == pytest.approx((r, p))


def test_fit_ols_needs_three_points_and_varying_x():
    with pytest.raises(ValueError, match="at least 3 points"):
        A.fit_ols([0.1, 0.2], [0.0, 0.1])
    with pytest.raises(ValueError, match="all delta_acc values are equal"):
        A.fit_ols([0.1, 0.1, 0.1], [0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match="equal length"):
        A.fit_ols([0.1, 0.2, 0.3], [0.0, 0.1])


# ------------------------------------------------------------------ prediction and saved fits

def test_predict_gain_uses_the_published_fits():
    assert A.PUBLISHED_FITS["length"].slope == 0.0029 and A.PUBLISHED_FITS["length"].intercept == -0.5567
    # Eq. 10 with the sign that reproduces the paper's points (printed +0.8031, see analysis.prediction)
    assert A.PUBLISHED_FITS["acc_ft"].slope == -0.8031 and A.PUBLISHED_FITS["acc_ft"].intercept == 0.6730
    assert A.predict_gain("length", 300).delta_acc == pytest.approx(0.0029 * 300 - 0.5567)  # 0.3133
    assert A.predict_gain("acc_ft", 0.5).delta_acc == pytest.approx(-0.8031 * 0.5 + 0.6730)  # 0.27145


@pytest.mark.parametrize("task, delta_acc", [("gsm8k", 0.509), ("qqp", -0.092), ("cr", -0.002)])
def test_eq10_sign_reproduces_the_papers_points_with_a_possible_accuracy(task, delta_acc):
    """Table 6's ΔAcc values need an FT accuracy in [0, 1] under the published fit: only slope -0.8031 gives one
    (with +0.8031 GSM8K's +0.509 would need Acc_FT = -0.20)."""
    fit = A.PUBLISHED_FITS["acc_ft"]
    acc_ft = (delta_acc - fit.intercept) / fit.slope
    assert 0.0 <= acc_ft <= 1.0
    assert (delta_acc - fit.intercept) / -fit.slope < 0 or task != "gsm8k"
    assert A.predict_gain("acc_ft", acc_ft).delta_acc == pytest.approx(delta_acc)


def test_predictions_stay_in_range_warn_outside_the_fit_and_give_intervals_for_own_fits():
    low = A.predict_gain("acc_ft", 0.05)
    assert low.delta_acc == pytest.approx(0.6328, abs=1e-4) and any("outside the range" in w for w in low.warnings)
    assert A.predict_gain("acc_ft", 0.5).warnings == [] and A.predict_gain("acc_ft", 0.5).interval is None
    far = A.predict_gain("length", 900)
    assert far.delta_acc == 1.0 and far.unclamped > 1 and any("clamped" in w for w in far.warnings)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        A.predict_gain("acc_ft", 1.5)
    own = A.fit_ols([0.2, 0.4, 0.6, 0.8], [0.5, 0.32, 0.18, -0.01], x_name="acc_ft", y_name="delta_acc")
    pred = A.predict_gain("acc_ft", 0.5, fit=own)
    assert pred.interval is not None and pred.interval.low < pred.delta_acc < pred.interval.high
    wider = A.predict_gain("acc_ft", 0.95, fit=own).interval
    assert wider.high - wider.low > pred.interval.high - pred.interval.low  # wider away from the data
    # acc_ft: the paper hypothesises a negative relation (lower FT accuracy, larger gain), so a negative r is
    # significant one-tailed (H1: r < 0) and the opposite direction gives the complement
    assert own.direction == "negative" and own.p_one_sided == pytest.approx(own.p / 2)
    positive = A.fit_ols([0.2, 0.4, 0.6, 0.8], [0.5, 0.32, 0.18, -0.01], x_name="acc_ft", direction="positive")
    assert positive.p_one_sided == pytest.approx(1 - own.p / 2)
    with pytest.raises(ValueError, match="no published fit"):
        A.predict_gain("mean_of_task", 0.4)


def test_save_and_load_user_fit(tmp_path):
    own = A.fit_ols([10, 20, 30, 40], [0.0, 0.1, 0.1, 0.3], x_name="length", y_name="delta_acc")
    other = A.fit_ols([1, 2, 3], [3, 2, 2], x_name="acc_ft", y_name="delta_acc")
    path = A.save_fit([own, other], tmp_path / "f.json")
    loaded = A.load_fit(path, x="length")
    assert loaded == own
    pred = A.predict_gain("length", 25, fit=path)
    assert pred.delta_acc == pytest.approx(own.slope * 25 + own.intercept)
    assert A.predict_gain("length", 25, fit=own).delta_acc == pytest.approx(pred.delta_acc)
    with pytest.raises(ValueError, match="not on 'length'"):
        A.predict_gain("length", 25, fit=A.load_fit(path, x="acc_ft"))
    with pytest.raises(ValueError, match="expected exactly one fit"):
        A.load_fit(path)
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json:1: invalid JSON"):
        A.load_fit(tmp_path / "broken.json")


# ------------------------------------------------------------------ difficulty

def test_mean_rationale_length_words_and_tokens():
    rats = ["one two three", "four five", None, "  ", "six seven eight nine"]
    assert A.mean_rationale_length(rats) == pytest.approx(3.0)  # (3 + 2 + 4) / 3

    class CharTokenizer:
        def encode(self, text, add_special_tokens=True):
            return list(text) + (["<s>"] if add_special_tokens else [])

    assert A.mean_rationale_length(["ab", "abcd"], CharTokenizer()) == pytest.approx(3.0)
    assert A.mean_rationale_length(["ab", "abcd"], lambda s: s.split("b")) == pytest.approx(2.0)
    assert A.rationale_length_by_task({"a": ["x y", "z"], "b": ["p q r s"]}) == {
        "a": {"teacher_rationale_length": 1.5}, "b": {"teacher_rationale_length": 4.0}}
    # paper metrics 1 and 2 measure what a model generates: the text before its answer sentence, in words
    assert A.generated_rationale_length(["Two heads. So the answer is A.", "", "One two three four."]) == \
        pytest.approx((2 + 0 + 4) / 3)
    with pytest.raises(ValueError, match="no \\(non-empty\\) rationales"):
        A.mean_rationale_length([None, ""])


def _examples_by_task():
    from raftlab.schema import Example

    out = {}
    for t in ("alpha", "beta", "gamma", "delta", "eps"):
        out[t] = [Example(id=f"{t}-{i}", task=t, category="nlu", question=f"{t} question {i}?\nOptions: (A) x (B) y",
                          label="A", option_letters=["A", "B"], options=["x", "y"],
                          rationale=f"{t} reason {i}.") for i in range(3)]
    return out


def test_mean_of_task_prompt_uses_three_other_tasks():
    by_task = _examples_by_task()
    target = by_task["alpha"][0]
    prompt = A.mean_of_task_prompt("alpha", by_task, example=target, seed=0)
    demos = A.mean_of_task_demonstrations("alpha", by_task, seed=0)
    assert len(demos) == 3 and len({d.task for d in demos}) == 3 and "alpha" not in {d.task for d in demos}
    for d in demos:
        assert d.question in prompt and f"{d.rationale} The answer is A." in prompt
    assert "alpha reason" not in prompt and prompt.count("alpha question") == 1  # only the evaluated question
    assert prompt.endswith("alpha question 0?\nOptions: (A) x (B) y\n\nAnswer: Let's think step by step.")
    assert prompt == A.mean_of_task_prompt("alpha", by_task, example=target, seed=0)
    prompts = {A.mean_of_task_prompt("alpha", by_task, seed=s) for s in range(8)}
    assert len(prompts) > 1  # the seed changes the demonstrations
    batch = A.mean_of_task_prompts("alpha", by_task, by_task["alpha"], seed=0)
    assert batch[0] == prompt and len(batch) == 3 and batch[1].endswith(A.mean_of_task_prompt(
        "alpha", by_task, example=by_task["alpha"][1], seed=0).split("\n\n\n")[-1])
    direct = A.mean_of_task_prompt("alpha", by_task, example=target, mode="direct")
    assert "reason" not in direct and direct.endswith("Answer:")
    with pytest.raises(ValueError, match="3 other tasks"):
        A.mean_of_task_prompt("alpha", {k: by_task[k] for k in ("alpha", "beta", "gamma")})


# ------------------------------------------------------------------ information gain

def test_information_gain_curve_hand_values():
    lps = [math.log(0.1), math.log(0.2), math.log(0.8), math.log(0.8)]
    curve = A.information_gain_curve(lps)
    np.testing.assert_allclose(curve.prob, [0.1, 0.2, 0.8, 0.8])
    np.testing.assert_allclose(curve.gain, [1.0, 2.0, 0.0])  # bits: log2(0.2/0.1), log2(0.8/0.2)
    assert curve.total_gain == pytest.approx(3.0)
    np.testing.assert_allclose(A.information_gain(lps, unit="nats"), [math.log(2), math.log(4), 0.0])
    assert curve.to_dict()["unit"] == "bits"
    with pytest.raises(ValueError, match="log-probabilities"):
        A.information_gain_curve([0.5, -1.0])
    np.testing.assert_allclose(A.average_curves([[0.1, 0.5, 0.9], [0.3, 0.7]]), [0.2, 0.6, 0.9])


def test_answer_logprobs_through_backend_score():
    from raftlab.backends.base import ContinuationScore

    class FakeBackend:
        name = "fake"

        def __init__(self):
            self.calls = []

        def score(self, prompts, continuations):
            self.calls.append((list(prompts), list(continuations)))
            # the more sentences in the prefix, the likelier the answer
            return [ContinuationScore(token_logprobs=[-2.0 / (1 + p.count("."))]) for p in prompts]

    backend = FakeBackend()
    rationale = "First fact. Second fact! Third fact? The answer is B."
    assert A.split_sentences(rationale) == ["First fact.", "Second fact!", "Third fact?"]
    lps = A.answer_logprobs_by_prefix(backend, "Q: x\nAnswer:", rationale, "B")
    (prompts, conts), = backend.calls
    assert prompts == ["Q: x\nAnswer:", "Q: x\nAnswer: First fact.", "Q: x\nAnswer: First fact. Second fact!",
                       "Q: x\nAnswer: First fact. Second fact! Third fact?"]
    assert conts == [" The answer is B."] * 4
    assert lps == pytest.approx([-2.0, -1.0, -1.0, -1.0])
    curve = A.information_gain_curve(lps)
    assert curve.gain.tolist() == pytest.approx([1 / math.log(2), 0.0, 0.0])


# ------------------------------------------------------------------ whole study

TASKS = {  # task: (ft conf, ft correct, raft conf, raft correct) with k = 2
    "t1": ([1.0, 1.0, 0.5, 0.5], [1, 0, 1, 0], [1.0, 1.0, 1.0, 0.5], [1, 1, 0, 1]),
    "t2": ([1.0, 1.0, 1.0, 1.0], [1, 1, 1, 0], [1.0, 1.0, 1.0, 1.0], [1, 1, 1, 1]),
    "t3": ([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0], [0.5, 0.5, 1.0, 1.0], [1, 0, 1, 1]),
}
#: hand-computed (ΔAcc, ΔECE): t1 (0.25, -0.125); t2: ECE 0.25 -> 0: (0.25, 0.25);
#: t3: FT ECE |0.25-0.5| = 0.25, RAFT {0.5,0.5} acc .5 gap 0, {1,1} acc 1 gap 0 -> 0: (0.5, 0.25)
EXPECTED = {"t1": (0.25, -0.125), "t2": (0.25, 0.25), "t3": (0.5, 0.25)}


def _write_run(root):
    for task, (cf, yf, cr, yr) in TASKS.items():
        write_records(root / "eval" / "ft" / task / "records.jsonl", task, cf, yf, k=2)
        write_records(root / "eval" / "raft" / task / "records.jsonl", task, cr, yr, k=2)
    return root


def test_analyze_study_hand_computed(tmp_path):
    run = _write_run(tmp_path / "run")
    difficulty = {"t1": {"length": 40.0}, "t2": {"length": 80.0}, "t3": {"length": 120.0}}
    # four questions with one gold label per task: no arm is above the majority class (1.0) beyond its CI, so every
    # task fails no_arm_learned and is in the main fit only as asked (the fit over trustworthy tasks has none)
    result = A.analyze_study(run, difficulty=difficulty, n_boot=200, include_flagged=True)
    assert [r.task for r in result.tasks if not r.trustworthy] == ["t1", "t2", "t3"]
    assert all(r.reasons[0].startswith("no finetuned arm learned") for r in result.tasks)
    assert [r.task for r in result.tasks] == ["t1", "t2", "t3"]
    for row in result.tasks:
        da, de = EXPECTED[row.task]
        assert row.delta.delta_acc.value == pytest.approx(da) and row.delta.delta_ece.value == pytest.approx(de)
        assert row.delta.delta_acc.contains(da)
        assert row.metrics["ft"]["accuracy"] == pytest.approx(row.delta.acc_ft)
        assert row.difficulty["acc_ft"] == pytest.approx(row.delta.acc_ft)
    assert result.task("t2").metrics["raft"]["auroc"] is None  # all correct: undefined, serialised as null
    t1_ft_bins = result.task("t1").reliability["ft"]
    assert [b["count"] for b in t1_ft_bins] == [0, 0, 0, 0, 2, 0, 0, 0, 0, 2]
    assert t1_ft_bins[9]["accuracy"] == 0.5 and t1_ft_bins[0]["accuracy"] is None
    xs = [EXPECTED[t][0] for t in TASKS]
    ys = [EXPECTED[t][1] for t in TASKS]
    ref = A.fit_ols(xs, ys)
    assert (result.fit.slope, result.fit.intercept, result.fit.r) == pytest.approx((ref.slope, ref.intercept, ref.r))
    # by hand: x = .25, .25, .5; y = -.125, .25, .25 -> Sxx = 1/24, Sxy = 1/32 -> slope 0.75
    assert result.fit.slope == pytest.approx(0.75) and result.fit.intercept == pytest.approx(0.125 - 0.75 / 3)
    fits = {(f.x, f.y): f for f in result.difficulty_fits}
    assert set(fits) == {("length", "delta_acc"), ("length", "delta_ece"), ("acc_ft", "delta_acc"),
                         ("acc_ft", "delta_ece")}
    assert fits[("length", "delta_acc")].slope == pytest.approx(np.polyfit([40, 80, 120], xs, 1)[0])
    # one-tailed p-values test the paper's hypothesised signs: accuracies negative, lengths and ΔAcc positive
    assert result.fit.direction == "positive" and fits[("length", "delta_ece")].direction == "positive"
    assert fits[("acc_ft", "delta_acc")].direction == fits[("acc_ft", "delta_ece")].direction == "negative"
    assert result.other_fit is None and result.fit.task_set == "all"  # no trustworthy task: one way to fit
    # JSON round trip, and the saved analysis can feed predict_gain
    path = tmp_path / "analysis.json"
    result.save(str(path))
    assert A.AnalysisResult.load(str(path)) == result
    json.loads(path.read_text())  # valid JSON (no NaN)
    pred = A.predict_gain("length", 100, fit=path)
    assert pred.delta_acc == pytest.approx(fits[("length", "delta_acc")].predict(100))


def test_analyze_study_from_dict_with_too_few_tasks_and_missing_arm(tmp_path):
    run = _write_run(tmp_path / "run")
    runs = {
        "t1": {"ft": run / "eval/ft/t1", "raft": run / "eval/raft/t1/records.jsonl"},
        "t2": {"ft": run / "eval/ft/t2", "raft": run / "eval/raft/t2"},
        "t3": {"ft": run / "eval/ft/t3"},
    }
    result = A.analyze_study(runs, n_boot=50)
    assert result.fit is None and result.task("t3").delta is None
    assert any("t3" in n for n in result.notes) and any("at least 3 points" in n for n in result.notes)
    assert result.task("t1").delta.delta_acc.value == pytest.approx(0.25)
    renamed = A.analyze_study({"t1": {"label": run / "eval/ft/t1", "rationale": run / "eval/raft/t1"}},
                              n_boot=0, baseline="label", treatment="rationale")
    assert renamed.tasks[0].delta.delta_ece.value == pytest.approx(-0.125)
    assert renamed.tasks[0].difficulty == {"acc_label": 0.5}
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        A.analyze_study(tmp_path)


@pytest.mark.slow
def test_information_gain_with_a_real_tiny_model():
    """End to end through the hf backend: one batched score call equals scoring each prefix alone."""
    pytest.importorskip("torch")
    from raftlab.backends.hf import HFBackend
    from raftlab.tasks import get_task

    backend = HFBackend("tiny", batch_size=4)
    task = get_task("coinflip")
    example = task.load("train", limit=1)[0]
    rationale = "The coin starts heads up. Dana flips it, so it is tails. Olga flips it back. The answer is A."
    curve = A.example_information_gain(backend, task, example, rationale=rationale)
    assert len(curve.prob) == 4 and len(curve.gain) == 3
    assert np.all((curve.prob > 0) & (curve.prob <= 1))
    prompt = task.prompt(example, "cot")
    answer = f" The answer is {task.canonical_label(example)}."
    alone = [backend.score([prompt + (" " + p if p else "")], [answer])[0].total
             for p in A.rationale_prefixes(rationale)]
    np.testing.assert_allclose(curve.logprob, alone, atol=1e-4)
    np.testing.assert_allclose(curve.gain, np.diff(alone) / math.log(2), atol=1e-3)


def test_sampled_information_gain_is_the_share_of_sampled_gold_answers_after_each_token_prefix():
    """The paper's Appendix A.1: prefixes of 0..T rationale tokens, n sampled answers each, P = share of gold."""
    from raftlab.analysis.info_gain import sampled_answer_probabilities, token_prefix_prompts
    from raftlab.backends.base import Generation
    from raftlab.models import load_tokenizer
    from raftlab.tasks import get_task

    tok = load_tokenizer("tiny")
    task = get_task("synth_coinflip")
    ex = task.load("test", limit=1)[0]
    rationale = "Heads first. Then tails. So the answer is B."
    prompt = task.prompt(ex, "cot")
    prompts = token_prefix_prompts(prompt, rationale, tok)
    n_tokens = len(tok(" Heads first. Then tails.", add_special_tokens=False).input_ids)
    assert len(prompts) == n_tokens + 1 and prompts[0] == prompt and prompts[-1] == prompt + " Heads first. Then tails."
    assert len(token_prefix_prompts(prompt, rationale, tok, stride=3)) == len(range(0, n_tokens + 1, 3)) + (
        n_tokens % 3 != 0)

    class Scripted:  # after the word "tails" 3 of 4 samples answer the gold letter, before it 1 of 4
        name, tokenizer, thread_safe = "scripted", tok, False

        def generate(self, prompts, params):
            assert params.n == 4
            out = []
            for p in prompts:
                good = 3 if "tails" in p[len(prompt):] else 1
                out.append([Generation(f"The answer is {ex.label if i < good else 'Z'}.") for i in range(4)])
            return out

    probs = sampled_answer_probabilities(Scripted(), task, ex, rationale, n=4)
    assert len(probs) == n_tokens + 1 and probs[0] == 0.25 and probs[-1] == 0.75
    assert set(probs.tolist()) == {0.25, 0.75}


def test_four_arm_contrasts_are_paired_differences_of_the_raw_metrics(tmp_path):
    """①–④ on the same questions: each contrast a − b equals the difference of the arms' accuracy and ECE (Fig. 4
    sign: a negative ECE difference means a is better calibrated); the average row is the mean over tasks."""
    from raftlab.analysis import analyze_study, contrast_intervals, four_arm_rows


    correct = {"icl_label": [1, 0, 0, 0, 1, 0, 0, 0], "icl_rationale": [1, 1, 0, 0, 1, 0, 0, 0],
               "ft": [1, 1, 1, 0, 1, 1, 0, 0], "raft": [1, 1, 1, 1, 1, 1, 0, 1]}
    conf = {"icl_label": [0.3] * 8, "icl_rationale": [0.5] * 8, "ft": [1.0] * 8, "raft": [0.8] * 8}
    runs = {}
    for task in ("t1", "t2"):
        runs[task] = {arm: write_records(tmp_path / task / arm / "r.jsonl", task, conf[arm], [bool(c) for c in ys],
                                         k=10) for arm, ys in correct.items()}
    result = analyze_study(runs, n_boot=200)
    row = result.tasks[0]
    for name, a, b in (("④−③", "raft", "ft"), ("③−①", "ft", "icl_label"), ("②−①", "icl_rationale", "icl_label")):
        diff = contrast_intervals(row.contrasts[name])
        assert diff["accuracy"].value == pytest.approx(row.metrics[a]["accuracy"] - row.metrics[b]["accuracy"])
        assert diff["ece"].value == pytest.approx(row.metrics[a]["ece"] - row.metrics[b]["ece"])
        assert diff["ece"].low <= diff["ece"].value <= diff["ece"].high
    rows = four_arm_rows(result.tasks)
    assert [r["task"] for r in rows] == ["t1", "t2", "average"]
    assert rows[-1]["ece_③−①"] == pytest.approx((rows[0]["ece_③−①"] + rows[1]["ece_③−①"]) / 2)
    assert rows[0]["acc_④"] == pytest.approx(7 / 8) and rows[0]["acc_①"] == pytest.approx(2 / 8)
