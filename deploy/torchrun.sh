#!/usr/bin/env bash
# Multi-node launcher for `ephys pretrain` under torchrun (static rendezvous). Run it on every node
# with the same NNODES, MASTER_ADDR and MASTER_PORT and that node's NODE_RANK (0 on MASTER_ADDR);
# the arguments are `ephys pretrain` options:
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 NPROC_PER_NODE=4 deploy/torchrun.sh --manifest M.json --out RUN --steps 1000
#
# Environment: NNODES (default 1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), MASTER_PORT (29500),
# NPROC_PER_NODE (default: the GPUs torch sees, at least 1). torchrun gives every process RANK,
# LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
set -euo pipefail

nnodes="${NNODES:-1}"
node_rank="${NODE_RANK:-0}"
master_addr="${MASTER_ADDR:-127.0.0.1}"
master_port="${MASTER_PORT:-29500}"
nproc="${NPROC_PER_NODE:-$(python -c 'import torch; print(max(1, torch.cuda.device_count()))')}"

# >>> ephys argv (tests/test_deploy.py parses these with torchrun's and the ephys CLI)
ephys_argv=(pretrain "$@")
torchrun_argv=(--nnodes "$nnodes" --node-rank "$node_rank" --nproc-per-node "$nproc"
  --master-addr "$master_addr" --master-port "$master_port" -m ephys)
# <<< ephys argv
exec torchrun "${torchrun_argv[@]}" "${ephys_argv[@]}"
