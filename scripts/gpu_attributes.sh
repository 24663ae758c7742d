#!/usr/bin/env bash
# Train attribute models on a borrowed GPU machine, all at once, inside one time box.
#
# Expects the packed data of scripts/pack_wbcatt.py in .devdata/ (the GPU machine sees the
# repository only) and the machine's own PyTorch (no install). Runs in parallel:
#   plain   ResNet-18 at 224 px, 60 epochs
#   long    ResNet-18 at 224 px, 90 epochs
#   parts   structure-aware ResNet-18 at 224 px (shipped part segmenter, attention), 45 epochs
# each stopping at --max-minutes; then keeps the better plain run by validation macro-F1
# (the test split never travels) and writes to $OUT: the two kept models' fp16 weights in
# <16 MiB pieces (cat them back together) and one tar of every run's config and history.
# Usage (on the GPU machine, from the repo root): OUT=/some/dir bash scripts/gpu_attributes.sh
set -u
: "${OUT:?set OUT to the folder that comes back}"
MINUTES=${MINUTES:-6.0} ARCH=${ARCH:-resnet18} DEVICE=${DEVICE:-cuda}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 HEMASCOPE_CACHE=/tmp/hcache
RUNS=/tmp/runs
mkdir -p "$RUNS"
hs() { python3 -c 'import sys; from hemascope.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"; } 2>&1 | tee "$OUT/log.txt"
python3 -c 'import torch, timm, safetensors; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "timm", timm.__version__)' | tee -a "$OUT/log.txt"
common=(--data .devdata/wbcatt --images .devdata/pbc --image-size 224 --weights-dtype float16
        --device "$DEVICE" --threads 4 --max-minutes "$MINUTES" --arch "$ARCH")
hs train attributes "${common[@]}" --out "$RUNS/plain" --epochs 60 > "$RUNS/plain.log" 2>&1 &
hs train attributes "${common[@]}" --out "$RUNS/long" --epochs 90 > "$RUNS/long.log" 2>&1 &
hs train attributes "${common[@]}" --out "$RUNS/parts" --epochs 45 --segmenter default \
  --aggregate attention > "$RUNS/parts.log" 2>&1 &
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
  sleep 30
  for r in plain long parts; do echo "$r: $(tail -c 300 "$RUNS/$r.log" | tail -n 1)"; done | tee -a "$OUT/log.txt"
done
python3 - "$RUNS" "$OUT" <<'EOF' 2>&1 | tee -a "$OUT/log.txt"
import json, sys, tarfile
from pathlib import Path
runs, out = Path(sys.argv[1]), Path(sys.argv[2])

def best(run):
    rows = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()] \
        if (run / "history.jsonl").is_file() else []
    return max((r["val_average_macro_f1"] for r in rows), default=-1.0), len(rows)

scores = {r: best(runs / r) for r in ("plain", "long", "parts")}
print("best val average macro-F1 (epochs run):", scores)
keep = ["plain" if scores["plain"][0] >= scores["long"][0] else "long", "parts"]
with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
    for r in ("plain", "long", "parts"):
        for f in ("config.json", "history.jsonl", "metrics.json", "split.json"):
            if (runs / r / f).is_file():
                tar.add(runs / r / f, f"{r}/{f}")
        tar.add(runs / f"{r}.log", f"{r}/train.log")
for r in keep:
    w = runs / r / "model.safetensors"
    if not w.is_file():
        print(f"{r}: no final artifact (stopped early?)")
        continue
    blob = w.read_bytes()
    step = 15 * 2**20
    for i in range(0, len(blob), step):
        (out / f"{r}.safetensors.part{i // step}").write_bytes(blob[i:i + step])
    print(f"{r}: {len(blob) / 2**20:.1f} MiB in {(len(blob) + step - 1) // step} piece(s)")
EOF
ls -la "$OUT"
