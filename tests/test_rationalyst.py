"""RATIONALYST: formulas on hand-built log-probabilities, parsing, the solve loop, stores, and a tiny e2e run."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from raftlab.backends.base import ContinuationScore, Generation
from raftlab.rationalyst import (
    BOT, EOT, StageStore, Triple, best_candidate, close_step, discounted_score, edit_distance_ratio, faithful,
    filter_triples, keeps_rationale, length_normalised, mine, open_store, paired_comparison, solve, solve_example,
    split_triples, strip_rationales,
)
from raftlab.tasks import get_task


def test_discounted_score_by_hand():
    assert discounted_score([-1.0, -2.0, -4.0]) == pytest.approx(-1.0 - 0.9 * 2.0 - 0.81 * 4.0)
    assert discounted_score([]) == 0.0
    assert discounted_score([-1.0, -1.0], gamma=0.5) == pytest.approx(-1.5)


def test_filter_decision_uses_discounting():
    # Same total log-prob, but the rationale makes the *early* tokens likelier: discounting prefers it.
    with_r, without = [-0.5, -3.5], [-3.5, -0.5]
    assert sum(with_r) == sum(without)
    assert keeps_rationale(with_r, without)
    assert not keeps_rationale(without, with_r)
    assert not keeps_rationale([-1.0], [-1.0])  # strictly greater


def test_length_normalised_candidate_score():
    assert length_normalised([-1.0, -3.0]) == -2.0
    assert length_normalised([]) == -math.inf


def test_edit_distance_filter():
    assert edit_distance_ratio("kitten", "sitting") == pytest.approx(3 / 7)
    text = "Tom has 12 pens. He gives away 5. He has 7 left."
    good = f"Tom has 12 pens. {BOT}Subtract the pens given away.{EOT} He gives away 5. He has 7 left."
    assert faithful(text, good)
    rewritten = f"Tom owns twelve pens. {BOT}x{EOT} He donates five and keeps 7."
    assert not faithful(text, rewritten)
    # exactly at the 10% boundary: 5 edits on 50 characters is kept, 6 is not
    base = "a" * 50
    assert faithful(base, "b" * 5 + "a" * 45) and not faithful(base, "b" * 6 + "a" * 44)


def test_triples_with_several_rationales_and_malformed_tags():
    text = f"A b. {BOT}r1{EOT} C d. E f. {BOT} r2 {EOT} G h! I j. {BOT}unclosed G"
    assert split_triples(text) == [Triple("A b.", "r1", "C d."), Triple("A b. C d. E f.", "r2", "G h!")]
    assert strip_rationales(text) == "A b. C d. E f. G h! I j. unclosed G"
    assert split_triples(f"{BOT}{EOT} x.") == []  # empty rationale
    assert split_triples(f"x. {BOT}last{EOT}") == []  # nothing follows
    # a stray <BOT> before a well-formed pair, and a stray <EOT>: the rationale is the innermost pair only
    messy = f"A b. {BOT}stray C d. {BOT}real{EOT} E f. G{EOT} h."
    assert split_triples(messy) == [Triple("A b. stray C d.", "real", "E f.")]
    assert strip_rationales(messy) == "A b. stray C d. E f. G h."


class FakeAgent:
    """Candidates for step s are 'step s cand j'; the last step states the answer."""

    name = "fake-agent"

    def __init__(self, answer_at=2, answer="7"):
        self.answer_at, self.answer, self.calls = answer_at, answer, 0

    def generate(self, prompts, params):
        self.calls += 1
        step = prompts[0].count("cand")
        out = []
        for j in range(params.n):
            text = f"step {step} cand {j}."
            if step >= self.answer_at:
                text += f" The answer is {int(self.answer) + j}."
            out.append(Generation(text=text))
        return [out]

    def score(self, prompts, conts):
        raise AssertionError("the agent is never asked to score")


class FakeGenerator:
    """``implicit_given``: rationale 'prefer cand 1'; scores candidate 1 highest (by mean, not by sum)."""

    name = "fake-gen"

    def generate(self, prompts, params):
        return [[Generation(text="prefer cand 1")] for _ in prompts]

    def score(self, prompts, conts):
        out = []
        for p, c in zip(prompts, conts):
            assert p.endswith(f"{BOT}prefer cand 1{EOT}")
            # cand 1 gets a long continuation with a better mean, cand 0 a better sum
            if "cand 1" in c:
                out.append(ContinuationScore(token_logprobs=[-1.0] * 6))
            else:
                out.append(ContinuationScore(token_logprobs=[-2.0]))
        return out


class AfterGenerator(FakeGenerator):
    """``implicit``: after candidate j the rationale is 'after cand j'; the one after cand 1 has the best mean
    log-probability (cand 0's the best sum)."""

    def __init__(self):
        self.generated, self.scored = [], []

    def generate(self, prompts, params):
        self.generated.append(list(prompts))
        return [[Generation(text="after " + re.findall(r"cand \d", p)[-1] if "cand" in p else "none")]
                for p in prompts]

    def score(self, prompts, conts):
        self.scored.append(list(zip(prompts, conts)))
        for p, c in zip(prompts, conts):
            assert p.endswith(f"{c[len('after '):]}. {BOT}") or f"{c[len('after '):]}. The answer is" in p
        return [ContinuationScore(token_logprobs=[-1.0] * 6 if c == "after cand 1" else [-2.0]) for c in conts]


def _example():
    task = get_task("synth_arith")
    ex = task.load("test", limit=1)[0]
    return task, ex.model_copy(update={"label": "8"})


def test_implicit_given_picks_best_length_normalised_candidate_and_stops_at_answer():
    task, ex = _example()
    r = solve_example(FakeAgent(), FakeGenerator(), task, ex, "implicit_given")
    assert r["steps"] == ["step 0 cand 1.", "step 1 cand 1.", "step 2 cand 1. The answer is 8."]
    assert r["prediction"] == "8" and r["correct"]
    assert r["rationales"] == ["prefer cand 1"] * 3


def test_implicit_scores_the_rationale_written_after_each_candidate():
    """The official world_model_perplexity heuristic: the generator writes a rationale after each candidate (greedy,
    stopped at <EOT>); the candidate whose rationale has the best mean token log-probability is taken."""
    task, ex = _example()
    gen = AfterGenerator()
    r = solve_example(FakeAgent(), gen, task, ex, "implicit")
    assert r["steps"] == ["step 0 cand 1.", "step 1 cand 1.", "step 2 cand 1. The answer is 8."]
    assert r["correct"] and r["rationales"] == ["after cand 1"] * 3
    assert r["candidate_scores"] == [[-2.0, -1.0, -2.0]] * 3
    assert r["candidate_rationales"][0] == ["after cand 0", "after cand 1", "after cand 2"]
    # one batch of K rationale requests per step, each after question + steps so far + that candidate
    first = gen.generated[0]
    assert [p[len(ex.question.strip()):] for p in first] == [f" step 0 cand {j}. {BOT}" for j in range(3)]
    assert [c for _, c in gen.scored[1]] == ["after cand 0", "after cand 1", "after cand 2"]
    assert gen.scored[1][0][0] == f"{ex.question.strip()} step 0 cand 1. step 1 cand 0. {BOT}"


def test_at_most_15_steps():
    task, ex = _example()
    agent = FakeAgent(answer_at=99)
    r = solve_example(agent, FakeGenerator(), task, ex, "implicit_given")
    assert len(r["steps"]) == 15 and agent.calls == 15
    assert r["prediction"] == "[invalid]" and not r["correct"]
    assert all(scores == [-2.0, -1.0, -2.0] for scores in r["candidate_scores"])


def test_best_candidate_and_step_closing():
    assert best_candidate([-3.0, -0.5, -0.5, -9.0]) == 1  # first of the tied best
    assert best_candidate([float("-inf"), -50.0]) == 1
    with pytest.raises(ValueError):
        best_candidate([])
    assert close_step(" 3 + 4 = 7") == "3 + 4 = 7."  # cut at the ". " stop string
    assert close_step("Is it 7? ") == "Is it 7?"
    assert close_step("  ") == ""
    assert close_step("\n\nStep 1: 9 * 2 = 18\nStep 2: 18 + 1 = 19") == "Step 1: 9 * 2 = 18."


def test_empty_candidates_are_never_chosen():
    task, ex = _example()

    class EmptyFirst(FakeAgent):
        def generate(self, prompts, params):
            [row] = super().generate(prompts, params)
            return [[Generation(text="\n")] * (params.n - 1) + row[-1:]]

    for method, gen in (("random", None), ("implicit_given", FakeGenerator()), ("implicit", AfterGenerator())):
        r = solve_example(EmptyFirst(), gen, task, ex, method, seed=3)
        assert r["steps"] == ["step 0 cand 2.", "step 1 cand 2.", "step 2 cand 2. The answer is 9."], method

    class AllEmpty(FakeAgent):
        def generate(self, prompts, params):
            self.calls += 1
            return [[Generation(text="  \n")] * params.n]

    agent = AllEmpty()
    r = solve_example(agent, None, task, ex, "random")
    assert r["steps"] == [] and agent.calls == 1 and r["prediction"] == "[invalid]"


class SeedRecorder(FakeAgent):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def generate(self, prompts, params):
        self.seen.append((params.n, params.temperature, params.seed))
        return super().generate(prompts, params)


def test_random_baseline_samples_with_the_same_seeds_as_supervised_decoding():
    task, ex = _example()
    sup, base = SeedRecorder(), SeedRecorder()
    a = solve_example(sup, AfterGenerator(), task, ex, "implicit", seed=5)
    b = solve_example(base, None, task, ex, "random", seed=5)
    assert sup.seen == base.seen == [(3, 0.7, 5000), (3, 0.7, 5001), (3, 0.7, 5002)]
    assert len(a["steps"]) == len(b["steps"]) == 3 and b["rationales"] == ["", "", ""]
    other = solve_example(FakeAgent(answer_at=20), None, task, ex, "random", seed=6)
    assert other["steps"] != solve_example(FakeAgent(answer_at=20), None, task, ex, "random", seed=5)["steps"]


def test_random_baseline_is_seeded_and_explicit_puts_the_rationale_in_context():
    task, ex = _example()
    a = solve_example(FakeAgent(), None, task, ex, "random", seed=1)
    b = solve_example(FakeAgent(), None, task, ex, "random", seed=1)
    assert a == b and len(a["steps"]) == 3

    seen = []

    class Recorder(FakeAgent):
        def generate(self, prompts, params):
            seen.append((prompts[0], params.n))
            return super().generate(prompts, params)

    solve_example(Recorder(), FakeGenerator(), task, ex, "explicit")
    assert seen and all(p.endswith(" prefer cand 1") and n == 1 for p, n in seen)
    with pytest.raises(ValueError, match="needs a rationale generator"):
        solve_example(FakeAgent(), None, task, ex, "implicit")


def test_solve_store_resumes(tmp_path):
    task = get_task("synth_arith")
    examples = task.load("test", limit=3)
    store = StageStore(tmp_path / "s.sqlite")
    agent = FakeAgent()
    first = solve(agent, AfterGenerator(), task, examples, store, methods=["implicit", "random"], progress=False)
    calls = agent.calls
    again = solve(agent, AfterGenerator(), task, examples, StageStore(tmp_path / "s.sqlite"),
                  methods=["implicit", "random"], progress=False)
    assert again == first and agent.calls == calls  # nothing recomputed
    assert first["implicit"]["n"] == 3
    with pytest.raises(ValueError, match=r"other settings \(k: stored 3 vs requested 2\)"):
        solve(agent, FakeGenerator(), task, examples, store, methods=["random"], k=2, progress=False)
    # a store whose supervised results were scored another way (before the scoring was recorded) is refused
    store.put("settings", "solve:synth_arith:generator", {"generator": "fake-gen"})
    with pytest.raises(ValueError, match="implicit_scoring"):
        solve(agent, AfterGenerator(), task, examples, store, methods=["implicit"], progress=False)


@pytest.mark.slow
def test_solve_random_first_then_supervised(tmp_path):
    """A random-only run records no generator, so a later implicit run in the same store is allowed and paired;
    a different generator for the supervised methods is still refused."""
    task = get_task("synth_arith")
    examples = task.load("test", limit=2)
    store = StageStore(tmp_path / "s.sqlite")
    solve(FakeAgent(), None, task, examples, store, methods=["random"], progress=False)
    solve(FakeAgent(), AfterGenerator(), task, examples, store, methods=["implicit"], progress=False)
    assert paired_comparison(store, task.name, [e.id for e in examples])["n"] == 2

    class OtherGenerator(FakeGenerator):
        name = "other-gen"

    with pytest.raises(ValueError, match=r"generator: stored 'fake-gen' vs requested 'other-gen'"):
        solve(FakeAgent(), OtherGenerator(), task, examples, store, methods=["explicit"], progress=False)
    with pytest.raises(ValueError, match=r"seed: stored 0 vs requested 1"):  # agent settings shared by all methods
        solve(FakeAgent(), AfterGenerator(), task, examples, store, methods=["implicit"], seed=1, progress=False)


def test_mine_and_filter_resume_after_a_crash(tmp_path):
    texts = [(f"d{i}", f"Ann has {i} apples. She buys 2 more.") for i in range(4)]

    class FlakyMiner:
        def __init__(self, fail_on_call=None):
            self.calls, self.fail_on_call, self.prompts = 0, fail_on_call, 0

        def generate(self, prompts, params):
            self.calls += 1
            if self.calls == self.fail_on_call:
                raise RuntimeError("killed")
            self.prompts += len(prompts)
            return [[Generation(text=p.rsplit("Text: ", 1)[1].split("\n")[0].replace(
                ". She", f". {BOT}Now the purchase.{EOT} She"))] for p in prompts]

    store = open_store(tmp_path)
    with pytest.raises(RuntimeError):
        mine(FlakyMiner(fail_on_call=2), texts, store, batch_size=2, progress=False)
    assert store.count("mine") == 2  # the first batch survived the crash
    again = FlakyMiner()
    assert mine(again, texts, open_store(tmp_path), batch_size=2, progress=False) == \
        {"docs": 4, "faithful": 4, "triples": 4}
    assert again.prompts == 2  # only the unfinished documents were redone

    class CountingScorer:
        calls = 0

        def score(self, prompts, conts):
            CountingScorer.calls += 1
            return [ContinuationScore(token_logprobs=[-1.0, -1.0]) for _ in prompts]

    assert filter_triples(CountingScorer(), store, batch_size=3, progress=False) == {"scored": 4, "kept": 0}
    calls = CountingScorer.calls
    assert filter_triples(CountingScorer(), open_store(tmp_path), progress=False) == {"scored": 4, "kept": 0}
    assert CountingScorer.calls == calls


@pytest.mark.slow
def test_generator_features_put_the_loss_on_the_rationale_only():
    from raftlab.models import load_model
    from raftlab.rationalyst import pair_features

    _, tok = load_model("tiny")
    feats = pair_features(tok, Triple("Ann has 3 apples.", "Add the new ones.", "She has 5."))
    assert len(feats["input_ids"]) == len(feats["labels"])
    target = [t for t, lab in zip(feats["input_ids"], feats["labels"]) if lab != -100]
    assert target[-1] == tok.eos_token_id
    assert tok.decode(target[:-1]).strip() == f"Add the new ones.{EOT}"
    prompt = tok.decode([t for t, lab in zip(feats["input_ids"], feats["labels"]) if lab == -100],
                        skip_special_tokens=True)
    assert prompt.strip() == f"Ann has 3 apples. {BOT}"


def test_text_file_documents_and_errors(tmp_path):
    from raftlab.rationalyst import docs_from_text_file

    good = tmp_path / "docs.jsonl"
    good.write_text('{"id": "a", "text": "One. Two."}\n\n{"text": "Three."}\n')
    assert docs_from_text_file(good) == [("a", "One. Two."), ("docs-3", "Three.")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'text'"):
        docs_from_text_file(bad)
    plain = tmp_path / "notes.txt"
    plain.write_text("First doc. Yes.\nSecond doc.\n")
    assert [d for d, _ in docs_from_text_file(plain)] == ["notes-1", "notes-2"]


def test_mine_and_filter_with_fake_models(tmp_path):
    text = "Ann has 3 apples. She buys 2 more. She has 5 apples."
    annotated = f"Ann has 3 apples. {BOT}Add the apples she buys.{EOT} She buys 2 more. She has 5 apples."

    class Miner:
        def generate(self, prompts, params):
            assert params.temperature == 0.0 and prompts[0].endswith(f"Text: {text}\nWith rationales:")
            return [[Generation(text=annotated)], [Generation(text="totally different text")]]

    class Scorer:
        def score(self, prompts, conts):
            return [ContinuationScore(token_logprobs=[-0.5] if EOT in p else [-1.0]) for p in prompts]

    store = open_store(tmp_path)
    stats = mine(Miner(), [("d1", text), ("d2", text)], store, progress=False)
    assert stats == {"docs": 2, "faithful": 1, "triples": 1}
    assert filter_triples(Scorer(), store, progress=False) == {"scored": 1, "kept": 1}


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    """mine → filter → train → solve with the tiny random model: checks bookkeeping, not quality."""
    from raftlab.backends import get_backend
    from raftlab.rationalyst import Triple, train_generator

    tiny = get_backend("hf:tiny")
    task = get_task("synth_arith")
    examples = task.load("train", limit=2)
    store = open_store(tmp_path)
    from raftlab.rationalyst import docs_from_examples

    mine(tiny, docs_from_examples(examples), store, max_new_tokens=16, progress=False)
    assert store.count("mine") == 2
    triples = [Triple("Ann has 3 apples.", "add the two", "She has 5."), Triple("x y.", "z", "w.")]
    gen_dir = train_generator("tiny", triples, tmp_path, max_steps=2, batch_size=2)
    assert (gen_dir / "adapter_config.json").exists()
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    args = ["rationalyst", "solve", "--agent", "tiny", "--generator", f"hf:{gen_dir}", "--task", "synth_arith",
            "--limit", "2", "--max-steps", "2", "--max-step-tokens", "6", "--max-rationale-tokens", "4",
            "--out", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "solve_synth_arith.json").read_text())
    assert set(report["accuracy"]) == {"implicit", "explicit", "random"}
    assert all(row["n"] == 2 and 1 <= row["mean_steps"] <= 2 for row in report["accuracy"].values())
    assert report["settings"]["k"] == 3 and report["settings"]["temperature"] == 0.7
    assert report["settings"]["generator"] and report["settings"]["agent"]
    assert [(p["a"], p["b"], p["n"]) for p in report["paired"]] == [("implicit", "random", 2), ("explicit", "random", 2)]
    assert "exact McNemar p" in res.output
    rows = dict(open_store(tmp_path).items("solve"))
    assert len(rows) == 6 and all(len(r["steps"]) <= 2 for r in rows.values())
    assert all(len(c) == 3 for r in rows.values() if r["method"] == "implicit" for c in r["candidate_scores"])
    # a rerun with other settings in the same run directory is refused with a clear message
    res = CliRunner().invoke(app, args[:-2] + ["--k", "2", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "other settings" in res.output


@pytest.mark.slow
def test_generator_training_raises_the_rationale_likelihood(tmp_path):
    """train_generator (the training package's trainer, loss on the rationale only) makes the mined rationale
    more likely after its preceding text."""
    from raftlab.backends import get_backend
    from raftlab.rationalyst import Triple, train_generator
    from raftlab.rationalyst.pipeline import generator_prompt, generator_target

    triples = [Triple("Ann has 3 apples.", "Add the apples she buys.", "She has 5."),
               Triple("Bo has 8 pens and gives 2 away.", "Subtract what was given.", "He has 6.")]
    prompts = [generator_prompt(t.preceding) for t in triples]
    targets = [generator_target(t.rationale) for t in triples]

    def mean_logprob(backend):
        return sum(length_normalised(s.token_logprobs) for s in backend.score(prompts, targets)) / len(prompts)

    before = mean_logprob(get_backend("hf:tiny"))
    gen_dir = train_generator("tiny", triples, tmp_path, max_steps=15, batch_size=2, lr=5e-3, progress=False)
    after = mean_logprob(get_backend(f"hf:{gen_dir}"))
    assert after > before + 0.5, (before, after)


def test_oracle_annotator_is_faithful_and_yields_one_triple_per_step(tmp_path):
    from typer.testing import CliRunner

    from raftlab.cli.main import app
    from raftlab.rationalyst import docs_from_examples
    from raftlab.rationalyst.oracle import annotate

    ex = get_task("synth_arith").load("train", limit=1)[0]
    [(_, text)] = docs_from_examples([ex])
    annotated = annotate(text)
    assert faithful(text, annotated)
    steps = text.count(" = ")
    assert len(split_triples(annotated)) == steps + 1  # each computation + the final answer
    res = CliRunner().invoke(app, ["rationalyst", "mine", "--model", "oracle", "--task", "synth_arith",
                                   "--limit", "3", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert '"faithful": 3' in res.output


def test_prefilter_keeps_the_documents_most_similar_to_the_task():
    from raftlab.rationalyst.prefilter import prefilter, similarity_scores

    docs = [("cook", "Stir the soup and add salt and pepper before serving."),
            ("math1", "Tom has 5 apples and buys 3 more apples. How many apples does Tom have now?"),
            ("sport", "The team won the final match after extra time."),
            ("math2", "A shop sells 4 pens for 2 dollars each. How many dollars do the pens cost?")]
    task = ["Anna has 7 apples and gives 2 apples away. How many apples does she have?",
            "Each box holds 6 pens. How many pens are in 3 boxes?"]
    kept, info = prefilter(docs, task, keep=2)
    assert [d for d, _ in kept] == ["math1", "math2"]  # original order, the two arithmetic word problems
    assert info["kept"] == 2 and info["min_kept_score"] > info["max_dropped_score"]
    scores = similarity_scores([t for _, t in docs], task)
    assert scores.shape == (4,) and scores.max() <= 1 + 1e-9
    with pytest.raises(ValueError, match="unknown embedder"):
        similarity_scores(["x"], ["y"], "word2vec")


@pytest.mark.slow
def test_prefilter_with_a_transformers_encoder_gives_unit_vectors():
    from raftlab.rationalyst.prefilter import hf_embed, prefilter

    vecs = hf_embed(["one two", "three four five"], "tiny")
    assert vecs.shape[0] == 2 and np.allclose(np.linalg.norm(vecs, axis=1), 1.0)
    kept, info = prefilter([("a", "one two"), ("b", "three four five")], ["one two"], keep=1, embedder="hf:tiny")
    assert [d for d, _ in kept] == ["a"] and info["embedder"] == "hf:tiny"


@pytest.mark.slow
def test_filter_ablation_trains_on_every_extracted_rationale(tmp_path):
    """`rationalyst train --all-rationales` uses the mined triples (kept or not) and saves generator-unfiltered."""
    from typer.testing import CliRunner

    from raftlab.cli.main import app
    from raftlab.rationalyst import kept_triples, mined_triples

    res = CliRunner().invoke(app, ["rationalyst", "mine", "--model", "oracle", "--task", "synth_arith", "--limit",
                                   "3", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    store = open_store(tmp_path)
    assert mined_triples(store) and not kept_triples(store)  # nothing filtered yet: only the ablation can train
    store.close()
    res = CliRunner().invoke(app, ["rationalyst", "train", "--model", "tiny", "--max-steps", "1", "--batch-size",
                                   "2", "--all-rationales", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "generator-unfiltered" / "adapter_config.json").exists()
    assert not (tmp_path / "generator").exists()
