#!/usr/bin/env bash
# Train a judge on every GPU of this node, or of several nodes, with accelerate and DeepSpeed.
#
#   scripts/train_multi_gpu.sh RECIPE.yaml [zero2|zero3|zero3_offload] [TRL/judgeforge flags ...]
#
#   scripts/train_multi_gpu.sh recipes/training/qwen2.5-7b_lora_zero2.yaml zero2
#   scripts/train_multi_gpu.sh recipes/training/qwen2.5-7b_full_zero3.yaml zero3 --num_train_epochs 1
#
# Environment:
#   NUM_GPUS     GPUs per node (default: all that nvidia-smi lists)
#   NUM_NODES    nodes (default 1). With more than one, run this script on every node with
#   NODE_RANK    0 on the main node, 1..NUM_NODES-1 elsewhere, and
#   MASTER_ADDR  / MASTER_PORT the address of the main node and a free port (default 29500).
# Rerunning the same command resumes from the last complete checkpoint in the recipe's output_dir.
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
recipe=$1
shift
zero=zero3
if [[ $# -gt 0 && "$1" != -* ]]; then
    zero=$1
    shift
fi

cd "$(dirname "$0")/.."
config=training/accelerate/${zero}.yaml
if [[ ! -f "$config" ]]; then
    echo "unknown DeepSpeed setting '$zero': expected zero2, zero3 or zero3_offload (see training/accelerate/)" >&2
    exit 2
fi
if [[ ! -f "$recipe" ]]; then
    echo "recipe not found: $recipe" >&2
    exit 2
fi

num_nodes=${NUM_NODES:-1}
if [[ -z "${NUM_GPUS:-}" ]]; then
    NUM_GPUS=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || true)
fi
if [[ "${NUM_GPUS:-0}" -lt 1 ]]; then
    echo "no GPU found (set NUM_GPUS); on a CPU machine use: judgeforge train $recipe" >&2
    exit 2
fi

node_flags=()
if [[ "$num_nodes" -gt 1 ]]; then
    : "${NODE_RANK:?set NODE_RANK (0 on the main node) for a multi-node run}"
    : "${MASTER_ADDR:?set MASTER_ADDR to the address of the main node for a multi-node run}"
    if [[ "$zero" != zero3 ]]; then
        echo "multi-node runs use ZeRO-3 (training/accelerate/multi_node_zero3.yaml), not $zero" >&2
    fi
    config=training/accelerate/multi_node_zero3.yaml
    node_flags=(--num_machines "$num_nodes" --machine_rank "$NODE_RANK" --main_process_ip "$MASTER_ADDR"
        --main_process_port "${MASTER_PORT:-29500}")
fi
launch=(accelerate launch --config_file "$config" --num_processes $((NUM_GPUS * num_nodes)) "${node_flags[@]}")

echo "+ ${launch[*]} -m training.sft --config $recipe $*" >&2
exec "${launch[@]}" -m training.sft --config "$recipe" "$@"
