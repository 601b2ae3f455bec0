#!/usr/bin/env bash
# GPU checks: what CI (CPU only) cannot show. Run on a CUDA machine with judgeforge installed.
#
#   scripts/gpu_check.sh [OUT_DIR]            # default runs/gpu_check
#
# 1. the tests marked `gpu` (CUDA training with the frozen-layer cache and verdict-only loss in
#    bf16, float32 verdict logits under CUDA autocast, the cache's exactness on CUDA);
# 2. the main job, `judgeforge run` (the quickstart), end to end on the GPU, timed, with the GPU's
#    peak memory sampled by nvidia-smi;
# 3. the whole test suite on the GPU machine (pytest-xdist when installed), where every training
#    test trains on CUDA;
# 4. training throughput, TRL's defaults against judgeforge's (scripts/bench_train.py).
# Each step writes its log into OUT_DIR and one line into OUT_DIR/summary.txt; a failing step does
# not stop the others. Environment: STEP_TIMEOUT (seconds per step, default 600), JOB (the job
# recipe of step 2, default the quickstart), SKIP_SUITE=1, SKIP_BENCH=1.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu_check}
mkdir -p "$out"
summary=$out/summary.txt
: >"$summary"
timeout_s=${STEP_TIMEOUT:-600}
python=${PYTHON:-python3}

if ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "no CUDA device visible to $python: these checks need a GPU" >&2
    exit 2
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$python" -c 'import torch, transformers, trl, peft; print("torch", torch.__version__, "| transformers",
        transformers.__version__, "| trl", trl.__version__, "| peft", peft.__version__)'
} | tee -a "$summary"

step() {  # step NAME COMMAND...: run with a timeout, log, and record status and wall time
    local name=$1 start rc
    shift
    start=$(date +%s)
    PYTHONUNBUFFERED=1 timeout "$timeout_s" "$@" >"$out/$name.log" 2>&1
    rc=$?
    echo "$name: rc=$rc, $(($(date +%s) - start)) s" | tee -a "$summary"
    return $rc
}

# W&B is a dependency; a GPU machine that lacks it (no registry there) runs the rest.
skip_wandb=()
if ! "$python" -c 'import wandb' 2>/dev/null; then
    skip_wandb=(--ignore tests/training/test_wandb.py -k "not wandb")
    echo "wandb is not installed: its tests are left out" | tee -a "$summary"
fi

step gpu_tests "$python" -m pytest -q -m gpu -p no:cacheprovider "${skip_wandb[@]}"

# The quickstart, with the GPU's memory sampled every 0.5 s (MiB in use, the whole device).
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$out/gpu_memory.csv" 2>/dev/null &
sampler=$!
step quickstart "$python" -m judgeforge.cli run "${JOB:-recipes/jobs/quickstart.yaml}" --out "$out/quickstart"
kill "$sampler" 2>/dev/null
echo "quickstart: peak GPU memory $(sort -n "$out/gpu_memory.csv" | tail -1) MiB (device-wide)" | tee -a "$summary"
sed -n '/^| judge | kind/,/^$/p' "$out/quickstart/eval/report.md" 2>/dev/null >>"$summary"

if [[ "${SKIP_SUITE:-0}" != 1 ]]; then
    parallel=()
    if "$python" -c 'import xdist' 2>/dev/null; then
        parallel=(-n "${SUITE_WORKERS:-8}")
    fi
    step suite "$python" -m pytest -q -p no:cacheprovider "${parallel[@]}" "${skip_wandb[@]}"
    tail -3 "$out/suite.log" >>"$summary"
fi

if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
    # Training throughput on this GPU: TRL's defaults against judgeforge's (tokens/s, same rows and steps).
    step bench_train "$python" scripts/bench_train.py --out "$out/bench_train" --steps 20
    grep -E "^\|" "$out/bench_train.log" | head -8 >>"$summary"
fi
cat "$summary"
