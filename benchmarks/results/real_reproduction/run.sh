#!/bin/bash
# Real-data reproduction: a corpus of real lung-ultrasound frames, a real breast task kept
# out of it, probe macro F1 against pretraining minutes. Run from the repository root.
#   POCUS: github.com/jannisborn/covid19_ultrasound (data/pocus_videos, data/pocus_images),
#          e.g. the fork nickdnickd/covid19_ultrasound, unpacked at $POCUS
#   BUSI:  Al-Dhabyani et al. 2020 (Data in Brief), e.g. github.com/yirutsai/Breast-ultrasound-dataset
#          data/{benign,malignant,normal}/images, one folder per class at $BUSI
set -euxo pipefail
POCUS=${POCUS:-/work/realdata/pocus}
BUSI=${BUSI:-/work/realdata/busi}
# 1. the labelled task: 780 images, 3 classes, 156 test images (seeded 80/20 split)
.venv/bin/usjepa data make-task "$BUSI" /data/tasks/busi --test-fraction 0.2 --seed 0
# 2. the corpus: 4,265 frames of 151 clips and images (6 frames/s, at most 96 per clip)
.venv/bin/usjepa data build "$POCUS/data" /data/corpus_real --dataset POCUS --video-fps 6 --max-frames 96 --workers 2
.venv/bin/usjepa data check-leakage /data/corpus_real/manifest.parquet /data/tasks/busi \
  --out /data/corpus_real/manifest_clean.parquet --report /data/corpus_real/leaks.csv
.venv/bin/usjepa data shard /data/corpus_real/manifest_clean.parquet /data/shards_real --workers 2
# 3. stage 1 for 20 min, stage 2 for 40 min, USrc and plain side by side; probe; report
make bench BENCH=real_reproduction ARGS="--teacher-minutes 20 --student-minutes 40 --every 5"
