#!/usr/bin/env bash
# bench/gpu/run.sh — everything the GPU machine has to do, in one call of about 8 minutes:
#   1. record the environment (GPU, torch, transformers, build dependencies present or not)
#   2. build the CUDA variant: RLHF_CUDA=1 BUILD_DIR=build-cuda bash launch/setup.sh, or unpack
#      PREBUILT (a bundle of the CUDA variant compiled elsewhere: launch/bundle.sh) instead
#   3. run the CUDA-only tests (rlhf_tests / rlhf_mpi_tests filtered to '*Cuda*:*Nccl*', 1 rank)
#   4. ours (build-cuda/bin/bench_*) vs Hugging Face transformers (bench/gpu/hf_bench.py) on the
#      same GPU, same configs, random init, bf16:
#        train    GPT-2 124M batch 16 x 1024;  GPT-2 1.5B batch 4 x 1024
#        generate batch 64, prompt 128, 256 new tokens, top-k 50 sampling; 124M and 1.5B
#   5. print a table: tokens/s ours and HF, ratio ours/HF, MFU, peak GPU memory.
#      Rollout cases (issue 34): bench_rollout (engine vs static batch, GRPO shape on Open
#      Assistant reply lengths) + hf_rollout.py (HF generate, same prompts and lengths), and
#      bench_ppo GRPO iterations with --engine static | paged; their JSON is in results.jsonl.
#
# Every step runs under `timeout`, inside one overall deadline (RLHF_GPU_BUDGET_S, default 480 s),
# so one hang cannot eat the budget; a step that would start with too little time left is
# recorded as skipped. A failed build still leaves the HF baseline running.
#
# Results go to $OUT (when set, e.g. on the device machine), else $BUILD_DIR/bench-results:
#   env.log build.log tests.log bench_stderr.log results.jsonl summary.json summary.txt
# results.jsonl: one line per case {"case", "impl", "rc", "seconds", "result": <the bench JSON>};
# rc -1 = skipped for lack of time, -2 = our binary missing (build failed), 124/137 = timed out.
#
# Variables: BUILD_DIR (build-cuda), PYTHON (python3), RLHF_GPU_BUDGET_S (480),
#   SKIP_BUILD=1 (use the binaries already in BUILD_DIR), PREBUILT=FILE.tar.gz (unpack a bundle
#   from `bash launch/bundle.sh build/cuda FILE.tar.gz` into BUILD_DIR and use it: no build here;
#   its libtorch, NCCL and CUDA libraries come from $PY's torch), SKIP_HF=1, SKIP_TESTS=1,
#   BENCH_SET (all | 124m | 1.5b), SAVE_BIN=1 (stripped binaries as $OUT/bin.tar.gz, to carry
#   into a later call with SKIP_BUILD=1), PCRE2_ROOT (else .gpu-deps/pcre2 when present),
#   BENCH_DEVICE (cuda; "cpu" + BENCH_SMALL=1 is a smoke test of this script on a CPU machine).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD_DIR=${BUILD_DIR:-$ROOT/build-cuda}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
PY=${PYTHON:-python3}
BUDGET=${RLHF_GPU_BUDGET_S:-480}
DEVICE=${BENCH_DEVICE:-cuda}
SMALL=${BENCH_SMALL:-0}
SET=${BENCH_SET:-all}  # all | 124m | 1.5b: which model sizes to benchmark
RES=${OUT:-$BUILD_DIR/bench-results}
mkdir -p "$RES"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
: >"$RES/results.jsonl"
: >"$RES/bench_stderr.log"
: >"$RES/tests.log"

log() { echo "[gpu-bench +$(($(date +%s) - T0))s] $*" >&2; }

# limit NAME SECONDS -> the timeout to use now (0 = not enough time left)
limit() {
  local want=$2 left=$((DEADLINE - $(date +%s) - 5))
  if [ "$left" -lt 15 ]; then echo 0; elif [ "$want" -lt "$left" ]; then echo "$want"; else echo "$left"; fi
}

# case NAME IMPL SECONDS CMD... : run one benchmark, append its JSON to results.jsonl
run_case() {
  local name=$1 impl=$2 want=$3; shift 3
  local lim rc start secs
  lim=$(limit "$name" "$want")
  if [ "$want" = 0 ]; then
    log "$name/$impl: not run (binary missing: see build.log)"
    rc=-2; secs=0; : >"$TMP/out"
  elif [ "$lim" = 0 ]; then
    log "$name/$impl: skipped (deadline)"
    rc=-1; secs=0; : >"$TMP/out"
  else
    log "$name/$impl: $* (timeout ${lim}s)"
    start=$(date +%s)
    timeout -k 10 "$lim" "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    secs=$(($(date +%s) - start))
    { echo "===== $name/$impl rc=$rc ${secs}s: $*"; tail -c 4000 "$TMP/err"; } >>"$RES/bench_stderr.log"
    log "$name/$impl: rc=$rc in ${secs}s"
  fi
  "$PY" - "$name" "$impl" "$rc" "$secs" "$TMP/out" >>"$RES/results.jsonl" <<'EOF'
import json, sys
name, impl, rc, secs, path = sys.argv[1:6]
result = None
for line in reversed(open(path, errors="replace").read().splitlines()):
    line = line.strip()
    if line.startswith("{"):
        try:
            result = json.loads(line)
            break
        except ValueError:
            pass
print(json.dumps({"case": name, "impl": impl, "rc": int(rc), "seconds": int(secs), "result": result}))
EOF
}

# ---- 1. environment ----------------------------------------------------------------------
{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -a)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
  "$PY" -c 'import transformers; print("transformers", transformers.__version__)' 2>&1
  "$PY" -c 'import nvidia.nccl as n; print("nccl package", n.__path__[0])' 2>&1
  echo "build tools/deps (missing ones make the CUDA build fail):"
  for t in cmake g++ make mpicxx mpirun pkg-config nvcc; do printf '  %-10s %s\n' "$t" "$(command -v $t || echo MISSING)"; done
  for h in hdf5.h H5Cpp.h yaml-cpp/yaml.h gtest/gtest.h nlohmann/json.hpp CLI/CLI.hpp fmt/format.h pcre2.h zlib.h; do
    f=""
    for pat in "/usr/include/$h" "/usr/local/include/$h" "/usr/include/*/$h" "/usr/include/*/*/$h"; do
      for g in $pat; do [ -e "$g" ] && { f=$g; break 2; }; done
    done
    printf '  %-20s %s\n' "$h" "${f:-MISSING}"
  done
} >"$RES/env.log" 2>&1
cat "$RES/env.log" >&2

# ---- 2. build ----------------------------------------------------------------------------
if [ -n "${PREBUILT:-}" ]; then
  mkdir -p "$BUILD_DIR"
  {
    echo "PREBUILT=$PREBUILT: no build here"
    tar -xzf "$PREBUILT" -C "$BUILD_DIR" --strip-components=1 && cat "$BUILD_DIR/MANIFEST"
    TORCH_LIB=$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    NCCL_LIB=$("$PY" -c 'import nvidia.nccl as n; print(n.__path__[0] + "/lib")' 2>/dev/null || true)
    export LD_LIBRARY_PATH="$BUILD_DIR/lib:$TORCH_LIB${NCCL_LIB:+:$NCCL_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    for f in "$BUILD_DIR"/bin/*; do
      miss=$(ldd "$f" | grep "not found" || true)
      [ -z "$miss" ] || echo "MISSING for $(basename "$f"): $miss"
    done
  } >"$RES/build.log" 2>&1  # a group in this shell: LD_LIBRARY_PATH stays exported
  grep MISSING "$RES/build.log" >&2 || log "prebuilt: every library of the bundle resolves"
elif [ "${SKIP_BUILD:-0}" != 1 ]; then
  lim=$(limit build 300)
  log "build: RLHF_CUDA=1 BUILD_DIR=$BUILD_DIR bash launch/setup.sh (timeout ${lim}s)"
  if [ "$lim" != 0 ]; then
    # No libpcre2-dev on the machine: the header alone can travel in .gpu-deps/pcre2/include.
    if [ -z "${PCRE2_ROOT:-}" ] && ! [ -e /usr/include/pcre2.h ] && [ -e "$ROOT/.gpu-deps/pcre2/include/pcre2.h" ]; then
      export PCRE2_ROOT=$ROOT/.gpu-deps/pcre2
    fi
    bstart=$(date +%s)
    RLHF_CUDA=1 BUILD_DIR="$BUILD_DIR" JOBS=$(nproc) timeout -k 10 "$lim" bash launch/setup.sh >"$RES/build.log" 2>&1
    rc=$?
    log "build: rc=$rc in $(($(date +%s) - bstart))s"
    if [ $rc != 0 ] && [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
      # Keep going past failing files: every compile error in one log, and whatever binaries
      # do build are still benchmarked.
      lim=$(limit build-k 150)
      keep=(-k); [ -f "$BUILD_DIR/build.ninja" ] && keep=(-k 0)
      [ "$lim" != 0 ] && timeout -k 10 "$lim" cmake --build "$BUILD_DIR" -j "$(nproc)" -- "${keep[@]}" >>"$RES/build.log" 2>&1
      grep -E "error|Error" "$RES/build.log" | grep -v "^make.*Error [0-9]" | head -n 60 >&2
    fi
    [ $rc = 0 ] || tail -n 40 "$RES/build.log" >&2
  fi
else
  echo "SKIP_BUILD=1: using $BUILD_DIR/bin as it is" >"$RES/build.log"
fi
BIN=$BUILD_DIR/bin

# ---- 3. CUDA-only tests ------------------------------------------------------------------
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  for t in rlhf_tests rlhf_mpi_tests; do
    lim=$(limit "$t" 90)
    if [ -x "$BIN/$t" ] && [ "$lim" != 0 ]; then
      log "tests: $t --gtest_filter='*Cuda*:*Nccl*:*GpuFamily*' (timeout ${lim}s)"
      timeout -k 10 "$lim" "$BIN/$t" --gtest_filter='*Cuda*:*Nccl*:*GpuFamily*' >>"$RES/tests.log" 2>&1
      rc=$?
      echo "===== $t rc=$rc" >>"$RES/tests.log"
      log "tests: $t rc=$rc ($(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$RES/tests.log" | tail -n 3 | tr '\n' ' '))"
    else
      echo "===== $t not run (binary missing or no time left)" >>"$RES/tests.log"
    fi
  done
fi

# ---- 4. benchmarks: ours vs HF, case by case ---------------------------------------------
# name preset batch seq/prompt new_tokens iters timeout
if [ "$SMALL" = 1 ]; then
  TRAIN_CASES=("train_tiny tiny 4 64 - 2 60")
  GEN_CASES=("gen_tiny tiny 4 16 16 1 60")
else
  TRAIN_CASES=() GEN_CASES=()
  if [ "$SET" != 1.5b ]; then
    TRAIN_CASES+=("train_gpt2_124m gpt2-124m 16 1024 - 5 75")
    GEN_CASES+=("gen_gpt2_124m gpt2-124m 64 128 256 2 75")
  fi
  if [ "$SET" != 124m ]; then
    TRAIN_CASES+=("train_gpt2_1.5b gpt2-1.5b 4 1024 - 3 100")
    GEN_CASES+=("gen_gpt2_1.5b gpt2-1.5b 64 128 256 1 100")
  fi
fi
DT=bf16
[ "$DEVICE" = cpu ] && DT=fp32  # ours refuses bf16 training on CPU (autocast is CUDA-only)

for c in "${TRAIN_CASES[@]}"; do
  read -r name preset b t _ iters to <<<"$c"
  if [ -x "$BIN/bench_train" ]; then
    run_case "$name" ours "$to" "$BIN/bench_train" --preset "$preset" --device "$DEVICE" --dtype $DT \
      --batch "$b" --seq-len "$t" --warmup 2 --iters "$iters"
  else
    run_case "$name" ours 0 false
  fi
  [ "${SKIP_HF:-0}" = 1 ] || run_case "$name" hf "$to" "$PY" bench/gpu/hf_bench.py --mode train \
    --preset "$preset" --device "$DEVICE" --dtype $DT --batch "$b" --seq-len "$t" --warmup 2 --iters "$iters"
done
for c in "${GEN_CASES[@]}"; do
  read -r name preset b p n iters to <<<"$c"
  if [ -x "$BIN/bench_generate" ]; then
    run_case "$name" ours "$to" "$BIN/bench_generate" --preset "$preset" --device "$DEVICE" --dtype $DT \
      --batch "$b" --prompt-len "$p" --new-tokens "$n" --top-k 50 --warmup 1 --iters "$iters"
  else
    run_case "$name" ours 0 false
  fi
  [ "${SKIP_HF:-0}" = 1 ] || run_case "$name" hf "$to" "$PY" bench/gpu/hf_bench.py --mode generate \
    --preset "$preset" --device "$DEVICE" --dtype $DT --batch "$b" --prompt-len "$p" --new-tokens "$n" \
    --top-k 50 --warmup 1 --iters "$iters"
done
# Attribution: the same generation without the CUDA-graph decode (eager decode steps), and with
# graphs that attend the whole static cache (one bucket) instead of 64-slot buckets.
if [ "$SMALL" != 1 ] && [ "$SET" != 1.5b ] && [ -x "$BIN/bench_generate" ]; then
  run_case gen_gpt2_124m ours_eager 75 "$BIN/bench_generate" --preset gpt2-124m --device "$DEVICE" \
    --dtype $DT --batch 64 --prompt-len 128 --new-tokens 256 --top-k 50 --warmup 1 --iters 2 --decode eager
  run_case gen_gpt2_124m ours_whole_cache 75 "$BIN/bench_generate" --preset gpt2-124m --device "$DEVICE" \
    --dtype $DT --batch 64 --prompt-len 128 --new-tokens 256 --top-k 50 --warmup 1 --iters 2 --attend-bucket 4096
fi
if [ -x "$BIN/bench_ppo" ]; then
  if [ "$SMALL" = 1 ]; then
    run_case ppo_tiny ours 60 "$BIN/bench_ppo" --device "$DEVICE" --dtype $DT --warmup 1 --iters 2
  else
    [ "$SET" != 1.5b ] && run_case ppo_gpt2_124m ours 90 "$BIN/bench_ppo" --preset gpt2-124m \
      --device "$DEVICE" --dtype $DT --batch 64 --prompt-len 128 --new-tokens 128 --minibatch 16 \
      --warmup 1 --iters 2
    # InstructGPT-style memory case: 1.5B actor, critic, reference and reward model on one GPU.
    [ "$SET" != 124m ] && run_case ppo_gpt2_1.5b ours 150 "$BIN/bench_ppo" --preset gpt2-1.5b \
      --device "$DEVICE" --dtype $DT --batch 32 --prompt-len 128 --new-tokens 128 --minibatch 8 \
      --checkpointing --warmup 1 --iters 1
    # Issue 16's evidence: an 8B-class Llama (Llama-3-8B shapes, random weights) PPO iteration on
    # one GPU with LoRA actor/critic (the reference = the actor's base) and the frozen weights in
    # bf16. Built in fp32 on the host first (~96 GB of host memory for actor, critic and RM).
    [ "$SET" != 124m ] && [ "$DT" = bf16 ] && run_case ppo_llama_8b_lora ours 420 "$BIN/bench_ppo" \
      --family llama --n-layer 32 --d-model 4096 --n-head 32 --n-kv-head 8 --d-ff 14336 --vocab 128256 \
      --max-seq-len 512 --device "$DEVICE" --dtype bf16 --batch 8 --prompt-len 128 --new-tokens 128 \
      --minibatch 4 --checkpointing --lora-rank 16 --frozen-bf16 --warmup 0 --iters 1
  fi
fi

# Issue 34: the rollout engine vs the static batch (bench_rollout: GRPO shape, 8 samples per
# prompt, Open Assistant reply lengths) and Hugging Face generate on the same prompts and lengths
# (hf_rollout.py reads bench_rollout's --spec); a GRPO iteration, static path vs engine.
LENGTHS=""
for f in ../shared/data/oasst/en_100_tree.jsonl shared/data/oasst/en_100_tree.jsonl; do
  [ -z "$LENGTHS" ] && [ -s "$f" ] && LENGTHS=$f
done
if [ -n "$LENGTHS" ] && [ -x "$BIN/bench_rollout" ]; then
  TOKDIR=$(dirname "$(dirname "$LENGTHS")")/gpt2
  if [ "$SMALL" = 1 ]; then
    RARGS=(--threads 1)
    PARGS=(--threads 1 --n-layer 4 --d-model 256 --d-ff 1024 --max-seq-len 512 --batch 4 --minibatch 4
           --prompt-len 80 --new-tokens 64)
  else
    RARGS=(--preset gpt2-124m --prompts 16 --samples 8 --max-new-tokens 256 --prompt-len 512)
    PARGS=(--preset gpt2-124m --batch 8 --minibatch 4 --prompt-len 512 --new-tokens 256)
  fi
  run_case rollout_grpo ours 120 "$BIN/bench_rollout" --device "$DEVICE" --dtype $DT "${RARGS[@]}" \
    --lengths "$LENGTHS" --tokenizer "$TOKDIR" --spec "$RES/rollout_spec.json" --warmup 1 --iters 2
  if [ "${SKIP_HF:-0}" != 1 ] && [ -s "$RES/rollout_spec.json" ]; then
    run_case rollout_grpo hf 150 "$PY" bench/gpu/hf_rollout.py --spec "$RES/rollout_spec.json" \
      --device "$DEVICE" --dtype $DT --warmup 1 --iters 2
  fi
  for e in static paged; do
    run_case grpo_iteration "ours_$e" 150 "$BIN/bench_ppo" --device "$DEVICE" --dtype $DT "${PARGS[@]}" \
      --samples 8 --engine $e --lengths "$LENGTHS" --tokenizer "$TOKDIR" --warmup 1 --iters 2
  done
else
  log "rollout cases: skipped (no Open Assistant trees under ../shared/data or shared/data, or no bench_rollout)"
fi

# ---- 5. summary --------------------------------------------------------------------------
"$PY" - "$RES" <<'EOF'
import json, os, sys
res = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(res, "results.jsonl")) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["case"], {})[r["impl"]] = r
def get(r, k):
    return (r or {}).get("result") and r["result"].get(k)
def fmt(v, scale=1.0, nd=1):
    return "-" if v is None else f"{v / scale:.{nd}f}"
lines = ["case                 ours tok/s    HF tok/s  ours/HF  ours MFU  HF MFU  ours GiB  HF GiB  rc(ours,hf)",
         "-" * 104]
summary = {}
for case, d in by.items():
    o, h = d.get("ours"), d.get("hf")
    ot, ht = get(o, "tokens_per_s"), get(h, "tokens_per_s")
    ratio = ot / ht if ot and ht else None
    summary[case] = {"ours": (o or {}).get("result"), "hf": (h or {}).get("result"), "ratio_tokens_per_s": ratio,
                     "rc": {"ours": (o or {}).get("rc"), "hf": (h or {}).get("rc")}}
    lines.append(f"{case:20s} {fmt(ot):>11s} {fmt(ht):>11s} {fmt(ratio, nd=3):>8s} {fmt(get(o, 'mfu'), nd=3):>9s}"
                 f" {fmt(get(h, 'mfu'), nd=3):>7s} {fmt(get(o, 'peak_memory_bytes'), 2**30, 2):>9s}"
                 f" {fmt(get(h, 'peak_memory_bytes'), 2**30, 2):>7s}  {(o or {}).get('rc')},{(h or {}).get('rc')}")
for case, d in by.items():
    for impl, r in d.items():
        if impl in ("ours", "hf"):
            continue
        t = get(r, "tokens_per_s")
        summary[case][impl] = r.get("result")
        lines.append(f"{case:20s} {impl}: {fmt(t)} tok/s, ms/decode step {fmt(get(r, 'ms_per_decode_step'), nd=2)},"
                     f" rc {r.get('rc')}")
text = "\n".join(lines)
open(os.path.join(res, "summary.txt"), "w").write(text + "\n")
json.dump(summary, open(os.path.join(res, "summary.json"), "w"), indent=1)
print(text)
EOF
if [ "${SAVE_BIN:-0}" = 1 ] && [ -d "$BIN" ]; then
  mkdir -p "$TMP/bin"
  for b in "$BIN"/*; do [ -x "$b" ] && strip -o "$TMP/bin/$(basename "$b")" "$b" 2>/dev/null; done
  tar -C "$TMP" -czf "$RES/bin.tar.gz" bin && log "saved $(du -h "$RES/bin.tar.gz" | cut -f1) of binaries"
fi
log "done; results in $RES"
