#!/usr/bin/env bash
# The GPU benchmark in one command, sized for a machine lent for about 15 minutes (8 of running).
#
# Here, before the call (online, once):  bash benchmarks/gpu_wheels.sh
#                                        mkdir -p .data && cp -r <data_path>/amazon-beauty <data_path>/amazon-toys .data/
# On the GPU machine (carry .whl and .data):  bash benchmarks/gpu.sh
#
# In order, each step only while time is left (BUDGET seconds in all, default 480):
#   1. the gpu tests (tests/test_gpu.py, marked gpu);
#   2. Amazon Beauty: SASRecAllPos and RimiRec, seed 2020, to their best validation;
#      (RimiRec's default tree_rebuild: plateau trains on after its first plateau: about twice the epochs;
#      a run the budget cuts resumes next time with --resume)
#   3. RecBole's SASRec, 120 s of training (per-epoch and time-to-quality ratio);
#   4. Amazon Toys, the same two models, if time is left.
# Results: benchmarks/results/<dataset>-<card> (e.g. amazon-beauty-h200), packed with the test log
# into $OUT/gpu-results.tgz after every step, so a cut-off call still brings back what finished.
# Rehearse on a CPU with tiny settings:
#   BUDGET=300 DATA=tests/data DATASETS=tiny SETTINGS="epochs=2" CARD=cpu-rehearsal bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-480}
DATA=${DATA:-.data}
DATASETS=${DATASETS:-amazon-beauty amazon-toys}
SETTINGS=${SETTINGS:-}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
start=$SECONDS
left() { echo $((BUDGET - (SECONDS - start))); }

if ! python3 -c "import recbole, faiss" 2>/dev/null; then  # RecBole, Faiss and pandas < 3 from .whl, offline
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
CARD=${CARD:-$(python3 -c "import re, torch; print((re.findall(r'[A-Z]\d{2,}\w*', torch.cuda.get_device_name()) + ['gpu'])[0].lower())")}
python3 -c "import torch, recbole, faiss, pandas; print('torch', torch.__version__, 'recbole', recbole.__version__, \
'faiss', faiss.__version__, 'pandas', pandas.__version__)" 2>&1 \
    | tee "$OUT/gpu-env.txt"

pack() {  # every results folder of this card, without checkpoints
    tar czf "$OUT/gpu-results.tgz" --exclude='*.pth' benchmarks/results/*-"$CARD" 2>/dev/null || true
}

timeout "$(left)" python3 -m pytest -q -m gpu tests/test_gpu.py -rs 2>&1 | tee "$OUT/gpu-tests.log"

bench() {  # dataset, then run.py arguments
    local dataset=$1
    shift
    local seconds
    seconds=$(left)
    if [ "$seconds" -lt 30 ]; then
        echo "skipped ($seconds s left): $dataset $*" | tee -a "$OUT/gpu-tests.log"
        return
    fi
    # shellcheck disable=SC2086
    timeout "$seconds" python3 benchmarks/run.py --datasets "$dataset" --data_path "$DATA" --seeds 2020 \
        --out "benchmarks/results/$dataset-$CARD" --resume ${SETTINGS:+--set $SETTINGS} "$@" 2>&1 | tail -n 3
    pack
}

for dataset in $DATASETS; do
    bench "$dataset" --models SASRecAllPos RimiRec
    if [ "$dataset" = "${DATASETS%% *}" ]; then
        bench "$dataset" --models SASRec --time_budget 120
    fi
done
pack
echo "done in $((SECONDS - start)) s" | tee -a "$OUT/gpu-tests.log"
