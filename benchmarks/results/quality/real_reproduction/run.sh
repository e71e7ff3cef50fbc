#!/bin/bash
# Real-data reproduction: a corpus of real frames from three public sets (lung, fetal head,
# cardiac), a real breast task kept out of it, probe macro F1 against pretraining minutes.
# Run from the repository root. Where each set comes from (none is committed):
#   POCUS: github.com/jannisborn/covid19_ultrasound (data/pocus_videos, data/pocus_images),
#          e.g. the fork nickdnickd/covid19_ultrasound, unpacked at $POCUS
#   HC18:  zenodo.org/records/1327317 (CC BY 4.0): training_set/*_HC.png and
#          test_set/*_HC.png at $HC18 (the *_Annotation.png outlines are skipped); also in
#          github.com/SimonZeng7108/Fetal_Segmentation_Pytorch (data/training, data/test_set)
#   TTE47: the reference gallery of github.com/thrive-centre/thrive-centre.github.io
#          (assets/images/datasets/TTE47, 47 transthoracic echo frames) at $TTE47
#   BUSI:  Al-Dhabyani et al. 2020 (Data in Brief), e.g. github.com/yirutsai/Breast-ultrasound-dataset
#          data/{benign,malignant,normal}/images, one folder per class at $BUSI
set -euxo pipefail
POCUS=${POCUS:-/work/realdata/pocus}
HC18=${HC18:-/work/realdata/hc18}
TTE47=${TTE47:-/work/realdata/tte47}
BUSI=${BUSI:-/work/realdata/busi}
OUT=${OUT:-/data}
# 1. the labelled task: 780 images, 3 classes, 156 test images (seeded 80/20 split)
.venv/bin/usjepa data make-task "$BUSI" "$OUT/tasks/busi" --test-fraction 0.2 --seed 0
# 2. the corpus, three sets in one folder: POCUS clips and images (6 frames/s, at most 96
#    per clip), HC18's 1,334 fetal-head images, TTE47's 47 cardiac frames
.venv/bin/usjepa data build "$POCUS/data" "$OUT/corpus_real" --dataset POCUS --video-fps 6 --max-frames 96 --workers 2
.venv/bin/usjepa data build "$HC18" "$OUT/corpus_real" --dataset HC18 --workers 2
.venv/bin/usjepa data build "$TTE47" "$OUT/corpus_real" --dataset TTE47 --no-catalog --organ heart --workers 2
.venv/bin/usjepa data check-leakage "$OUT/corpus_real/manifest.parquet" "$OUT/tasks/busi" \
  --out "$OUT/corpus_real/manifest_clean.parquet" --report "$OUT/corpus_real/leaks.csv"
.venv/bin/usjepa data shard "$OUT/corpus_real/manifest_clean.parquet" "$OUT/shards_real" --workers 2
# 3. stage 1 for 20 min, stage 2 for 40 min, USrc and plain side by side; probe; report
make bench BENCH=quality/real_reproduction ARGS="--teacher-minutes 20 --student-minutes 40 --every 5"
# 4. replicates: pretraining seeds 1 and 2, the step budgets of step 3 (no calibration)
for SEED in 1 2; do
  make bench BENCH=quality/real_reproduction ARGS="--teacher-minutes 20 --student-minutes 40 --every 5 \
    --seed $SEED --teacher-steps 10626 --student-steps 13813 --work runs/bench_real_seed$SEED \
    --out benchmarks/results/quality/real_reproduction/seed$SEED"
done
# 5. a replicate with the encoders' initialisation varied too: seed 3, init seed 3
make bench BENCH=quality/real_reproduction ARGS="--teacher-minutes 20 --student-minutes 40 --every 5 \
  --seed 3 --init-seed 3 --teacher-steps 10626 --student-steps 13813 \
  --work runs/bench_real_seed3 --out benchmarks/results/quality/real_reproduction/seed3"
# 6. the four runs side by side: seeds.{csv,md,png} (best snapshots chosen on validation)
make bench BENCH=quality/real_reproduction ARGS="--stage seeds --replicates \
  benchmarks/results/quality/real_reproduction benchmarks/results/quality/real_reproduction/seed1 \
  benchmarks/results/quality/real_reproduction/seed2 benchmarks/results/quality/real_reproduction/seed3"
