"""The run-directory layout of a study: every stage's folder name, in one place (a leaf module: the study
writes these folders, the analysis, the report and the CLI read them).

```
RUN/study.yaml, RUN/manifest.json, RUN/study_result.json
RUN/data/<task>/                      train.jsonl, test.jsonl (seeded subsets)
RUN/rationales/<task>/                the teacher's SQLite store (with the judge's verdicts), rationales.jsonl
                                      (kept rationales), stats.json (kept rate, rejections by reason, lengths)
RUN/judge/<task>/                     judge.json: the judge's verdict counts on a sample of kept rationales
RUN/train/<arm>/<task>/               the finetuned model (model/), train_config.yaml when launched
RUN/eval/<arm>/<task>/                self-consistency records.jsonl, metrics.json, settings.json; the arms
                                      include the untrained student prompted in context (icl_label ①,
                                      icl_rationale ②) next to the finetuned ones (ft ③, raft ④, ...)
RUN/info_gain/<task>/                 curves.json (optional)
RUN/difficulty/mean_of_task/<task>/   eval of the student under mean-of-task prompting (optional)
RUN/difficulty/reference/<task>/      a reference model's zero-shot CoT samples (optional)
RUN/sizes/<n>/subset/<task>/          train_sizes: the n examples both arms train on (rationales.jsonl), subset.json
RUN/sizes/<n>/train/<arm>/<task>/     FT and RAFT trained on that subset, as RUN/train/<arm>/<task>/
RUN/sizes/<n>/eval/<arm>/<task>/      their evals, as RUN/eval/<arm>/<task>/
RUN/analysis/                         analysis.json
RUN/report/                           report.html, figures, tables
```

A stage name is its folder relative to the run directory.
"""

from __future__ import annotations

from pathlib import Path

#: The untrained student prompted in context: label-only demonstrations (the paper's ①) and rationale
#: demonstrations (②). Arm name -> prompt mode.
ICL_LABEL, ICL_RATIONALE = "icl_label", "icl_rationale"
PROMPT_ARMS = {ICL_LABEL: "direct", ICL_RATIONALE: "cot"}

EVAL = "eval"
RATIONALES = "rationales"
#: Subfolder of a label-only arm's eval folder with its token-probability (``direct_prob``) records, when the
#: study's ``eval.direct_prob`` is set.
DIRECT_PROB = "direct_prob"
ANALYSIS = "analysis"
REPORT = "report"
ANALYSIS_FILE = "analysis/analysis.json"
INFO_GAIN_CURVES = "info_gain/*/curves.json"
#: Root of the learning-curve stages (a study's ``train_sizes``), and the file describing each size's subset.
SIZES = "sizes"
SUBSET_FILE = "subset.json"
MANIFEST = "manifest.json"
CONFIG_FILE = "study.yaml"
RESULT_FILE = "study_result.json"
#: Files of a rationale stage's folder: the teacher's store, the kept rationales, the run's stats; and the judge
#: stage's summary.
RATIONALE_STORE, RATIONALES_FILE, RATIONALE_STATS = "rationales.sqlite", "rationales.jsonl", "stats.json"
JUDGE_FILE = "judge.json"


def data(task: str) -> str:
    return f"data/{task}"


def rationales(task: str) -> str:
    return f"{RATIONALES}/{task}"


def judge(task: str) -> str:
    return f"judge/{task}"


def prompting(arm: str, task: str) -> str:
    """An untrained, prompted arm is evaluated like any other: ``eval/<arm>/<task>``."""
    return evaluation(arm, task)


def train(arm: str, task: str) -> str:
    return f"train/{arm}/{task}"


def evaluation(arm: str, task: str) -> str:
    return f"{EVAL}/{arm}/{task}"


def info_gain(task: str) -> str:
    return f"info_gain/{task}"


def mean_of_task(task: str) -> str:
    return f"difficulty/mean_of_task/{task}"


def reference(task: str) -> str:
    return f"difficulty/reference/{task}"


def sized(size: int, stage: str) -> str:
    """The folder of a full-size stage's counterpart trained on ``size`` examples: ``sizes/<size>/<stage>``."""
    return f"{SIZES}/{size}/{stage}"


def subset(size: int, task: str) -> str:
    """The ``size`` training examples a task's sized arms share."""
    return sized(size, f"subset/{task}")


def unsized(stage: str) -> tuple[int | None, str]:
    """``(size, full-size stage name)`` of a stage name (size None for a stage outside ``sizes/``)."""
    root, _, rest = stage.partition("/")
    if root != SIZES:
        return None, stage
    size, _, name = rest.partition("/")
    return int(size), name


def eval_dirs(run_dir: str | Path) -> dict[str, dict[str, Path]]:
    """``task -> arm -> folder`` for every ``RUN/eval/<arm>/<task>/`` folder holding ``*.jsonl`` records."""
    found: dict[str, dict[str, Path]] = {}
    root = Path(run_dir) / EVAL
    if not root.is_dir():
        return found
    for arm_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for task_dir in sorted(p for p in arm_dir.iterdir() if p.is_dir()):
            if any(task_dir.glob("*.jsonl")):
                found.setdefault(task_dir.name, {})[arm_dir.name] = task_dir
    return found


def rationale_dirs(run_dir: str | Path) -> dict[str, Path]:
    """``task -> folder`` for every ``RUN/rationales/<task>/`` folder holding kept rationales."""
    root = Path(run_dir) / RATIONALES
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / RATIONALES_FILE).is_file()}


def size_dirs(run_dir: str | Path) -> dict[str, dict[int, dict[str, Path]]]:
    """``task -> size -> arm -> folder`` for every ``RUN/sizes/<n>/eval/<arm>/<task>/`` folder holding records."""
    found: dict[str, dict[int, dict[str, Path]]] = {}
    root = Path(run_dir) / SIZES
    sizes = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()) if root.is_dir() else []
    for size in sizes:
        for task, arms in eval_dirs(root / str(size)).items():
            found.setdefault(task, {})[size] = arms
    return found
