"""Training configuration: :class:`TrainSettings` (hyper-parameters) and :class:`TrainConfig` (a run); defaults
follow the paper's recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from raftlab.schema import Example, Strict
from raftlab.training.features import Objective

PROFILE_FILE = Path(__file__).parent / "configs" / "paper.yaml"


def load_profile(path: str | Path = PROFILE_FILE) -> dict[str, Any]:
    """A hyper-parameter profile (YAML mapping); the default is the paper's recipe (``configs/paper.yaml``)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a training profile must be a YAML mapping")
    return data


#: Settings added after runs were recorded, each with the value every run used before it existed: a saved config
#: without one equals it at that value (``raftlab train`` does not retrain a finished run, a study keeps its stage
#: keys). A literal, not the profile's current default, since that records what earlier runs did.
LATER_FIELDS: dict[str, Any] = {"lora_dropout": 0.05}

#: The hyper-parameter file: the paper's Table 2 (``table2``) and raftlab's own defaults.
PAPER_PROFILE: dict[str, Any] = load_profile()
#: ``profile: paper``: exactly the paper's Table 2 (fields given explicitly still override it).
TABLE2: dict[str, Any] = dict(PAPER_PROFILE["table2"])


class TrainSettings(Strict):
    """How to train: the hyper-parameters shared by ``raftlab train`` (its options are generated from these
    fields), a study's ``train:`` section and the Python API. :class:`TrainConfig` adds what to train on.

    ``json_schema_extra={"cli": [...]}`` names a field's command-line flags where they are not
    ``--field-name`` (booleans get ``--x/--no-x``)."""

    profile: Literal["raftlab", "paper"] = Field(
        "raftlab", description="paper: the paper's Table 2 recipe (full finetuning, lr 5e-6, 3 epochs, 4 per "
        "device, global batch 64, gradient checkpointing, bf16, max length 2048, no weight decay); raftlab: LoRA "
        "defaults for small budgets. Fields given explicitly override the profile")
    lora: bool = Field(True, description="LoRA adapters (default) or full finetuning",
                       json_schema_extra={"cli": ["--lora/--full"]})
    lora_r: int = Field(PAPER_PROFILE["lora_r"], ge=1, description="LoRA rank")
    lora_dropout: float = Field(PAPER_PROFILE["lora_dropout"], ge=0.0, le=0.999, description="dropout on each "
                                "LoRA adapter's input (0: none; on a CPU it costs about a tenth of a step)")
    epochs: float = Field(PAPER_PROFILE["epochs"], gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: use epochs)")
    learning_rate: float | None = Field(None, gt=0, description="learning rate (default: the profile's, 5e-6 "
                                        "full, 2e-4 LoRA)", json_schema_extra={"cli": ["--lr", "--learning-rate"]})
    batch_size: int = Field(8, ge=1, description="examples per device per step")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    global_batch: int | None = Field(None, ge=1, description="sequences per optimizer step over all processes: "
                                     "sets grad_accum = global_batch / (batch_size x processes)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass")
    weight_decay: float = Field(0.0, ge=0.0)
    max_length: int = Field(1024, ge=16, description="longest tokenized prompt + target (longer rows are cut)")
    align_lambda: float = Field(0.5, ge=0.0, le=1.0, description="λ in λ·CE(label) + (1−λ)·CE(rationale)")
    blank_length: int | None = Field(None, ge=1, description="think tokens per blank rationale (default: task "
                                     "mean)")
    mixture: dict[str, float] | None = Field(None, description="sampling weight per task for multi-task data, "
                                             "e.g. 'sst2=1,gsm8k=2'")
    mixture_size: int | None = Field(None, ge=1, description="examples drawn for the mixture (default: all)")
    mixture_polarity: Literal["full", "positive", "negative"] = Field(
        "full", description="train on every mixture task, or only on those of one polarity (see task_polarity)")
    task_polarity: dict[str, int] | None = Field(None, description="sign per task, e.g. of RAFT's gain over FT: "
                                                 "'sst2=-1,gsm8k=1'")
    group_by_length: bool = Field(True, description="batches of similar length (less padding)")
    pack: bool = Field(False, description="concatenate each batch into one row (no padding; block-diagonal "
                       "attention from position ids). Best with flash-attention on a GPU; on a CPU the grouped, "
                       "padded batches are faster")
    target_logits: bool = Field(True, description="compute LM-head logits only where a token is trained "
                                "(same loss and gradients, less compute)",
                                json_schema_extra={"cli": ["--target-logits/--full-logits"]})
    shared_prefix: bool = Field(True, description="run the tokens every row of a batch starts with (a task's "
                                "instruction) once per batch instead of once per row (same loss and gradients; "
                                "with target logits, unpacked rows, one process, no gradient checkpointing)")
    save_steps: int = Field(200, ge=1, description="checkpoint every N steps (resume continues from the newest; "
                            "with a dev set, checkpoints are written at each evaluation instead)")
    dev_size: int = Field(0, ge=0, description="examples held out of training as a dev set, chosen by example id "
                          "and seed (FT and RAFT of the same data hold out the same ones); its loss over the "
                          "target tokens is computed every eval_steps, training stops after `patience` "
                          "evaluations without a lower loss, and the best evaluation's weights are the final "
                          "model. 0: no dev set, train for epochs/max_steps")
    eval_steps: int = Field(10, ge=1, description="with a dev set: evaluate its loss every N optimizer steps (and "
                            "at the last step)")
    patience: int = Field(3, ge=0, description="with a dev set: stop after this many evaluations in a row without "
                          "a lower dev loss (0: never stop early; the best weights are still kept)")
    bf16: bool | None = Field(None, description="bf16 training (default: where the hardware has bf16, GPU or CPU; "
                              "LoRA keeps the frozen base in bf16 and the adapters in fp32, full finetuning uses "
                              "autocast over fp32 weights)")
    logging_steps: int = Field(10, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _profile(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("profile") == "paper":
            data = {**TABLE2, **{k: v for k, v in data.items() if v is not None}}
        return data

    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return PAPER_PROFILE["learning_rate_lora" if self.lora else "learning_rate_full"]

    def accumulation(self, processes: int = 1) -> int:
        """Gradient accumulation steps: from ``global_batch`` when set (an error if it does not divide), else
        ``grad_accum``."""
        if self.global_batch is None:
            return self.grad_accum
        per_step = self.batch_size * processes
        if self.global_batch % per_step:
            raise ValueError(f"global_batch {self.global_batch} is not a multiple of batch_size {self.batch_size} x "
                             f"{processes} process(es)")
        return self.global_batch // per_step


class TrainConfig(TrainSettings):
    """What to train, on what, and how (the one training config object). ``data`` is a JSONL file of Examples,
    a rationale run directory (holding ``rationales.jsonl``), a list of those (a multi-task mixture, see
    ``mixture``) or a list of Examples (Python API)."""

    model: str = Field(..., description="smollm2 | tiny | a model dir | a hub id",
                       json_schema_extra={"cli": ["--model", "-m"]})
    data: str | list[str] | list[Example] = Field(..., description="JSONL of Examples or a rationale run dir "
                                                  "(repeat for a multi-task mixture)",
                                                  json_schema_extra={"cli": ["--data", "-d"]})
    objective: Objective = Field("label", description="label | raft | blank | reason | explain | mix | align")
    out: str = Field(..., description="output directory (final model/adapter + tokenizer)",
                     json_schema_extra={"cli": ["--out", "-o"]})
    task: str | None = Field(None, description="task name (default: each example's own task)")
    seed: int = Field(PAPER_PROFILE["seed"], description="random seed (data order, initialisation)")
    resume: bool = Field(False, description="continue from the newest checkpoint in OUT/checkpoints")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """A config from a YAML/JSON mapping of its fields (what a launcher passes: ``raftlab train --config``),
        with ``overrides`` on top."""
        from raftlab.corrupt import CorruptFile, yaml_problem

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the training config ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise CorruptFile(f"{path}: not valid UTF-8 (byte {exc.start + 1}); fix or rewrite the training "
                              "config") from None
        except yaml.YAMLError as exc:
            raise CorruptFile(f"{path}: {yaml_problem(exc)}; fix or rewrite the training config") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a training config must be a mapping of TrainConfig fields")
        return cls(**{**data, **overrides})

    def to_file(self, path: str | Path) -> Path:
        """Write the config as YAML (round-trips through :meth:`from_file`); data must be paths, not Examples."""
        if self.data_examples():
            raise ValueError("a config with in-memory Examples cannot be written to a file; write them as JSONL")
        from raftlab.storage import atomic_write_text

        return atomic_write_text(path, yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))

    def data_paths(self) -> list[Path]:
        """The data files/run dirs (empty when ``data`` is a list of Examples)."""
        items = [self.data] if isinstance(self.data, str) else self.data
        return [Path(p) for p in items if not isinstance(p, Example)]

    def data_examples(self) -> list[Example]:
        """The Examples given directly (Python API)."""
        return [] if isinstance(self.data, str) else [e for e in self.data if isinstance(e, Example)]
