#!/usr/bin/env bash
# First call on the GPU machine (carry .device/one, and benchmarks/output/objective_study_sasrec_<data>_gpu when
# an earlier GPU run left one): stage the model's first half, the data and the gguf package under /tmp (kept while
# the machine stays warm), report the machine, run the CUDA tests, and fit the GPU SASRec when none was carried,
# so that the second call's whole command is left to RA-Rec. DATA: the data folder's name (amazon-beauty); DEVICE: cuda (cpu for a rehearsal).
set -euo pipefail
stage=${STAGE:-/tmp/rarec-stage}
out=${OUT:-/tmp/rarec-out}
data=${DATA:-amazon-beauty}
device=${DEVICE:-cuda}  # cpu: a rehearsal on a machine without a GPU
mkdir -p "$stage/site" "$stage/data" "$out"
cp .device/one/model.part1 "$stage/"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$stage/site" \
    .device/one/gguf-*.whl
tar -C "$stage/data" -xJf .device/one/data.tar.xz
export PYTHONPATH="$PWD:$stage/site" PYTHONUNBUFFERED=1
nvidia-smi -L || true
python3 -c "import torch, transformers; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
'| transformers', transformers.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log"
# the study's own names for this data set and device: its results file and its shared SASRec's cache
read -r results sasrec < <(python3 -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path
from objective_study import run_files; found = run_files(Path(sys.argv[1]), sys.argv[2]); print(found[0], found[2])" \
    "$stage/data/$data" "$device")
if [ ! -f "$sasrec/meta.json" ]; then
    if [ -f "$results" ]; then
        # Rows fitted on another SASRec must not sit beside this run's backbone row: the study starts a new file.
        echo "no GPU SASRec carried: it is fitted again, and the earlier GPU rows are set aside (back in \$OUT)"
        mv "$results" "$out/$(basename "$results" .json)_earlier.json"
    fi
    python3 - "$stage/data/$data" "$sasrec" "$results" "$device" <<'PY'
import json, sys, time
from pathlib import Path
sys.path.insert(0, "benchmarks")
from common import read_dataset
from objective_study import shared_sasrec
from rarec.model_selection import leave_last_out
start = time.perf_counter()
log, _ = read_dataset(Path(sys.argv[1]))
shared_sasrec(leave_last_out(log, n_valid=0).train, Path(sys.argv[2]), sys.argv[4])
results = Path(sys.argv[3])
if not results.exists():  # the study records where its backbone was fitted only when it fits it itself
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"rows": [], "sasrec_fitted_on": sys.argv[4]}))
print(f"GPU SASRec fitted in {time.perf_counter() - start:.0f} s into {sys.argv[2]}")
PY
    # It comes back as one file, to be carried to the next GPU run (tar -xf it under benchmarks/output).
    tar -C "$(dirname "$sasrec")" -cf "$out/sasrec_gpu.tar" "$(basename "$sasrec")"
fi
echo "staged in $stage: $(ls "$stage/data") and the model's first half; run run2.sh while the machine is warm"
