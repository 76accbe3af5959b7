#!/usr/bin/env bash
# GPU acceptance check: the checklist the first real GPU run follows (docs/gpu.md). On one GPU, in the medix-gpu conda
# env, with the preset's models in the local Hugging Face cache, it takes about 5-10 minutes:
#
#   bash scripts/gpu_check.sh [gpu24|gpu80]        # default gpu24; GPU_CHECK_OUT=/tmp/medix-gpu-check
#
# 1. environment: driver, torch and its CUDA build, the pinned libraries (a CUDA build newer than the driver is the
#    "torch sees no GPU" failure); 2. the CUDA stop: without a GPU the pipeline's own one-line message, and this script
#    ends there; 3. the judge prompt of the preset's real Qwen3 tokenizer rendered with thinking off; 4. the memory plan
#    of the full preset against this card; 5. each notebook at tiny size on the preset (python -m medix_lib run
#    --profile <preset> --only NN --set ...), with the peak GPU memory nvidia-smi saw next to the plan printed for that
#    tiny run, and what only a GPU shows checked in each stage's metrics (03 trained through Unsloth on cuda, 04's
#    judge failed on no item). Stops at the first failure, naming it.
set -euo pipefail

PRESET="${1:-gpu24}"
OUT="${GPU_CHECK_OUT:-/tmp/medix-gpu-check}"
PY="${PYTHON:-python}"
GPU_INDEX="${GPU_INDEX:-0}"
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false

TINY_01=(--set 01.n_text=60 --set 01.n_image=20 --set 01.n_example_images=4)
TINY_02=(--set 02.n_prompts=4 --set 02.completions_per_prompt=2 --set 02.max_new_tokens=32 --set 02.n_gold_pairs=16)
# the preset's micro-batch (per_device_train_batch_size) is kept, so the update's memory is the real one's
TINY_03=(--set 03.max_steps=2 --set 03.max_train_rows=20 --set 03.max_completion_length=64
         --set 03.gradient_accumulation_steps=1 --set 03.checkpoint_every=0 --set 03.logging_steps=1)
TINY_04=(--set "04.tasks=[synthetic_text, synthetic_image]" --set 04.max_eval_rows=4 --set 04.max_new_tokens=64
         --set 04.n_bootstrap=200)

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'gpu_check FAILED: %s\n' "$*" >&2; exit 1; }

step "1/5 environment"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used --format=csv
else
  echo "nvidia-smi: not found (no NVIDIA driver on this machine)"
fi
"$PY" - <<'EOF'
import importlib.metadata as md

import torch

for name in ("torch", "torchvision", "xformers", "triton", "bitsandbytes", "unsloth", "unsloth_zoo", "transformers",
             "trl", "peft", "accelerate", "datasets", "sentence-transformers", "vllm"):
    try:
        version = md.version(name)
    except md.PackageNotFoundError:
        version = "-"
    print(f"  {name:22} {version}")
print(f"  torch CUDA build {torch.version.cuda}; torch.cuda.is_available() = {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"  device {torch.cuda.get_device_name(0)}, compute capability {torch.cuda.get_device_capability(0)}")
EOF

step "2/5 CUDA"
if ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  # the pipeline's own message, as a researcher would meet it
  "$PY" -m medix_lib run --profile "$PRESET" --only 01 --output-root "$OUT" --quiet 2>&1 || true
  echo "no GPU: torch sees no CUDA device, so the GPU steps (3-5) do not run here. Check nvidia-smi and that the"
  echo "driver is at least the one torch's CUDA build needs (requirements/gpu.txt: cu126, driver >= 525.60.13)."
  exit 3
fi

step "3/5 judge prompts with thinking off (the preset's real tokenizers)"
"$PY" - "$PRESET" <<'EOF'
import sys

from medix_lib import models, params
from medix_lib.judge import EVAL_TEMPLATE, REWARD_TEMPLATE, TEMPLATES, JudgeItem, encode_prompt

preset = sys.argv[1]
for stage, template in (("03", REWARD_TEMPLATE), ("04", EVAL_TEMPLATE)):
    cfg = params.load(stage, preset)
    tokenizer = models.load_tokenizer(cfg.judge_model)
    messages = TEMPLATES[template].messages(JudgeItem("heart attack", "myocardial infarction"), False)
    prefix, tail = encode_prompt(tokenizer, messages)
    text = tokenizer.decode(prefix + tail)
    opened = text.rstrip().endswith("<think>")
    print(f"  {stage} judge {cfg.judge_model}: prompt ends {text[-40:]!r}")
    if opened:
        sys.exit(f"the {cfg.judge_model} prompt ends in an open <think>: P(YES) would be read inside its reasoning")
EOF

step "4/5 memory plan of the full $PRESET preset on this card"
"$PY" -m medix_lib memory --profile "$PRESET" || fail "the $PRESET preset does not fit this card (plan above)"

step "5/5 each notebook at tiny size on $PRESET -> $OUT"
mkdir -p "$OUT"
summary=()
for stage in 01 02 03 04; do
  tiny="TINY_${stage}[@]"
  samples="$OUT/gpu_memory_$stage.csv"
  before=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU_INDEX")
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU_INDEX" -lms 250 > "$samples" &
  sampler=$!
  start=$SECONDS
  if ! "$PY" -m medix_lib run --profile "$PRESET" --only "$stage" --output-root "$OUT" "${!tiny}"; then
    kill "$sampler"
    fail "stage $stage (rendered notebook under $OUT)"
  fi
  kill "$sampler"
  peak=$(sort -n "$samples" | tail -1)
  summary+=("$(printf '  %s  %4d s  peak %6d MiB on the GPU (%6d MiB before it started)' "$stage" \
                $((SECONDS - start)) "$peak" "$before")")
done
"$PY" - "$OUT" "$PRESET" <<'EOF'
import json
import sys
from pathlib import Path

out, preset = Path(sys.argv[1]), sys.argv[2]
train = json.loads((out / "03_train_grpo" / preset / "metrics.json").read_text())
if train["device"] != "cuda" or not train["unsloth"]:
    sys.exit(f"notebook 03 trained on {train['device']} with unsloth={train['unsloth']}: expected cuda and Unsloth")
evaluation = json.loads((out / "04_evaluate_with_judge" / preset / "metrics.json").read_text())
failures = {(task, model): s["judge_failures"] for task, by_model in evaluation["tasks"].items()
            for model, s in by_model.items() if s["judge_failures"]}
if failures:
    sys.exit(f"notebook 04's judge failed on items: {failures}")
print(f"  03: {train['steps']} GRPO steps on cuda through Unsloth, {train['seconds_per_step']} s/step; "
      f"04: every item judged")
EOF

step "done: $PRESET passes on this GPU; peak GPU memory per stage (compare with the plan each stage printed):"
printf '%s\n' "${summary[@]}"
