"""Fabricated eval records (seeded random) in the run-directory layout the report reads."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

EVIL = '<script>alert("x")</script></pre><img src=x onerror=alert(1)>&amp;'


def fake_records(task: str, arm: str, n: int, acc: float, k: int = 10, seed: int = 0) -> list[dict]:
    """Self-consistency records whose confidence tracks correctness loosely; every text is hostile HTML."""
    rng = np.random.default_rng(zlib.crc32(f"{task}\0{arm}\0{seed}".encode()))  # not hash(): salted per process
    out = []
    for i in range(n):
        correct = bool(rng.random() < acc)
        top = int(np.clip(rng.binomial(k, 0.8 if correct else 0.5), 1, k))
        gold = str(i % 7)
        pred = gold if correct else str(i % 7 + 1)
        out.append({
            "id": f"{task}-test-{i}", "task": task, "gold": gold, "prediction": pred, "confidence": top / k,
            "correct": correct, "votes": {pred: top, "[invalid]": k - top} if top < k else {pred: top}, "k": k,
            "mode": "sc", "samples": [f"{EVIL} step {i} of {arm}. The answer is {pred}."] * 2,
        })
    return out


def write_fake_run(run_dir: Path, tasks: dict[str, tuple[float, float]], n: int = 40, k: int = 10) -> Path:
    """``tasks``: name -> (acc_ft, acc_raft). Writes RUN/eval/<arm>/<task>/records.jsonl (+ metrics.json)."""
    for task, accs in tasks.items():
        for arm, acc in zip(("ft", "raft"), accs):
            folder = run_dir / "eval" / arm / task
            folder.mkdir(parents=True, exist_ok=True)
            recs = fake_records(task, arm, n, acc, k)
            (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return run_dir
