"""Unattended GPU check of raftlab on one H100/H200 without internet, in at most ~8 minutes; writes one JSON.

Sections (each timed, each written to the JSON as soon as it ends, so a cut-off run keeps what it measured):

* ``hf_sampling``: raftlab's hf backend at a 7B Llama shape (random init, bf16, CUDA) sampling k = 10 per prompt,
  against batched ``model.generate(num_return_sequences=k)`` on the same model in the same run;
* ``vllm``: the same shape through vLLM (when it is importable), in a child process;
* ``finetune``: full finetuning steps of a ~1B Llama shape under Table 2's settings (``profile: paper``: bf16,
  gradient checkpointing, 4 per device, global batch 64) through ``accelerate launch`` with FSDP on one GPU,
  with peak GPU memory (nvidia-smi) and trained tokens per second;
* ``study_quick``: ``raftlab study --quick`` end to end on CUDA.

Models are random-init with the tiny model's tokenizer (built offline), so outputs are noise: the numbers are
throughput and memory, not quality. ``--dry-run`` runs the same code paths at toy shapes on the CPU (the sections
that need a GPU are marked skipped), for CI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHAPE_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
SHAPE_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                num_key_value_heads=4)
SHAPE_TOY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)


class Report:
    """The JSON being written: ``{"machine", "dry_run", "sections": {name: {...}}, "wall_s"}``."""

    def __init__(self, path: Path, dry_run: bool, budget_s: float) -> None:
        self.path, self.start, self.budget = path, time.monotonic(), budget_s
        self.data: dict[str, Any] = {"dry_run": dry_run, "budget_s": budget_s, "machine": machine(), "sections": {}}
        self.write()

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def section(self, name: str, result: dict[str, Any]) -> None:
        self.data["sections"][name] = result
        self.write()

    def write(self) -> None:
        self.data["wall_s"] = round(time.monotonic() - self.start, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)


def machine() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        out.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gb=round(
            torch.cuda.get_device_properties(0).total_memory / 1e9, 1), bf16=torch.cuda.is_bf16_supported())
    return out


def run_section(report: Report, name: str, fn, *args: Any, need_s: float = 0) -> None:
    """Run one section with its timing; an error or too little time left is recorded, never raised."""
    if report.left() < need_s:
        report.section(name, {"skipped": f"{report.left():.0f} s left of the budget, the section needs ~{need_s:.0f}"})
        return
    start = time.monotonic()
    try:
        result = fn(*args)
    except Exception as exc:  # noqa: BLE001 - the other sections still run
        result = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
    result.setdefault("seconds", round(time.monotonic() - start, 1))
    report.section(name, result)


def random_llama(shape: dict[str, int], tok: Any, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **shape)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if device == "cuda" else torch.float32)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def prompts(n: int) -> list[str]:
    from raftlab.tasks import get_task

    task = get_task("synth_arith")
    return [task.prompt(e, "cot") for e in task.load("test", limit=n)]


def hf_sampling(device: str, shape: dict[str, int], k: int, n_prompts: int, new_tokens: int) -> dict[str, Any]:
    import torch

    from raftlab.backends.base import SamplingParams
    from raftlab.backends.hf import HFBackend
    from raftlab.models.loading import load_tokenizer

    tok = load_tokenizer("tiny")
    model = random_llama(shape, tok, device)
    params = sum(p.numel() for p in model.parameters())
    texts = prompts(n_prompts)
    backend = HFBackend(model, tokenizer=tok, device=device)
    sampling = SamplingParams(n=k, temperature=0.8, max_new_tokens=new_tokens, seed=0)
    backend.generate(texts[:1], SamplingParams(n=1, max_new_tokens=4, seed=0))  # warm-up
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.monotonic()
    gens = backend.generate(texts, sampling)
    sync()
    ours_s = time.monotonic() - start
    ours_tokens = sum(g.num_tokens for per in gens for g in per)

    tok.padding_side = "left"
    batch = tok(texts, return_tensors="pt", padding=True).to(device)
    sync()
    start = time.monotonic()
    with torch.no_grad():
        out = model.generate(**batch, do_sample=True, temperature=0.8, num_return_sequences=k,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tok.pad_token_id)
    sync()
    hf_s = time.monotonic() - start
    hf_tokens = int(out.shape[0] * (out.shape[1] - batch["input_ids"].shape[1]))
    result = {"params": params, "prompts": len(texts), "k": k, "max_new_tokens": new_tokens,
              "raftlab_hf": {"seconds": round(ours_s, 2), "tokens": ours_tokens,
                             "tokens_per_s": round(ours_tokens / ours_s, 1)},
              "hf_generate": {"seconds": round(hf_s, 2), "tokens": hf_tokens,
                              "tokens_per_s": round(hf_tokens / hf_s, 1)}}
    if device == "cuda":
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
    del model, backend
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def vllm_child(model_dir: str, k: int, n_prompts: int, new_tokens: int) -> dict[str, Any]:
    """In a child process: vLLM on the saved 7B-shape model."""
    from vllm import LLM, SamplingParams

    start = time.monotonic()
    llm = LLM(model=model_dir, dtype="bfloat16", gpu_memory_utilization=0.85, max_model_len=2048, seed=0)
    load_s = time.monotonic() - start
    params = SamplingParams(n=k, temperature=0.8, max_tokens=new_tokens, min_tokens=new_tokens, seed=0)
    texts = prompts(n_prompts)
    start = time.monotonic()
    outs = llm.generate(texts, params)
    gen_s = time.monotonic() - start
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    import vllm

    return {"vllm": vllm.__version__, "load_seconds": round(load_s, 1), "seconds": round(gen_s, 2),
            "tokens": tokens, "tokens_per_s": round(tokens / gen_s, 1), "prompts": len(texts), "k": k}


def vllm_section(work: Path, k: int, n_prompts: int, new_tokens: int, timeout: float) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vllm is not installed"}
    from raftlab.models.loading import load_tokenizer

    tok = load_tokenizer("tiny")
    model_dir = work / "model7b"
    model = random_llama(SHAPE_7B, tok, "cuda")
    model.save_pretrained(model_dir, safe_serialization=True)
    tok.save_pretrained(model_dir)
    del model
    import torch

    torch.cuda.empty_cache()
    args = json.dumps([str(model_dir), k, n_prompts, new_tokens])
    proc = subprocess.run([sys.executable, __file__, "--child-vllm", args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": f"vLLM child exited {proc.returncode}: {proc.stderr[-800:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def finetune_section(work: Path, timeout: float, steps: int) -> dict[str, Any]:
    import shutil

    import yaml

    from raftlab.models.loading import load_tokenizer
    from raftlab.training.config import TrainConfig

    if shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists():
        return {"skipped": "accelerate is not installed"}
    tok = load_tokenizer("tiny")
    model_dir = work / "model1b"
    model = random_llama(SHAPE_1B, tok, "cuda")
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(model_dir, safe_serialization=True)
    tok.save_pretrained(model_dir)
    del model
    import torch

    torch.cuda.empty_cache()
    data = work / "train.jsonl"
    subprocess.run([sys.executable, "-m", "raftlab.cli.main", "data", "export", "synth_arith", "--split", "train",
                    "--limit", "2048", "--out", str(data)], check=True, cwd=ROOT, capture_output=True)
    fsdp = yaml.safe_load((ROOT / "src/raftlab/training/configs/fsdp.yaml").read_text())
    fsdp["num_processes"] = 1
    (work / "fsdp1.yaml").write_text(yaml.safe_dump(fsdp))
    out = work / "ft"
    config = TrainConfig(profile="paper", model=str(model_dir), data=str(data), out=str(out), max_steps=steps,
                         objective="label", save_steps=10_000)
    config.to_file(work / "train.yaml")
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    cmd = [accelerate, "launch", "--config_file", str(work / "fsdp1.yaml"), "-m", "raftlab.cli.main", "train",
           "--config", str(work / "train.yaml")]
    peak, stop = [0.0], threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                       "-i", "0"], capture_output=True, text=True, timeout=5).stdout.strip()
                peak[0] = max(peak[0], float(used.splitlines()[0]) / 1024)
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            stop.wait(0.5)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    finally:
        stop.set()
        poller.join()
    wall = time.monotonic() - start
    if proc.returncode != 0:
        return {"error": f"training exited {proc.returncode}: {proc.stderr[-800:]}", "wall_seconds": round(wall, 1)}
    summary = json.loads((out / "train_summary.json").read_text())
    seconds = summary.get("train_seconds") or wall
    return {"params": params, "settings": "profile paper: full finetuning, bf16, gradient checkpointing, 4 per "
                                          "device, global batch 64; FSDP on 1 GPU",
            "steps": summary["global_step"], "trained_tokens": summary["trained_tokens"],
            "train_seconds": round(seconds, 1), "wall_seconds": round(wall, 1),
            "tokens_per_s": round(summary["trained_tokens"] / seconds, 1), "peak_gpu_memory_gb": round(peak[0], 1),
            "precision": summary.get("precision"), "world_size": summary.get("world_size")}


def study_section(work: Path, timeout: float) -> dict[str, Any]:
    out = work / "quick"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "raftlab.cli.main", "study", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.monotonic() - start
    result: dict[str, Any] = {"exit_code": proc.returncode, "wall_seconds": round(wall, 1),
                              "analysis": (out / "analysis" / "analysis.json").is_file()}
    if proc.returncode != 0:
        result["error"] = proc.stderr[-800:]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON written")
    parser.add_argument("--budget-s", type=float, default=450, help="sections are skipped past this (seconds)")
    parser.add_argument("--dry-run", action="store_true", help="toy shapes on the CPU; GPU-only sections skipped")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--child-vllm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_vllm:
        print(json.dumps(vllm_child(*json.loads(args.child_vllm))))
        return 0
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device: scripts/gpu_check.sh needs one NVIDIA GPU (H100/H200) and a CUDA build of "
              "torch; --dry-run checks the script on a CPU", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = Report(args.out, args.dry_run, args.budget_s)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        if args.dry_run:
            run_section(report, "hf_sampling", hf_sampling, "cpu", SHAPE_TOY, 2, 2, 8)
            for name in ("vllm", "finetune", "study_quick"):
                report.section(name, {"skipped": "dry run (needs a GPU)"})
        else:
            run_section(report, "hf_sampling", hf_sampling, "cuda", SHAPE_7B, 10, 8, 128, need_s=60)
            run_section(report, "vllm", vllm_section, work, 10, 8, 128, max(report.left() - 200, 30), need_s=120)
            run_section(report, "finetune", finetune_section, work, max(report.left() - 60, 30), 5, need_s=90)
            run_section(report, "study_quick", study_section, work, max(report.left(), 10), need_s=40)
    report.write()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
