"""Training to convergence: the dev split (by id and seed, never trained on, the same for FT and RAFT), the dev
loss (the objective over all dev target tokens), early stopping that keeps the best checkpoint, and the record of
why training stopped."""

from __future__ import annotations

import json
import random

import pytest
import torch

from raftlab.schema import Example
from raftlab.tasks import write_jsonl
from raftlab.training import TrainConfig, train
from raftlab.training.early_stopping import carve_dev

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = {"A": ["rain", "snow", "sunny", "storm"], "B": ["pizza", "bread", "soup", "rice"]}


def _examples(n: int, seed: int = 0, random_labels: bool = False, rationale: bool = False) -> list[Example]:
    """Keyword topic questions, each with its own text (``item <i>``) so that a row can be traced to it."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        topic = r.choice("AB")
        label = r.choice("AB") if random_labels else topic
        out.append(Example(id=f"kw-{i}", task="kwtopic", category="synthetic",
                           question=f"Text: item {i} {r.choice(WORDS[topic])}\nOptions: (A) weather (B) food",
                           label=label, option_letters=["A", "B"], options=["weather", "food"],
                           rationale=f"The word is about {'weather' if topic == 'A' else 'food'}." if rationale
                           else None))
    return out


def _summary(out) -> dict:
    return json.loads((out / "train_summary.json").read_text())


def test_the_dev_split_is_carved_by_id_and_seed():
    examples = _examples(20, rationale=True)
    train_part, dev = carve_dev(examples, 5, seed=0)
    assert len(dev) == 5 and len(train_part) == 15
    assert not {e.id for e in dev} & {e.id for e in train_part}
    shuffled = random.Random(1).sample(examples, len(examples))
    labels_only = [e.model_copy(update={"rationale": None}) for e in shuffled]  # what FT reads
    assert {e.id for e in carve_dev(labels_only, 5, seed=0)[1]} == {e.id for e in dev}
    assert {e.id for e in carve_dev(examples, 5, seed=1)[1]} != {e.id for e in dev}
    assert carve_dev(examples, 0, seed=0) == (examples, [])
    with pytest.raises(ValueError, match="dev_size 20 leaves no training examples"):
        carve_dev(examples, 20, seed=0)


@pytest.mark.slow
def test_dev_examples_never_reach_the_training_rows(tmp_path):
    """Decode every tokenized row: no dev question is trained on (also not through a mixture drawn with
    replacement), every other one is, and FT and RAFT hold out the same questions."""
    from raftlab.training.trainer import prepare_split

    write_jsonl(_examples(24, rationale=True), tmp_path / "d.jsonl")

    def questions(rows, tok):
        return {tok.decode(r["input_ids"]).split("item ")[1].split(" ")[0] for r in rows}

    held, every = {}, {str(i) for i in range(24)}
    for objective, mixture in (("label", None), ("raft", None), ("raft", {"kwtopic": 1.0})):
        p = prepare_split(TrainConfig(model="tiny", data=str(tmp_path / "d.jsonl"), objective=objective, lora=False,
                                      out=str(tmp_path / "o"), dev_size=6, mixture=mixture, mixture_size=90))
        trained, dev = questions(p.rows, p.tok), questions(p.dev_rows, p.tok)
        assert len(dev) == 6 and not trained & dev
        if mixture:  # 90 draws with replacement from the 18 training examples only
            assert len(p.rows) == 90 and trained <= every - dev
        else:
            assert trained == every - dev and (p.train_examples, p.dev_examples) == (18, 6)
        held[(objective, bool(mixture))] = dev
    assert held[("label", False)] == held[("raft", False)] == held[("raft", True)]


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["raft", "align"])
def test_the_dev_loss_is_the_objective_over_all_dev_target_tokens(tmp_path, objective):
    """eval_loss = Σ over dev rows of the target tokens' cross-entropy / their number (per view, λ-weighted for
    align), whatever the batching: not the mean of the batch means that transformers computes by default."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from raftlab.models import load_model
    from raftlab.training import tokenize_examples
    from raftlab.training.collate import PadCollator
    from raftlab.training.trainer import _align_trainer_cls, raft_trainer_cls

    model, tok = load_model("tiny")
    examples = [e.model_copy(update={"rationale": "word " * (3 + 7 * i) + "so it is clear."})
                for i, e in enumerate(_examples(5, rationale=True))]  # targets of very different lengths
    rows = tokenize_examples(examples, tok, objective, 512)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=2, report_to=[], use_cpu=True,
                             remove_unused_columns=False, disable_tqdm=True)
    weights = {"": 0.3, "r_": 0.7} if objective == "align" else {"": 1.0}
    extra = {"align_lambda": 0.3} if objective == "align" else {}
    cls = _align_trainer_cls() if objective == "align" else raft_trainer_cls()
    trainer = cls(model=model, args=args, eval_dataset=Dataset.from_list(rows),
                  data_collator=PadCollator(tok.pad_token_id), **extra)

    def by_hand(prefix):
        losses, counts = [], []
        with torch.no_grad():
            for r in rows:
                labels = torch.tensor([r[f"{prefix}labels"]])
                losses.append(model(input_ids=torch.tensor([r[f"{prefix}input_ids"]]), labels=labels).loss.item())
                counts.append(int((labels[:, 1:] != -100).sum()))
        return sum(x * n for x, n in zip(losses, counts)) / sum(counts), sum(losses) / len(losses)

    expected = sum(w * by_hand(prefix)[0] for prefix, w in weights.items())
    row_means = sum(w * by_hand(prefix)[1] for prefix, w in weights.items())
    assert abs(expected - row_means) > 1e-3  # the two ways of averaging differ on these rows
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected, rel=1e-4)
    trainer.target_logits = False  # the full-vocabulary forward gives the same loss
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_early_stopping_stops_and_keeps_the_best_checkpoint(tmp_path):
    """Random labels: once the answer template is learned, memorising the training labels raises the dev loss;
    training stops `patience` evaluations after the best one and the final model holds the best step's weights."""
    from safetensors.torch import load_file

    write_jsonl(_examples(32, random_labels=True), tmp_path / "d.jsonl")
    out = train(TrainConfig(model="tiny", data=str(tmp_path / "d.jsonl"), objective="label", out=str(tmp_path / "o"),
                            lora=False, learning_rate=1e-2, max_steps=200, batch_size=8, dev_size=8, eval_steps=3,
                            patience=2, logging_steps=100))
    s = _summary(out)["stopping"]
    losses = [e["loss"] for e in s["dev_losses"]]
    assert s["reason"] == "early_stopping" and s["steps"] < s["max_steps"] == 200
    assert [e["step"] for e in s["dev_losses"]] == list(range(3, s["steps"] + 1, 3))
    assert s["best_step"] == s["dev_losses"][losses.index(min(losses))]["step"] == s["steps"] - 2 * 3
    assert s["best_dev_loss"] == min(losses) and s["still_improving"] is False
    assert (s["train_examples"], s["dev_examples"]) == (24, 8)
    final = load_file(out / "model.safetensors")
    best = load_file(out / "checkpoints" / f"checkpoint-{s['best_step']}" / "model.safetensors")
    last = load_file(out / "checkpoints" / f"checkpoint-{s['steps']}" / "model.safetensors")
    assert all(torch.equal(final[k], best[k]) for k in best)
    assert not all(torch.equal(final[k], last[k]) for k in last)


@pytest.mark.slow
def test_a_run_that_hits_its_maximum_while_improving_is_recorded_as_such(tmp_path):
    write_jsonl(_examples(24), tmp_path / "d.jsonl")
    common = dict(model="tiny", data=str(tmp_path / "d.jsonl"), objective="label", lora=False, learning_rate=1e-3,
                  max_steps=6, batch_size=4, logging_steps=100)
    s = _summary(train(TrainConfig(**common, out=str(tmp_path / "dev"), dev_size=4, eval_steps=2)))["stopping"]
    losses = [e["loss"] for e in s["dev_losses"]]
    assert [e["step"] for e in s["dev_losses"]] == [2, 4, 6] and losses == sorted(losses, reverse=True)
    assert (s["reason"], s["steps"], s["best_step"], s["still_improving"]) == ("max_steps", 6, 6, True)
    plain = _summary(train(TrainConfig(**{**common, "max_steps": -1}, epochs=1, out=str(tmp_path / "plain"))))
    s = plain["stopping"]  # no dev set: the maximum, with nothing known about convergence
    assert (s["reason"], s["steps"], s["best_step"], s["still_improving"], s["dev_losses"]) == (
        "epochs", 6, None, None, [])
    assert (s["train_examples"], s["dev_examples"]) == (24, 0)
