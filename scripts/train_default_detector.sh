#!/usr/bin/env bash
# Reproduce the shipped default detector (smear3_fcos) from random weights on CPU, and the
# second ensemble member of benchmarks/results/detector_cbc_fusion.md.
#   bash scripts/train_default_detector.sh        # about 1 h 30 min on 2 cores
# Needs the stage-1 PBC classifier (runs/pbc8_resnet18 from scripts/train_default_classifier.sh),
# whose encoder starts the backbone (the shipped detector used `--init default` while that
# model was the default).
# 1. The default: FCOS ResNet-18, multi-scale 256-384 px, 30 epochs (42 min on 2 cores);
#    working size and NMS threshold chosen on val, then copied into the package.
# 2. The ensemble member: every layer of 1 fine-tuned at 416-544 px for 12 epochs (42 min),
#    working size re-chosen on val (runs/smear3_fcos480_tuned).
# CBC's own split: train fits, val picks the best epoch and the inference settings; the test
# split is only scored.
set -euo pipefail
cd "$(dirname "$0")/.."
CBC=${CBC:-../shared/data/cbc}
HEMASCOPE=${HEMASCOPE:-.venv/bin/hemascope}
PYTHON=${PYTHON:-.venv/bin/python}
"$HEMASCOPE" train detector --data "$CBC" --out runs/smear3_fcos --init runs/pbc8_resnet18 \
  --epochs 30 --resume
"$PYTHON" scripts/ship_detector.py runs/smear3_fcos --tune-inference --sizes 288 320 352 384 416
"$HEMASCOPE" train detector --data "$CBC" --out runs/smear3_fcos480 \
  --init src/hemascope/weights/smear3_fcos --test-size 480 --max-size 800 \
  --min-sizes 416 448 480 512 544 --epochs 12 --lr 0.005 --warmup-epochs 0.5 --resume
"$PYTHON" scripts/ship_detector.py runs/smear3_fcos480 --tune-inference --dest runs/smear3_fcos480_tuned
