#!/bin/bash
# Multi-node pretraining under SLURM: one task per GPU, Lightning reads the SLURM
# environment (ranks, master address) itself.
#
#   sbatch --nodes 4 experiments/recipe/slurm_pretrain.sh experiments/recipe/salt_vitb16.yaml
#   sbatch --nodes 4 experiments/recipe/slurm_pretrain.sh experiments/recipe/salt_vitb16.yaml \
#       --config experiments/recipe/plain_masks.yaml
#
# Preemption: SLURM sends SIGUSR1 90 s before the time limit; Lightning then writes
# hpc_ckpt_<n>.ckpt into the run folder (trainer.default_root_dir) and requeues the job,
# and the requeued job resumes from that checkpoint by itself.
#SBATCH --job-name=usjepa
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=10
#SBATCH --time=48:00:00
#SBATCH --signal=SIGUSR1@90
#SBATCH --requeue
#SBATCH --output=runs/slurm-%j.out
set -euo pipefail
config=${1:?usage: sbatch slurm_pretrain.sh CONFIG.yaml [more CLI arguments]}
shift
srun .venv/bin/python -m usjepa pretrain --config "$config" "$@" \
  --trainer.num_nodes "$SLURM_JOB_NUM_NODES" \
  --trainer.devices "$SLURM_NTASKS_PER_NODE" \
  --data.init_args.num_workers "$((SLURM_CPUS_PER_TASK - 2))"
