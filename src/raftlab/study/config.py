"""``StudyConfig``: what a study runs, read from YAML (with ``include``), validated with pydantic."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from raftlab import storage
from raftlab.backends.sampling_knobs import knob_field
from raftlab.schema import Strict as _Strict
from raftlab.training.config import TrainSettings

CONFIG_DIR = Path(__file__).parent / "configs"
BUILTIN = {name: CONFIG_DIR / f"{name}.yaml" for name in ("default", "quick", "real", "paper")}
#: One line per built-in config (``raftlab study --help``).
PRESETS = {"default": "SmolLM2-135M (LoRA), 2 synthetic tasks, oracle teacher: a resolved answer on 2 CPU cores",
           "quick": "tiny random-init model, 3 synthetic tasks: checks the pipeline quickly",
           "real": "SmolLM2-135M (full finetuning), 3 real tasks + CoinFlip, SmolLM2 as its own teacher, offline "
                   "on CPUs",
           "paper": "the paper's protocol: 18 tasks + SUBJ and CoinFlip as validation tasks, API teacher, 20k kept "
                    "rationales per task, Table 2 full finetuning, k = 10 (needs GPUs)"}

Arm = Literal["ft", "raft", "blank", "align", "reason", "explain", "mix"]
#: The training objective of each arm (see raftlab.training; reason/explain/mix/align are NLURC's methods).
ARM_OBJECTIVE: dict[str, str] = {"ft": "label", "raft": "raft", "blank": "blank", "align": "align",
                                 "reason": "reason", "explain": "explain", "mix": "mix"}
#: The prompt each arm is evaluated with: one it was trained on (label-only and explain-after-label models get the
#: direct prompt; Align and Mix, trained on both, get the direct prompt NLURC reports them with).
#: ``eval.both_prompts`` adds the other one as arm ``<arm>@<mode>``.
ARM_PROMPT_MODE: dict[str, str] = {"ft": "direct", "raft": "cot", "blank": "cot", "align": "direct",
                                   "reason": "cot", "explain": "direct", "mix": "direct"}
#: Arms trained on both prompts are always evaluated with both (NLURC compares direct and CoT inference for them).
BOTH_PROMPTS_ALWAYS = frozenset({"align", "mix"})
PROMPT_MODES = ("direct", "cot")


@dataclass(frozen=True)
class ArmEval:
    """An evaluated arm: the trained ``arm`` and the ``prompt_mode`` it is evaluated with.

    Written as the arm's name where the prompt is the arm's own (:data:`ARM_PROMPT_MODE`), else
    ``<arm>@<mode>`` (``eval.both_prompts``): ``raft``, ``raft@direct``. That string names the eval folder
    (``eval/<it>/<task>``) and the arm in analyses; code passes this value."""

    arm: str
    prompt_mode: str

    @classmethod
    def parse(cls, name: str) -> ArmEval:
        arm, _, mode = name.partition("@")
        return cls(arm, mode or ARM_PROMPT_MODE[arm])

    @property
    def cross_prompt(self) -> bool:
        """Evaluated with a prompt other than the arm's own."""
        return self.prompt_mode != ARM_PROMPT_MODE[self.arm]

    def __str__(self) -> str:
        return f"{self.arm}@{self.prompt_mode}" if self.cross_prompt else self.arm


class TaskSpec(_Strict):
    """One task of the study and how many examples it uses."""

    name: str
    train_limit: int | None = Field(64, ge=1, description="training examples given to the teacher")
    test_limit: int | None = Field(32, ge=1, description="test questions evaluated")
    data_dir: str | None = Field(None, description="dataset folder, or 'packaged' for the vendored MIT samples "
                                                   "(default: $RAFTLAB_DATA_DIR, see raftlab.tasks)")
    role: Literal["fit", "validation"] = Field("fit", description="'validation': run like every task but left out "
                                               "of the across-task fits and checked against them (the paper's "
                                               "SUBJ and CoinFlip, Fig. 5's green crosses)")


class TeacherConfig(_Strict):
    """Who writes the rationales.

    ``backend``: ``"oracle"`` (programmatic rationales for the synthetic tasks; the dataset's human
    rationale for tasks that ship one, e.g. GSM8K) or any backend spec (``hf:smollm2``,
    ``openai:model@http://host:port/v1``, ``vllm:model``).
    """

    backend: str = "oracle"
    style: Literal["A", "B", "C"] = "A"
    length: int = Field(3, ge=1, le=5)
    max_retries: int = Field(3, ge=1, description="attempts per example (the gold filter retries)")
    temperature: float = knob_field("temperature", 0.7)
    max_new_tokens: int = knob_field("max_new_tokens", 256, description="generation budget of each rationale")
    batch_size: int = Field(32, ge=1, description="teacher prompts in flight at once: a local teacher (hf, vllm) "
                            "decodes this many together, the next joining as their samples finish; concurrent "
                            "requests for an openai teacher (not read by the oracle)")
    samples_per_prompt: int | None = Field(None, ge=1, description="an example's next gold-filter attempts "
                                           "drawn as n samples of one request (a local teacher prefills the prompt "
                                           "once and decodes them together; samples after the first kept one are "
                                           "discarded; default: 4 for a local teacher, 1 for an API teacher, whose "
                                           "samples are billed; not read by the oracle)")
    kept_target: int | None = Field(None, ge=1, description="rationales to keep per task (default: as many as "
                                    "training examples; the paper: 20k)")
    traversals: int = Field(1, ge=1, description="times the training examples may be gone through to reach "
                            "kept_target: a later traversal gives every example a fresh rationale (the paper "
                            "traverses until it has enough)")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="engine options of the teacher "
                                            "(as --backend-option: vLLM LLM(...), from_pretrained, the OpenAI "
                                            "client); recorded, secrets masked")


class JudgeConfig(_Strict):
    """The paper's App. C quality check: an LLM judges a seeded sample of each task's kept rationales
    ("Helpful"/"Unhelpful", :mod:`raftlab.rationales.judge`; the paper: GPT-4o, 20 per dataset). On by default
    for a real teacher, whose own model judges unless ``backend`` names another; for the oracle teacher only when
    ``backend`` is named."""

    backend: str | None = Field(None, description="backend spec of the judge, e.g. openai:gpt-4o@URL (default: "
                                                  "the teacher's backend and options; none for the oracle)")
    sample: int = Field(20, ge=0, description="kept rationales judged per task (seeded; the paper: 20; 0: no judge)")
    max_new_tokens: int = knob_field("max_new_tokens", 256, description="generation budget of each judgement "
                                     "(analysis + verdict)")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="engine options of a named judge "
                                            "(as --backend-option); recorded, secrets masked")


class StudyTrainSettings(TrainSettings):
    """A study's ``train:`` section: any :class:`raftlab.training.TrainSettings` field (the same fields and
    defaults as ``raftlab train``), plus how to launch each training run."""

    launcher: str | None = Field(None, description="run each training as `<launcher> -m raftlab.cli.main train "
                                                  "--config FILE`, e.g. 'accelerate launch --config_file "
                                                  "src/raftlab/training/configs/fsdp.yaml' (default: in-process)")


class EvalSettings(_Strict):
    """Self-consistency evaluation: ``k`` samples per question at temperature ``temperature``. The sampling knobs
    (``temperature``, ``max_new_tokens``) are :class:`raftlab.backends.sampling_knobs.SamplingKnobs`'s: the same
    bounds, meaning and defaults as ``raftlab eval``'s options."""

    backend: str = Field("hf", description="backend kind for the finetuned models: hf | vllm")
    mode: Literal["sc", "cot", "direct"] = "sc"
    k: int = Field(10, ge=1)
    temperature: float = knob_field("temperature")
    max_new_tokens: int | None = knob_field("max_new_tokens", None, description="generation budget per sample "
                                            "(default: derived from each arm's training targets, see "
                                            "raftlab.training.budget; a smaller explicit value is used but warned "
                                            "about)")
    batch_size: int = Field(8, ge=1, description="questions decoding together (each with its k samples); a local "
                            "backend lets the next questions join as their samples finish")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="engine options of the evaluated models "
                                            "(as --backend-option: vLLM LLM(...), from_pretrained, the OpenAI "
                                            "client); recorded, secrets masked")
    direct_prob: bool = Field(False, description="also score the label-only arms (① and FT) on choice tasks by the "
                                                 "answer tokens' probabilities (one forward pass per question): "
                                                 "confidence = softmax over the options, reported next to the "
                                                 "vote share (needs a backend that scores)")
    both_prompts: bool = Field(False, description="also evaluate every trained arm with the other prompt (direct "
                                                  "vs CoT inference, as NLURC does); reported as arm <arm>@<mode>")


class PromptingConfig(_Strict):
    """The untrained arms of every study (the paper's Fig. 4): the model before finetuning, prompted in context
    with ``shots`` demonstrations from the task's training examples that have a kept teacher rationale, label
    only (arm ``icl_label``, ①) or rationale then label (arm ``icl_rationale``, ②), both with the study's
    self-consistency eval settings. The same demonstrations serve both arms."""

    backend: str | None = Field(None, description="backend spec of the prompted model (default: the student, "
                                                  "'<eval.backend>:<model>'), e.g. openai:gpt-4o-mini@URL")
    shots: int = Field(3, ge=0, le=16, description="in-context demonstrations per prompt (0: zero-shot)")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="engine options of the prompted model (default: eval.backend_options) "
                                            "(as --backend-option: vLLM LLM(...), from_pretrained, the OpenAI "
                                            "client); recorded, secrets masked")


class ReferenceConfig(_Strict):
    """Difficulty metric 1 of the paper: a reference model's zero-shot CoT rationales on test questions (the paper:
    gpt-3.5-turbo, 100 questions x 10 samples); their mean length in words is ``reference_length``."""

    backend: str = Field(..., description="backend spec of the reference model, e.g. openai:gpt-4o-mini@URL")
    questions: int = Field(100, ge=1, description="test questions (the first of the task's test subset)")
    k: int = Field(10, ge=1, description="rationales sampled per question")
    temperature: float = knob_field("temperature", 0.8)
    max_new_tokens: int = knob_field("max_new_tokens", 512, description="generation budget of each rationale")


class ExecutorConfig(_Strict):
    """Where the stages run. ``local`` with ``workers: 1`` (the field's default; the built-in default study asks
    for 2): one after another in plan order, each in a child of the fork server. ``local`` with more workers:
    stages whose dependencies are done start, the longest chains first, up to ``workers`` at a time but no more
    than the host's cores (CPU, each worker pinned to its share) or GPUs (one stage per GPU, ``devices``;
    submitit's local executor); where that leaves one, as with ``workers: 1``.
    ``slurm``: each stage is a SLURM job (submitit), with ``slurm`` as its parameters (e.g. ``{slurm_partition: gpu,
    gpus_per_node: 1, timeout_min: 240}``). The manifest, caching and resume work exactly as in one process."""

    kind: Literal["local", "slurm"] = "local"
    workers: int = Field(1, ge=1, description="stages running at the same time")
    devices: list[int] | None = Field(None, description="local workers: GPUs to pin to, one stage per GPU "
                                                        "(default: every visible CUDA device; none on a CPU host)")
    slurm: dict[str, Any] = Field(default_factory=dict, description="submitit parameters of each SLURM job")
    serial_kinds: list[str] = Field(default_factory=list,
                                    description="stage kinds of which at most one runs at a time (e.g. [train] where "
                                                "two full finetunings would not fit in memory together)")
    isolate: bool = Field(True, description="one worker: run each stage in a child process forked from a server "
                                            "that imported torch once (no imports per stage), so that each "
                                            "stage's memory is its own and goes back to the OS when it ends; "
                                            "false: every stage in this process, one at a time whatever "
                                            "`workers` says (e.g. to debug with pdb)")


class StudyConfig(_Strict):
    """A whole study: tasks x arms, one student model, one teacher, train and eval settings, a seed."""

    name: str = "study"
    model: str = Field("tiny", description="student model spec for raftlab.models.load_model")
    tasks: list[TaskSpec]
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    arms: list[Arm] = Field(default_factory=lambda: ["ft", "raft"])
    train: StudyTrainSettings = Field(default_factory=StudyTrainSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    seed: int = 0
    device: str | None = Field(None, description="torch device for training/eval (default: auto)")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="where the stages run")
    samples_per_task: int = Field(3, ge=0, description="model outputs shown per task in the report")
    mean_of_task: bool = Field(False, description="difficulty metric: accuracy of the untrained student with "
                                                  "mean-of-task prompting (3 demonstrations from 3 other tasks; "
                                                  "needs 4+ tasks)")
    prompting: PromptingConfig = Field(default_factory=PromptingConfig,
                                       description="the untrained arms ① and ② (in-context prompting, no training)")
    protocol: Literal["per_task", "leave_one_task_out"] = Field(
        "per_task", description="per_task: train on each task's own data; leave_one_task_out: train on the other "
        "tasks' data (multi-task) and evaluate on the held-out task (NLURC's unseen-task protocol)")
    reference: ReferenceConfig | None = Field(None, description="difficulty metric 1 (reference rationale length)")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="LLM-as-judge of a sample of each task's "
                                                                        "kept rationales (App. C)")
    info_gain_examples: int = Field(0, ge=0, description="rationales per task scored for information-gain "
                                                         "curves with each arm's model (0: skip)")
    info_gain_method: Literal["sampled", "scored"] = Field(
        "sampled", description="sampled: the paper's (App. A.1: token prefixes, info_gain_samples answers each, "
        "P = share correct); scored: raftlab's cheaper variant (sentence prefixes, teacher-forced P(answer))")
    info_gain_samples: int = Field(100, ge=1, description="answers sampled per prefix (sampled method)")
    info_gain_stride: int = Field(1, ge=1, description="tokens between prefixes (sampled method; the paper: 1)")
    train_sizes: list[int] | None = Field(
        None, description="learning curve: also train and evaluate FT and RAFT on seeded, nested subsets of this "
        "many kept-rationale examples per task (the same questions for both arms), each smaller than the task's "
        "training pool; ΔAcc and ΔECE are reported per size, the full-size arms as the last point (default: off)")

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_names(cls, v: Any) -> Any:
        """Allow plain task names: ``tasks: [synth_arith, coinflip]``."""
        if isinstance(v, list):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, v: list[TaskSpec]) -> list[TaskSpec]:
        names = [t.name for t in v]
        if not names:
            raise ValueError("at least one task is required")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate tasks: {', '.join(dup)}")
        return v

    @field_validator("arms")
    @classmethod
    def _need_ft_and_raft(cls, v: list[str]) -> list[str]:
        if "ft" not in v or "raft" not in v:
            raise ValueError("arms must include 'ft' and 'raft' (the study compares them)")
        if len(set(v)) != len(v):
            raise ValueError("arms must not repeat")
        return v

    @field_validator("train_sizes")
    @classmethod
    def _sizes(cls, v: list[int] | None, info: ValidationInfo) -> list[int] | None:
        """Positive, unique, above the dev split and below every task's training pool (at the pool's size a sized
        arm would be the full-size arm again); ascending; an empty list is off."""
        if not v:
            return None
        if any(n < 1 for n in v):
            raise ValueError(f"must be positive, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat, got {v}")
        dev = getattr(info.data.get("train"), "dev_size", 0) or 0
        if any(n <= dev for n in v):
            raise ValueError(f"{sorted(n for n in v if n <= dev)} leave no training example besides the {dev}-example "
                             "dev split (train.dev_size); use sizes above it")
        tasks, protocol = info.data.get("tasks") or [], info.data.get("protocol", "per_task")
        for spec in tasks:
            pool = training_pool(tasks, protocol, spec.name)
            too_big = sorted(n for n in v if pool is not None and n >= pool)
            if too_big:
                raise ValueError(f"{too_big} not smaller than the {pool} training examples of task {spec.name!r} "
                                 "(the full-size arms are the curve's last point)")
        return sorted(v)

    @model_validator(mode="after")
    def _known_backends(self) -> StudyConfig:
        """Backend specs (teacher, prompting, reference) must name a known backend kind."""
        from raftlab.backends import parse_spec

        specs = [("teacher.backend", self.teacher.backend)] if self.teacher.backend != "oracle" else []
        specs += [("prompting.backend", self.prompting.backend)] if self.prompting.backend else []
        specs += [("reference.backend", self.reference.backend)] if self.reference else []
        if self.judge.backend == "oracle":
            raise ValueError("judge.backend: the oracle writes rationales but cannot judge them; name a model")
        specs += [("judge.backend", self.judge.backend)] if self.judge.backend else []
        for field, spec in specs:
            try:
                parse_spec(spec)
            except ValueError as exc:
                raise ValueError(f"{field}: {exc}") from None
        if self.eval.backend not in ("hf", "vllm"):
            raise ValueError(f"eval.backend must be hf or vllm, not {self.eval.backend!r}")
        return self

    @model_validator(mode="after")
    def _leave_one_out_needs_two_tasks(self) -> StudyConfig:
        if self.protocol == "leave_one_task_out" and len(self.tasks) < 2:
            raise ValueError("protocol leave_one_task_out needs at least 2 tasks")
        return self

    @model_validator(mode="after")
    def _mean_of_task_needs_four_tasks(self) -> StudyConfig:
        if self.mean_of_task and len(self.tasks) < 4:
            raise ValueError("mean_of_task needs at least 4 tasks (3 other tasks give the demonstrations)")
        return self

    def task(self, name: str) -> TaskSpec:
        return next(t for t in self.tasks if t.name == name)

    def judge_backend(self) -> str | None:
        """The judge's backend spec, or None when the study judges nothing: ``judge.backend``, else a real
        teacher's own backend (the oracle's rationales are judged only by a named judge); None when
        ``judge.sample`` is 0."""
        if not self.judge.sample:
            return None
        if self.judge.backend is not None:
            return self.judge.backend
        return None if self.teacher.backend == "oracle" else self.teacher.backend


def training_pool(tasks: list[TaskSpec], protocol: str, task: str) -> int | None:
    """At most how many examples a task's arms train on before the teacher's filter: its own ``train_limit``, or
    leaving one task out the other tasks' together (None: no limit)."""
    limits = [t.train_limit for t in tasks if (t.name == task) == (protocol == "per_task")]
    return None if None in limits else sum(limits)


def check_runnable(cfg: StudyConfig) -> None:
    """Checks that need the registries or the file system, run by ``run_study`` before it creates the run
    directory: every task is registered (the real steps load them by name) and the student model spec resolves
    (without loading it). A :class:`ConfigError` names the field."""
    from raftlab.models.loading import check_model_spec
    from raftlab.tasks import get_task, list_tasks

    try:
        check_model_spec(cfg.model)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"field 'model': {exc}") from None
    unknown = []
    for spec in cfg.tasks:
        try:
            get_task(spec.name)
        except KeyError:
            unknown.append(spec.name)
    if unknown:
        raise ConfigError(f"field 'tasks': unknown task(s) {', '.join(map(repr, unknown))}; known: "
                          f"{', '.join(list_tasks())}")


class ConfigError(ValueError):
    """A study config that cannot be read or validated (message names the file and field)."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """YAML mapping with ``include`` (a path or list of paths relative to the file, or a built-in
    config name such as ``default``/``quick``) merged underneath it."""
    return storage.read_yaml(path, resolve=lambda name, base: BUILTIN.get(name, base / name), error=ConfigError,
                             what="study config")


def load_config(source: str | Path | dict[str, Any] | None = None) -> StudyConfig:
    """A StudyConfig from a YAML file, a built-in name (``default``, ``quick``), a dict, or None (default)."""
    where = "<dict>"
    if source is None:
        source = "default"
    if isinstance(source, dict):
        raw = source
    else:
        path = BUILTIN.get(str(source), Path(source))
        where = str(path)
        raw = read_yaml(path)
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None


def stable_hash(payload: Any) -> str:
    """Short SHA-256 of a JSON-serialisable payload (key order independent)."""
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
