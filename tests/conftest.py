"""Test-session settings shared by every test file: offline, quiet, deterministic, small thread pools."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Models load in fp32 in tests whatever the CPU (raftlab's default is bf16 on CPUs with bf16 hardware), so that
# numeric tolerances mean the same on every machine; tests of the default clear this.
os.environ.setdefault("RAFTLAB_DTYPE", "float32")


@pytest.fixture(scope="module")
def hf():
    """The tiny random-init model behind the hf backend (one per test module)."""
    from raftlab.backends.hf import HFBackend

    return HFBackend("tiny", batch_size=4)


@pytest.fixture(scope="module")
def served_hf(hf):
    """Base URL of `raftlab serve` over :func:`hf` on loopback (the model is called "tiny")."""
    from raftlab.serve import serve_in_thread

    url, stop = serve_in_thread(hf, model_name="tiny")
    yield url
    stop()


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: on a shared 2-core machine two spinning threads make tiny-model training steps
    many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: Fixtures that load or train a model (a shared fixture's name, or (test file, fixture name)): every test using one
#: is marked ``slow``, like
#: the tests that load a model themselves (``pytest -m "not slow"`` is the quick development run).
MODEL_FIXTURES = {"hf", "served_hf", ("test_eval.py", "served_tiny"), ("test_study_pipeline.py", "study")}


def pytest_collection_modifyitems(items):
    for item in items:
        module = os.path.basename(str(getattr(item, "fspath", "")))
        if any(name in MODEL_FIXTURES or (module, name) in MODEL_FIXTURES for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


#: A test (setup + call + teardown) slower than this many seconds is named in the output with its duration and the
#: session's elapsed time, so that a CI log that ends early still says where the time went.
SLOW_REPORT_S = float(os.environ.get("RAFTLAB_TEST_SLOW_REPORT_S", "60"))
_SPENT: dict[str, float] = {}
_REPORTER: dict = {"tr": None, "t0": 0.0}


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    import time

    _REPORTER["tr"] = config.pluginmanager.get_plugin("terminalreporter")
    _REPORTER["t0"] = time.monotonic()


def pytest_runtest_logreport(report):
    _SPENT[report.nodeid] = _SPENT.get(report.nodeid, 0.0) + report.duration


def pytest_runtest_logfinish(nodeid, location):
    import time

    spent = _SPENT.pop(nodeid, 0.0)
    if spent >= SLOW_REPORT_S and _REPORTER["tr"] is not None:
        elapsed = time.monotonic() - _REPORTER["t0"]
        _REPORTER["tr"].write_line(f"[slow] {nodeid}: {spent:.0f} s (session at {elapsed / 60:.1f} min)")
