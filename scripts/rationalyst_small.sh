#!/usr/bin/env bash
# RATIONALYST at small scale on a CPU, end to end (docs/rationalyst.md, "Measured at tiny scale"):
#  1. agent: SmolLM2-135M finetuned (LoRA, RAFT objective) on synth_arith_easy training questions whose
#     rationales are the oracle's worked solutions, so that it writes one step per sentence;
#  2. synth_arith: mine with the rule-based annotator, filter with SmolLM2, train the generator (SmolLM2 + LoRA),
#     then solve synth_arith_easy test questions with implicit supervision vs random candidates (same agent, seed);
#  3. GSM8K: mine the human solutions with the rule-based equation annotator, filter, train a generator, and solve
#     GSM8K test questions with the packaged SmolLM2 as the agent.
# Every stage resumes or is skipped when its output exists. Usage: scripts/rationalyst_small.sh [OUT]
# On a shared machine pin it, e.g. `taskset -c 1 env OMP_NUM_THREADS=1 scripts/rationalyst_small.sh`.
set -euo pipefail
OUT=${1:-runs/rationalyst-small}
AGENT_TRAIN=${AGENT_TRAIN:-600}; AGENT_STEPS=${AGENT_STEPS:-120}
SYNTH_MINE=${SYNTH_MINE:-60}; SYNTH_GEN_STEPS=${SYNTH_GEN_STEPS:-40}; SYNTH_TEST=${SYNTH_TEST:-30}
SYNTH_TASKS=${SYNTH_TASKS:-synth_arith}  # add synth_arith_easy (not measured: agent near ceiling)
GSM_MINE=${GSM_MINE:-30}; GSM_GEN_STEPS=${GSM_GEN_STEPS:-30}; GSM_TEST=${GSM_TEST:-10}
GSM_METHODS=${GSM_METHODS:-implicit,random}; GEN_LR=${GEN_LR:-5e-4}; SYNTH_METHODS=${SYNTH_METHODS:-implicit,random}
PARTS=${PARTS:-synth gsm8k}  # which comparisons to run after training the agent
PY=.venv/bin/python; RL=".venv/bin/raftlab rationalyst"
mkdir -p "$OUT"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

# 1. the agent
if [ ! -f "$OUT/agent_train.jsonl" ]; then
  $PY - "$OUT/agent_train.jsonl" "$AGENT_TRAIN" <<'PYEOF'
import sys
from pathlib import Path
from raftlab.rationales.oracle import oracle_rationale
from raftlab.study.steps import write_examples
from raftlab.tasks import get_task
examples = get_task("synth_arith_easy").load("train", limit=int(sys.argv[2]))
write_examples([e.model_copy(update={"rationale": oracle_rationale(e)}) for e in examples], Path(sys.argv[1]))
PYEOF
fi
if [ ! -f "$OUT/agent/adapter_config.json" ] && [ ! -f "$OUT/agent/config.json" ]; then
  stamp "agent: train"
  .venv/bin/raftlab train --model smollm2 --data "$OUT/agent_train.jsonl" --objective raft --task synth_arith_easy \
    --max-steps "$AGENT_STEPS" --lr 3e-4 --batch-size 8 --max-length 256 --out "$OUT/agent"
fi

# 2. synthetic arithmetic
S="$OUT/synth"
if [[ " $PARTS " == *" synth "* ]]; then
stamp "synth: mine"; $RL mine --model oracle --task synth_arith --limit "$SYNTH_MINE" --out "$S"
stamp "synth: filter"; $RL filter --model smollm2 --out "$S"
[ -f "$S/generator/adapter_config.json" ] || { stamp "synth: train generator"
  $RL train --model smollm2 --lr "$GEN_LR" --max-steps "$SYNTH_GEN_STEPS" --batch-size 8 --out "$S"; }
for T in $SYNTH_TASKS; do
  stamp "synth: solve $T"
  $RL solve --agent "$OUT/agent" --task "$T" --limit "$SYNTH_TEST" --methods "$SYNTH_METHODS" \
    --max-steps 10 --max-step-tokens 32 --max-rationale-tokens 16 --out "$S"
done
fi

# 3. GSM8K (train/test from RAFTLAB_DATA_DIR or ../shared/datasets; --data-dir packaged for the MIT sample)
G="$OUT/gsm8k"
if [[ " $PARTS " == *" gsm8k "* ]]; then
stamp "gsm8k: mine"; $RL mine --model oracle:equations --task gsm8k --limit "$GSM_MINE" --out "$G"
stamp "gsm8k: filter"; $RL filter --model smollm2 --out "$G"
[ -f "$G/generator/adapter_config.json" ] || { stamp "gsm8k: train generator"
  $RL train --model smollm2 --lr "$GEN_LR" --max-steps "$GSM_GEN_STEPS" --batch-size 8 --out "$G"; }
stamp "gsm8k: solve"
$RL solve --agent smollm2 --task gsm8k --limit "$GSM_TEST" --methods "$GSM_METHODS" \
  --max-steps "${GSM_MAX_STEPS:-8}" --max-step-tokens 40 --max-rationale-tokens 24 --out "$G"
fi
stamp "done"
