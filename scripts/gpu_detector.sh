#!/usr/bin/env bash
# Train smear-field detectors on a borrowed GPU machine, inside one time box.
#
# Here, first (the GPU machine sees the repository only, 64 MiB in all):
#   mkdir -p .devdata/pk && tar czf .devdata/pk/cbc.tgz -C ../shared/data cbc
# then run this there with `.devdata/pk/cbc.tgz` carried and the weights it does not read
# set aside (it reads pbc8_resnet18 for --init default and smear3_fcos to fine-tune).
# The lent machine has no pycocotools and a different Python (3.12 when this was written):
# unpack that version's wheel into .devdata/py and carry it too, e.g.
#   pip download pycocotools --python-version 3.12 --only-binary=:all: --no-deps -d /tmp/w
#   mkdir -p .devdata/py && python -m zipfile -e /tmp/w/pycocotools-*.whl .devdata/py
# Two runs side by side, each with its cosine fitted to MINUTES (--fit-to-time) and
# WORKERS processes augmenting its batches ahead of the GPU:
#   a: the backbone from the shipped PBC classifier (--init default), lr 0.01, as the
#      shipped detector was trained on the CPU, with more epochs;
#   b: every layer of the shipped detector fine-tuned at lr 0.005.
# Each picks its best epoch on CBC val; they come back to $OUT as fp16 weights with their
# configs, histories and logs (meta.tgz; cat a.st.* > model.safetensors). Here, choose by
# val mAP@.5:.95 and ship with
#   python scripts/ship_detector.py RUN --tune-inference --sizes 288 320 352 384 416
# Usage (on the GPU machine, from the repo root): OUT=/some/dir bash scripts/gpu_detector.sh
#   env: MINUTES (4), WORKERS (7), DEVICE (cuda), RUNS ("a b")
set -u
: "${OUT:?set OUT to the folder that comes back}"
MINUTES=${MINUTES:-4} WORKERS=${WORKERS:-7} DEVICE=${DEVICE:-cuda} RUNS=${RUNS:-"a b"}
tar xzf .devdata/pk/cbc.tgz -C /tmp
export PYTHONPATH=$PWD/src:$PWD/.devdata/py PYTHONUNBUFFERED=1 HEMASCOPE_CACHE=/tmp/hc
hs() { python3 -c 'import sys; from hemascope.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"; } 2>&1 | tee "$OUT/log.txt"
c=(train detector --data /tmp/cbc --epochs 300 --max-minutes "$MINUTES" --fit-to-time
   --device "$DEVICE" --workers "$WORKERS" --threads 2 --weights-dtype float16)
declare -A extra=(
  [a]="--init default"
  [b]="--init src/hemascope/weights/smear3_fcos --lr 0.005 --warmup-epochs 0.5"
)
for r in $RUNS; do
  # shellcheck disable=SC2086
  hs "${c[@]}" ${extra[$r]} --out "/tmp/d/$r" > "/tmp/d_$r.log" 2>&1 &
done
wait
files=()
for r in $RUNS; do
  cp "/tmp/d_$r.log" "/tmp/d/$r/train.log"
  for f in history.jsonl config.json metrics.json train.log; do [ -f "/tmp/d/$r/$f" ] && files+=("$r/$f"); done
  [ -f "/tmp/d/$r/model.safetensors" ] && split -b 15M "/tmp/d/$r/model.safetensors" "$OUT/$r.st."
done
tar czf "$OUT/meta.tgz" -C /tmp/d "${files[@]}"
ls -la "$OUT"
for r in $RUNS; do grep -v "^epoch" "/tmp/d_$r.log" | tail -n 5; grep "^epoch" "/tmp/d_$r.log" | tail -n 2; done
