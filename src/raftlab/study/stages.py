"""A study's stages, declared once as data: name, kind, key, dependencies, and the work to do.

:func:`plan` turns a :class:`~raftlab.study.config.StudyConfig` into the ordered list of :class:`Stage`; the
runner (:func:`raftlab.study.run.run_study`) walks that list. The work itself is in :class:`StudySteps`
(:mod:`raftlab.study.work` by default, one module per stage kind; tests swap in fakes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftlab import layout
from raftlab.study.config import (ARM_OBJECTIVE, ARM_PROMPT_MODE, BOTH_PROMPTS_ALWAYS, PROMPT_MODES, ArmEval,
                                  StudyConfig, TaskSpec)
from raftlab.study.inputs import ConfigView, declared_slice, stage_key, stage_view
from raftlab.study.work.outputs import StageOutput, as_record

#: What the manifest records of a stage's work, and what later stages get of it (with ``"_stage_dir"``).
Outputs = dict[str, Any]
#: What a stage's work returns: its typed output (a stand-in's plain dict is recorded as it is).
Work = StageOutput | Outputs
#: The arms a study's ``train_sizes`` trains at each size (the compared pair).
SIZED_ARMS = ("ft", "raft")


@dataclass
class StudySteps:
    """The functions that do each stage's work (swap them in tests or to customise a study).

    Each receives the config and its task as read-only views limited to the fields the stage declares
    (:mod:`raftlab.study.inputs`), what it works on (the outputs the stages it depends on recorded, each with its
    folder as ``"_stage_dir"``: the real steps read them as ``<Output>.of(given)``, see
    :mod:`raftlab.study.work.outputs`) and its own stage folder, and returns its typed output (a
    :class:`~raftlab.study.work.outputs.StageOutput`; a stand-in may return a JSON-able dict), whose paths are
    relative to that folder.
    """

    prepare_data: Callable[..., Work]  # (config, task_spec, out_dir)
    rationales: Callable[..., Work]  # (config, task_spec, data_out, out_dir)
    #: (config, task_spec, arm, rationale_out or a list of them, out_dir)
    train: Callable[..., Work]
    #: (config, task_spec, ArmEval, train_out, data_out, out_dir, rationale_out)
    evaluate: Callable[..., Work]
    analyze: Callable[..., Work]  # (config, run_dir, out_dir, the planned eval/difficulty stage names)
    report: Callable[..., Work]  # (config, run_dir, analysis_out, out_dir, the planned stages it reads)
    #: (config, task_spec, mode "direct"|"cot", data_out, out_dir, rationale_out): the untrained arms ① and ②
    prompt_eval: Callable[..., Work] | None = None
    #: (config, task_spec, {task: rationale_out}, data_out, out_dir); runs when config.mean_of_task is set
    mean_of_task: Callable[..., Work] | None = None
    #: (config, task_spec, {arm: train_out}, rationale_out, out_dir); runs when config.info_gain_examples > 0
    info_gain: Callable[..., Work] | None = None
    #: (config, task_spec, data_out, out_dir); runs when config.reference is set
    reference: Callable[..., Work] | None = None
    #: (config, task_spec, rationale_out, out_dir); runs when the study has a judge (config.judge_backend())
    judge: Callable[..., Work] | None = None
    #: (config, task_spec, size, [rationale_out, ...], out_dir): the examples the arms of one training-set size
    #: share; runs when config.train_sizes is set (the sized arms train and evaluate with ``train``/``evaluate``)
    subset: Callable[..., Work] | None = None
    #: run each stage in a child process when the config's ``executor.isolate`` allows (the real steps do;
    #: fakes in tests that record calls in this process do not)
    isolate: bool = False

    @classmethod
    def real(cls) -> StudySteps:
        from raftlab.study.work import (analysis, data, evaluate, info_gain, judge, mean_of_task, prompting,
                                        rationales, reference, report, subset, train)

        return cls(prepare_data=data.prepare_data, rationales=rationales.rationales, train=train.train,
                   evaluate=evaluate.evaluate, analyze=analysis.analyze, report=report.report,
                   info_gain=info_gain.info_gain, prompt_eval=prompting.prompt_eval,
                   mean_of_task=mean_of_task.mean_of_task, reference=reference.reference, judge=judge.judge,
                   subset=subset.train_subset, isolate=True)


@dataclass(frozen=True)
class Stage:
    """One cached unit of work. ``key`` (see :mod:`raftlab.study.inputs`: the declared config slice ``inputs``,
    the dependencies' keys and the kind's code version) decides whether a finished stage is still valid;
    ``work(deps_outputs, folder)`` gets the outputs of its dependencies by stage name and returns what the
    manifest records of it."""

    name: str
    kind: str
    inputs: dict[str, Any]
    deps: tuple[str, ...]
    key: str
    work: Callable[[dict[str, Outputs], Path], Outputs]
    #: the view of the config the work reads through (records which fields it read)
    view: ConfigView | None = None
    #: the keys of ``deps`` (recorded with the stage, so that a change can be traced to a dependency)
    dep_keys: dict[str, str] = field(default_factory=dict)
    #: rough relative cost (:func:`relative_cost`), used only to order ready stages across several workers
    cost: float = 1.0


def relative_cost(kind: str, cfg: StudyConfig, arm: str | None = None, mode: str | None = None) -> float:
    """A stage's rough cost relative to others of the same study, for ordering only: what trains on or samples
    rationales is the long kind (they are several times the tokens of a label), a programmatic teacher and the
    bookkeeping stages are nearly free."""
    if kind == "train":
        return 3.0 if ARM_OBJECTIVE.get(arm or "", "label") != "label" else 2.0
    if kind in ("eval", "prompting", "mean_of_task", "reference"):
        return 2.0 if mode == "cot" else 1.0
    if kind == "rationales":
        return 0.1 if cfg.teacher.backend == "oracle" else 3.0
    if kind == "info_gain":
        return 3.0
    return 1.0 if kind == "judge" else 0.1


def task_source(spec: TaskSpec) -> dict[str, Any]:
    """What a task's data stage reads besides the config: the task's definition and its local files (fingerprints;
    empty for a name no registry knows, as in tests with fake steps)."""
    from raftlab.study.config import stable_hash
    from raftlab.tasks import get_task
    from raftlab.tasks.loaders import data_fingerprint

    try:
        task = get_task(spec.name)
    except KeyError:
        return {}
    definition = task.model_dump(mode="json", exclude={"description", "notes", "license"})
    return {"task": stable_hash(definition), "files": data_fingerprint(task, spec.data_dir)}


def model_environment() -> dict[str, Any]:
    """What decides the dtype models run in besides the config (``RAFTLAB_DTYPE``, bf16 hardware)."""
    import os

    from raftlab.machine import cpu_has_fast_bf16

    return {"RAFTLAB_DTYPE": os.environ.get("RAFTLAB_DTYPE"), "cpu_bf16": cpu_has_fast_bf16()}


def plan(cfg: StudyConfig, steps: StudySteps, run_dir: Path) -> list[Stage]:
    """Every stage of the study, in an order that respects the dependencies, each with its key."""
    stages: list[Stage] = []
    keys: dict[str, str] = {}
    env = model_environment()

    def add(name: str, kind: str, spec: TaskSpec | None, deps: tuple[str, ...],
            work: Callable[[ConfigView, ConfigView | None, dict[str, Outputs], Path], Work],
            **extra: Any) -> None:
        inputs, dep_keys = declared_slice(kind, cfg, spec), {d: keys[d] for d in deps}
        key = stage_key(kind, inputs, dep_keys, extra)
        view, task = stage_view(cfg, kind, name, spec)
        keys[name] = key
        cost = relative_cost(kind, cfg, extra.get("arm"), extra.get("mode"))
        stages.append(Stage(name, kind, inputs, deps, key,
                            lambda d, out, view=view, task=task: as_record(work(view, task, d, out)), view,
                            dep_keys, cost))

    def add_sources(spec: TaskSpec) -> None:
        data, rats = layout.data(spec.name), layout.rationales(spec.name)
        add(data, "data", spec, (), lambda c, t, d, out: steps.prepare_data(c, t, out), **task_source(spec))
        add(rats, "rationales", spec, (data,), lambda c, t, d, out, data=data: steps.rationales(c, t, d[data], out),
            **({} if cfg.teacher.backend == "oracle" else {"env": env}))  # a local teacher runs in that dtype
        if cfg.judge_backend() is not None and steps.judge is not None:
            add(layout.judge(spec.name), "judge", spec, (rats,),
                lambda c, t, d, out, rats=rats: steps.judge(c, t, d[rats], out), env=env)

    train_sizes = (cfg.train_sizes or []) if steps.subset is not None else []
    if cfg.protocol == "leave_one_task_out":  # every task's rationales before any training
        for spec in cfg.tasks:
            add_sources(spec)
    for spec in cfg.tasks:
        data, rats = layout.data(spec.name), layout.rationales(spec.name)
        if cfg.protocol == "per_task":
            add_sources(spec)
        if steps.prompt_eval is not None:
            for arm, mode in layout.PROMPT_ARMS.items():
                add(layout.prompting(arm, spec.name), "prompting", spec, (data, rats),
                    lambda c, t, d, out, mode=mode, data=data, rats=rats:
                    steps.prompt_eval(c, t, mode, d[data], out, d[rats]), mode=mode, env=env)
        # what each arm trains on: the task's own rationales, or (leave one task out) every other task's
        sources = ((rats,) if cfg.protocol == "per_task" else
                   tuple(layout.rationales(t.name) for t in cfg.tasks if t.name != spec.name))
        for arm in cfg.arms:
            train = layout.train(arm, spec.name)
            add(train, "train", spec, sources,
                lambda c, t, d, out, arm=arm, sources=sources:
                steps.train(c, t, arm, d[sources[0]] if len(sources) == 1 else [d[s] for s in sources], out),
                arm=arm, env=env)
            both = cfg.eval.both_prompts or arm in BOTH_PROMPTS_ALWAYS
            modes = [ARM_PROMPT_MODE[arm]] + ([m for m in PROMPT_MODES if m != ARM_PROMPT_MODE[arm]] if both else [])
            for mode in modes:
                evaluated = ArmEval(arm, mode)
                add(layout.evaluation(str(evaluated), spec.name), "eval", spec, (train, data, rats),
                    lambda c, t, d, out, evaluated=evaluated, train=train, data=data, rats=rats:
                    steps.evaluate(c, t, evaluated, d[train], d[data], out, d[rats]),
                    arm=str(evaluated), mode=mode, env=env)
        for size in train_sizes:  # the learning curve: FT and RAFT on one shared subset per size
            subset = layout.subset(size, spec.name)
            add(subset, "subset", spec, sources, lambda c, t, d, out, size=size, sources=sources:
                steps.subset(c, t, size, [d[s] for s in sources], out), size=size)
            for arm in SIZED_ARMS:
                train = layout.sized(size, layout.train(arm, spec.name))
                add(train, "train", spec, (subset,), lambda c, t, d, out, arm=arm, subset=subset:
                    steps.train(c, t, arm, d[subset], out), arm=arm, env=env, size=size)
                evaluated = ArmEval(arm, ARM_PROMPT_MODE[arm])
                add(layout.sized(size, layout.evaluation(str(evaluated), spec.name)), "eval", spec,
                    (train, data, rats), lambda c, t, d, out, evaluated=evaluated, train=train, data=data, rats=rats:
                    steps.evaluate(c, t, evaluated, d[train], d[data], out, d[rats]),
                    arm=str(evaluated), mode=evaluated.prompt_mode, env=env, size=size)
        if cfg.reference is not None and steps.reference is not None:
            add(layout.reference(spec.name), "reference", spec, (data,),
                lambda c, t, d, out, data=data: steps.reference(c, t, d[data], out), env=env)
        if cfg.info_gain_examples and steps.info_gain is not None:
            trains = {arm: layout.train(arm, spec.name) for arm in cfg.arms}
            add(layout.info_gain(spec.name), "info_gain", spec, (rats, *trains.values()),
                lambda c, t, d, out, trains=trains, rats=rats:
                steps.info_gain(c, t, {arm: d[name] for arm, name in trains.items()}, d[rats], out), env=env)
    if cfg.mean_of_task and steps.mean_of_task is not None:
        all_rats = {spec.name: layout.rationales(spec.name) for spec in cfg.tasks}
        for spec in cfg.tasks:  # after every task's rationales exist (the demonstrations come from other tasks)
            data = layout.data(spec.name)
            add(layout.mean_of_task(spec.name), "mean_of_task", spec, (data, *all_rats.values()),
                lambda c, t, d, out, data=data:
                steps.mean_of_task(c, t, {name: d[stage] for name, stage in all_rats.items()}, d[data], out), env=env)
    evals = tuple(s.name for s in stages if s.name.split("/")[0] in ("eval", "difficulty")
                  or (s.kind == "eval" and layout.unsized(s.name)[0] is not None))
    add(layout.ANALYSIS, "analysis", None, evals,
        lambda c, t, d, out: steps.analyze(c, run_dir, out, frozenset(evals)))
    info = tuple(s.name for s in stages if s.name.startswith("info_gain/"))
    judges = tuple(s.name for s in stages if s.kind == "judge")
    # the report reads the evals and the rationale stages too: the analysis depends on them (through the evals)
    read = frozenset((*evals, *info, *judges, *(s.name for s in stages if s.kind == "rationales")))
    add(layout.REPORT, "report", None, (layout.ANALYSIS, *info, *judges),
        lambda c, t, d, out: steps.report(c, run_dir, d[layout.ANALYSIS], out, read))
    return stages
