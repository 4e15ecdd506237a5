#!/usr/bin/env bash
# One node's launcher of a multi-node training: srun starts it once per node.
#
#   srun --ntasks-per-node=1 bash recipes/slurm/torchrun_node.sh train.py hparams/system_c.yaml ...
#
# Static rendezvous on the first node: every node runs torchrun with the same --nnodes,
# --master_addr and --master_port and its own --node_rank; torchrun starts one process per GPU.
#   SLURM_NNODES, SLURM_NODEID  set by srun on each node (default 1 and 0: one machine)
#   MASTER_ADDR                 the first node's address (train.sbatch sets it)
#   MASTER_PORT                 default 29500
#   NPROC_PER_NODE              default SLURM_GPUS_ON_NODE, else 1
#   TORCHRUN                    default torchrun (e.g. "python -m torch.distributed.run")
#   DRY_RUN=1                   print the command instead of running it
set -euo pipefail
: "${MASTER_ADDR:?set MASTER_ADDR to the address of the first node}"
command=(${TORCHRUN:-torchrun} --nnodes="${SLURM_NNODES:-1}" --node_rank="${SLURM_NODEID:-0}"
    --nproc_per_node="${NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}"
    --master_addr="$MASTER_ADDR" --master_port="${MASTER_PORT:-29500}" "$@")
if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "${command[*]}"
    exit 0
fi
# exec: the signals srun forwards (SIGTERM on pre-emption) reach torchrun, which passes them on.
exec "${command[@]}"
