#!/usr/bin/env bash
# Evaluate a run recipe on every GPU of this node, or of several nodes, with accelerate.
#
#   scripts/eval_multi_gpu.sh RUN.yaml OUT_DIR [judgeforge eval flags ...]
#
#   scripts/eval_multi_gpu.sh recipes/runs/paper.yaml runs/paper-eval --data-root ../shared/data
#   GPUS_PER_PROCESS=4 scripts/eval_multi_gpu.sh recipes/runs/paper.yaml runs/paper-eval
#
# Environment (the same as scripts/train_multi_gpu.sh):
#   NUM_GPUS          GPUs per node (default: all that nvidia-smi lists)
#   GPUS_PER_PROCESS  GPUs each process takes (default 1): a model spread over k GPUs (device_map,
#                     or the vllm backend's tensor_parallel_size k) needs k
#   NUM_NODES         nodes (default 1). With more than one, run this script on every node with
#   NODE_RANK         0 on the main node, 1..NUM_NODES-1 elsewhere, and
#   MASTER_ADDR       / MASTER_PORT the address of the main node and a free port (default 29500).
# Every node must see OUT_DIR (a shared file system). Rerunning resumes, with any number of processes.
set -euo pipefail

if [[ $# -lt 2 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -ge 1 && ("$1" == "-h" || "$1" == "--help") ]] && exit 0
    exit 2
fi
recipe=$1
out=$2
shift 2

cd "$(dirname "$0")/.."
if [[ ! -f "$recipe" ]]; then
    echo "run recipe not found: $recipe" >&2
    exit 2
fi
if [[ -z "${NUM_GPUS:-}" ]]; then
    NUM_GPUS=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || true)
fi
if [[ "${NUM_GPUS:-0}" -lt 1 ]]; then
    echo "no GPU found (set NUM_GPUS); on a CPU machine use: judgeforge eval $recipe --out $out" >&2
    exit 2
fi
per=${GPUS_PER_PROCESS:-1}
if [[ "$per" -lt 1 || $((NUM_GPUS % per)) -ne 0 ]]; then
    echo "GPUS_PER_PROCESS=$per must divide NUM_GPUS=$NUM_GPUS" >&2
    exit 2
fi
num_nodes=${NUM_NODES:-1}
node_flags=()
if [[ "$num_nodes" -gt 1 ]]; then
    : "${NODE_RANK:?set NODE_RANK (0 on the main node) for a multi-node run}"
    : "${MASTER_ADDR:?set MASTER_ADDR to the address of the main node for a multi-node run}"
    node_flags=(--num_machines "$num_nodes" --machine_rank "$NODE_RANK" --main_process_ip "$MASTER_ADDR"
        --main_process_port "${MASTER_PORT:-29500}")
else
    node_flags=(--num_machines 1 --main_process_port "${MASTER_PORT:-29500}")
fi
# --multi_gpu starts one process per slot through torch.distributed.run; each process takes
# GPUS_PER_PROCESS of its node's GPUs itself (evaluation/distributed.py), before CUDA starts.
launch=(accelerate launch --multi_gpu --num_processes $((NUM_GPUS / per * num_nodes)) "${node_flags[@]}"
    --mixed_precision no --dynamo_backend no)

echo "+ ${launch[*]} -m judgeforge.cli eval $recipe --out $out $*" >&2
exec "${launch[@]}" -m judgeforge.cli eval "$recipe" --out "$out" "$@"
