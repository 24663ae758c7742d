#!/usr/bin/env bash
# Reproduce the shipped default detector (smear3_fcos) from random weights, on CPU.
#   bash scripts/train_default_detector.sh        # about 2 h on 2 cores after the classifier
# Needs the stage-1 PBC classifier (runs/pbc8_resnet18 from scripts/train_default_classifier.sh),
# whose encoder starts the backbone (the shipped stage 1 used `--init default` while that
# model was the default).
# Stage 1: FCOS ResNet-18 at 352 px, 30 epochs (42 min on 2 cores).
# Stage 2: every layer fine-tuned at 480 px for 12 epochs from stage 1.
# CBC's own split: train fits, val picks the best epoch and the inference settings; the test
# split is only scored. Ship with:
#   python scripts/ship_detector.py runs/smear3_fcos480 --tune-inference
set -euo pipefail
cd "$(dirname "$0")/.."
CBC=${CBC:-../shared/data/cbc}
HEMASCOPE=${HEMASCOPE:-.venv/bin/hemascope}
"$HEMASCOPE" train detector --data "$CBC" --out runs/smear3_fcos --init runs/pbc8_resnet18 \
  --epochs 30 --resume
python scripts/ship_detector.py runs/smear3_fcos --tune-inference --dest runs/smear3_fcos_tuned
"$HEMASCOPE" train detector --data "$CBC" --out runs/smear3_fcos480 --init runs/smear3_fcos_tuned \
  --test-size 480 --max-size 800 --min-sizes 416 448 480 512 544 --epochs 12 --lr 0.005 \
  --warmup-epochs 0.5 --resume
