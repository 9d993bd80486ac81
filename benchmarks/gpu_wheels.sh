#!/usr/bin/env bash
# Downloads, here (online), the wheels the GPU machine lacks into .whl/ (git-ignored), for
# benchmarks/gpu.sh to install there offline. That machine's Python is 3.12 with torch, numpy,
# scipy, scikit-learn, tensorboard, tqdm and pyyaml, but pandas 3 (RecBole 1.2.1 needs pandas < 3),
# no RecBole and no Faiss. Usage: bash benchmarks/gpu_wheels.sh [python_version]
set -euo pipefail
PY=${1:-3.12}
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp "${platforms[@]}" \
    -d .whl recbole==1.2.1 faiss-cpu==1.15.1 pandas==2.3.3 pytz tzdata colorlog==4.7.2 texttable==1.7.2 \
    thop==0.1.1.post2209072238
du -ch .whl/*.whl
