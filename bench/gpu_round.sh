#!/usr/bin/env bash
# The GPU round behind the shipped adapters (docs/BENCHMARKS.md): on a machine with the wheels and the base GGUFs
# unpacked under $BUNDLE (see ../shared/GPU.md), set up once, then train and score each base's candidates side by
# side with bench/sweep.py, in the background (setsid), so one call can start it and later calls collect it.
#
#   bash bench/gpu_round.sh setup                 # pip install the wheels, copy the project, convert both bases
#   bash bench/gpu_round.sh gemma | qwen          # start that base's sweep in the background; returns at once
#   bash bench/gpu_round.sh status                # the sweeps' last log lines
#   bash bench/gpu_round.sh collect DIR           # metrics, predictions and every adapter into DIR
#
# The runs below are the second pass of 2026-12-04 (docs/BENCHMARKS.md); the first pass, every run at batch 8,
# is this file at commit 4474045 (its q8_e3 run ran out of GPU memory beside the others and was dropped).
set -euo pipefail
BUNDLE=${BUNDLE:-/tmp/bundle}
RUNS=${RUNS:-/tmp/runs}
PROJ=${PROJ:-/tmp/proj}
export PYTHONPATH=/tmp/site:$PROJ PYTHONUNBUFFERED=1 MAFIOSO_CACHE=${MAFIOSO_CACHE:-/tmp/cache}
# The recipe's common part: the seed's QLoRA (4-bit NF4 base, paged AdamW, constant lr after warm-up), with
# batches of 8 instead of 2 x 2 and no gradient checkpointing (a 270M-500M model is bound by per-step overhead
# on a GPU, not by memory), and rows up to 2,048 tokens (the long pastes with their facts sheet).
COMMON="--batch-size=8,--grad-accum=1,--no-gradient-checkpointing,--max-length=2048,--adapter-dtype=bfloat16"
COMMON="$COMMON,--save-steps=100000"

case "${1:-}" in
  setup)
    mkdir -p /tmp/site "$RUNS"
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$BUNDLE"/whl/*.whl
    rm -rf "$PROJ" && mkdir -p "$PROJ"
    cp -r bench bot data mafioso prompts trainer pyproject.toml "$PROJ"/
    cd "$PROJ"
    python3 -m mafioso model prepare --base-model "$BUNDLE/gemma.gguf"
    [ -f "$BUNDLE/qwen.gguf" ] && python3 -m mafioso model prepare --base-model "$BUNDLE/qwen.gguf"
    # the facts sheets come from Python's ast: print a digest of every rendered prompt to compare with the
    # machine the adapter will serve on
    python3 -c "import hashlib, json, sys, prompts
rows = [r for f in ('data/train.json', 'data/validation.json') for r in json.load(open(f)).values()]
print(sys.version.split()[0], 'prompts sha256', hashlib.sha256(''.join(
    prompts.render_prompt(r['code'], r['prompt']) for r in rows).encode()).hexdigest()[:16])"
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
    ;;
  gemma)
    cd "$PROJ"
    setsid nohup python3 bench/sweep.py --base-model "$BUNDLE/gemma.gguf" --out "$RUNS/gemma" --with-base \
      --run "g16_b4:--lora-r=16,--learning-rate=4e-4,--epochs=3,$COMMON,--batch-size=2,--grad-accum=2" \
      --run "g16_b4_lr2:--lora-r=16,--learning-rate=2e-4,--epochs=3,$COMMON,--batch-size=2,--grad-accum=2" \
      --run "g16_b4_s7:--lora-r=16,--learning-rate=4e-4,--epochs=3,--seed=7,$COMMON,--batch-size=2,--grad-accum=2" \
      --eval-parallel 1 --eval-flags=--batch-size,64,--no-compile-decode > "$RUNS/gemma.log" 2>&1 < /dev/null &
    echo "gemma sweep started"
    ;;
  qwen)
    cd "$PROJ"
    setsid nohup python3 bench/sweep.py --base-model "$BUNDLE/qwen.gguf" --out "$RUNS/qwen" \
      --run "q16_e3_lr4:--lora-r=16,--learning-rate=4e-4,--epochs=3,$COMMON" \
      --run "q16_b4:--lora-r=16,--learning-rate=2e-4,--epochs=3,$COMMON,--batch-size=2,--grad-accum=2" \
      --eval-parallel 1 --eval-flags=--batch-size,64 > "$RUNS/qwen.log" 2>&1 < /dev/null &
    echo "qwen sweep started"
    ;;
  status)
    for log in "$RUNS"/*.log; do echo "== $log"; tail -n 4 "$log"; done
    for log in "$RUNS"/*/*/train.log "$RUNS"/*/*/eval.log; do
      [ -f "$log" ] && echo "-- $log: $(tail -c 300 "$log" | tr '\r' '\n' | tail -n 1)"
    done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    ;;
  collect)
    out=$2; mkdir -p "$out"
    cd "$RUNS" && tar -czf "$out/results.tgz" --exclude='*/adapter/checkpoint-*' --exclude='*.safetensors' \
      --exclude='*/adapter/*.png' .
    # every run's adapter, in pieces small enough to travel back (16 MB a file)
    tar -cf - */*/adapter/adapter_model.safetensors | split -b 15M -d - "$out/adapters.tar."
    ls -la "$out"
    ;;
  *) echo "usage: $0 setup|gemma|qwen|status|collect DIR"; exit 2 ;;
esac
