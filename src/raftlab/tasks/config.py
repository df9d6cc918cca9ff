"""The typed task config (:class:`TaskConfig`, pydantic, like the study config) and reading it from YAML.

A task config says what a task is (name, category, answer type, options, instructions per annotator) and where
its data comes from (:class:`DataSource`: local files, a seeded pool, generated; :class:`HubSource`). Every
problem names the config file and the field. See ``tasks/configs/README.md`` for the YAML format.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from raftlab.schema import Strict as _Strict
from raftlab.storage import read_yaml

CONFIG_DIR = Path(__file__).parent / "configs"
SPLITS = ("train", "test")


class GeneratedSplit(_Strict):
    """A split made by a generator of :mod:`raftlab.tasks.synthetic`, minus questions of other splits."""

    generator: str
    n: int = Field(..., ge=1)
    seed: int = 0
    args: dict[str, Any] = Field(default_factory=dict)
    exclude_splits: list[str] = Field(default_factory=list)


class SplitSource(_Strict):
    """One split: files (read with the data's reader), or a generated split."""

    files: list[str] = Field(default_factory=list)
    reader: str | None = None
    reader_args: dict[str, Any] = Field(default_factory=dict)
    generate: GeneratedSplit | None = None

    @model_validator(mode="before")
    @classmethod
    def _file_list(cls, v: Any) -> Any:
        return {"files": v} if isinstance(v, list) else v


class SeededSplit(_Strict):
    """How one pool of examples is split into train and test (seeded shuffle): a test fraction or exact sizes."""

    seed: int = 0
    test_fraction: float | None = Field(None, gt=0, lt=1)
    sizes: dict[Literal["train", "test"], int] | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> SeededSplit:
        if (self.test_fraction is None) == (self.sizes is None):
            raise ValueError("give exactly one of test_fraction or sizes")
        return self


class PoolSource(SeededSplit):
    """One set of files split into train/test here."""

    files: list[str]


class SyntheticSource(_Strict):
    """A fully generated task (no files)."""

    generator: str
    sizes: dict[Literal["train", "test"], int] = Field(default_factory=lambda: {"train": 1000, "test": 200})
    args: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0


class DataSource(_Strict):
    """Where a task's local examples come from (under ``$RAFTLAB_DATA_DIR/<dir>/``)."""

    dir: str | None = None
    reader: str = "jsonl"
    reader_args: dict[str, Any] = Field(default_factory=dict)
    splits: dict[Literal["train", "test"], SplitSource] = Field(default_factory=dict)
    pool: PoolSource | None = None
    synthetic: SyntheticSource | None = None
    converter: str = "template"
    convert: dict[str, Any] = Field(default_factory=dict)


class HubSource(_Strict):
    """The Hugging Face hub source (``Task.load_hub``): ``datasets.load_dataset(path, name, split=...)``."""

    path: str
    name: str | None = None
    splits: dict[Literal["train", "test"], str | list[str]] = Field(
        default_factory=lambda: {"train": "train", "test": "test"})
    split: SeededSplit | None = Field(None, description="one hub split divided here (seeded)")
    converter: str | None = None
    convert: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat_split_rule(cls, v: Any) -> Any:
        """``test_fraction``/``sizes``/``split_seed`` may be given at the top level (older configs)."""
        if isinstance(v, dict) and any(k in v for k in ("test_fraction", "sizes", "split_seed")):
            v = dict(v)
            v["split"] = {"test_fraction": v.pop("test_fraction", None), "sizes": v.pop("sizes", None),
                          "seed": v.pop("split_seed", 0)}
        return v


class TaskConfig(_Strict):
    """What a task is and where its data comes from.

    ``option_letters``/``verbalizers`` describe fixed label sets (letter -> accepted texts, the first being the
    text shown in the options). Tasks whose options vary per question (ARC, CommonsenseQA, WinoGrande) have
    empty verbalizers and take options from each Example.
    """

    name: str
    category: Literal["math", "commonsense", "nlu", "synthetic"]
    answer_type: Literal["number", "choice"]
    instructions: dict[str, str] = Field(..., description="annotator style (A, B, C) -> instruction; A required")
    data: DataSource = Field(default_factory=DataSource)
    hub: HubSource | None = None
    option_letters: list[str] = Field(default_factory=list)
    verbalizers: dict[str, list[str]] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    group: str = ""
    description: str = ""
    notes: str = ""
    license: str = ""
    config_path: Path | None = Field(None, exclude=True)

    @field_validator("instructions", mode="before")
    @classmethod
    def _styles(cls, v: Any) -> Any:
        if not isinstance(v, dict) or not any(str(k).upper() == "A" for k in v):
            raise ValueError("must map annotator styles (A, B, C) to text, with A present")
        return {str(k).upper(): str(t) for k, t in v.items()}

    @field_validator("verbalizers", mode="before")
    @classmethod
    def _texts(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): ([t] if isinstance(t, str) else [str(x) for x in t]) for k, t in v.items()}
        return v

    @field_validator("option_letters", "aliases", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _letters(self) -> TaskConfig:
        if not self.option_letters and self.verbalizers:
            self.option_letters = list(self.verbalizers)
        if self.answer_type == "choice" and self.verbalizers and set(self.option_letters) != set(self.verbalizers):
            raise ValueError(f"verbalizers must give texts for exactly {self.option_letters}")
        return self

    # ------------------------------------------------------------------ options (used by converters, generators)

    @staticmethod
    def letters_for(n: int) -> list[str]:
        """Option letters for ``n`` options (A, B, C, ...)."""
        return list(string.ascii_uppercase[:n])

    @staticmethod
    def render_question(body: str, letters: list[str], texts: list[str]) -> str:
        """``body`` followed by ``Options: (A) ... (B) ...``."""
        opts = " ".join(f"({x}) {t}" for x, t in zip(letters, texts))
        return f"{body.strip()}\nOptions: {opts}"

    @classmethod
    def from_config(cls, raw: dict[str, Any], config_path: Path | None = None) -> Any:
        """Build (as ``cls``) from a merged YAML mapping; a :class:`ValueError` names the file and the field."""
        where = str(config_path) if config_path else "<config>"
        try:
            return cls.model_validate({**{k: v for k, v in raw.items() if k != "include"}, "config_path": config_path})
        except ValidationError as exc:
            problems = "; ".join(f"field '{'.'.join(str(p) for p in e['loc']) or '<root>'}': {e['msg']}"
                                 for e in exc.errors())
            raise ValueError(f"{where}: {problems}") from None


def load_config(path: str | Path) -> dict[str, Any]:
    """A YAML task config with its ``include`` (str or list, relative to the file) merged in first."""
    return read_yaml(path, what="task config")


def builtin_config(name: str) -> TaskConfig:
    """The shipped config ``tasks/configs/<name>.yaml`` (without going through the registry)."""
    path = CONFIG_DIR / f"{name}.yaml"
    return TaskConfig.from_config(load_config(path), path)
