"""What each study stage hands on: one typed output per stage kind.

A stage's work returns one of these. The runner records it in ``RUN/manifest.json`` as :meth:`StageOutput.record`
(its fields in order, paths relative to the stage's folder) and hands that record, with the folder as
``"_stage_dir"``, to the stages that depend on it; they read it back with ``<Output>.of(given)``, which resolves
the paths. ``of`` reads only the fields its type names, so a test's stand-in step may return a plain dict with the
fields that later stages read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

#: What a stage's work receives of a dependency: the record it returned, with ``"_stage_dir"``, its folder.
Given = Mapping[str, Any]
O = TypeVar("O", bound="StageOutput")


@dataclass(frozen=True)
class StageOutput:
    """Base of the stage outputs. ``folder``, the stage's folder, is known once the output is handed on."""

    folder: Path | None = field(default=None, kw_only=True, compare=False)

    @classmethod
    def of(cls: type[O], given: Given | O) -> O:
        """The output a dependency recorded (``given`` as the runner hands it on), typed."""
        if isinstance(given, cls):
            return given
        names = {f.name for f in fields(cls) if f.name != "folder"}
        return cls(**{k: v for k, v in given.items() if k in names}, folder=Path(given["_stage_dir"]))

    def record(self) -> dict[str, Any]:
        """The manifest's ``outputs`` of the stage: every field but the folder, in order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "folder"}

    def path(self, relative: str) -> Path:
        if self.folder is None:
            raise ValueError(f"{type(self).__name__}: the stage's folder is known only once it is handed on")
        return self.folder / relative


def as_record(outputs: StageOutput | dict[str, Any] | None) -> dict[str, Any] | None:
    """What the manifest records of a stage's work (a stand-in step's plain dict as it is)."""
    return outputs.record() if isinstance(outputs, StageOutput) else outputs


@dataclass(frozen=True)
class DataOutput(StageOutput):
    """``data``: the task's seeded train and test subsets (Example JSONL files)."""

    train: str
    test: str
    n_train: int | None = None
    n_test: int | None = None

    @property
    def train_path(self) -> Path:
        return self.path(self.train)

    @property
    def test_path(self) -> Path:
        return self.path(self.test)


@dataclass(frozen=True)
class RationaleFile(StageOutput):
    """A stage whose folder holds training examples with their rationales (``rationales``; what ``train``
    reads): the teacher's kept rationales, or a training-set size's subset of them."""

    rationales: str

    @property
    def rationales_path(self) -> Path:
        return self.path(self.rationales)


@dataclass(frozen=True)
class RationalesOutput(RationaleFile):
    """``rationales``: the examples with a kept teacher rationale (``rationales``), how many, and the
    generation's statistics."""

    kept: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubsetOutput(RationaleFile):
    """``subset``: the ``n`` examples the arms of training-set size ``size`` share, drawn from ``pool``."""

    size: int | None = None
    n: int | None = None
    pool: int | None = None


@dataclass(frozen=True)
class JudgeOutput(StageOutput):
    """``judge``: the summary file and the verdict counts."""

    summary: str
    helpful: int = 0
    unhelpful: int = 0
    unknown: int = 0
    judged: int = 0


@dataclass(frozen=True)
class TrainOutput(StageOutput):
    """``train``: the finetuned model's folder."""

    model: str

    @property
    def model_path(self) -> Path:
        return self.path(self.model)


@dataclass(frozen=True)
class EvalOutput(StageOutput):
    """``eval``: the eval's metrics (its records and settings are files of its folder)."""

    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptingOutput(StageOutput):
    """``prompting``: the untrained arm's metrics and the in-context demonstrations it was shown (ids)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    shots: int = 0
    demonstrations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MeanOfTaskOutput(StageOutput):
    """``mean_of_task``: the untrained student's accuracy under mean-of-task prompting, and the eval's metrics."""

    accuracy: float
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceOutput(StageOutput):
    """``reference``: how many test questions the reference model answered, and its accuracy."""

    n: int
    accuracy: float


@dataclass(frozen=True)
class InfoGainOutput(StageOutput):
    """``info_gain``: the curves file and how many rationales it averages."""

    curves: str
    n: int = 0


@dataclass(frozen=True)
class AnalysisOutput(StageOutput):
    """``analysis``: the analysis file."""

    analysis: str


@dataclass(frozen=True)
class ReportOutput(StageOutput):
    """``report``: the HTML page (None from a stand-in step that writes none)."""

    html: str | None = None

    @property
    def html_path(self) -> Path | None:
        return None if self.html is None else self.path(self.html)
