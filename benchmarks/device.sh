#!/usr/bin/env bash
# The GPU measurements of benchmarks/RESULTS.md, split into stages that each fit a 10-minute call on a lent GPU
# machine. That machine has torch, timm, numpy, PyYAML, scikit-learn, OpenCV and pytest but no registry (and no
# optuna: the pytest stage overrides the ini filter that names it); the rest of
# what `training` imports travels as wheels in .whl/ (git-ignored through .git/info/exclude).
#
#   bash benchmarks/device.sh wheels    # here, once: download the wheels for the device's Python 3.12
#   bash benchmarks/device.sh STAGE     # there (carry .whl), STAGE one of:
#     gather    host-side gather rates                          (~1 min)
#     models    model-only / ours / naive / gather / augment    (~5 min)
#     share     K = 1, 2, 4 trials per GPU                      (~3 min)
#     ceiling   probed batch ceilings vs the real OOM boundary  (~3 min)
#     ablation  where the step's time goes beyond the model; fp16 affine precision (a few minutes)
#     smoke     bf16 / auto batch / fp16 / compile on digits, and the GPU-only tests (~4 min)
# Output goes to stdout and, where $OUT is set, to $OUT/STAGE.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: bash benchmarks/device.sh wheels|gather|models|share|ceiling|smoke|ablation}
case $stage in
  wheels|gather|models|share|ceiling|smoke|ablation) ;;
  *) echo "benchmarks/device.sh: unknown stage '$stage'; use wheels, gather, models, share, ceiling, smoke or ablation" >&2; exit 2 ;;
esac

if [[ $stage == wheels ]]; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
  for w in pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
           typing-extensions==4.16.0 albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$w"
  done
  ls .whl
  exit 0
fi

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
log=${OUT:+$OUT/$stage.txt}
run() { if [[ -n $log ]]; then "$@" 2>&1 | tee -a "$log"; else "$@"; fi; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true; } | { if [[ -n $log ]]; then tee -a "$log"; else cat; fi; }
case $stage in
  gather)  run python3 benchmarks/gather.py ;;
  models)  run python3 benchmarks/throughput.py --n-images 3072 --steps 40 --warmup 10 --k "" --ceiling "" --profile "${OUT:-/tmp}" ;;
  share)   run python3 benchmarks/throughput.py --n-images 512 --models "" --k 1,2,4 --share-seconds 10 --ceiling "" ;;
  ceiling) run python3 benchmarks/throughput.py --n-images 512 --models "" --k "" --ceiling resnet18,efficientnet_b0 ;;
  ablation) run python3 benchmarks/ablation.py ;;
  smoke)   run python3 benchmarks/gpu_smoke.py
           run python3 -m pytest -q -p no:cacheprovider -o filterwarnings=ignore::DeprecationWarning tests/training/test_batch_gather.py \
             tests/training/test_no_host_sync.py tests/training/test_augment_agreement.py ;;
esac
