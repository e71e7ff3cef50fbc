#!/bin/bash
# The recipe and the eight-task probe end to end on CPU, on real public scans fetched
# from github.com/jannisborn/covid19_ultrasound (data/pocus_images, data/pocus_videos),
# unpacked at $RAW. Run from the repository root; writes into /data (corpus, shards,
# tasks) and runs/ as the configs expect. The log of the recorded run is run.log.
set -euxo pipefail
RAW=${RAW:-/work/realdata/pocus}
HERE=benchmarks/results/quality/real_pipeline
mkdir -p /data/tasks
# 1. the benchmark task, by UltraBench's own preprocessing
[ -e /data/tasks/pocus/test.json ] || .venv/bin/usjepa data build-task pocus "$RAW" /data/tasks/pocus
# 2. the pretraining corpus from the same download, then its benchmark test images out
[ -e /data/corpus/manifest.parquet ] || .venv/bin/usjepa data build "$RAW/data" /data/corpus --dataset POCUS --video-fps 4 --max-frames 64 --workers 2
.venv/bin/usjepa data check-leakage /data/corpus/manifest.parquet /data/tasks/pocus \
  --out /data/corpus/manifest_clean.parquet --report /data/corpus/leaks.csv
rm -rf /data/shards && .venv/bin/usjepa data shard /data/corpus/manifest_clean.parquet /data/shards --workers 2
# 3. stage 1 (our teacher, no URFM file here), then stage 2, each with small overrides
make pretrain CONFIG=experiments/recipe/teacher_stage1_vitb16.yaml ARGS="--config $HERE/small_cpu_stage1.yaml --data.init_args.test_index [/data/tasks/pocus]"
make pretrain CONFIG=experiments/recipe/salt_vitb16.yaml ARGS="--config experiments/recipe/own_teacher.yaml --config $HERE/small_cpu.yaml --data.init_args.test_index [/data/tasks/pocus]"
# 4. the eight-task probe on the tasks built so far (POCUS): the student, its stage-1
#    teacher, and a random-init encoder of the same small architecture and input contract
#    (the config's random_init is a ViT-B/16 at 224 px: about 30 CPU minutes here)
.venv/bin/python - <<'PY'
import json
from pathlib import Path

from usjepa.models import ViTEncoder, export_encoder
from usjepa.models.checkpoint import read_input_spec

student = Path("runs/recipe/salt_vitb16/encoder.safetensors")
kw = json.loads(student.with_suffix(".json").read_text())["kwargs"]
arch = {k: kw[k] for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads")}
export_encoder(ViTEncoder(**arch, init_seed=0), "runs/recipe/random_init_small/encoder.safetensors",
               read_input_spec(student))
PY
make probe CONFIG=experiments/probe/ultrabench.yaml \
  MODELS=runs/recipe/random_init_small/encoder.safetensors,teacher_stage1,usrc_jepa \
  ARGS="--skip_missing_tasks true --out_dir $HERE/probe"
