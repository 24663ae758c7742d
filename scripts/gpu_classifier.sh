#!/usr/bin/env bash
# Fine-tune the shipped PBC classifier on a borrowed GPU machine, inside one time box.
#
# Here, first (the GPU machine sees the repository only, 64 MiB in all; one archive travels
# lighter than 13,673 small files):
#   python scripts/pack_split.py --data ../shared/data/pbc/PBC_dataset_normal_DIB \
#       --split splits/pbc8_seed0.json --out .devdata/pbc8 --size 160 --quality 80
#   mkdir -p .devdata/pk && tar czf .devdata/pk/pbc8.tgz -C .devdata pbc8
# (at SIZE=224 pack with --size 224 --quality 60 into .devdata/pbc8_224 and archive it as
# .devdata/pk/pbc8_224.tgz: at quality 80 it would not fit beside the repository)
# then run this there with `.devdata/pk` carried and the other shipped weights set aside
# (only pbc8_resnet18, which --init default reads, must travel). It trains one run per
# learning rate in LRS side by side (default 5e-4 and 1e-3), each with its cosine fitted to
# MINUTES (--fit-to-time), and writes to $OUT their fp16 weights in <16 MiB pieces
# (cat a.st.* > model.safetensors) and one archive of their configs, histories and logs.
# Pick the run by validation (accuracy, then macro-F1); copy splits/pbc8_seed0.json in as
# its split.json (the packed split holds no test part) and score it here on the original
# images:
#   python scripts/ship_classifier.py RUN --data ../shared/data/pbc/PBC_dataset_normal_DIB
# Usage (on the GPU machine, from the repo root): OUT=/some/dir bash scripts/gpu_classifier.sh
#   env: MINUTES (3.3), SIZE (160), LRS ("5e-4 1e-3", at most 6), DEVICE (cuda), THREADS (6),
#        PACK (pbc8 at SIZE=160, else pbc8_SIZE), AUGMENT (the --augment preset: default)
set -u
: "${OUT:?set OUT to the folder that comes back}"
MINUTES=${MINUTES:-3.3} SIZE=${SIZE:-160} LRS=${LRS:-"5e-4 1e-3"}
PACK=${PACK:-$([ "$SIZE" = 160 ] && echo pbc8 || echo "pbc8_$SIZE")}
THREADS=${THREADS:-6} DEVICE=${DEVICE:-cuda} AUGMENT=${AUGMENT:-default}
tar xzf ".devdata/pk/$PACK.tgz" -C /tmp
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 HEMASCOPE_CACHE=/tmp/hc
hs() { python3 -c 'import sys; from hemascope.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"; } 2>&1 | tee "$OUT/log.txt"
c=(--data "/tmp/$PACK/PBC_dataset_normal_DIB" --split "/tmp/$PACK/split.json" --vocabulary pbc8
   --arch resnet18 --image-size "$SIZE" --augment "$AUGMENT" --epochs 300 --init default --warmup-epochs 0.5
   --weights-dtype float16 --device "$DEVICE" --threads "$THREADS" --max-minutes "$MINUTES" --fit-to-time)
letters=(a b c d e f) names=() i=0
for lr in $LRS; do
  r=${letters[i]} i=$((i + 1))
  names+=("$r")
  hs train classifier "${c[@]}" --lr "$lr" --out "/tmp/r/$r" > "/tmp/r_$r.log" 2>&1 &
done
wait
files=()
for r in "${names[@]}"; do
  cp "/tmp/r_$r.log" "/tmp/r/$r/train.log"
  for f in history.jsonl config.json train.log; do [ -f "/tmp/r/$r/$f" ] && files+=("$r/$f"); done
  [ -f "/tmp/r/$r/model.safetensors" ] && split -b 15M "/tmp/r/$r/model.safetensors" "$OUT/$r.st."
done
tar czf "$OUT/meta.tgz" -C /tmp/r "${files[@]}"
ls -la "$OUT"
for r in "${names[@]}"; do grep -v "^epoch" "/tmp/r_$r.log" | tail -n 4; done
