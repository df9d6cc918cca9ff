"""The real work of each study stage, built on the other raftlab modules (folders: :mod:`raftlab.layout`)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from raftlab import layout
from raftlab.layout import stage_path
from raftlab.corrupt import read_json
from raftlab.schema import Example
from raftlab.storage import read_jsonl, write_json, write_jsonl
from raftlab.study.config import ARM_OBJECTIVE, StudyConfig, TaskSpec, eval_arm


def write_examples(examples: list[Example], path: Path) -> None:
    write_jsonl(examples, path)


def read_examples(path: Path) -> list[Example]:
    return [Example.model_validate(row) for row in read_jsonl(path)]


def prepare_data(cfg: StudyConfig, spec: TaskSpec, out: Path) -> dict[str, Any]:
    """Seeded train/test subsets of the task."""
    from raftlab.tasks import get_task

    task = get_task(spec.name)
    train = task.load("train", data_dir=spec.data_dir, limit=spec.train_limit, seed=cfg.seed)
    test = task.load("test", data_dir=spec.data_dir, limit=spec.test_limit, seed=cfg.seed)
    write_examples(train, out / "train.jsonl")
    write_examples(test, out / "test.jsonl")
    return {"train": "train.jsonl", "test": "test.jsonl", "n_train": len(train), "n_test": len(test)}


def teacher_backend(cfg: StudyConfig, task: Any, examples: list[Example]) -> Any:
    if cfg.teacher.backend == "oracle":
        from raftlab.rationales.oracle import OracleTeacher

        return OracleTeacher(task, examples)
    from raftlab.rationales import teacher_backend as build

    t = cfg.teacher
    return build(t.backend, t.backend_options, t.batch_size, _samples_per_prompt(cfg))


def _samples_per_prompt(cfg: StudyConfig) -> int:
    from raftlab.rationales import default_samples_per_prompt

    return cfg.teacher.samples_per_prompt or default_samples_per_prompt(cfg.teacher.backend)


def rationales(cfg: StudyConfig, spec: TaskSpec, data_out: dict[str, Any], out: Path) -> dict[str, Any]:
    """Teacher rationales for the training examples, gold-filtered with retries (resumable store)."""
    from raftlab.rationales import export_jsonl, generate_rationales
    from raftlab.tasks import get_task

    task = get_task(spec.name)
    examples = read_examples(stage_path(data_out, "train"))
    store = out / layout.RATIONALE_STORE
    t = cfg.teacher
    in_flight = ({"concurrency": t.batch_size, "samples_per_prompt": _samples_per_prompt(cfg)}
                 if t.backend != "oracle" else {})
    stats = generate_rationales(teacher_backend(cfg, task, examples), task, examples, store,
                                n=t.kept_target or len(examples), traversals=t.traversals,
                                max_retries=t.max_retries, style=t.style, length=t.length,
                                temperature=t.temperature, max_new_tokens=t.max_new_tokens, seed=cfg.seed,
                                **in_flight)
    kept = export_jsonl(store, out / layout.RATIONALES_FILE)
    if stats.get("pending"):
        raise RuntimeError(f"teacher {t.backend!r}: {stats['pending']} examples of {spec.name!r} are pending because "
                           f"their requests kept failing (last error: {stats.get('last_request_error')})")
    if not kept:
        raise RuntimeError(f"teacher {t.backend!r} kept no rationale for task {spec.name!r} "
                           f"(see {store}); the FT/RAFT comparison needs at least one")
    return {"rationales": layout.RATIONALES_FILE, "kept": kept, "stats": _jsonable(stats)}


def train(cfg: StudyConfig, spec: TaskSpec, arm: str, rat_out: dict[str, Any] | list[dict[str, Any]],
          out: Path) -> dict[str, Any]:
    """Finetune the student with the arm's objective on the examples that have a kept rationale
    (FT sees the same questions with the label only; ``blank`` swaps rationales for think tokens). ``rat_out``
    is the task's rationale stage, or a list of them (leave-one-task-out: the other tasks, multi-task)."""
    from raftlab.training import TrainConfig
    from raftlab.training import train as run_train

    sources = rat_out if isinstance(rat_out, list) else [rat_out]
    data = [str(stage_path(o, "rationales")) for o in sources]
    config = TrainConfig(**cfg.train.model_dump(exclude={"launcher"}), model=cfg.model,
                         data=data[0] if len(data) == 1 else data, objective=ARM_OBJECTIVE[arm],
                         out=str(out / "model"), task=spec.name if cfg.protocol == "per_task" else None,
                         seed=cfg.seed,
                         resume=True)  # continue from the newest checkpoint after an interrupt
    if cfg.train.launcher:
        check_launch(cfg.train.launcher, config)
        launch_training(cfg.train.launcher, config.to_file(out / "train_config.yaml"))
        model_dir = Path(config.out)
    else:
        model_dir = Path(run_train(config))
    return {"model": os.path.relpath(model_dir, out)}


def check_launch(launcher: str, config: Any) -> None:
    """Before launching: the launcher's accelerate config (``--config_file``) fits this training's batch
    arithmetic (world size, gradient accumulation, DeepSpeed's own setting); see ``check_accelerate_config``."""
    import shlex

    from raftlab.training.trainer import check_accelerate_config

    args = shlex.split(launcher)
    for i, arg in enumerate(args):
        path = args[i + 1] if arg == "--config_file" and i + 1 < len(args) else (
            arg.split("=", 1)[1] if arg.startswith("--config_file=") else None)
        if path:
            check_accelerate_config(path, config)


def launch_training(launcher: str, config_file: Path) -> None:
    """Run ``<launcher> -m raftlab.cli.main train --config FILE`` (e.g. ``accelerate launch --config_file
    fsdp.yaml``)."""
    import shlex
    import subprocess

    cmd = [*shlex.split(launcher), "-m", "raftlab.cli.main", "train", "--config", str(config_file)]
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"training command failed with exit code {proc.returncode}: {shlex.join(cmd)}")


def arm_budget(cfg: StudyConfig, task: Any, rat_out: dict[str, Any], objective: str, prompt_mode: str,
               out: Path) -> int:
    """The eval's ``max_new_tokens``: ``eval.max_new_tokens`` if set, else what the arm's training targets need
    (:func:`raftlab.training.budget.generation_budget` over the kept rationales, student tokenizer); both, and
    the need, are saved in ``budget.json`` for the artifact checks."""
    from raftlab.models import load_tokenizer
    from raftlab.training.budget import choose_budget, context_length, generation_budget

    examples = [e for e in read_examples(stage_path(rat_out, "rationales")) if e.rationale]
    tok = load_tokenizer(cfg.model)
    budget = generation_budget(examples, task, tok, objective, prompt_mode, context_length(tok))
    chosen = choose_budget(cfg.eval.max_new_tokens, budget, f"{task.name} ({objective}, {prompt_mode} prompt)")
    budget.save(out / "budget.json", chosen, cfg.eval.max_new_tokens)
    return chosen


def _self_consistency(cfg: StudyConfig, backend_spec: str, task: Any, data_out: dict[str, Any], prompt_mode: str,
                      out: Path, max_new_tokens: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The study's eval settings applied to one model on the test subset (records resume after a crash)."""
    from raftlab.backends import get_backend, parse_spec
    from raftlab.inference import evaluate as run_eval

    e, device = cfg.eval, cfg.device
    kwargs: dict[str, Any] = {}
    if parse_spec(backend_spec)[0] == "hf":  # a batch of questions, each with its samples, per forward
        kwargs = {"batch_size": e.batch_size, **({"device": device} if device else {})}
    options = cfg.eval.backend_options if options is None else options
    backend, questions = get_backend(backend_spec, options, **kwargs), read_examples(stage_path(data_out, "test"))
    metrics = run_eval(backend, task, questions, mode=e.mode, k=e.k, temperature=e.temperature,
                       max_new_tokens=max_new_tokens, seed=cfg.seed, batch_size=e.batch_size,
                       prompt_mode=prompt_mode, out_dir=out, progress=True)
    if e.direct_prob and prompt_mode == "direct" and getattr(task, "answer_type", None) == "choice":
        # the label-only arms' token-probability confidence, beside the vote share (analysis: TaskRow.token_prob)
        metrics["direct_prob"] = run_eval(backend, task, questions, mode="direct_prob", seed=cfg.seed,
                                          batch_size=e.batch_size, out_dir=out / layout.DIRECT_PROB, progress=True)
    return metrics


def evaluate(cfg: StudyConfig, spec: TaskSpec, arm: str, train_out: dict[str, Any], data_out: dict[str, Any],
             out: Path, rat_out: dict[str, Any]) -> dict[str, Any]:
    """Self-consistency evaluation of the arm's model, with the prompt it was trained on and a generation budget
    that fits its training targets."""
    from raftlab.tasks import get_task

    from raftlab.training.features import PROMPT_MODES as TRAINED_MODES

    task = get_task(spec.name)
    base, mode = eval_arm(arm)
    objective = ARM_OBJECTIVE[base]
    if mode not in TRAINED_MODES[objective]:  # cross-prompt eval: budget of what that prompt's targets look like
        objective = "raft" if mode == "cot" else "label"
    budget = arm_budget(cfg, task, rat_out, objective, mode, out)
    metrics = _self_consistency(cfg, f"{cfg.eval.backend}:{stage_path(train_out, 'model')}", task,
                                data_out, mode, out, budget)
    return {"metrics": _jsonable(metrics)}


def info_gain(cfg: StudyConfig, spec: TaskSpec, train_outs: dict[str, dict[str, Any]], rat_out: dict[str, Any],
              out: Path) -> dict[str, Any]:
    """Mean P(gold answer) along kept teacher rationales under each arm's model: ``sampled`` (the paper's
    Appendix A.1: token prefixes, ``info_gain_samples`` answers each) or ``scored`` (raftlab's sentence-prefix,
    teacher-forced variant)."""
    from raftlab.analysis import average_curves, example_information_gain
    from raftlab.analysis.info_gain import sampled_answer_probabilities
    from raftlab.backends import get_backend
    from raftlab.tasks import get_task

    task = get_task(spec.name)
    examples = [e for e in read_examples(stage_path(rat_out, "rationales")) if e.rationale]
    examples = examples[: cfg.info_gain_examples]
    curves: dict[str, list[float]] = {}
    for arm, train_out in train_outs.items():
        backend = get_backend(f"hf:{stage_path(train_out, 'model')}")
        if cfg.info_gain_method == "sampled":
            probs = [sampled_answer_probabilities(backend, task, e, n=cfg.info_gain_samples,
                                                  stride=cfg.info_gain_stride, temperature=cfg.eval.temperature,
                                                  seed=cfg.seed) for e in examples]
        else:
            probs = [example_information_gain(backend, task, e).prob for e in examples]
        if probs:
            curves[arm] = average_curves(probs).tolist()
    write_json(out / "curves.json", {"task": spec.name, "n": len(examples), "method": cfg.info_gain_method,
                                     "step": "tokens" if cfg.info_gain_method == "sampled" else "sentences",
                                     "curves": curves})
    return {"curves": "curves.json", "n": len(examples)}


class MeanOfTaskPrompting:
    """A task whose evaluation prompt is the mean-of-task in-context prompt (everything else delegated)."""

    def __init__(self, task: Any, examples_by_task: dict[str, list[Example]], seed: int) -> None:
        self._task, self._examples_by_task, self._seed = task, examples_by_task, seed

    def prompt(self, example: Example, mode: str = "cot") -> str:
        from raftlab.analysis import mean_of_task_prompt

        return mean_of_task_prompt(self._task.name, self._examples_by_task, k=3, seed=self._seed,
                                   example=example, mode=mode)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def mean_of_task(cfg: StudyConfig, spec: TaskSpec, rat_outs: dict[str, dict[str, Any]], data_out: dict[str, Any],
                 out: Path) -> dict[str, Any]:
    """Self-consistency accuracy of the untrained student with mean-of-task prompting (a difficulty metric)."""
    from raftlab.tasks import get_task

    by_task = {name: [e for e in read_examples(stage_path(o, "rationales")) if e.rationale]
               for name, o in rat_outs.items()}
    task = MeanOfTaskPrompting(get_task(spec.name), by_task, cfg.seed)
    budget = arm_budget(cfg, task, rat_outs[spec.name], "raft", "cot", out)
    metrics = _self_consistency(cfg, f"{cfg.eval.backend}:{cfg.model}", task, data_out, "cot", out, budget)
    return {"accuracy": float(metrics["accuracy"]), "metrics": _jsonable(metrics)}


def rationale_lengths(cfg: StudyConfig, run_dir: Path) -> dict[str, dict[str, float]]:
    """``{task: {"teacher_rationale_length": ...}}``: mean kept-rationale length in student tokens (raftlab's
    variant of the paper's length metrics, which measure rationales a model *generates* on test questions)."""
    from raftlab.analysis import rationale_length_by_task
    from raftlab.models import load_tokenizer

    by_task = {}
    for spec in cfg.tasks:
        path = run_dir / layout.rationales(spec.name) / layout.RATIONALES_FILE
        if path.is_file():
            by_task[spec.name] = [e.rationale for e in read_examples(path)]
    return rationale_length_by_task({t: r for t, r in by_task.items() if any(r)}, load_tokenizer(cfg.model))


def generated_lengths(folder: Path) -> float | None:
    """Mean generated-rationale length (words) of the samples in an eval folder's records (None: no records)."""
    from raftlab.analysis import generated_rationale_length
    from raftlab.analysis.records import read_records

    try:
        samples = [s for r in read_records(folder) for s in r.get("samples") or []]
    except (OSError, ValueError):
        return None
    return generated_rationale_length(samples) if samples else None


def prompt_eval(cfg: StudyConfig, spec: TaskSpec, mode: str, data_out: dict[str, Any], out: Path,
                rat_out: dict[str, Any]) -> dict[str, Any]:
    """The untrained arms ① (``mode="direct"``: label-only demonstrations) and ② (``"cot"``: rationale
    demonstrations): self-consistency eval of the model before finetuning, prompted in context with
    ``prompting.shots`` training examples that have a kept teacher rationale (the same ones in both arms)."""
    from raftlab.tasks import get_task

    task = get_task(spec.name)  # budget: the teacher's kept rationales (cot) or labels (direct), student tokenizer
    budget = arm_budget(cfg, task, rat_out, "raft" if mode == "cot" else "label", mode, out)
    pool = [e for e in read_examples(stage_path(rat_out, "rationales")) if e.rationale]
    demos = random.Random(f"{cfg.seed}:{spec.name}:icl").sample(pool, min(cfg.prompting.shots, len(pool)))
    student = f"{cfg.eval.backend}:{cfg.model}"
    backend = cfg.prompting.backend or student
    options = cfg.prompting.backend_options if cfg.prompting.backend else None  # None: the eval's options
    metrics = _self_consistency(cfg, backend, InContextPrompting(task, demos), data_out, mode, out, budget, options)
    return {"metrics": _jsonable(metrics), "shots": len(demos), "demonstrations": [d.id for d in demos]}


class InContextPrompting:
    """A task whose evaluation prompt starts with in-context demonstrations (everything else delegated)."""

    def __init__(self, task: Any, demonstrations: list[Example]) -> None:
        self._task, self._demos = task, demonstrations

    def prompt(self, example: Example, mode: str = "cot") -> str:
        return self._task.few_shot_prompt(self._demos, example, mode)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def reference(cfg: StudyConfig, spec: TaskSpec, data_out: dict[str, Any], out: Path) -> dict[str, Any]:
    """Paper difficulty metric 1: ``reference.k`` zero-shot CoT samples of the reference model on the first
    ``reference.questions`` test questions (their mean length is computed by the analysis)."""
    from raftlab.backends import get_backend
    from raftlab.inference import evaluate as run_eval
    from raftlab.tasks import get_task

    r = cfg.reference
    assert r is not None
    questions = read_examples(stage_path(data_out, "test"))[: r.questions]
    metrics = run_eval(get_backend(r.backend), get_task(spec.name), questions, mode="sc", k=r.k,
                       temperature=r.temperature, max_new_tokens=r.max_new_tokens, seed=cfg.seed,
                       batch_size=cfg.eval.batch_size, prompt_mode="cot", out_dir=out, progress=True)
    return {"n": len(questions), "accuracy": float(metrics["accuracy"])}


def analyze(cfg: StudyConfig, run_dir: Path, out: Path, stages: frozenset[str]) -> dict[str, Any]:
    """ΔAcc/ΔECE with bootstrap CIs per task, the OLS fit, and difficulty fits (raftlab.analysis);
    the untrained arms ① and ② are analysed with the others (the four-arm contrasts of Fig. 4). Only the folders
    of ``stages`` (this study's planned stages) are read: a folder an earlier config left behind is not. The
    learning curve (``train_sizes``) comes from the sized eval stages among them."""
    from raftlab.analysis import analyze_study, discover_sizes

    arms = [*layout.PROMPT_ARMS, *cfg.arms]
    runs = {spec.name: {arm: run_dir / layout.evaluation(arm, spec.name) for arm in arms
                        if layout.evaluation(arm, spec.name) in stages} for spec in cfg.tasks}
    difficulty = rationale_lengths(cfg, run_dir)
    for spec in cfg.tasks:
        folder = run_dir / layout.mean_of_task(spec.name)
        if cfg.mean_of_task and layout.mean_of_task(spec.name) in stages:
            row = difficulty.setdefault(spec.name, {})
            metrics = read_json(folder / "metrics.json", f"delete {folder} and rerun the study to recompute it")
            row["mean_of_task_accuracy"] = float(metrics["accuracy"])
            length = generated_lengths(folder)  # paper metric 2: what the untrained model writes (Eq. 8)
            if length is not None:
                row["length"] = length
        reference = (generated_lengths(run_dir / layout.reference(spec.name))  # paper metric 1
                     if layout.reference(spec.name) in stages else None)
        if reference is not None:
            difficulty.setdefault(spec.name, {})["reference_length"] = reference
    result = analyze_study(runs, difficulty=difficulty, seed=cfg.seed, sizes=discover_sizes(run_dir, stages),
                           validation=[spec.name for spec in cfg.tasks if spec.role == "validation"])
    result.save(str(out / "analysis.json"))
    outputs = {"analysis": "analysis.json"}
    return outputs


def report(cfg: StudyConfig, run_dir: Path, analysis_out: dict[str, Any], out: Path,
           stages: frozenset[str]) -> dict[str, Any]:
    """The HTML report of this study's stages (``stages``), headed by its settings."""
    from raftlab.report import render_report
    from raftlab.report.build import settings_meta

    settings = {"name": cfg.name, "model": cfg.model, "seed": cfg.seed, "teacher": {"backend": cfg.teacher.backend},
                "train": {"lora": cfg.train.lora},
                "eval": {"mode": cfg.eval.mode, "k": cfg.eval.k, "temperature": cfg.eval.temperature}}
    page = render_report(run_dir, out, samples_per_task=cfg.samples_per_task, meta=settings_meta(settings),
                         stages=stages)
    return {"html": page.name}


def _jsonable(obj: Any) -> Any:
    """Pydantic models / dataclasses / plain values -> JSON-ready data."""
    import dataclasses

    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json.loads(json.dumps(dataclasses.asdict(obj), default=str))
    return json.loads(json.dumps(obj, default=str))
