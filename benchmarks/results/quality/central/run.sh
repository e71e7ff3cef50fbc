#!/bin/bash
# The three-arm experiment (benchmarks/quality/central.py) from the real corpus. Run from
# the repository root after benchmarks/results/data/real_corpus/run.sh has built the corpus
# and the BUSI task under $BUILT. This script builds the second task (POCUS, UltraBench's
# split of the covid19_pocus_ultrasound clips), takes POCUS out of the corpus (its task is
# held out), checks what is left against both tasks and shards it; then runs the
# experiment in chunks of $HOURS. Run it again to go on where it stopped.
set -euo pipefail
RAW=${RAW:-/work/realdata}
BUILT=${BUILT:-$RAW/built}
HOURS=${HOURS:-1.5}
US=.venv/bin/usjepa
PY=.venv/bin/python
if [ ! -f "$BUILT/central/READY" ]; then
  [ -d "$BUILT/tasks/pocus" ] || $US data build-task pocus "$RAW/pocus" "$BUILT/tasks/pocus"
  mkdir -p "$BUILT/central"
  $PY - "$BUILT" <<'PY'
import sys
import pandas as pd
built = sys.argv[1]
m = pd.read_parquet(f"{built}/corpus_real5/manifest_clean.parquet")
kept = m[m["dataset"] != "POCUS"]
kept.to_parquet(f"{built}/corpus_real5/manifest_no_pocus.parquet", index=False)
print(f"corpus without POCUS: {len(kept)} of {len(m)} frames")
PY
  $US data check-leakage "$BUILT/corpus_real5/manifest_no_pocus.parquet" \
    "$BUILT/tasks/busi" "$BUILT/tasks/pocus" \
    --out "$BUILT/central/manifest.parquet" --report "$BUILT/central/leaks.csv"
  cp "$BUILT/central/leaks.csv" benchmarks/results/quality/central/leaks.csv
  $US data shard "$BUILT/central/manifest.parquet" "$BUILT/central/shards" --workers 2 \
    --root "$BUILT/corpus_real5"
  touch "$BUILT/central/READY"
fi
$PY -m benchmarks.quality.central --manifest "$BUILT/central/manifest.parquet" \
  --shards "$BUILT/central/shards" --root "$BUILT/corpus_real5" --tasks "$BUILT/tasks/busi" "$BUILT/tasks/pocus" \
  --hours "$HOURS" "$@"
