#!/usr/bin/env bash
# A multi-node sweep on a SLURM cluster (conf/hydra/launcher/slurm.yaml). Run it on the login node
# from the repository root, inside tmux/screen: Hydra submits one SLURM job per combination of the
# swept values (a job array, through submitit) and waits for all of them. Each job trains on
# NODES nodes x GPUS GPUs with DDP, one process per GPU. Needs the `slurm` extra:
#   pip install -e ".[slurm]"
# Usage (extra arguments are more Hydra overrides):
#   PARTITION=gpu NODES=2 GPUS=4 HOURS=4 bash scripts/slurm_example.sh [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."

PARTITION=${PARTITION:-gpu}   # `sinfo -s` lists the cluster's partitions
NODES=${NODES:-2}             # nodes per job
GPUS=${GPUS:-4}               # GPUs per node
HOURS=${HOURS:-4}             # wall-clock limit per job
# Compute nodes often have no internet: W&B logs offline; `wandb sync` the runs afterwards.
export WANDB_MODE=${WANDB_MODE:-offline}

# outputs/ must be on a file system every node sees (it holds the tokenizer cache, the checkpoints
# and submitit's pickled jobs). Train the tokenizer once, here: processes that start together
# share it through a file lock, but locks are unreliable on some network file systems.
python train.py experiment=lm_transformer debug=fdr

# logger=many writes CSV logs too, for attnlab-summarize.
python train.py -m \
  hydra/launcher=slurm \
  hydra.launcher.partition="$PARTITION" \
  hydra.launcher.gpus_per_node="$GPUS" \
  hydra.launcher.timeout_min=$((HOURS * 60)) \
  experiment=lm_transformer \
  trainer=ddp \
  trainer.num_nodes="$NODES" \
  logger=many \
  model.num_layers=2,4 \
  task.optimizer.lr=0.001,0.002 \
  "$@"

# While it runs: squeue --me
#   tail -f outputs/lm_transformer/multiruns/<timestamp>/.submitit/<job id>/<job id>_0_log.out
# Afterwards:
#   attnlab-summarize outputs/lm_transformer/multiruns/<timestamp>
