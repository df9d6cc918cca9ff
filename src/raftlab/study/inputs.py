"""What each study stage reads of the config, and the stage's identity (its key) derived from exactly that.

Every stage kind declares the config fields it reads (:data:`DECLARED`, a function of the config: a field that
only matters in some settings, such as ``info_gain_samples`` for the sampled method, is declared only there).
The stage's work receives the config and its task through a :class:`ConfigView` that refuses every other field
(:class:`UndeclaredConfigRead`), so a stage cannot depend on a field that is not in its key. The key
(:func:`stage_key`) is the hash of the declared slice, the keys of the stages it depends on, and the stage
kind's code version (:data:`CODE_VERSION`: raise it when a kind's work gives other outputs for the same inputs).

Field paths name the config as a tree: ``seed``, ``eval.k``, ``teacher.backend_options``, and a task's fields
as ``tasks.<task name>.<field>`` (e.g. ``tasks.synth_topic.train_limit``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from raftlab.study.config import StudyConfig, TaskSpec, stable_hash
from raftlab.training.config import LATER_FIELDS

#: Code version of each stage kind (part of its key).
CODE_VERSION: dict[str, int] = {"data": 1, "rationales": 2, "judge": 1, "prompting": 1, "train": 1, "eval": 1,
                                "reference": 1, "info_gain": 1, "mean_of_task": 1, "analysis": 2, "report": 2,
                                "subset": 1}

_SELF_CONSISTENCY = ("eval.mode", "eval.k", "eval.temperature", "eval.batch_size", "eval.backend",
                     "eval.max_new_tokens", "eval.direct_prob", "seed", "device", "model")


def _task(spec: TaskSpec, *fields: str) -> list[str]:
    return [f"tasks.{spec.name}.{f}" for f in fields]


def _data(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    return [*_task(spec, "name", "train_limit", "test_limit", "data_dir"), "seed"]


def _rationales(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    fields = ["backend", "style", "length", "max_retries", "temperature", "max_new_tokens", "kept_target",
              "traversals"]
    if cfg.teacher.backend != "oracle":  # the oracle is no engine: it has no options and nothing to batch
        fields += ["backend_options", "batch_size", "samples_per_prompt"]
    return [*_task(spec, "name"), *(f"teacher.{f}" for f in fields), "seed"]


def _judge(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    own = ["judge.backend_options"] if cfg.judge.backend is not None else ["teacher.backend",
                                                                           "teacher.backend_options"]
    return [*_task(spec, "name"), "judge.backend", "judge.sample", "judge.max_new_tokens", *own, "seed"]


def _prompting(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    own_backend = cfg.prompting.backend is not None
    return [*_task(spec, "name"), *_SELF_CONSISTENCY, "prompting.backend", "prompting.shots",
            "prompting.backend_options" if own_backend else "eval.backend_options"]


def _train(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    return [*_task(spec, "name"), "model", "seed", "protocol",
            *(f"train.{f}" for f in type(cfg.train).model_fields)]


def _subset(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    return [*_task(spec, "name"), "seed"]  # the size is the plan's (part of the key), not read here


def _evaluation(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    return [*_task(spec, "name"), *_SELF_CONSISTENCY, "eval.backend_options"]


def _reference(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    return [*_task(spec, "name"), "seed", "eval.batch_size",
            *(f"reference.{f}" for f in type(cfg.reference).model_fields)]


def _info_gain(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    sampled = ["info_gain_samples", "info_gain_stride", "eval.temperature", "seed"]
    return [*_task(spec, "name"), "info_gain_examples", "info_gain_method",
            *(sampled if cfg.info_gain_method == "sampled" else [])]


def _mean_of_task(cfg: StudyConfig, spec: TaskSpec) -> list[str]:
    return [*_task(spec, "name"), *_SELF_CONSISTENCY, "eval.backend_options"]


def _analysis(cfg: StudyConfig, spec: TaskSpec | None) -> list[str]:
    return ["arms", "model", "mean_of_task", "seed", *(f"tasks.{t.name}.name" for t in cfg.tasks),
            *(f"tasks.{t.name}.role" for t in cfg.tasks)]


def _report(cfg: StudyConfig, spec: TaskSpec | None) -> list[str]:
    return ["samples_per_task", "name", "model", "seed", "teacher.backend", "train.lora", "eval.mode", "eval.k",
            "eval.temperature"]


#: The config fields each stage kind reads: ``kind -> (config, the stage's task or None) -> paths``.
DECLARED: dict[str, Callable[[StudyConfig, Any], list[str]]] = {
    "data": _data, "rationales": _rationales, "judge": _judge, "prompting": _prompting, "train": _train,
    "eval": _evaluation, "reference": _reference, "info_gain": _info_gain, "mean_of_task": _mean_of_task,
    "analysis": _analysis, "report": _report, "subset": _subset}


class UndeclaredConfigRead(RuntimeError):
    """A stage's work read a config field that is not part of its key (a bug in raftlab, never in a config)."""


def leaf_fields(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Every leaf field of a config as ``{path: value}`` (sub-models are walked; a list of tasks by task name;
    other lists, dicts and ``None`` are leaves)."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        path, value = f"{prefix}{name}", getattr(model, name)
        if isinstance(value, BaseModel):
            out.update(leaf_fields(value, path + "."))
        elif isinstance(value, list) and value and all(isinstance(v, TaskSpec) for v in value):
            for v in value:
                out.update(leaf_fields(v, f"{path}.{v.name}."))
        else:
            out[path] = value
    return out


def read_path(cfg: StudyConfig, path: str) -> Any:
    """The value at a field path (JSON-able: sub-models dumped)."""
    value: Any = cfg
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if parts[i] == "tasks" and isinstance(value, StudyConfig):
            value, i = next(t for t in value.tasks if t.name == parts[i + 1]), i + 2
            continue
        value, i = getattr(value, parts[i]), i + 1
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


#: Fields added after runs existed whose default is exactly the behaviour from before they existed: at that
#: default they are left out of the declared slice, so adding them keeps every earlier stage key (and an earlier
#: run's stages reusable); any other value enters the slice and changes the key. ``*`` matches a task name.
NEUTRAL_DEFAULTS: dict[str, Any] = {"teacher.kept_target": None, "teacher.traversals": 1, "tasks.*.role": "fit",
                                    **{f"train.{name}": value for name, value in LATER_FIELDS.items()}}


def at_neutral_default(path: str, value: Any) -> bool:
    parts = path.split(".")
    if parts[0] == "tasks" and len(parts) == 3:
        path = f"tasks.*.{parts[2]}"
    return path in NEUTRAL_DEFAULTS and value == NEUTRAL_DEFAULTS[path]


def declared_slice(kind: str, cfg: StudyConfig, spec: TaskSpec | None = None) -> dict[str, Any]:
    """``{path: value}`` of the fields a stage of ``kind`` reads (its typed slice of the config), as keyed and
    recorded: a backend's endpoint left out (the same model served elsewhere gives the same results, as the
    rationale store also holds), secret-looking engine options masked, and fields at a neutral default
    (:data:`NEUTRAL_DEFAULTS`) left out."""
    values = {path: _keyed(path, read_path(cfg, path)) for path in sorted(set(DECLARED[kind](cfg, spec)))}
    return {path: value for path, value in values.items() if not at_neutral_default(path, value)}


def _keyed(path: str, value: Any) -> Any:
    from raftlab.backends import public_options, without_endpoint

    if path.endswith(".backend") and isinstance(value, str) and value.startswith("openai:"):
        return without_endpoint(value)
    if path.endswith(".backend_options") and isinstance(value, dict):
        return public_options(value)
    return value


def stage_key(kind: str, inputs: dict[str, Any], dep_keys: dict[str, str], extra: dict[str, Any]) -> str:
    """A stage's identity: its declared slice, what the plan says it works on (``extra``: arm, prompt mode),
    its dependencies' keys and its kind's code version."""
    return stable_hash({"kind": kind, "version": CODE_VERSION[kind], "inputs": inputs, "extra": extra,
                        "deps": dep_keys})


class ConfigView:
    """Read-only view of a config (or a part of it) that allows only the declared paths and records what is read.

    Sub-models come back as views; a list of tasks as views named by task; ``model_dump`` dumps only allowed
    fields. Reading any other field raises :class:`UndeclaredConfigRead`."""

    __slots__ = ("_obj", "_prefix", "_allowed", "_stage", "_reads")

    def __init__(self, obj: BaseModel, allowed: frozenset[str], stage: str, prefix: str = "",
                 reads: set[str] | None = None) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_stage", stage)
        object.__setattr__(self, "_reads", set() if reads is None else reads)

    @property
    def reads(self) -> set[str]:
        """The leaf paths read so far (shared by every view of one stage)."""
        return self._reads

    def _permits(self, path: str) -> bool:
        return any(a == path or a.startswith(path + ".") or path.startswith(a + ".") for a in self._allowed)

    def _check(self, path: str) -> None:
        if not self._permits(path):
            raise UndeclaredConfigRead(
                f"stage '{self._stage}' read config field '{path}', which is not among its declared inputs "
                f"(raftlab.study.inputs.DECLARED): declare it there so that a change of it reruns the stage")

    def _sub(self, obj: BaseModel, path: str) -> ConfigView:
        return ConfigView(obj, self._allowed, self._stage, path + ".", self._reads)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in type(self._obj).model_fields:
            raise AttributeError(f"{type(self._obj).__name__} has no field {name!r} (a stage reads fields only)")
        path = self._prefix + name
        self._check(path)
        value = getattr(self._obj, name)
        if isinstance(value, BaseModel):
            return self._sub(value, path)
        if isinstance(value, list) and value and all(isinstance(v, TaskSpec) for v in value):
            return [self._sub(v, f"{path}.{v.name}") for v in value if self._permits(f"{path}.{v.name}")]
        self._reads.add(path)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a stage's config is read-only")

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """The underlying model's dump (every field in it counts as read, so each must be declared)."""
        dumped = self._obj.model_dump(**kwargs)
        for name in dumped:
            path = self._prefix + name
            self._check(path)
            self._reads.add(path)
        return dumped

    def __reduce__(self) -> tuple[Any, ...]:  # a view travels to a worker process with its stage's work
        return (ConfigView, (self._obj, self._allowed, self._stage, self._prefix))

    def __repr__(self) -> str:
        return f"ConfigView({self._stage!r}, {self._prefix or type(self._obj).__name__})"


def stage_view(cfg: StudyConfig, kind: str, stage: str, spec: TaskSpec | None = None
               ) -> tuple[ConfigView, ConfigView | None]:
    """The views a stage's work gets: of the whole config, and of its own task (both limited to the declared
    paths of ``kind``, recording into one set)."""
    allowed = frozenset(DECLARED[kind](cfg, spec))
    view = ConfigView(cfg, allowed, stage)
    task = view._sub(spec, f"tasks.{spec.name}") if spec is not None else None
    return view, task
