#!/usr/bin/env bash
# The GPU measurements of benchmarks/RESULTS.md, split into stages that each fit a 10-minute call on a lent GPU
# machine. That machine has torch, timm, numpy, PyYAML, scikit-learn, OpenCV and pytest but no registry (and no
# optuna of its own: the pytest stage overrides the ini filter that names it); the rest of what `training`
# imports, and optuna and W&B for the headline stage, travel as wheels in .whl/ (git-ignored through
# .git/info/exclude; about 35 MB with the headline's, inside the 64 MiB a call carries).
#
#   bash benchmarks/device.sh wheels    # here, once: download the wheels for the device's Python 3.12
#   bash benchmarks/device.sh STAGE     # there (carry .whl), STAGE one of:
#     gather    host-side gather rates                          (~1 min)
#     models    model-only / ours / naive / gather / augment    (~5 min)
#     share     K = 1..4 trials per GPU, and the K auto picks    (~4 min)
#     ceiling   probed batch ceilings vs the real OOM boundary  (~3 min)
#     ablation  where the step's time goes beyond the model; fp16 affine precision (a few minutes)
#     smoke     bf16 / auto batch / fp16 / compile on digits, and the GPU-only tests (~4 min)
#     headline  hand-written Optuna study vs `search run` to the same macro-F1 (benchmarks/headline.py; ~6 min)
# Output goes to stdout and, where $OUT is set, to $OUT/STAGE.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: bash benchmarks/device.sh wheels|gather|models|share|ceiling|smoke|ablation|headline}
case $stage in
  wheels|gather|models|share|ceiling|smoke|ablation|headline) ;;
  *) echo "benchmarks/device.sh: unknown stage '$stage'; use wheels, gather, models, share, ceiling, smoke, ablation or headline" >&2; exit 2 ;;
esac

if [[ $stage == wheels ]]; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
  training=(pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
            typing-extensions==4.16.0 albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16)
  # headline: optuna and W&B (offline), with what they import that the image lacks; protobuf as well, since
  # googleapis-common-protos needs >= 6.33.5 and the image's own version is not known from here
  headline=(optuna==5.0.0 sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 colorlog==6.12.0
            wandb==0.31.0 cwevals==0.0.1b1 distro==1.9.0 sniffio==1.3.1 platformdirs==4.14.9 protobuf==7.36.2
            googleapis-common-protos==1.76.0 opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2
            opentelemetry-proto==1.45.2 opentelemetry-semantic-conventions==0.66b2
            opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-exporter-otlp-proto-common==1.45.2
            opentelemetry-exporter-otlp-common==0.66b2 opentelemetry-exporter-http-transport==0.66b2)
  for w in "${training[@]}" "${headline[@]}"; do
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
  share)   run python3 benchmarks/throughput.py --n-images 512 --models "" --k 1,2,3,4 --share-seconds 10 --ceiling "" --share-auto ;;
  ceiling) run python3 benchmarks/throughput.py --n-images 512 --models "" --k "" --ceiling resnet18,efficientnet_b0 ;;
  ablation) run python3 benchmarks/ablation.py ;;
  # headline: both arms on one GPU, one after the other, 1 seed; sized for ~6 minutes of the call, from the H100
  # figures in RESULTS.md (2026-11-23) on the same kind of 512x384 JPEGs. 10 classes x 240 = 2,400 images, so
  # each epoch reads 1,920 train + 480 val images. Peer: ImageFolder + PIL with 16 workers ran at ~1,100-1,160
  # img/s, loader-bound for resnet18 and efficientnet_b0 alike, so ~2.2 s per epoch; 20 trials x 4 epochs = 80
  # epochs, ~175 s, plus per-trial model build and W&B run and the process start: ~3.5 min. Ours: the decode
  # cache (3,072 such JPEGs took 3.5-4.1 s), the batch-ceiling probe of resnet18@224 (32 s with the old probe,
  # less now), ~0.5 s of training per trial (resnet18@224 trains at 5,000+ img/s even at batch 64) plus ~2 s of
  # per-trial W&B, charts and checkpoints, fewer epochs where the median pruner stops trials: ~1.5-2 min. Both:
  # ~5.5 min, and with the data drawn once (~5 s on 16 cores) and the wheels installed, ~6 min: inside one
  # 10-minute call with room for a peer 30% slower than estimated. resnet18, not efficientnet_b0: the peer is
  # loader-bound either way, and resnet18 keeps ours' probe and trials short. A second seed needs a second call:
  # `bash benchmarks/device.sh headline --first-seed 1` (arguments after the stage go to headline.py, last wins).
  headline) wandb_flag=""
           if ! python3 -c "import wandb, optuna" >/dev/null 2>&1; then  # rather a run without W&B than none
             python3 -c "import optuna" || exit 1
             run echo "wandb does not import on this machine: both arms run without W&B (--no-wandb)"
             wandb_flag=--no-wandb
           fi
           run python3 benchmarks/headline.py --trials 20 --epochs 4 --seeds 1 --model resnet18 --image-size 224 \
             --batch-size 64 --classes 10 --per-class 240 --trials-per-gpu 1 --out "${OUT:-/tmp}/headline" $wandb_flag "${@:2}" ;;
  smoke)   run python3 benchmarks/gpu_smoke.py
           run python3 -m pytest -q -p no:cacheprovider -o filterwarnings=ignore::DeprecationWarning tests/training/data/test_batch_gather.py \
             tests/training/test_no_host_sync.py tests/training/test_augment_agreement.py ;;
esac
