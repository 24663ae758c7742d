"""Copy a trained classifier run into the package as the shipped default, with its model card.

    python scripts/ship_classifier.py runs/pbc8_resnet18 [--name pbc8_resnet18] [--data DIR]

Copies config.json, model.safetensors and split.json to src/hemascope/weights/NAME/ and
writes MODEL_CARD.md from the recorded config, history and (if present)
benchmarks/results/classifier_pbc.json. Nothing in the card is typed by hand. ``--data``
names the original images of a run trained elsewhere on a packed copy
(``scripts/gpu_classifier.sh``): the shipped file is scored on them, and the packed
folder is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from hemascope.models.artifact import lineage

REPO = Path(__file__).resolve().parents[1]


def card(cfg: dict, history: list[dict], bench: dict | None) -> str:
    t = cfg["training"]
    test = cfg["metrics"]["test"]
    tc = t["config"]
    lo, hi = test["ci95"]["accuracy"]
    flo, fhi = test["ci95"]["macro_f1"]
    per = "\n".join(f"| {c} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | {s['support']} |"
                    for c, s in test["per_class"].items())
    speed = ""
    if bench:
        thr = bench["throughput_cells_per_s"]
        speed = (f"\n## Speed (CPU, {bench['machine']['threads']} threads, batch 64)\n\n"
                 f"{thr['network']:.0f} cells/s through the network ({thr['with_preprocessing']:.0f} "
                 f"with decoding and preprocessing); EfficientNet-B0 at 224 px with the same head: "
                 f"{thr['efficientnet_b0_224_network']:.0f} cells/s in the same run "
                 f"({thr['speedup_vs_effnet']:.1f}x). Reproduce: `python benchmarks/classifier_pbc.py`.\n")
    best = t["best_epoch"]
    chain = lineage(t)  # the runs this one was fine-tuned from, oldest first
    stages = [f"**Stage {i + 1}** (" + ("random init" if i == 0 else f"from stage {i}")
              + f", same split): `{p['command']}` - best epoch {p['best_epoch']} of {p['epochs']}, "
              f"{p['image_size']} px, {p['wall_time_s'] / 60:.0f} min on {p['device']}; its own "
              f"test accuracy {p['test_accuracy']:.4f}." for i, p in enumerate(chain)]
    stage = ("\n" + " ".join(stages) + f" **Stage {len(chain) + 1}** (below) fine-tunes every "
             f"layer at {cfg['image_size']} px. All stages start from random weights: "
             "`bash scripts/train_default_classifier.sh`.\n") if chain else ""
    packed = t.get("packed")
    if packed:
        stage += (f"\nThe last stage trained on a packed copy of the train and val images "
                  f"(`{packed['command']}`: letterboxed to {cfg['image_size']} px, WebP); the "
                  f"test scores below are on the original images.\n")
    devices = sorted({p["device"] for p in chain} | {t["device"]})
    return f"""# Model card: {cfg['arch']} PBC 8-class cell classifier (shipped default)

**Task**: classify a single-cell image of peripheral blood into {len(cfg['classes'])} classes:
{', '.join(cfg['classes'])}.

**Architecture**: {cfg['arch']} encoder (random initialisation, no external weights) ->
{cfg['embed_dim']}-unit embedding -> Linear {cfg['hidden_dim']} + BatchNorm + ReLU + Dropout
{cfg['dropout']} -> {len(cfg['classes'])} classes. Input: {cfg['image_size']}x{cfg['image_size']}
RGB, letterboxed and resized (bicubic); normalised with the training set's channel mean
{[round(m, 4) for m in cfg['mean']]} and std {[round(s, 4) for s in cfg['std']]}. Weights stored as
{cfg['weights_dtype']} safetensors.

**Data**: PBC (Acevedo et al., Data in Brief 2020; CC BY 4.0), 17,092 images from the
Hospital Clinic of Barcelona (CellaVision DM96, May-Grünwald-Giemsa), here at 224x224.
**Split**: `split.json` (= `splits/pbc8_seed0.json`), stratified per class, seed 0:
{', '.join(f'{k} {v:,}' for k, v in t['n_images'].items())}. The test images were never used
for training or model selection (the best epoch, {best} of {tc['epochs']}, was chosen on val).
{stage}
**Training**: `{t['command']}` - {tc['optimizer']} lr {tc['lr']} (cosine, {tc['warmup_epochs']} warm-up
epoch), weight decay {tc['weight_decay']}, batch {tc['batch_size']}, label smoothing
{tc['label_smoothing']}, EMA {tc['ema_decay']}, augmentation {json.dumps(tc['augment'])}.
Wall time {t['wall_time_s'] / 60:.0f} min on {t['device']}.

## Test scores ({test['n_images']} held-out images)

Accuracy **{test['accuracy']:.4f}** (95% bootstrap CI {lo:.4f}-{hi:.4f}), macro-F1
**{test['macro_f1']:.4f}** ({flo:.4f}-{fhi:.4f}), balanced accuracy {test['balanced_accuracy']:.4f}.
Reproduce: `hemascope evaluate classifier --model default --data ../shared/data/pbc/PBC_dataset_normal_DIB --split test`.

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per}
{speed}
## Limits

Below the best published PBC result (0.990 accuracy, DenseNet-121 ImageNet-pretrained at
224 px): this model starts from random weights, sees {cfg['image_size']} px inputs and trained
on {' and '.join(devices)}. The weakest classes are the ones its confusion
matrix mixes most (immature granulocytes with neutrophils and monocytes).
Trained on one lab's images (one scanner, one stain). Expect lower accuracy on other labs'
cells until adapted (`hemascope fewshot`, colour standardisation). The ``ig`` class pools
promyelocytes, myelocytes and metamyelocytes; ``platelet`` and ``erythroblast`` are not WBC.
Validation curve: {', '.join(f"{h['val_accuracy']:.3f}" for h in history)}.
"""


def fit_style(cfg: dict, run: Path) -> dict:
    """The Reinhard style of the run's training images, as training records it now."""
    import numpy as np

    from hemascope.data.cache import load_cached
    from hemascope.data.splits import load_split
    from hemascope.train.classifier import training_style

    root = Path(cfg["training"]["data"])
    train = load_split(run / "split.json").keys("train")
    images = load_cached([root / k for k in train], int(cfg["image_size"])).images
    seed = int(cfg["training"]["config"]["seed"])
    return training_style(np.asarray(images), seed=seed)


def rescore(dest: Path, cfg: dict) -> dict:
    from hemascope.evaluate.classifier import evaluate_classifier

    return evaluate_classifier(cfg["training"]["data"], model=dest, split="test").report.to_dict()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="pbc8_resnet18")
    ap.add_argument("--data", help="original images of a run trained on a packed copy")
    ap.add_argument("--packed-command", default="python scripts/pack_split.py --data "
                    "../shared/data/pbc/PBC_dataset_normal_DIB --split splits/pbc8_seed0.json "
                    "--out .devdata/pbc8 --size 160 --quality 80",
                    help="how the packed copy was made (recorded with --data)")
    args = ap.parse_args()
    dest = REPO / "src" / "hemascope" / "weights" / args.name
    dest.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((args.run / "config.json").read_text())
    old = json.loads((dest / "config.json").read_text()) if (dest / "config.json").is_file() else {}
    if old and old.get("weights_sha256") == cfg.get("weights_sha256"):  # the same run again
        if "initialised_from" in old["training"]:
            cfg["training"]["initialised_from"] = old["training"]["initialised_from"]
    elif old and cfg["training"]["config"].get("init") in ("default", str(dest)):
        ot = old["training"]  # the shipped model this run started from, with its own lineage
        cfg["training"]["initialised_from"] = {
            "command": ot["command"], "best_epoch": ot["best_epoch"],
            "epochs": ot["config"]["epochs"], "image_size": old["image_size"],
            "wall_time_s": ot["wall_time_s"], "device": ot["device"],
            "test_accuracy": old["metrics"]["test"]["accuracy"],
            "weights_sha256": old.get("weights_sha256"),
            **({"initialised_from": ot["initialised_from"]} if "initialised_from" in ot else {})}
    if args.data:
        cfg["training"]["packed"] = {"data": cfg["training"]["data"],
                                     "command": args.packed_command}
        cfg["training"]["data"] = args.data
    for name in ("model.safetensors", "split.json"):
        shutil.copy2(args.run / name, dest / name)
    from hemascope.data.splits import load_split

    cfg["training"]["n_images"] = load_split(dest / "split.json").counts()
    (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if not cfg.get("source_style"):  # runs from before the style was recorded at training time
        cfg["source_style"] = fit_style(cfg, args.run)
    # score the shipped file itself (fp16 weights may flip a prediction or two)
    cfg["metrics"]["test"] = rescore(dest, cfg)
    (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    history = [json.loads(x) for x in (args.run / "history.jsonl").read_text().splitlines()]
    bench_file = REPO / "benchmarks" / "results" / "classifier_pbc.json"
    bench = json.loads(bench_file.read_text()) if bench_file.is_file() else None
    (dest / "MODEL_CARD.md").write_text(card(cfg, history, bench))
    size = (dest / "model.safetensors").stat().st_size / 2**20
    print(f"shipped {args.run} -> {dest} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
