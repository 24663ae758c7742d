#!/usr/bin/env bash
# Fine-tune the shipped PBC classifier on a borrowed GPU machine, inside one time box.
#
# Here, first (the GPU machine sees the repository only, 64 MiB in all; one archive travels
# lighter than 13,673 small files):
#   python scripts/pack_split.py --data ../shared/data/pbc/PBC_dataset_normal_DIB \
#       --split splits/pbc8_seed0.json --out .devdata/pbc8 --size 160 --quality 80
#   mkdir -p .devdata/pk && tar czf .devdata/pk/pbc8.tgz -C .devdata pbc8
# then run this there with `.devdata/pk` carried and the other shipped weights set aside
# (only pbc8_resnet18, which --init default reads, must travel). It trains two runs side
# by side, at lr 5e-4 and 1e-3, each with its cosine fitted to MINUTES (--fit-to-time), and
# writes to $OUT their fp16 weights in <16 MiB pieces (cat a.st.* > model.safetensors) and
# one archive of their configs, histories and logs. Pick the run by validation (accuracy,
# then macro-F1); copy splits/pbc8_seed0.json in as its split.json (the packed split holds
# no test part) and score it here on the original images:
#   python scripts/ship_classifier.py RUN --data ../shared/data/pbc/PBC_dataset_normal_DIB
# Usage (on the GPU machine, from the repo root): OUT=/some/dir bash scripts/gpu_classifier.sh
set -u
: "${OUT:?set OUT to the folder that comes back}"
MINUTES=${MINUTES:-3.3}
tar xzf .devdata/pk/pbc8.tgz -C /tmp
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 HEMASCOPE_CACHE=/tmp/hc
hs() { python3 -c 'import sys; from hemascope.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
c=(--data /tmp/pbc8/PBC_dataset_normal_DIB --split /tmp/pbc8/split.json --vocabulary pbc8
   --arch resnet18 --image-size 160 --epochs 300 --init default --warmup-epochs 0.5
   --weights-dtype float16 --device cuda --threads 6 --max-minutes "$MINUTES" --fit-to-time)
hs train classifier "${c[@]}" --lr 5e-4 --out /tmp/r/a > /tmp/r_a.log 2>&1 &
hs train classifier "${c[@]}" --lr 1e-3 --out /tmp/r/b > /tmp/r_b.log 2>&1 &
wait
cp /tmp/r_a.log /tmp/r/a/train.log
cp /tmp/r_b.log /tmp/r/b/train.log
tar czf "$OUT/meta.tgz" -C /tmp/r a/history.jsonl a/config.json a/train.log \
  b/history.jsonl b/config.json b/train.log
for r in a b; do split -b 15M /tmp/r/$r/model.safetensors "$OUT/$r.st."; done
ls -la "$OUT"
grep -v "^epoch" /tmp/r_a.log /tmp/r_b.log | tail
