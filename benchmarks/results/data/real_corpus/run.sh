#!/bin/bash
# The real pretraining corpus: five public sets (two from videos, one from scanner screens
# with their interface on), the BUSI breast task kept out of it by the leakage check,
# then shards. Run from the repository root; writes $OUT/corpus_real5, $OUT/tasks/busi,
# $OUT/shards_real5 and, here, build_times.csv and the build logs.
#
# Where each set comes from (none is committed; each at the path its variable names):
#   POCUS: github.com/jannisborn/covid19_pocus_ultrasound, data/pocus_videos and
#          data/pocus_images (per-clip licences in its metadata; CC BY and CC BY-NC)
#   BLUES: github.com/NinaWie/COVID-BLUES, lus_videos/ (362 lung clips; CC BY-NC-ND 4.0;
#          the patient number is in each file name)
#   HC18:  zenodo.org/records/1327317 (CC BY 4.0), training_set and test_set, or the copy in
#          github.com/SimonZeng7108/Fetal_Segmentation_Pytorch (data/training, data/test_set);
#          the *_Annotation.png outlines are skipped
#   TTE47: the reference gallery of github.com/thrive-centre/thrive-centre.github.io
#          (assets/images/datasets/TTE47: 47 echo frames as the scanner showed them, with
#          text, depth dots, grey bar, ECG trace and logo; CC BY-NC-SA 4.0)
#   SPJ:   github.com/hidden-ops/NHBS-Net_SPJ_dataset (SPJ_dataset: 51 infant hip images)
#   BUSI:  Al-Dhabyani et al. 2020, e.g. github.com/yirutsai/Breast-ultrasound-dataset
#          data/{benign,malignant,normal}/images, one folder per class at $BUSI
# All five sets sit in one folder ($RAW), so one pseudonym key ($RAW/.usjepa-secret,
# made on the first build) names every patient and source in the corpus.
set -euo pipefail
RAW=${RAW:-/work/realdata}
POCUS=${POCUS:-$RAW/pocus/data}
BLUES=${BLUES:-$RAW/blues/lus_videos}
HC18=${HC18:-$RAW/hc18/data}
TTE47=${TTE47:-$RAW/thrive/assets/images/datasets/TTE47}
SPJ=${SPJ:-$RAW/hip/SPJ_dataset}
BUSI=${BUSI:-$RAW/busi}
OUT=${OUT:-/work/realdata/built}
HERE=benchmarks/results/data/real_corpus
SECRET=$RAW/.usjepa-secret
US=.venv/bin/usjepa
mkdir -p "$OUT"
echo "step,seconds" > "$HERE/build_times.csv"
timed() {  # timed NAME COMMAND...: run it, log its output, record its wall time
  local name=$1 start
  shift
  start=$(date +%s.%N)
  "$@" > "$HERE/logs/$name.log" 2>&1
  echo "$name,$(echo "$(date +%s.%N) - $start" | bc)" >> "$HERE/build_times.csv"
}
mkdir -p "$HERE/logs"
rm -rf "$OUT/corpus_real5" "$OUT/shards_real5" "$OUT/tasks/busi"
# 1. the held-out task: 780 images, 3 classes, a seeded 80/20 split
timed task_busi $US data make-task "$BUSI" "$OUT/tasks/busi" --test-fraction 0.2 --seed 0 \
  --secret "$SECRET"
# 2. the corpus: clips at 6 frames/s (at most 96 frames per POCUS clip, 48 per BLUES clip)
timed POCUS $US data build "$POCUS" "$OUT/corpus_real5" --dataset POCUS --video-fps 6 \
  --max-frames 96 --workers 2 --secret "$SECRET"
timed BLUES $US data build "$BLUES" "$OUT/corpus_real5" --dataset BLUES --video-fps 6 \
  --max-frames 48 --patient-pattern '(patient_[0-9]+)_' --workers 2 --secret "$SECRET"
timed HC18 $US data build "$HC18" "$OUT/corpus_real5" --dataset HC18 --exclude '_Annotation' \
  --workers 2 --secret "$SECRET"
timed TTE47 $US data build "$TTE47" "$OUT/corpus_real5" --dataset TTE47 --no-catalog \
  --organ heart --workers 2 --secret "$SECRET"
timed SPJ $US data build "$SPJ" "$OUT/corpus_real5" --dataset SPJ --no-catalog --organ hip \
  --workers 2 --secret "$SECRET"
# 3. leakage against the task, then shards of what is clean
timed leakage $US data check-leakage "$OUT/corpus_real5/manifest.parquet" "$OUT/tasks/busi" \
  --out "$OUT/corpus_real5/manifest_clean.parquet" --report "$OUT/corpus_real5/leaks.csv"
cp "$OUT/corpus_real5/leaks.csv" "$HERE/leaks.csv"
timed shard $US data shard "$OUT/corpus_real5/manifest_clean.parquet" "$OUT/shards_real5" \
  --workers 2
# 4. the record: frames per set and source kind, the leakage findings
.venv/bin/python -m benchmarks.data.real_corpus "$OUT/corpus_real5" "$HERE"
