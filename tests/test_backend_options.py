"""Engine options (--backend-option KEY=VALUE, a study's backend_options) reach the engine and are recorded."""

from __future__ import annotations

import json
import sys
import types

import pytest
from typer.testing import CliRunner

from raftlab.backends import describe_backend, get_backend, parse_backend_options, public_options


def test_options_are_parsed_as_yaml_scalars_and_bad_ones_are_named():
    got = parse_backend_options(["enforce_eager=true", "max_model_len=2048", "gpu_memory_utilization=0.8",
                                 "dtype=bfloat16", "stop=[a, b]", "empty="])
    assert got == {"enforce_eager": True, "max_model_len": 2048, "gpu_memory_utilization": 0.8,
                   "dtype": "bfloat16", "stop": ["a", "b"], "empty": ""}
    with pytest.raises(ValueError, match="--backend-option 'enforce_eager': expected KEY=VALUE"):
        parse_backend_options(["enforce_eager"])


def test_secrets_are_masked_in_what_is_recorded():
    assert public_options({"api_key": "sk-1", "Authorization": "x", "timeout": 5}) == {
        "api_key": "***", "Authorization": "***", "timeout": 5}


def test_vllm_options_reach_the_engine(monkeypatch):
    seen = {}

    class FakeLLM:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def get_tokenizer(self):
            return None

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM))
    backend = get_backend("vllm:tiny", {"enforce_eager": True, "max_model_len": 512, "dtype": "float32"})
    assert seen["enforce_eager"] is True and seen["max_model_len"] == 512 and seen["dtype"] == "float32"
    assert describe_backend(backend)["options"] == {"enforce_eager": True, "max_model_len": 512, "dtype": "float32"}


def test_openai_options_reach_the_backend_and_the_client():
    backend = get_backend("openai:m@http://127.0.0.1:9/v1", {"timeout": 5, "api_key": "sk-secret",
                                                            "default_headers": {"X-Team": "a"}})
    assert backend.timeout == 5 and backend.client_options == {"default_headers": {"X-Team": "a"}}
    assert backend._client().default_headers["X-Team"] == "a"
    described = json.dumps(describe_backend(backend))
    assert "sk-secret" not in described and '"api_key": "***"' in described


@pytest.mark.slow
def test_hf_options_reach_from_pretrained_and_the_backend():
    backend = get_backend("hf:tiny", {"attn_implementation": "eager", "batch_size": 3})
    assert backend.batch_size == 3 and backend.model.config._attn_implementation == "eager"


@pytest.mark.slow
def test_eval_records_its_backend_options(tmp_path):
    from raftlab.cli.main import app

    res = CliRunner().invoke(app, ["eval", "--model", "tiny", "--task", "synth_arith", "--limit", "2", "--k", "2",
                                   "--max-new-tokens", "4", "-O", "attn_implementation=eager", "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    settings = json.loads((tmp_path / "o" / "settings.json").read_text())
    assert settings["model"]["options"] == {"attn_implementation": "eager"}


def test_study_sections_take_backend_options():
    from raftlab.study.config import load_config

    cfg = load_config({**load_config("quick").model_dump(), "eval": {"backend_options": {"attn_implementation": "eager"}},
                       "teacher": {"backend": "oracle", "backend_options": {"timeout": 300}},
                       "prompting": {"shots": 2}})
    assert cfg.eval.backend_options == {"attn_implementation": "eager"} and cfg.teacher.backend_options["timeout"] == 300
