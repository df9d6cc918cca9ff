"""What a study will cost before it runs: teacher requests, tokens and price, student GPU-hours per stage, disk.

Offline and in seconds, for ``raftlab study CONFIG --plan``. The arithmetic (:func:`estimate`) is pure: it takes
the planned stages, the measured sizes of each task (:class:`TaskSize`) and a throughput row, and returns the
numbers with every assumption it made spelled out (``assumptions``), because an estimate is only as good as
those (the teacher's and judge's share: :mod:`raftlab.study.teacher_cost`). :func:`measure_tasks` and
:func:`student_token_counter` (:mod:`raftlab.study.student_size`) do the reading: the tasks' local data (the same
seeded subsets the data stage takes) and the student's tokenizer when it is already on this machine (else words
x 1.3). GPU throughput comes from ``throughput.yaml`` next to this module, one row per GPU kind, each marked
measured (with its source) or estimated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftlab.layout import unsized
from raftlab.study.config import ARM_OBJECTIVE, ArmEval, StudyConfig
from raftlab.study.student_size import (  # noqa: F401  (re-exported: the estimate's reading)
    TOKENS_PER_WORD, TokenCounter, model_params, params_from_config, params_from_name, student_token_counter,
)
from raftlab.study.teacher_cost import (  # noqa: F401  (re-exported: the teacher's arithmetic)
    TeacherPlan, expected_attempts, judge_estimate, kept_share, request_rounds, teacher_estimate, teacher_plan,
)

THROUGHPUT_FILE = Path(__file__).with_name("throughput.yaml")
#: Share of teacher attempts that reach the gold answer (each attempt independent); ``--kept-rate``.
DEFAULT_KEPT_RATE = 0.7
#: Tokens of a teacher rationale and of a student's chain of thought; ``--rationale-tokens``.
DEFAULT_RATIONALE_TOKENS = 120
#: Tokens of the App. C judge's instructions (its prompt besides the question and the rationale).
JUDGE_PROMPT_TOKENS = 150
#: Tokens of the answer sentence ("The answer is X.").
LABEL_TOKENS = 10
#: Prompt tokens and split sizes assumed for a task whose data is not on this machine.
FALLBACK_PROMPT_TOKENS = 150
FALLBACK_SPLIT = 1000
#: Prompts tokenized per task and split (an evenly spaced sample; the mean stands for all).
MEASURE_AT_MOST = 256
#: Bytes per parameter: kept weights (bf16) and a checkpoint (fp32 weights + Adam's two moments).
WEIGHT_BYTES, CHECKPOINT_BYTES = 2, 12
#: Checkpoints kept per training run (``save_total_limit`` in raftlab.training.trainer).
CHECKPOINTS_KEPT = 2
#: Share of the parameters a LoRA adapter holds (for its size on disk).
LORA_SHARE = 0.005
#: Bytes per generated token in the stores and records (text, JSON and SQLite overhead).
RECORD_BYTES_PER_TOKEN = 8



@dataclass(frozen=True)
class TaskSize:
    """One task's sizes as the study will see them: examples given to the teacher, test questions, and the mean
    tokens of a teacher prompt, of a student (evaluation) prompt and of a question alone (what the judge reads;
    None: the evaluation prompt's). ``measured``: from the task's data (else the fallbacks above)."""

    name: str
    train_examples: int
    test_questions: int
    teacher_prompt_tokens: float
    eval_prompt_tokens: float
    measured: bool = True
    question_tokens: float | None = None


# ---------------------------------------------------------------------------------------------- pure arithmetic


def load_throughput(path: str | Path | None = None) -> dict[str, Any]:
    """The throughput table (``throughput.yaml``)."""
    import yaml

    with open(path or THROUGHPUT_FILE) as fh:
        return yaml.safe_load(fh)


def gpu_row(table: dict[str, Any], kind: str) -> dict[str, Any]:
    """The row of GPU ``kind`` (case-insensitive); a ValueError names the known kinds."""
    gpus = table["gpus"]
    row = gpus.get(kind.lower())
    if row is None:
        raise ValueError(f"unknown GPU kind {kind!r} for the estimate; known: {', '.join(gpus)} "
                         f"(add a row to {THROUGHPUT_FILE})")
    return {"kind": kind.lower(), **row}


def _parts(stage: str) -> tuple[str | None, str | None]:
    """``(arm, task)`` of a stage name (``train/raft/gsm8k`` and ``sizes/8/train/raft/gsm8k`` -> raft, gsm8k;
    ``analysis`` -> None, None)."""
    parts = unsized(stage)[1].split("/")
    return (parts[1] if len(parts) == 3 else None), (parts[-1] if len(parts) > 1 else None)


def _train_rows(cfg: StudyConfig, kept: dict[str, float], task: str, stage: str = "") -> float:
    """Examples a training stage trains on: the task's kept rationales (``kept``: task -> count; leaving one task
    out, the other tasks'), at most the stage's train size (``sizes/<n>/...``)."""
    if cfg.protocol == "leave_one_task_out":
        rows = sum(n for t, n in kept.items() if t != task)
    else:
        rows = kept[task]
    limit = unsized(stage)[0]
    return rows if limit is None else min(rows, limit)


def _rows_trained(cfg: StudyConfig, rows: float) -> float:
    """Rows passed through the model over the whole training run (epochs, or max_steps x global batch)."""
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps * (cfg.train.global_batch or cfg.train.batch_size * cfg.train.grad_accum)
    return rows * cfg.train.epochs


def stage_gpu_hours(cfg: StudyConfig, stages: Sequence[dict[str, Any]], sizes: dict[str, TaskSize],
                    params: float, row: dict[str, Any], reference_params: float, *, kept: dict[str, float],
                    rationale_tokens: int) -> dict[str, float]:
    """Student GPU-hours of every stage that runs the student (others are left out): training at
    ``row["train_tokens_per_s"]``, sampling at ``row["generate_tokens_per_s"]`` (both per GPU for a model of
    ``reference_params``, scaled by size), prompts read at four times the training rate (forward only)."""
    scale = reference_params / params
    train_rate = row["train_tokens_per_s"] * scale
    train_rate *= 8 / (6 + 2 * cfg.train.gradient_checkpointing)  # no recomputation without checkpointing
    if cfg.train.lora:
        train_rate *= 1.5  # no weight gradients for the frozen base: about 2/3 of the FLOPs
    gen_rate, read_rate = row["generate_tokens_per_s"] * scale, row["train_tokens_per_s"] * scale * 4
    samples = cfg.eval.k if cfg.eval.mode == "sc" else 1
    cot_tokens = rationale_tokens + LABEL_TOKENS

    def answer_tokens(mode: str) -> int:
        return cot_tokens if mode == "cot" else LABEL_TOKENS

    out: dict[str, float] = {}
    for s in stages:
        arm, task = _parts(s["stage"])
        kind, seconds = s["kind"], 0.0
        if task not in sizes:
            continue
        size = sizes[task]
        if kind == "train":
            target = LABEL_TOKENS if ARM_OBJECTIVE[arm] == "label" else cot_tokens
            row_tokens = min(size.eval_prompt_tokens + target, cfg.train.max_length)
            seconds = _rows_trained(cfg, _train_rows(cfg, kept, task, s["stage"])) * row_tokens / train_rate
        elif kind in ("eval", "prompting", "mean_of_task"):
            if kind == "eval":
                mode = ArmEval.parse(arm).prompt_mode
            else:
                mode = "cot" if arm == "icl_rationale" else "direct"
            if cfg.eval.mode in ("cot", "direct"):
                mode = cfg.eval.mode
            shots = cfg.prompting.shots if kind == "prompting" else 3 if kind == "mean_of_task" else 0
            prompt = size.eval_prompt_tokens * (1 + shots) + shots * answer_tokens(mode)
            seconds = size.test_questions * (samples * answer_tokens(mode) / gen_rate + prompt / read_rate)
        elif kind == "info_gain":
            arms = len(cfg.arms)
            n = min(cfg.info_gain_examples, size.train_examples)
            if cfg.info_gain_method == "sampled":
                prefixes = math.ceil(rationale_tokens / cfg.info_gain_stride)
                seconds = arms * n * prefixes * cfg.info_gain_samples * LABEL_TOKENS / gen_rate
            else:
                seconds = arms * n * 5 * (size.eval_prompt_tokens + cot_tokens) / read_rate
        else:
            continue
        out[s["stage"]] = seconds / 3600
    return out


def disk_gb(cfg: StudyConfig, stages: Sequence[dict[str, Any]], sizes: dict[str, TaskSize], params: float | None,
            *, attempts: float, kept: dict[str, float], rationale_tokens: int,
            workers: int | None = None) -> dict[str, float | None]:
    """Disk in GB: ``models`` (the base model once, per trained arm its weights, and the checkpoints of the
    training stages that may run at once, ``workers`` (default ``executor.workers``): a finished stage deletes its
    own) and ``records`` (``attempts``
    teacher attempts in the rationale stores, and eval records); None where the model size is unknown."""
    records = attempts * rationale_tokens * RECORD_BYTES_PER_TOKEN
    samples = cfg.eval.k if cfg.eval.mode == "sc" else 1
    evals = [s for s in stages if s["kind"] in ("eval", "prompting", "mean_of_task")]
    for s in evals:
        task = _parts(s["stage"])[1]
        if task in sizes:
            records += sizes[task].test_questions * samples * (rationale_tokens + LABEL_TOKENS) * RECORD_BYTES_PER_TOKEN
    models = None
    if params is not None:
        share = LORA_SHARE if cfg.train.lora else 1.0
        models = params * WEIGHT_BYTES  # the base model, once
        global_batch = cfg.train.global_batch or cfg.train.batch_size * cfg.train.grad_accum
        in_flight = []  # per training stage, the checkpoints it holds while it runs (dropped when it finishes)
        for s in stages:
            arm, task = _parts(s["stage"])
            if s["kind"] != "train" or task not in sizes:
                continue
            steps = _rows_trained(cfg, _train_rows(cfg, kept, task, s["stage"])) / global_batch
            models += params * share * WEIGHT_BYTES
            in_flight.append(min(CHECKPOINTS_KEPT, int(steps // cfg.train.save_steps) + 1)  # + the final one
                             * params * share * CHECKPOINT_BYTES)
        at_once = min(len(in_flight), workers or cfg.executor.workers)
        models += sum(sorted(in_flight, reverse=True)[:at_once])
    gb = 1e9
    return {"models": None if models is None else round(models / gb, 2), "records": round(records / gb, 3),
            "total": None if models is None else round((models + records) / gb, 2)}


def estimate(cfg: StudyConfig, stages: Sequence[dict[str, Any]], sizes: Sequence[TaskSize], *,
             params: float | None, table: dict[str, Any], gpu: str = "h100", price_in: float | None = None,
             price_out: float | None = None, kept_rate: float = DEFAULT_KEPT_RATE,
             rationale_tokens: int | None = None, judge_prompt_tokens: float = JUDGE_PROMPT_TOKENS,
             notes: Sequence[str] = (), workers: int | None = None) -> dict[str, Any]:
    """The plan's ``estimate``: ``teacher_requests``, ``teacher_tokens``, ``teacher_cost_usd``, ``kept_rationales``
    (task -> expected count), ``judge`` (``{"requests", "tokens", "cost_usd"}`` of the App. C judge), ``gpu_hours``
    (``{"gpu", "status", "total", "by_kind", "by_stage"}``), ``disk_gb`` and ``assumptions`` (every assumption and
    fallback, one sentence each, starting with ``notes``). ``workers``: the stages that run at once on the
    machine that will run the study (default ``executor.workers``)."""
    from raftlab.rationales.generate import default_samples_per_prompt

    row = gpu_row(table, gpu)
    by_name = {s.name: s for s in sizes}
    teacher = cfg.teacher
    oracle = teacher.backend == "oracle"
    rationale_tokens = min(rationale_tokens or DEFAULT_RATIONALE_TOKENS, teacher.max_new_tokens)
    spp = 1 if oracle else teacher.samples_per_prompt or default_samples_per_prompt(teacher.backend)
    plans = [teacher_plan(s.name, s.train_examples, kept_rate=kept_rate, max_retries=teacher.max_retries,
                          samples_per_prompt=spp, kept_target=teacher.kept_target, traversals=teacher.traversals)
             for s in sizes]
    kept = {p.task: p.kept for p in plans}
    assumptions = list(notes)
    requests, samples = request_rounds(kept_rate, teacher.max_retries, spp)
    assumptions.append(f"teacher: each attempt keeps its rationale with probability {kept_rate} (--kept-rate); "
                       f"attempts go out {spp} per request (samples_per_prompt), so {requests:.2f} requests and "
                       f"{samples:.2f} samples per example visit (at most {teacher.max_retries} attempts), "
                       f"{kept_share(kept_rate, teacher.max_retries):.1%} of the visits kept")
    target = teacher.kept_target or "one per training example"
    assumptions.append(f"kept rationales per task: {target}, traversing the training examples at most "
                       f"{teacher.traversals} time(s): {sum(kept.values()):,.0f} kept in all")
    assumptions.append(f"rationales and chains of thought are {rationale_tokens} tokens (--rationale-tokens), "
                       f"answers {LABEL_TOKENS}")
    prompt_tokens = {s.name: s.teacher_prompt_tokens for s in sizes}
    empty = {"requests": 0, "tokens": {"input": 0, "output": 0, "total": 0}, "cost_usd": None}
    if oracle:
        tq = empty
        assumptions.append("the oracle teacher sends no requests")
    else:
        tq = teacher_estimate(plans, prompt_tokens, rationale_tokens=rationale_tokens, price_in=price_in,
                              price_out=price_out)
        if tq["cost_usd"] is None:
            assumptions.append("teacher cost: no price given (--price-in/--price-out, USD per million tokens)")
        else:
            assumptions.append(f"teacher cost at USD {price_in or 0} (input) and {price_out or 0} (output) per "
                               "million tokens")
        if not teacher.backend.startswith("openai:"):
            assumptions.append(f"the teacher {teacher.backend} runs locally: its GPU time is not in gpu_hours")
    judge = empty
    judge_backend = cfg.judge.backend or (None if oracle else teacher.backend)
    if judge_backend is not None and cfg.judge.sample:
        judged = {t: min(float(cfg.judge.sample), n) for t, n in kept.items()}
        questions = {s.name: s.eval_prompt_tokens if s.question_tokens is None else s.question_tokens
                     for s in sizes}  # the judge reads the question, not a prompt
        judge = judge_estimate(judged, questions, judge_prompt_tokens=judge_prompt_tokens,
                               rationale_tokens=rationale_tokens, output_tokens=cfg.judge.max_new_tokens,
                               price_in=price_in, price_out=price_out)
        assumptions.append(f"judge {judge_backend}: {cfg.judge.sample} kept rationales per task, each "
                           f"{cfg.judge.max_new_tokens} tokens out, priced as the teacher (--price-in/--price-out)")
    if params is None:
        hours: dict[str, float] | None = None
        assumptions.append(f"the size of model {cfg.model!r} is unknown here: no GPU-hours or model disk")
    else:
        hours = stage_gpu_hours(cfg, stages, by_name, params, row, float(table["reference_params"]), kept=kept,
                                rationale_tokens=rationale_tokens)
        assumptions.append(f"student of {params / 1e9:.3g}B parameters on {row['name']}: "
                           f"{row['train_tokens_per_s']} training and {row['generate_tokens_per_s']} generated "
                           f"tokens/s per GPU at 7B, scaled by size ({row['status']}: {row['source']}; "
                           f"{THROUGHPUT_FILE.name})")
        if cfg.reference is not None:
            assumptions.append("the reference model's stages run on its own backend: not in gpu_hours")
    gpu_hours = None
    if hours is not None:
        by_kind: dict[str, float] = {}
        for s in stages:
            if s["stage"] in hours:
                by_kind[s["kind"]] = by_kind.get(s["kind"], 0.0) + hours[s["stage"]]
        gpu_hours = {"gpu": row["kind"], "status": row["status"], "total": round(sum(hours.values()), 3),
                     "by_kind": {k: round(v, 3) for k, v in by_kind.items()},
                     "by_stage": {k: round(v, 4) for k, v in hours.items()}}
    attempts = sum(p.visits for p in plans) if oracle else sum(p.samples for p in plans)
    disk = disk_gb(cfg, stages, by_name, params, attempts=attempts, kept=kept, rationale_tokens=rationale_tokens,
                   workers=workers)
    assumptions.append(f"disk: kept weights at {WEIGHT_BYTES} bytes/parameter, up to {CHECKPOINTS_KEPT} "
                       f"checkpoints per training run at {CHECKPOINT_BYTES} bytes/parameter (Adam)"
                       + (f", LoRA adapters {LORA_SHARE:.1%} of the model" if cfg.train.lora else ""))
    return {"teacher_requests": tq["requests"], "teacher_tokens": tq["tokens"], "teacher_cost_usd": tq["cost_usd"],
            "kept_rationales": {p.task: round(p.kept) for p in plans}, "judge": judge,
            "gpu_hours": gpu_hours, "disk_gb": disk, "assumptions": assumptions}


# ---------------------------------------------------------------------------------------------- reading


def _sample(items: Sequence[Any], n: int) -> list[Any]:
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def measure_tasks(cfg: StudyConfig, count: TokenCounter) -> tuple[list[TaskSize], list[str]]:
    """Each task's sizes from its local data (the data stage's seeded subsets) with its actual teacher and
    evaluation prompts; a task whose data is not here gets the fallbacks, said in the returned notes."""
    from raftlab.tasks import get_task

    sizes, missing = [], []
    for spec in cfg.tasks:
        try:
            task = get_task(spec.name)
            train = task.load("train", data_dir=spec.data_dir, limit=spec.train_limit, seed=cfg.seed)
            n_test = len(task.load("test", data_dir=spec.data_dir, limit=spec.test_limit, seed=cfg.seed))
        except Exception:  # noqa: BLE001 - no data here (or an unreadable file): the fallback sizes
            missing.append(spec.name)
            sizes.append(TaskSize(spec.name, spec.train_limit or FALLBACK_SPLIT, spec.test_limit or FALLBACK_SPLIT,
                                  FALLBACK_PROMPT_TOKENS, FALLBACK_PROMPT_TOKENS, measured=False))
            continue
        sample = _sample(train, MEASURE_AT_MOST)
        teacher = [task.teacher_prompt(e, cfg.teacher.style, cfg.teacher.length) for e in sample]
        student = [task.prompt(e, "cot") for e in sample]
        mean = (lambda xs: sum(xs) / len(xs)) if sample else (lambda xs: 0.0)
        sizes.append(TaskSize(spec.name, len(train), n_test, mean(count(teacher)), mean(count(student)),
                              question_tokens=mean(count([e.question for e in sample]))))
    notes = []
    if missing:
        notes.append(f"no local data for {', '.join(missing)}: assumed train_limit/test_limit examples (or "
                     f"{FALLBACK_SPLIT}) and {FALLBACK_PROMPT_TOKENS}-token prompts")
    return sizes, notes


def plan_estimate(cfg: StudyConfig, stages: Sequence[dict[str, Any]], *, gpu: str = "h100",
                  price_in: float | None = None, price_out: float | None = None, kept_rate: float | None = None,
                  rationale_tokens: int | None = None, pilot: int | None = None) -> dict[str, Any]:
    """:func:`estimate` for a planned study, reading the tasks' data and the student's tokenizer here. ``pilot``:
    send that many real teacher requests first (:mod:`raftlab.study.pilot`) and use their kept rate and length
    where ``kept_rate`` / ``rationale_tokens`` are not given; the result is in the estimate's ``pilot``."""
    from raftlab.rationales.judge import JUDGE_PROMPT

    table = load_throughput()
    gpu_row(table, gpu)  # an unknown kind fails before any reading
    count, how = student_token_counter(cfg.model)
    sizes, notes = measure_tasks(cfg, count)
    params, where = model_params(cfg.model)
    notes = [how, *notes]
    if params is not None:
        notes.append(f"student size {params / 1e9:.3g}B parameters ({where})")
    measured = None
    if pilot:
        from raftlab.study.pilot import pilot as run_pilot

        measured = run_pilot(cfg, pilot)
        notes.append(measured.sentence(cfg.teacher.backend))
        if kept_rate is None and measured.answered and not measured.kept_rate:
            raise ValueError(f"the pilot's {measured.answered} answered attempts kept no rationale, so no number "
                             "of requests is enough: check the teacher and its prompts (raftlab rationales "
                             "generate shows the rejections), or estimate with --kept-rate")
        if kept_rate is None and measured.kept_rate:
            kept_rate = measured.kept_rate
        if rationale_tokens is None and measured.output_tokens:
            rationale_tokens = max(1, round(measured.output_tokens))
    judge_tokens = count([JUDGE_PROMPT.format(question="", answer="", rationale="")])[0]
    from raftlab.study.executor import effective_workers

    out = estimate(cfg, stages, sizes, params=params, table=table, gpu=gpu, price_in=price_in,
                   price_out=price_out, kept_rate=kept_rate or DEFAULT_KEPT_RATE, rationale_tokens=rationale_tokens,
                   judge_prompt_tokens=judge_tokens, notes=notes, workers=effective_workers(cfg.executor))
    if measured is not None:
        out["pilot"] = {"requests": measured.requests, "answered": measured.answered,
                        "kept_rate": measured.kept_rate, "output_tokens": measured.output_tokens,
                        "failed": measured.failed, "seconds": round(measured.seconds, 1),
                        "rejections": measured.reasons}
    return out
