"""The HTML report: figures present, tables written, model text escaped; rendered in headless Chromium."""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _report_helpers import EVIL, write_fake_run

from raftlab.report import render_report
from raftlab.report.build import add_records
from raftlab.report.data import Interval, OLSFit, ReportData, TaskSummary
from raftlab.layout import eval_dirs
from raftlab.report.records import RecordError, latest_records
from raftlab.report.tables import latex_table

TASKS = {"easy": (0.9, 0.8), "mid": (0.5, 0.55), "hard": (0.1, 0.3)}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def hand_data(run_dir: Path) -> ReportData:
    """ReportData whose numbers are computed here with numpy (no raftlab.analysis)."""
    rows = []
    for task, arms in eval_dirs(run_dir).items():
        metrics = {}
        for arm, folder in arms.items():
            recs = latest_records(folder)
            metrics[arm] = {"accuracy": float(np.mean([r["correct"] for r in recs])), "ece": 0.1 if arm == "ft" else 0.2}
        da = metrics["raft"]["accuracy"] - metrics["ft"]["accuracy"]
        de = -(metrics["raft"]["ece"] - metrics["ft"]["ece"])
        rows.append(TaskSummary(task=task, n=len(recs), metrics=metrics,
                                delta_acc=Interval(value=da, low=da - 0.05, high=da + 0.05),
                                delta_ece=Interval(value=de, low=de - 0.02, high=de + 0.03),
                                difficulty={"rationale_length": 10.0 + len(task), "acc_ft": metrics["ft"]["accuracy"]}))
    data = ReportData(title="Test <study> & report", arms=["ft", "raft"], tasks=rows,
                      fit=OLSFit(slope=0.5, intercept=-0.1, r=0.7, p=0.03, n=len(rows)),
                      difficulty_fits=[OLSFit(x="rationale_length", y="delta_acc", slope=0.01, intercept=0.0, r=0.2, p=0.5,
                                           n=3)],
                      info_gain={"hard": {"raft": [0.2, 0.4, 0.9]}})
    return add_records(data, run_dir, samples_per_task=2)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_fake_run(tmp_path_factory.mktemp("run"), TASKS)
    return render_report(hand_data(run), run / "report")


def img_sources(page: str) -> dict[str, str]:
    return dict(re.findall(r'<img alt="[^"]*" data-figure="([^"]+)" src="([^"]+)"', page))


@pytest.mark.slow
def test_report_files_and_figures(report: Path) -> None:
    out = report.parent
    page = report.read_text()
    figs = img_sources(page)
    expected = {"delta_scatter", "delta_bars", "reliability_easy", "reliability_mid", "reliability_hard",
                "difficulty_rationale_length", "difficulty_acc_ft", "info_gain_hard"}
    assert expected <= set(figs)
    for name, src in figs.items():
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_MAGIC) and png == (out / "figures" / f"{name}.png").read_bytes()
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    for table in ("summary.csv", "summary.json", "summary.tex"):
        assert (out / "tables" / table).stat().st_size > 0
    assert "src=\"http" not in page and "<link" not in page  # self-contained


def test_model_text_is_escaped(report: Path) -> None:
    page = report.read_text()
    assert "<script" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert html.escape(EVIL) in page  # shown verbatim, as text
    assert "Test &lt;study&gt; &amp; report" in page
    assert page.count('class="sample"') >= 3 * 2 * 2  # 3 tasks x 2 questions x 2 arms


def test_latex_table_escapes_and_has_rows(tmp_path: Path) -> None:
    data = hand_data(write_fake_run(tmp_path, {"my_task%": (0.2, 0.4)}))
    tex = latex_table(data)
    assert r"my\_task\%" in tex and tex.count(r"\\") >= 2 and r"\begin{tabular}" in tex


def test_bad_records_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text('{"id": 1, "correct": true, "confidence": 1.0}\n{"id": 2, "correct": true}\n')
    with pytest.raises(RecordError, match=r"r.jsonl:2: missing field 'confidence'"):
        latest_records(f)
    f.write_text("not json\n")
    with pytest.raises(RecordError, match=r"r.jsonl:1: invalid JSON"):
        latest_records(f)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install.sh installs it with apt-get)")
def test_headless_chromium_renders_figures(report: Path, tmp_path: Path) -> None:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    figs = img_sources(dom)
    assert "delta_scatter" in figs and len(figs) >= 8
    for src in figs.values():
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "<script" not in dom  # no model text became markup
    assert "Accuracy vs calibration" in dom and 'id="summary"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,3000", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes().startswith(PNG_MAGIC) and shot.stat().st_size > 20_000
