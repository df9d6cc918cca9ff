"""Training throughput: raftlab's training recipe vs the official one, measured in the same run.

Every recipe trains the same model (LoRA) on the same rationale-augmented examples with the same batch size,
loss masks and optimizer; only the batching, the loss computation, the attention kernel, the precision and the
allocator's settings differ:

* official: random order, each batch padded to its longest example, full-vocabulary logits at every position
  (the study's released recipe with dynamic padding);
* raftlab: length-grouped batches (``raftlab.training.sampler``), logits only where a token is trained
  (``raftlab.training.loss``), the instruction a batch's rows share run once (``raftlab.training.shared_prefix``),
  plain matmul attention on a CPU where it fits; the default of ``raftlab train`` in fp32;
* raftlab + bf16 (where the hardware has bf16; raftlab's default there): the same, with LoRA's frozen base in
  bf16, fp32 adapters and autocast;
* reference, official + bf16 autocast: the official recipe with the Trainer's ``bf16`` flag (autocast over fp32
  weights), what the official scripts do with ``--bf16``;
* raftlab --pack: one padding-free row per batch (``PackCollator``) and target-only logits;
* with ``--max-length-baseline``: also every batch padded to ``--max-length`` (tokenizer padding="max_length");
* with ``--whole-rows-baseline``: raftlab's default recipe with every row run whole (no shared prefix);
* with ``--parts`` (bf16): raftlab's default recipe with the LM head and the loss unfused
  (``raftlab.training.fused_loss`` off), and with transformers' eager attention instead of raftlab's
  (``raftlab.training.attention``): what each part gains in the same run;
* with ``--bounds``: raftlab's default recipe with LoRA dropout off (another recipe: what the dropout masks cost),
  and without adapters (the frozen base's forward and backward through every layer, training nothing: the time
  LoRA's adapters add to sits on top of it, so it bounds what any faster LoRA could reach).

Each recipe runs in its own process: raftlab's recipes keep freed memory for the next step as ``raftlab train``
does (:func:`raftlab.allocator.keep_freed_memory`), the official ones use glibc's defaults, as a script would.
Prints trained target tokens/s (tokens whose loss counts) for each and the speed-up over the official recipe,
and the tokens fed: the positions the model runs (padding included, a shared prefix counted once).
On a GPU the rate is per wall-clock second; on a CPU per CPU-second of the recipe's process, which other
processes on a shared machine distort less. Rounds are interleaved and the fastest round of each recipe counts.
Writes the result as JSON to ``benchmarks/results/train_<model>_<device>.json`` (``--out``;
``benchmarks/results_io.py``).

    .venv/bin/python benchmarks/bench_train.py --model smollm2 --threads 1
    .venv/bin/python benchmarks/bench_train.py --model tiny --threads 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from results_io import add_out_argument, headline, ratio, slug, write_result


class Recipe(NamedTuple):
    name: str
    grouped: bool
    pack: bool
    target_logits: bool
    pad_to_max: bool = False
    bf16: bool = False
    shared_prefix: bool = True  # where target_logits (raftlab.training.shared_prefix)
    lora_dropout: float | None = None  # None: TrainConfig's default
    adapters: bool = True  # False: every LoRA layer runs its base layer only (a bound; trains nothing)
    fused_loss: bool = True  # where target_logits (raftlab.training.fused_loss)
    eager_attention: bool = False  # transformers' eager attention instead of raftlab.training.attention's


OFFICIAL = Recipe("official (random order, pad per batch, full logits)", False, False, False)
RAFTLAB = Recipe("raftlab (length-grouped, target-only logits)", True, False, True)
RAFTLAB_BF16 = Recipe("raftlab + bf16 (bf16 base, fp32 LoRA, autocast)", True, False, True, bf16=True)
OFFICIAL_BF16 = Recipe("reference: official + bf16 autocast", False, False, False, bf16=True)
PACKED = Recipe("raftlab --pack (packed rows, target-only logits)", False, True, True)
MAX_LENGTH = Recipe("reference: random order, pad to max length", False, False, False, True)
WHOLE_ROWS = Recipe("reference: raftlab, every row run whole (no shared prefix)", True, False, True,
                    shared_prefix=False)
WHOLE_ROWS_BF16 = Recipe("reference: raftlab + bf16, every row run whole (no shared prefix)", True, False, True,
                         bf16=True, shared_prefix=False)
UNFUSED_BF16 = Recipe("reference: raftlab + bf16, LM head and loss unfused", True, False, True, bf16=True,
                      fused_loss=False)
EAGER_BF16 = Recipe("reference: raftlab + bf16, transformers' eager attention", True, False, True, bf16=True,
                    eager_attention=True)
NO_DROPOUT = Recipe("reference: raftlab, LoRA dropout off", True, False, True, lora_dropout=0.0)
NO_DROPOUT_BF16 = Recipe("reference: raftlab + bf16, LoRA dropout off", True, False, True, bf16=True,
                         lora_dropout=0.0)
NO_ADAPTERS = Recipe("bound: raftlab without adapters (frozen base, trains nothing)", True, False, True,
                     adapters=False)
NO_ADAPTERS_BF16 = Recipe("bound: raftlab + bf16 without adapters (frozen base, trains nothing)", True, False,
                          True, bf16=True, adapters=False)
#: The official recipes: stock attention, fp32 weights (autocast under bf16) and glibc's allocator defaults.
OFFICIAL_RECIPES = (OFFICIAL, OFFICIAL_BF16, MAX_LENGTH)
RECIPES = (OFFICIAL, RAFTLAB, RAFTLAB_BF16, OFFICIAL_BF16, PACKED, MAX_LENGTH, WHOLE_ROWS, WHOLE_ROWS_BF16,
           NO_DROPOUT, NO_DROPOUT_BF16, NO_ADAPTERS, NO_ADAPTERS_BF16, UNFUSED_BF16,
           EAGER_BF16)


def make_data(path: Path, n: int) -> None:
    """A two-task mixture with very different lengths: GSM8K (human rationales) and keyword topics."""
    from raftlab.rationales.oracle import oracle_rationale
    from raftlab.tasks import get_task, write_jsonl

    gsm = get_task("gsm8k").load("train", data_dir="packaged", limit=n // 2, seed=0)
    gsm = [e.model_copy(update={"rationale": e.meta["human_rationale"]}) for e in gsm]
    topic = get_task("synth_topic").load("train", limit=n - len(gsm), seed=0)
    topic = [e.model_copy(update={"rationale": oracle_rationale(e)}) for e in topic]
    write_jsonl(gsm + topic, path)


def build_trainer(config, recipe: Recipe):
    """The recipe's trainer for one epoch of ``config``, with the target tokens and tokens fed of its batches."""
    from datasets import Dataset
    from transformers import set_seed

    from raftlab.training import PackCollator, PadCollator, prepare
    from raftlab.training.trainer import raft_trainer_cls, training_arguments, with_lengths

    set_seed(config.seed)
    # the official recipe under bf16 is the Trainer's autocast over fp32 weights (raftlab's LoRA keeps the base
    # in bf16 instead)
    official = recipe in OFFICIAL_RECIPES
    update = {"bf16": recipe.bf16, **({} if recipe.lora_dropout is None else {"lora_dropout": recipe.lora_dropout})}
    model, tok, rows = prepare(config.model_copy(update=update),
                               base_dtype="float32" if official else None, cpu_attention=not official)
    if recipe.eager_attention:
        from raftlab.training.attention import NAME

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if base.config._attn_implementation != NAME:
            sys.exit(f"{recipe.name}: raftlab's attention is not in use here ({base.config._attn_implementation})")
        base.set_attn_implementation("eager")
    with_lengths(rows)
    args = training_arguments(config.model_copy(update={"group_by_length": recipe.grouped, "bf16": recipe.bf16}),
                              len(rows))
    args.save_strategy = "no"
    args.disable_tqdm = True
    if recipe.pack:
        collator = PackCollator()
    else:
        collator = PadCollator(tok.pad_token_id, pad_to=config.max_length if recipe.pad_to_max else None)
    trainer = raft_trainer_cls()(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 data_collator=collator, target_logits=recipe.target_logits,
                                 shared_prefix=recipe.shared_prefix, fused_loss=recipe.fused_loss)
    assert trainer.target_logits == recipe.target_logits, "this model does not support target-only logits"
    if not recipe.adapters:
        without_adapters(model)
    batches = list(trainer.get_train_dataloader())
    target_tokens = sum(int((b["labels"] != -100).sum()) for b in batches)
    fed_tokens = sum(b["input_ids"].numel() - fed_once(trainer, b) for b in batches)
    return trainer, target_tokens, fed_tokens


def without_adapters(model) -> None:
    """Every LoRA layer of ``model`` runs its base layer only, with an output that requires a gradient as an
    adapted layer's does: the backward runs the same products through the frozen base as LoRA's (down to the first
    layer's adapted outputs, no input gradient below them) but none of an adapter's."""
    for module in model.modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            module.forward = lambda x, *args, _base=module.base_layer, **kwargs: _base(x).requires_grad_()


def fed_once(trainer, batch) -> int:
    """Positions of ``batch`` the model does not run because its rows share them (a shared prefix runs once)."""
    from raftlab.training.shared_prefix import shared_prefix_length

    if not trainer.shared_prefix:
        return 0
    return (batch["input_ids"].shape[0] - 1) * shared_prefix_length(trainer.view_inputs(batch))


#: What :func:`run` returns: (wall seconds, CPU seconds of the process, target tokens, tokens fed, final train
#: loss, the CPU seconds of those spent in the kernel, minor page faults, the process's peak resident MB)
Result = tuple[float, float, int, int, float, float, int, int]


def run(config, recipe: Recipe) -> Result:
    """One epoch of ``recipe``. The kernel's share of the CPU time and the page faults show what giving the process
    fresh memory costs (mostly once, in the step that first reaches the peak)."""
    import resource

    trainer, target_tokens, fed_tokens = build_trainer(config, recipe)
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0, c0 = time.perf_counter(), time.process_time()
    result = trainer.train()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (wall, cpu, target_tokens, fed_tokens, result.training_loss, after.ru_stime - before.ru_stime,
            after.ru_minflt - before.ru_minflt, after.ru_maxrss // 1024)


def setup_argv(args: argparse.Namespace) -> list[str]:
    """The command-line flags of :func:`add_setup_arguments` that reproduce ``args`` in a worker process."""
    argv = ["--model", args.model, "--examples", str(args.examples), "--batch-size", str(args.batch_size),
            "--max-length", str(args.max_length)]
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def worker_result(script: str, argv: list[str], what: str):
    """Run ``script`` with ``argv`` in a fresh Python process (allocator settings and caches are per process) and
    return the JSON of its last output line; exits naming ``what`` if the worker fails."""
    out = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{what}: the worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_in_own_process(args: argparse.Namespace, recipe: Recipe) -> Result:
    """:func:`run` of ``recipe`` in a fresh process."""
    argv = ["--worker", str(RECIPES.index(recipe)), *setup_argv(args)]
    return tuple(worker_result(__file__, argv, recipe.name))  # type: ignore[return-value]


def worker(args: argparse.Namespace) -> None:
    """One recipe's epoch in this process; prints :func:`run`'s numbers as one JSON line."""
    import torch

    recipe = RECIPES[args.worker]
    if args.threads:
        torch.set_num_threads(args.threads)
    if recipe not in OFFICIAL_RECIPES:
        from raftlab.allocator import keep_freed_memory

        keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(train_config(args, Path(tmp)), recipe)))


def add_setup_arguments(ap: argparse.ArgumentParser) -> None:
    """The model, data size, batch, length and threads of a training measurement."""
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def train_config(args: argparse.Namespace, tmp: Path):
    """The measured run's TrainConfig (RAFT, LoRA, one epoch) over ``make_data`` written into ``tmp``."""
    from raftlab.training import TrainConfig

    data = Path(tmp) / "data.jsonl"
    make_data(data, args.examples)
    return TrainConfig(model=args.model, data=str(data), objective="raft", out=str(Path(tmp) / "out"), lora=True,
                       epochs=1, batch_size=args.batch_size, max_length=args.max_length, logging_steps=1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_setup_arguments(ap)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the fastest round of each recipe "
                    "counts (robust to other processes on a shared machine)")
    ap.add_argument("--no-pack", action="store_true", help="skip the packed recipe")
    ap.add_argument("--max-length-baseline", action="store_true", help="also time padding to --max-length")
    ap.add_argument("--whole-rows-baseline", action="store_true", help="also time raftlab's recipe with every row "
                    "run whole (no shared prefix)")
    ap.add_argument("--bounds", action="store_true", help="also time raftlab's recipe with LoRA dropout off, and "
                    "without adapters (the frozen base's forward and backward: a bound that trains nothing)")
    ap.add_argument("--parts", action="store_true", help="also time raftlab's bf16 recipe with the LM head and the "
                    "loss unfused, and with transformers' eager attention")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="also time bf16 autocast (raftlab, and the official recipe as a reference); default: where "
                         "the device has bf16 hardware")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    add_out_argument(ap, "benchmarks/results/train_<model>_<device>.json")
    args = ap.parse_args()
    if args.worker is not None:
        worker(args)
        return

    import torch

    on_gpu = torch.cuda.is_available()
    if args.threads:
        torch.set_num_threads(args.threads)
    from raftlab.machine import cpu_has_fast_bf16

    bf16 = args.bf16 if args.bf16 is not None else (torch.cuda.is_bf16_supported() if on_gpu else cpu_has_fast_bf16())
    default, whole = (RAFTLAB_BF16, WHOLE_ROWS_BF16) if bf16 else (RAFTLAB, WHOLE_ROWS)
    bounds = [NO_DROPOUT_BF16, NO_ADAPTERS_BF16] if bf16 else [NO_DROPOUT, NO_ADAPTERS]
    recipes = [OFFICIAL, RAFTLAB] + ([RAFTLAB_BF16, OFFICIAL_BF16] if bf16 else []) + \
        ([] if args.no_pack else [PACKED]) + ([MAX_LENGTH] if args.max_length_baseline else []) + \
        ([whole] if args.whole_rows_baseline else []) + (bounds if args.bounds else []) + \
        ([UNFUSED_BF16, EAGER_BF16] if args.parts and bf16 else [])

    best: dict[Recipe, Result] = {}
    key = 0 if on_gpu else 1  # wall time on a GPU, CPU time of the recipe's process on a CPU
    for _ in range(max(1, args.repeats)):
        for recipe in recipes:
            r = run_in_own_process(args, recipe)
            if recipe not in best or r[key] < best[recipe][key]:
                best[recipe] = r
    unit = "s" if on_gpu else "CPU-s"
    rate = {rec: r[2] / r[key] for rec, r in best.items()}
    for rec, (secs, cpu, target, fed, loss, system, faults, peak) in best.items():
        print(f"{rec.name:54s} {rate[rec]:8.1f} target tokens/{unit}  wall {secs:6.1f} s  CPU {cpu:6.1f} s "
              f"(kernel {system:4.1f} s, {faults} page faults, peak {peak} MB)  {target} target / {fed} tokens fed "
              f"({target / fed:.0%} useful)  loss {loss:.4f}")
    device = "cuda" if on_gpu else "cpu"
    settings = {"model": args.model, "examples": args.examples, "batch_size": args.batch_size,
                "max_length": args.max_length, "repeats": args.repeats, "threads": torch.get_num_threads(),
                "device": device, "bf16": bf16, "rate_per": "wall-clock second" if on_gpu else "CPU-second"}
    print(json.dumps(settings))
    ratios = []
    for rec in recipes[1:]:
        short = rec.name.split(" (")[0]
        print(f"speed-up (target tokens/{unit}) {short} / official: {rate[rec] / rate[OFFICIAL]:.2f}x")
        ratios.append(ratio(f"{short} / official, target tokens/{unit}", rate[rec] / rate[OFFICIAL]))
    if bf16:
        ratios.append(ratio(f"raftlab + bf16 / official + bf16 autocast, target tokens/{unit}",
                            rate[RAFTLAB_BF16] / rate[OFFICIAL_BF16]))
    if whole in rate:
        print(f"speed-up (target tokens/{unit}) shared prefix / whole rows: {rate[default] / rate[whole]:.2f}x")
        ratios.append(ratio(f"raftlab shared prefix / whole rows, target tokens/{unit}", rate[default] / rate[whole]))
    for part, rec in (("raftlab's fused LM head and loss / unfused", UNFUSED_BF16),
                      ("raftlab's attention / transformers' eager attention", EAGER_BF16)):
        if rec in rate:
            print(f"speed-up (target tokens/{unit}) {part}: {rate[default] / rate[rec]:.2f}x")
            ratios.append(ratio(f"{part}, target tokens/{unit}", rate[default] / rate[rec]))
    recipes_out = {rec.name: {"target_tokens_per_unit": round(rate[rec], 2), "wall_seconds": round(r[0], 2),
                              "cpu_seconds": round(r[1], 2), "target_tokens": r[2], "tokens_fed": r[3],
                              "train_loss": round(r[4], 4), "kernel_cpu_seconds": round(r[5], 2),
                              "page_faults": r[6], "peak_rss_mb": r[7]} for rec, r in best.items()}
    heads = [headline(default.name.split(" (")[0], round(rate[default], 2), f"target tokens/{unit}"),
             headline("official", round(rate[OFFICIAL], 2), f"target tokens/{unit}")]
    write_result("train_throughput", {"settings": settings, "unit": f"target tokens/{unit}",
                                      "recipes": recipes_out, "headline": heads, "ratios": ratios},
                 name=slug("train", Path(args.model).name, device), out=args.out, save=not args.no_save,
                 device=device)


if __name__ == "__main__":
    main()
