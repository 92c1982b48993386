#!/usr/bin/env bash
# Pretrain: tools/pretrain.sh CONFIG [NUM_GPUS] [KEY=VALUE ...]
#   one process when NUM_GPUS is 1 (default), torchrun with NUM_GPUS processes per node otherwise.
#   One node: torchrun --standalone (a free port). Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT.
#   SLURM: `srun --ntasks-per-node=G --gpus-per-task=1 python -m pretrain.train CONFIG ...` (the
#   SLURM_* variables are understood).
set -euo pipefail
if [[ $# -lt 1 ]]; then
  sed -n '2,7p' "$0"; exit 2
fi
CONFIG=$1; shift
GPUS=1
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then GPUS=$1; shift; fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[[ -x $PY ]] || PY=python
if [[ $GPUS -le 1 && ${NNODES:-1} -le 1 ]]; then
  exec "$PY" -m pretrain.train "$CONFIG" "$@"
fi
if [[ ${NNODES:-1} -le 1 && -z ${MASTER_PORT:-} ]]; then
  # one node: torchrun's standalone rendezvous picks a free port (two jobs on a node do not collide)
  exec "$PY" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" -m pretrain.train "$CONFIG" "$@"
fi
exec "$PY" -m torch.distributed.run --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
  --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
  --nproc_per_node "$GPUS" -m pretrain.train "$CONFIG" "$@"
