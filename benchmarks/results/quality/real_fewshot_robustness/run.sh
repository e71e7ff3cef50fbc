#!/bin/bash
# Few-shot curves and corruption robustness on BUSI for the real reproduction's encoders
# (final exports of ../real_reproduction/run.sh). Run from the repository root.
set -euxo pipefail
OUT=benchmarks/results/quality/real_fewshot_robustness
.venv/bin/usjepa probe --config $OUT/busi.yaml --fractions "[0.05, 0.1, 0.25, 0.5, 1.0]" \
  --out_dir runs/real_fewshot
.venv/bin/usjepa robustness --config $OUT/busi.yaml --out_dir runs/real_robustness
cp runs/real_fewshot/fewshot{,_per_seed}.csv runs/real_fewshot/fewshot.{md,png} $OUT/
cp runs/real_robustness/robustness*.{csv,md} runs/real_robustness/robustness.png $OUT/
# corruptions.png (a BUSI test image under every corruption) stays in runs/ (BUSI's images are not ours to publish)
