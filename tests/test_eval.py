"""`raftlab eval` across backends: the openai backend over a loopback `raftlab serve` gives the same records as
the hf backend it serves; bad --backend/--api values are clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from raftlab.cli.main import app
from raftlab.inference import read_records


@pytest.fixture(scope="module")
def served_tiny():
    from raftlab.backends.hf import HFBackend
    from raftlab.serve import serve_in_thread

    url, stop = serve_in_thread(HFBackend("tiny"), model_name="tiny")
    yield url
    stop()


def _eval(tmp_path, name, *extra):
    out = tmp_path / name
    args = ["eval", "--task", "synth_arith", "--mode", "cot", "--limit", "3", "--max-new-tokens", "8",
            "--out", str(out), *extra]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return read_records(out / "records.jsonl"), json.loads((out / "settings.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("api", ["completions", "chat"])
def test_openai_backend_over_loopback_matches_hf(tmp_path, served_tiny, api):
    hf_recs, hf_settings = _eval(tmp_path, "hf", "--model", "tiny", "--backend", "hf")
    oa_recs, oa_settings = _eval(tmp_path, f"openai-{api}", "--model", f"tiny@{served_tiny}", "--backend", "openai",
                                 "--api", api)
    assert [r["samples"] for r in oa_recs] == [r["samples"] for r in hf_recs]  # greedy: same texts
    assert [r["prediction"] for r in oa_recs] == [r["prediction"] for r in hf_recs]
    assert oa_settings["model"] == {"backend": "openai", "model": "tiny", "base_url": served_tiny, "api": api}
    assert hf_settings["model"]["backend"] == "hf"


@pytest.mark.slow
def test_bad_backend_and_api_are_clear_errors(tmp_path):
    base = ["eval", "--model", "tiny", "--task", "synth_arith", "--limit", "1", "--out", str(tmp_path / "x")]
    res = CliRunner().invoke(app, base + ["--backend", "tgi"])
    assert res.exit_code == 2 and "--backend must be one of hf, vllm, openai" in res.output
    res = CliRunner().invoke(app, base + ["--api", "responses"])
    assert res.exit_code == 2 and "--api must be chat or completions" in res.output
