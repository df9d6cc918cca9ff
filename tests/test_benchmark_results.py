"""Committed benchmark results (benchmarks/results/*.json) and the numbers the docs quote from them.

Every results file records what was measured, on what, with what and how; benchmarks/README.md's table is what
benchmarks/render_table.py renders from the files; and every throughput or speed-up figure in README.md, docs/*.md
and benchmarks/README.md is found, as printed, in some committed results file (or in ALLOWED, with a reason).
No model is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULT_FILES = sorted((BENCH / "results").glob("*.json"))
DOCS = [ROOT / "README.md", BENCH / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results_io = _load("results_io")
render_table = _load("render_table")

#: A number followed by a throughput unit ("490 tokens/s", "80.6 target tokens/CPU-s", "1.23 attempts/s") or a
#: ratio sign written against it ("3.05×", "2.97x"; "4 × 4" with spaces is a product, not a ratio).
_NUM = r"(?<![\w.,])(\d[\d,]*(?:\.\d+)?)"
UNIT = re.compile(_NUM + r"\s*(?:(?:completion|target|trained|generated)\s+)?"
                  r"(?:tokens/s|tokens/CPU-s|attempts/s|questions/s|requests/s|GFLOP/s|GB/s|s/question)\b")
RATIO = re.compile(_NUM + r"(?:×|x(?!\w))")
#: A Markdown table column whose header names a throughput unit, a speed-up or a wall time: every number in it
#: counts.
UNIT_HEADER = re.compile(r"tokens/s|tokens/CPU-s|attempts/s|questions/s|requests/s|GFLOP/s|GB/s|s/question|"
                         r"speed-up|×|\bwall\b")

#: Benchmark-looking numbers that are not raftlab measurements: (file name, number as printed) -> reason.
ALLOWED: dict[tuple[str, str], str] = {}

#: Subtrees of a result that hold settings, not measurements.
SETTINGS = {"config", "settings"}


def _numbers(node, out: list[float]) -> list[float]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in SETTINGS:
                _numbers(value, out)
    elif isinstance(node, list):
        for value in node:
            _numbers(value, out)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        out.append(float(node))
    return out


def _recorded(printed: str, values: list[float]) -> bool:
    """Whether ``printed`` (e.g. "4.7", "1,336") is some value rounded to as many decimals as it shows."""
    value = float(printed.replace(",", ""))
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    half = 0.5 * 10 ** -decimals + 1e-9
    return any(abs(v - value) <= half for v in values)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table_numbers(text: str) -> list[str]:
    """Every number in the cells of Markdown table columns whose header names a unit of :data:`UNIT_HEADER`."""
    found: list[str] = []
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        if not (lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[i + 1])
                and "-" in lines[i + 1]):
            continue
        columns = [j for j, head in enumerate(_cells(lines[i])) if UNIT_HEADER.search(head)]
        for line in lines[i + 2:]:
            if not line.lstrip().startswith("|"):
                break
            cells = _cells(line)
            found += [m.group(1) for j in columns if j < len(cells) for m in re.finditer(_NUM, cells[j])]
    return found


def benchmark_numbers(text: str) -> list[str]:
    """The benchmark-looking numbers of ``text``, as printed: followed by a unit or a ratio sign, or in a table
    column whose header names one."""
    return [m.group(1) for pattern in (UNIT, RATIO) for m in pattern.finditer(text)] + table_numbers(text)


@pytest.fixture(scope="module")
def recorded_values() -> list[float]:
    values: list[float] = []
    for path in RESULT_FILES:
        _numbers(json.loads(path.read_text(encoding="utf-8")), values)
    return values


def test_there_are_results() -> None:
    assert RESULT_FILES, "benchmarks/results/ holds no results"


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.name)
def test_result_has_required_fields(path: Path) -> None:
    result = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in results_io.REQUIRED if not result.get(k)]
    assert not missing, f"{path.name} lacks {missing}"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", result["date"]), result["date"]
    assert isinstance(result["command"], str) and result["command"].strip()
    assert result["machine"].get("cpu") and result["machine"].get("cores")
    assert result["versions"].get("torch") and result["versions"].get("transformers")
    assert result["benchmark"] in render_table.KINDS, f"render_table.KINDS does not describe {result['benchmark']}"
    for head in result.get("headline", []):
        assert {"label", "value", "unit"} <= set(head) and isinstance(head["value"], (int, float))
    for ratio in result.get("ratios", []):
        assert {"label", "value"} <= set(ratio) and isinstance(ratio["value"], (int, float))
    assert result.get("headline"), f"{path.name} has no headline for the table"


def test_readme_table_is_up_to_date(capsys) -> None:
    assert render_table.main(["--check"]) == 0, capsys.readouterr().err


def test_render_table_rewrites_only_its_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{render_table.BEGIN}\nstale\n{render_table.END}\nafter\n", encoding="utf-8")
    assert render_table.main(["--check", "--readme", str(readme)]) == 1
    assert render_table.main(["--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("before\n") and text.endswith("after\n") and "stale" not in text
    assert render_table.main(["--check", "--readme", str(readme)]) == 0
    for path in RESULT_FILES:
        assert f"(results/{path.name})" in text


def test_number_finder_catches_benchmark_numbers() -> None:
    text = ("raftlab is **3.05×** the batched baseline (2.97x CPU), 490 tokens/s, 80.6 target tokens/CPU-s, "
            "1,336 attempts/s; not 250 questions × 4 samples, k = 10, or 4 × processes")
    assert benchmark_numbers(text) == ["490", "80.6", "1,336", "3.05", "2.97"]
    table = "| method | questions/s | tokens/s | peak RSS |\n|---|---|---|---|\n| **raftlab** | **0.785** | 490 | 1.5 GiB |\n"
    assert table_numbers(table) == ["0.785", "490"]
    assert _recorded("4.7", [4.68]) and _recorded("1,336", [1336.0]) and not _recorded("5.7", [5.751])


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_benchmark_number_comes_from_a_results_file(doc: Path, recorded_values: list[float]) -> None:
    text = doc.read_text(encoding="utf-8")
    unrecorded = [n for n in benchmark_numbers(text)
                  if (doc.name, n) not in ALLOWED and not _recorded(n, recorded_values)]
    assert not unrecorded, (
        f"{doc.relative_to(ROOT)} quotes benchmark numbers found in no benchmarks/results/*.json: {unrecorded}; "
        "record them (docs/performance.md) or remove them")


def test_write_result_records_machine_versions_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAFTLAB_API_KEY", "secret")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "r.json"
    path = results_io.write_result("sc_throughput", {"headline": [results_io.headline("x", 1.5, "tokens/s")],
                                                     "ratios": [results_io.ratio("a / b", 2.0)]},
                                   name="unused", out=out, device="cpu")
    assert path == out
    result = json.loads(out.read_text(encoding="utf-8"))
    for key in (*results_io.REQUIRED, "timestamp", "threads", "env"):
        assert result.get(key), key
    assert {"python", "torch", "transformers", "raftlab_commit"} <= set(result["versions"])
    assert "cpu_flags" in result["machine"] and result["env"]["OMP_NUM_THREADS"] == "1"
    assert "RAFTLAB_API_KEY" not in result["env"]
    assert "secret" not in out.read_text(encoding="utf-8")


def test_record_study_compares_a_run_against_another_way_of_running_it(monkeypatch) -> None:
    """--against: the baseline's time over this run's (stage time where the baseline was resumed) and this run's
    stage seconds over the baseline's, per kind of stage and over the stages both ran."""
    monkeypatch.syspath_prepend(str(BENCH))
    record_study = _load("record_study")
    baseline = {"resumed": True, "wall_seconds": 9000.0, "stage_seconds_total": 300.0,
                "stage_seconds": {"rationales/a": 100.0, "train/ft/a": 150.0, "eval/raft/a": 50.0, "judge/a": 1.0}}
    run = {"resumed": False, "wall_seconds": 250.0, "stage_seconds_total": 500.0,
           "stage_seconds": {"rationales/a": 180.0, "train/ft/a": 240.0, "eval/raft/a": 80.0, "extra/a": 7.0}}
    ratios = {r["label"]: r["value"] for r in record_study.compare(baseline, run, "base.json")}
    assert ratios["time: base.json / this run"] == 1.2  # 300 s of stage time (resumed) against 250 s of wall
    assert ratios["stage seconds, all stages: this run / base.json"] == round(500 / 300, 3)  # judge/extra not shared
    assert ratios["stage seconds, teacher: this run / base.json"] == 1.8
    assert ratios["stage seconds, training: this run / base.json"] == 1.6
    assert ratios["stage seconds, CoT evaluations (② and RAFT): this run / base.json"] == 1.6


def test_profile_sc_counts_torch_attention_called_by_the_cascade_as_decoding_attention(monkeypatch) -> None:
    """Without the native kernel the cascade calls torch's flash attention through torch's op wrapper: that builtin
    is decoding attention, while the same builtin called from elsewhere (a prefill) stays prefill attention."""
    monkeypatch.syspath_prepend(str(BENCH))
    profile_sc = _load("profile_sc")
    flash = ("~", 0, "<built-in method torch._ops.aten._scaled_dot_product_flash_attention_for_cpu>")
    wrapper = ("torch/_ops.py", 1, "__call__")
    cascade = ("raftlab/engine/cascade_attention.py", 183, "cascade_attention")
    prefill = ("raftlab/engine/prefill.py", 10, "prefill")
    stats = {wrapper: (1, 1, 0.1, 0.1, {cascade: (1, 1, 0.1, 0.1)}), cascade: (1, 1, 0.1, 0.1, {})}
    called_by_cascade = {wrapper: (1, 1, 2.0, 2.0)}
    assert profile_sc.category(flash, called_by_cascade, stats) == "decoding attention (cascade kernel)"
    assert profile_sc.category(flash, {prefill: (1, 1, 2.0, 2.0)}, {prefill: (1, 1, 0.1, 0.1, {})}) == \
        "prefill attention"
    sampling = ("raftlab/engine/sampling.py", 5, "sample")
    assert profile_sc.category(("~", 0, "<built-in method torch.multinomial>"), {sampling: (1, 1, 1.0, 1.0)},
                               {sampling: (1, 1, 0.1, 0.1, {})}) == "sampling"
