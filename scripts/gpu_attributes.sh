#!/usr/bin/env bash
# Train attribute models on a borrowed GPU machine, all at once, inside one time box.
#
# Expects the packed data of scripts/pack_wbcatt.py in .devdata/ (the GPU machine sees the
# repository only) and the machine's own PyTorch (no install). Runs side by side the runs
# named in SPECS ("name:arch:epochs[:extra flags]", separated by ';'), each stopping at
# MINUTES; then writes to $OUT the fp16 weights of the best run by validation average
# macro-F1 (the test split never travels), and of the next ones while they fit, in <16 MiB
# pieces (cat them back together), plus one tar of every run's config and history.
#
# The default SPECS are the runs that made the first shipped model (ResNet-18, 6 minutes):
#   plain   ResNet-18 at 224 px, 60 epochs
#   long    ResNet-18 at 224 px, 90 epochs
#   parts   structure-aware ResNet-18 at 224 px (shipped part segmenter, attention), 45 epochs
# The shipped model (2026-11-28) came from three runs started from the PBC classifier, on the
# images packed with --quality 85 (so that the classifier's weights fit beside them):
#   MINUTES=6.0 SPECS="i2e3:resnet18:60:--init default --fit-to-time;i5e4:resnet18:60:--init \
#   default --lr 0.0005 --fit-to-time;i1e3:resnet18:60:--init default --lr 0.001 --fit-to-time"
# with the weights the runs do not read (detector, attribute model, U-Net), splits/ and
# benchmarks/results/ set aside for the 64 MiB the machine receives.
# Usage (on the GPU machine, from the repo root): OUT=/some/dir bash scripts/gpu_attributes.sh
set -u
: "${OUT:?set OUT to the folder that comes back}"
MINUTES=${MINUTES:-6.0} DEVICE=${DEVICE:-cuda} DATA=${DATA:-.devdata} THREADS=${THREADS:-4}
SPECS=${SPECS:-"plain:resnet18:60;long:resnet18:90;parts:resnet18:45:--segmenter default --aggregate attention"}
KEEP_MIB=${KEEP_MIB:-48}  # weights that come back, at most (the best run always does)
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 HEMASCOPE_CACHE=/tmp/hcache
RUNS=/tmp/runs
mkdir -p "$RUNS"
hs() { python3 -c 'import sys; from hemascope.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"; } 2>&1 | tee "$OUT/log.txt"
python3 -c 'import torch, timm, safetensors; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "timm", timm.__version__)' | tee -a "$OUT/log.txt"
common=(--data "$DATA/wbcatt" --images "$DATA/pbc" --image-size 224 --weights-dtype float16
        --device "$DEVICE" --threads "$THREADS" --max-minutes "$MINUTES")
names=()
IFS=';' read -ra specs <<< "$SPECS"
for spec in "${specs[@]}"; do
  IFS=':' read -r name arch epochs extra <<< "$spec"
  names+=("$name")
  # shellcheck disable=SC2086  # extra flags split on spaces on purpose
  hs train attributes "${common[@]}" --arch "$arch" --epochs "$epochs" --out "$RUNS/$name" \
    ${extra:-} > "$RUNS/$name.log" 2>&1 &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
  sleep 30
  for r in "${names[@]}"; do echo "$r: $(tail -c 300 "$RUNS/$r.log" | tail -n 1)"; done | tee -a "$OUT/log.txt"
done
python3 - "$RUNS" "$OUT" "$KEEP_MIB" "${names[@]}" <<'EOF' 2>&1 | tee -a "$OUT/log.txt"
import json, sys, tarfile
from pathlib import Path
runs, out, keep_mib, names = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]

def best(run):
    rows = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()] \
        if (run / "history.jsonl").is_file() else []
    return max((r["val_average_macro_f1"] for r in rows), default=-1.0), len(rows)

scores = {r: best(runs / r) for r in names}
print("best val average macro-F1 (epochs run):", scores)
with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
    for r in names:
        for f in ("config.json", "history.jsonl", "metrics.json", "split.json"):
            if (runs / r / f).is_file():
                tar.add(runs / r / f, f"{r}/{f}")
        tar.add(runs / f"{r}.log", f"{r}/train.log")
sent = 0.0
for rank, r in enumerate(sorted(names, key=lambda r: -scores[r][0])):
    w = runs / r / "model.safetensors"
    if not w.is_file():
        print(f"{r}: no final artifact (stopped early?)")
        continue
    blob = w.read_bytes()
    if rank and sent + len(blob) / 2**20 > keep_mib:
        print(f"{r}: {len(blob) / 2**20:.1f} MiB left behind (over {keep_mib:g} MiB)")
        continue
    sent += len(blob) / 2**20
    step = 15 * 2**20
    for i in range(0, len(blob), step):
        (out / f"{r}.safetensors.part{i // step}").write_bytes(blob[i:i + step])
    print(f"{r}: {len(blob) / 2**20:.1f} MiB in {(len(blob) + step - 1) // step} piece(s)")
EOF
ls -la "$OUT"
