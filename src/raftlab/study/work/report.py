"""The ``report`` stage: the HTML report of this study's stages, headed by its settings."""

from __future__ import annotations

from pathlib import Path

from raftlab.study.config import StudyConfig
from raftlab.study.work.outputs import Given, ReportOutput


def report(cfg: StudyConfig, run_dir: Path, analysis_out: Given, out: Path, stages: frozenset[str]) -> ReportOutput:
    """The HTML report of this study's stages (``stages``), headed by its settings."""
    from raftlab.report import render_report
    from raftlab.report.build import settings_meta

    settings = {"name": cfg.name, "model": cfg.model, "seed": cfg.seed, "teacher": {"backend": cfg.teacher.backend},
                "train": {"lora": cfg.train.lora},
                "eval": {"mode": cfg.eval.mode, "k": cfg.eval.k, "temperature": cfg.eval.temperature}}
    page = render_report(run_dir, out, samples_per_task=cfg.samples_per_task, meta=settings_meta(settings),
                         stages=stages)
    return ReportOutput(page.name, folder=out)
