"""Building the native kernels recovers from a build killed midway (torch's lock file left behind), waits for
another builder only up to a deadline, and never loads a library built by another torch or compiler."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from raftlab.engine import native_build

LOGGER = "raftlab.engine.native_build"


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """Builds into ``tmp_path`` with ``cpp_extension.load`` faked (no compiler needed): returns the list of what
    each fake build saw (whether torch's lock file existed, whether raftlab's lock was held)."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native_build, "_loaded", {})
    seen = []

    def load(name, **_):
        build_dir = tmp_path / name
        seen.append({"torch_lock": (build_dir / native_build.TORCH_LOCK_NAME).exists(),
                     "our_lock_held": _locked(build_dir / native_build.LOCK_NAME)})
        return "module"

    monkeypatch.setattr(cpp_extension, "load", load)
    return seen


def _locked(path) -> bool:
    """Whether some open file holds an exclusive flock on ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_stale_torch_lock_is_removed_under_raftlabs_lock(fake_build, tmp_path, caplog):
    build_dir = tmp_path / native_build.extension_name(False)
    build_dir.mkdir()
    (build_dir / native_build.TORCH_LOCK_NAME).touch()  # what a killed build leaves
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert native_build.load_extension(False) == "module"
    assert fake_build == [{"torch_lock": False, "our_lock_held": True}]
    assert "removed the stale torch build lock" in caplog.text
    assert (build_dir / native_build.LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not _locked(build_dir / native_build.LOCK_NAME)  # released after the build


def test_a_held_build_lock_times_out_naming_its_holder(fake_build, tmp_path, monkeypatch, caplog):
    build_dir = tmp_path / native_build.extension_name(False)
    build_dir.mkdir()
    fd = os.open(build_dir / native_build.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")  # another builder, still alive
        monkeypatch.setenv("RAFTLAB_BUILD_TIMEOUT", "0.3")
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert native_build.load_extension(False) is None  # callers keep their Python paths
        assert time.monotonic() - start < 30
    finally:
        os.close(fd)
    assert fake_build == []
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "\n" not in warning[0]
    assert "TimeoutError" in warning[0] and "process 4242" in warning[0] and "RAFTLAB_BUILD_TIMEOUT" in warning[0]


def test_the_name_changes_with_torch_compiler_flags_and_source(monkeypatch, tmp_path):
    import torch

    name = native_build.extension_name(False)
    assert name.startswith("raftlab_one_row_portable_torch") and name.isidentifier()
    assert native_build.extension_name(True) != name
    monkeypatch.setattr(torch, "__version__", "9.9.9+cpu")
    assert "torch9_9_9_cpu" in native_build.extension_name(False)
    monkeypatch.undo()
    compiler = tmp_path / "fake-c++"
    compiler.write_text("#!/bin/sh\necho 'fake c++ 99.1'\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    assert native_build.extension_name(False) != name
    monkeypatch.delenv("CXX")
    source = tmp_path / "one_row_step.cpp"
    source.write_bytes(native_build.SOURCE.read_bytes() + b"\n// changed\n")
    monkeypatch.setattr(native_build, "SOURCE", source)
    assert native_build.extension_name(False) != name


BUILD = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
from raftlab.engine import native_build
module = native_build.load_extension(False)
print("LOADED" if module is not None and module.uses_avx512_bf16() is False else "FAILED", flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None,
                    reason="no C++ compiler to build the native extension")
def test_a_build_killed_midway_does_not_block_the_next_one(tmp_path):
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), "RAFTLAB_NATIVE": "1"}
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen([sys.executable, "-c", BUILD], env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # its own process group: ninja and the compiler too
    try:
        deadline = time.monotonic() + 180
        while not (list((tmp_path / "ext").glob("*/build.ninja")) and list((tmp_path / "ext").glob("*/lock"))):
            assert first.poll() is None, f"the first build ended before it was killed:\n" \
                                         f"{(tmp_path / 'first.log').read_text()}"
            assert time.monotonic() < deadline, "the first build did not start within 180 s"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    assert list((tmp_path / "ext").glob("*/lock")), "torch's lock file should be left behind by the killed build"

    second = subprocess.run([sys.executable, "-c", BUILD], env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0 and "LOADED" in second.stdout, second.stdout + second.stderr
    assert "removed the stale torch build lock" in second.stdout
