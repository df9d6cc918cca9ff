"""``raftlab doctor``: each check with its failure faked, the teacher check against a loopback fake OpenAI-style
server (reachable, unreachable, key refused), and the command's exit codes."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raftlab.cli.main import app
from raftlab.study import doctor, load_config

runner = CliRunner()
GOOD_KEY = "sk-test-good-key-1234"


def _cfg(**over):
    raw = {"model": "tiny", "tasks": ["synth_arith"]}
    raw.update(over)
    return load_config(raw)


class FakeOpenAI:
    """A chat-completions server on 127.0.0.1 that accepts only ``GOOD_KEY``."""

    def __init__(self) -> None:
        self.requests = 0

        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests += 1
                if self.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
                    status, payload = 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
                else:
                    status, payload = 200, {"id": "x", "object": "chat.completion", "created": 0,
                                            "model": body["model"], "choices": [{"index": 0, "finish_reason": "length",
                                                                                 "message": {"role": "assistant",
                                                                                             "content": "OK"}}],
                                            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def spec(self) -> str:
        return f"openai:teacher@http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.delenv("RAFTLAB_API_KEY", raising=False)
    fake = FakeOpenAI()
    yield fake
    fake.close()


def test_teacher_reachable_with_a_good_key(server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", GOOD_KEY)
    check = doctor.check_teacher(_cfg(teacher={"backend": server.spec}))
    assert check.status == "ok" and "key was accepted" in check.detail
    assert server.requests == 1  # one tiny request, no retries
    assert GOOD_KEY not in check.line()


def test_teacher_bad_key_is_refused_and_never_printed(server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-5678")
    check = doctor.check_teacher(_cfg(teacher={"backend": server.spec}))
    assert check.status == "FAIL" and "refused the key" in check.detail and "OPENAI_API_KEY" in check.fix
    assert "sk-wrong-key-5678" not in check.line()
    assert server.requests == 1


def test_teacher_unreachable(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", GOOD_KEY)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check = doctor.check_teacher(_cfg(teacher={"backend": f"openai:teacher@http://127.0.0.1:{port}/v1"}), timeout=5)
    assert check.status == "FAIL" and "did not answer" in check.detail and "URL" in check.fix


def test_teacher_without_key_and_oracle(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RAFTLAB_API_KEY", raising=False)
    check = doctor.check_teacher(_cfg(teacher={"backend": "openai:gpt-4o-mini@https://api.example.invalid/v1"}))
    assert check.status == "FAIL" and "no API key" in check.detail
    assert doctor.check_teacher(_cfg()).status == "skip"


def test_device_fails_when_the_config_needs_cuda(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert doctor.check_device(_cfg()).status == "ok"
    check = doctor.check_device(_cfg(eval={"backend": "vllm"}))
    assert check.status == "FAIL" and "eval.backend vllm" in check.detail and check.fix


@pytest.fixture(autouse=True)
def probed(monkeypatch) -> list[bool]:
    """Every CPU multiply-rate probe of check_dtype, stubbed (a real one multiplies for half a second): the
    ``bf16`` argument of each call; rates 150 GFLOP/s in bf16 and 100 in fp32 unless a test sets others."""
    calls: list[bool] = []

    def rates(bf16: bool) -> tuple[float | None, float]:
        calls.append(bf16)
        return (150.0 if bf16 else None), 100.0

    monkeypatch.setattr(doctor, "cpu_rates", rates)
    return calls


def test_dtype_fails_when_bf16_is_asked_for_and_missing(monkeypatch, probed) -> None:
    import torch

    import raftlab.machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(raftlab.machine, "cpu_has_fast_bf16", lambda: False)
    ok = doctor.check_dtype(_cfg())
    assert ok.status == "ok" and "float32" in ok.detail and "docs/performance.md" in ok.detail
    assert "one core multiplies 100 GFLOP/s" in ok.detail and probed == [False]
    check = doctor.check_dtype(_cfg(train={"bf16": True}))
    assert check.status == "FAIL" and "bf16: false" in check.fix
    assert probed == [False]  # a failing check does not measure


@pytest.mark.parametrize("rates, slower", [((84.0, 163.0), True), ((211.0, 100.0), False), ((140.0, 163.0), False)])
def test_dtype_states_the_cpu_rates_and_when_bf16_is_the_slower(monkeypatch, rates, slower) -> None:
    import torch

    import raftlab.machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(raftlab.machine, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(doctor, "cpu_rates", lambda bf16: rates)
    check = doctor.check_dtype(_cfg())
    assert check.status == "ok"
    assert f"{rates[0]:.0f} GFLOP/s in bf16 and {rates[1]:.0f} in fp32" in check.detail
    assert ("bf16 multiplies slower than fp32" in check.detail) is slower  # a margin: 140 against 163 is not
    assert "no AMX" in check.detail if slower else "AMX" not in check.detail


def test_a_gpu_host_does_not_probe_the_cpu(monkeypatch, probed) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    check = doctor.check_dtype(_cfg())
    assert check.status == "ok" and check.detail == "bf16 supported on the GPU" and probed == []


def test_the_multiply_rate_probe_runs_on_the_threads_asked_and_restores_them(monkeypatch) -> None:
    import torch

    from raftlab.machine import matmul_gflops

    before = torch.get_num_threads()
    asked = 2 if before == 1 else 1
    seen: list[int] = []
    real = torch.matmul

    def matmul(a, b):
        seen.append(torch.get_num_threads())
        return real(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: matmul(a, b))
    assert matmul_gflops(torch.float32, size=64, repeats=2, threads=asked) > 0
    assert seen and set(seen) == {asked} and torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="not a dtype"):  # a failed probe restores them too
        matmul_gflops("not a dtype", size=8, repeats=1, threads=asked)
    assert torch.get_num_threads() == before


def test_memory_fails_when_too_little_is_free_and_skips_an_unknown_size(monkeypatch) -> None:
    monkeypatch.setattr(doctor, "_free_memory_gb", lambda: (4.0, "GPU 0"))
    check = doctor.check_memory(_cfg(train={"lora": True}), 7e9)
    assert check.status == "FAIL" and "16.8 GB" in check.detail and "GPU 0 has 4.0 GB" in check.detail
    assert doctor.check_memory(_cfg(train={"lora": True}), 1e8).status == "ok"
    assert doctor.check_memory(_cfg(), None).status == "skip"
    # full finetuning without a launcher: 16 bytes per parameter on one process
    assert "full finetuning" in doctor.check_memory(_cfg(train={"lora": False}), 1e9).detail


def test_memory_counts_every_cpu_worker_on_the_host(monkeypatch) -> None:
    from raftlab.study import executor

    monkeypatch.setattr(doctor, "_free_memory_gb", lambda: (3.0, "host"))
    monkeypatch.setattr(executor, "effective_workers", lambda config: config.workers)
    one = doctor.check_memory(_cfg(train={"lora": False}), 1e8)
    two = doctor.check_memory(_cfg(train={"lora": False}, executor={"workers": 2}), 1e8)
    assert one.status == "ok" and "1.6 GB" in one.detail
    assert two.status == "FAIL" and "2 stages at a time" in two.detail and "3.2 GB" in two.detail
    assert "workers: 1" in two.fix


def test_packages_required_only_when_used(monkeypatch) -> None:
    monkeypatch.setattr(doctor, "_version", lambda package: None)
    unused = {c.name: c.status for c in doctor.check_packages(_cfg())}
    assert unused == {"vllm": "skip", "accelerate": "skip"}
    used = {c.name: c for c in doctor.check_packages(_cfg(eval={"backend": "vllm"},
                                                          train={"launcher": "accelerate launch"}))}
    assert used["vllm"].status == "FAIL" and used["accelerate"].status == "FAIL"
    monkeypatch.setattr(doctor, "_version", lambda package: "9.9")
    assert all(c.status == "ok" and "9.9" in c.detail for c in doctor.check_packages(_cfg(eval={"backend": "vllm"})))


def test_data_missing_and_present(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAFTLAB_DATA_DIR", str(tmp_path))  # an empty datasets folder
    checks = doctor.check_data(_cfg(tasks=[{"name": "gsm8k"}, {"name": "synth_arith", "train_limit": 4}]))
    assert [c.status for c in checks] == ["FAIL", "ok"]
    assert "not found" in checks[0].detail and "RAFTLAB_DATA_DIR" in checks[0].fix
    assert checks[1].detail == "4 train, 32 test examples"


def test_model_missing_cached_and_builtin(monkeypatch, tmp_path: Path) -> None:
    assert doctor.check_model(_cfg(model=str(tmp_path / "nope"))).status == "FAIL"
    assert doctor.check_model(_cfg(model="tiny")).status == "ok"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert doctor.check_model(_cfg(model=str(tmp_path / "m"))).status == "ok"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert doctor.check_model(_cfg(model="some-org/some-model-7b")).status == "warn"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert doctor.check_model(_cfg(model="some-org/some-model-7b")).status == "FAIL"


def test_disk_fails_below_the_estimate(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(doctor, "_free_disk_gb", lambda run_dir: 10.0)
    assert doctor.check_disk(_cfg(), tmp_path / "run", 50.0).status == "FAIL"
    assert doctor.check_disk(_cfg(), tmp_path / "run", 5.0).status == "ok"
    assert doctor.check_disk(_cfg(), tmp_path / "run", None).status == "skip"


def test_doctor_command_exit_codes(monkeypatch, tmp_path: Path) -> None:
    res = runner.invoke(app, ["doctor"])
    assert res.exit_code == 0, res.output
    assert "device:" in res.stdout and "every required check passed" in res.stdout
    res = runner.invoke(app, ["doctor", "quick", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "data synth_topic: ok" not in res.stdout and "ok    data synth_topic" in res.stdout
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(doctor, "study_needs", lambda cfg, run_dir: (None, 100.0))
    monkeypatch.setattr(doctor, "_free_disk_gb", lambda run_dir: 1.0)
    res = runner.invoke(app, ["doctor", "quick", "--out", str(tmp_path / "run")])
    assert res.exit_code == 1 and "FAIL  disk" in res.stdout and "1 failed (disk)" in res.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: []\n")
    res = runner.invoke(app, ["doctor", str(bad)])
    assert res.exit_code == 2 and res.output.startswith("error:") and "Traceback" not in res.output
