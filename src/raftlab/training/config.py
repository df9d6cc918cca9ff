"""Training configuration; defaults follow the paper's recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from raftlab.schema import Example
from raftlab.training.features import Objective

PROFILE_FILE = Path(__file__).parent / "configs" / "paper.yaml"


def load_profile(path: str | Path = PROFILE_FILE) -> dict[str, Any]:
    """A hyper-parameter profile (YAML mapping); the default is the paper's recipe (``configs/paper.yaml``)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a training profile must be a YAML mapping")
    return data


#: The paper's hyper-parameters (full finetuning); LoRA uses a larger learning rate.
PAPER_PROFILE: dict[str, Any] = load_profile()


class TrainConfig(BaseModel):
    """What to train, on what, and how. ``data`` is a JSONL file of Examples, a rationale run directory
    (holding ``rationales.jsonl``), a list of those (a multi-task mixture, see ``mixture``) or a list of
    Examples (Python API)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="raftlab model spec: smollm2 | tiny | a dir | a hub id")
    data: str | list[str] | list[Example]
    objective: Objective = "label"
    out: str = Field(..., description="output directory (final model/adapter + tokenizer)")
    task: str | None = Field(None, description="task name; default: each example's own task")
    lora: bool = True
    lora_r: int = PAPER_PROFILE["lora_r"]
    epochs: float = PAPER_PROFILE["epochs"]
    max_steps: int = -1
    learning_rate: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    seed: int = PAPER_PROFILE["seed"]
    align_lambda: float = Field(0.5, ge=0.0, le=1.0)
    blank_length: int | None = Field(None, description="think tokens per blank rationale (default: task mean)")
    mixture: dict[str, float] | None = Field(None, description="sampling weight per task for multi-task data")
    mixture_size: int | None = Field(None, description="examples drawn for the mixture (default: all)")
    mixture_polarity: Literal["full", "positive", "negative"] = Field(
        "full", description="train on every mixture task, or only on those of one polarity (see task_polarity)")
    task_polarity: dict[str, int] | None = Field(None, description="sign per task, e.g. of RAFT's gain over FT")
    group_by_length: bool = True
    pack: bool = Field(False, description="concatenate each batch into one row (no padding; block-diagonal "
                       "attention from position ids). Best with flash-attention on a GPU; on a CPU the grouped, "
                       "padded batches are faster")
    target_logits: bool = Field(True, description="compute LM-head logits only where a token is trained "
                                "(same loss and gradients, less compute)")
    save_steps: int = 200
    resume: bool = False
    bf16: bool | None = None
    logging_steps: int = 10

    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return PAPER_PROFILE["learning_rate_lora" if self.lora else "learning_rate_full"]

    def data_paths(self) -> list[Path]:
        """The data files/run dirs (empty when ``data`` is a list of Examples)."""
        items = [self.data] if isinstance(self.data, str) else self.data
        return [Path(p) for p in items if not isinstance(p, Example)]

    def data_examples(self) -> list[Example]:
        """The Examples given directly (Python API)."""
        return [] if isinstance(self.data, str) else [e for e in self.data if isinstance(e, Example)]
