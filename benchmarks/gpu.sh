#!/usr/bin/env bash
# The speed table on a GPU machine, in one command (`make bench-gpu`, or `bash benchmarks/gpu.sh`
# from the repository root). It installs pinnlib with the bench extra and TensorFlow's CUDA
# wheels, checks that TensorFlow sees the GPU (and stops if not, rather than timing the CPU),
# and prints the same table as `make bench` (with the GPU allocator's peak memory per case), with
# more timed steps because GPU steps are short.
# With $OUT set (a folder), the table is also written to $OUT/bench-gpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install -q -e ".[bench]" "tensorflow[and-cuda]"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" - <<'PYCODE'
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    raise SystemExit("TensorFlow sees no GPU: not running the GPU benchmark")
print("TensorFlow", tf.__version__, "GPUs:", [g.name for g in gpus])
PYCODE
"$PY" benchmarks/run.py --steps "${STEPS:-1500}" --train-steps "${TRAIN_STEPS:-5000}" | tee "${OUT:-/tmp}/bench-gpu.txt"
