"""Copy a trained detector run into the package as the shipped default, with its model card.

    python scripts/ship_detector.py runs/smear3_fcos [--name smear3_fcos]

Writes the run's weights as float16 safetensors (half the size) with its config to
src/hemascope/weights/NAME/, re-scores the shipped file on the test split exactly as
`hemascope evaluate detector --split test` does, and writes MODEL_CARD.md from the
recorded config, history and (if present) benchmarks/results/detector_cbc.json. Nothing
in the card is typed by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _ship import REPO, benchmark, history
from model_references import card_paragraph


def card(cfg: dict, history: list[dict], bench: dict | None, name: str) -> str:
    t = cfg["training"]
    tc = t["config"]
    test = cfg["metrics"]["test"]
    classes = cfg["classes"]
    per = "\n".join(f"| {c} | {test['per_class_ap50'][c]:.3f} | {test['count_mae'][c]:.2f} | "
                    f"{cfg['count_thresholds'][c]:.2f} |" for c in classes)
    extra = ""
    if bench and name in bench.get("models", {}):
        b = bench["models"][name]
        extra = (f"\n## Speed and robustness (`python benchmarks/detector_cbc.py`)\n\n"
                 f"{b['fields_per_s_640x480']:.1f} fields/s at 640x480 on "
                 f"{bench['machine']['threads']} CPU threads; {b['parameters'] / 1e6:.1f} M parameters, "
                 f"{b['file_mb']:.1f} MB file.\n")
        if "robustness" in b:
            extra += ("\nmAP50 on the test split perturbed by each interference factor "
                      "(severity 0.5):\n\n| factor | mAP50 | drop |\n|---|---|---|\n" +
                      "\n".join(f"| {f} | {r['map50']:.3f} | {r['drop_map50']:+.3f} |"
                                for f, r in b["robustness"].items()) + "\n")
    tuned = (f", the working size ({cfg['test_size']} px) and the NMS threshold "
             f"({cfg.get('nms_thresh', 0.5)})" if t.get("inference_tuned_on_val") else "")
    curve = ", ".join(f"{h['val_map50_95']:.3f}" for h in history if "val_map50_95" in h)
    prior = t.get("initialised_from")
    stage = ""
    if prior:
        init = (f"fine-tuned from our own detector trained at {prior['test_size']} px (stage 1 below), "
                f"whose backbone started from a PBC classifier's encoder (`--init {prior['init']}`: "
                "our own in-domain pre-training)")
        stage = (f"\n**Stage 1** (the weights this run starts from; same split): `{prior['command']}` - "
                 f"best epoch {prior['best_epoch']} of {prior['epochs']}, working size {prior['test_size']} px, "
                 f"{prior['wall_time_s'] / 60:.0f} min on {prior['device']}; its own test mAP50:95 "
                 f"{prior['test_map50_95']:.3f}. **Stage 2** (below) fine-tunes every layer at "
                 f"{cfg['test_size']} px. Both stages: `bash scripts/train_default_detector.sh`.\n")
    elif tc.get("init"):
        init = (f"backbone initialised from the shipped PBC classifier's encoder (`--init {tc['init']}`, "
                "our own in-domain pre-training)")
    else:
        init = "random initialisation"
    return f"""# Model card: {cfg['arch']} smear-field cell detector (shipped default)

**Task**: find every {', '.join(classes)} on a blood-smear field (boxes, class, score).

**Architecture**: {cfg['arch']} (torchvision), FPN width {cfg['fpn_channels']}, {init}; no
external weights. Input: RGB 0-1, the field resized so that its short side is
{cfg['test_size']} px (max {cfg['max_size']}); fields larger than that are tiled.
`scale="auto"` re-runs a field at a corrected scale when its median {cfg['size_reference']['class']}
size differs by more than 30 % from training ({cfg['size_reference']['size']} working px).

{card_paragraph(cfg) + chr(10) + chr(10) if cfg.get("background") else ""}**Data**: CBC (Alam & Islam 2019; MIT): the BCCD fields with re-checked VOC boxes.
**Split**: the data set's own: {', '.join(f'{k} {v}' for k, v in t['n_images'].items())} fields.
Train only for fitting; the best epoch ({t['best_epoch']} of {tc['epochs']}), the counting
thresholds{tuned} were chosen on val; test was never used before this card.

**Training**: `{t['command']}` - SGD lr {tc['lr']} momentum {tc['momentum']} weight decay
{tc['weight_decay']}, {tc['warmup_epochs']} warm-up epoch then cosine, batch {tc['batch_size']},
multi-scale short side {tc['min_sizes']}, EMA {tc['ema_decay']}; augmentation
{json.dumps(tc['augment'])}. Wall time {t['wall_time_s'] / 60:.0f} min on {t['device']}.
{stage}
## Test scores (CBC Testing, {test['n_images']} fields)

mAP50:95 **{test['map50_95']:.3f}**, mAP50 **{test['map50']:.3f}**, mAP75 {test['map75']:.3f},
mAR100 {test['mar100']:.3f}. Reproduce:
`hemascope evaluate detector --data ../shared/data/cbc --split test`.

| class | AP50 | count MAE per field | count threshold |
|---|---|---|---|
{per}
{extra}
## Limits

Trained on 300 fields from one lab (BCCD images: one microscope, one camera, one stain);
colour, interference and scale augmentation aim at other labs but are no proof: measure on
your own fields (`hemascope evaluate detector`). Platelets are small and often clumped;
their AP is the lowest. RBC boxes in dense fields overlap heavily; counts are estimates.
Validation mAP50:95 by epoch: {curve}.
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="smear3_fcos")
    ap.add_argument("--tune-inference", action="store_true",
                    help="choose working size and NMS threshold on the val split first")
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="working sizes tried by --tune-inference (default: the trained size "
                         "x 0.8-1.2 in steps of 32 px)")
    ap.add_argument("--card-only", action="store_true",
                    help="only rewrite MODEL_CARD.md from the shipped config and the benchmark")
    ap.add_argument("--dest", type=Path, default=None,
                    help="write the (tuned) fp16 artifact here instead of into the package "
                         "(a comparison model, e.g. for the ensemble benchmark)")
    args = ap.parse_args()
    if args.card_only:
        dest = REPO / "src" / "hemascope" / "weights" / args.name
        cfg = json.loads((dest / "config.json").read_text())
        (dest / "MODEL_CARD.md").write_text(card(cfg, history(args.run), benchmark("detector_cbc"),
                                                 args.name))
        print(f"rewrote {dest / 'MODEL_CARD.md'}")
        return
    from hemascope.data import load_dataset
    from hemascope.detect.predict import load_detector
    from hemascope.evaluate.detector import evaluate_detector
    from hemascope.models.artifact import save_artifact
    from hemascope.train.detector import _brief

    dest = args.dest or REPO / "src" / "hemascope" / "weights" / args.name
    dest.mkdir(parents=True, exist_ok=True)
    run = load_detector(args.run)
    keep = {k: v for k, v in run.config.items()
            if k not in ("format", "weights_dtype", "weights_sha256")}
    if args.tune_inference:
        from hemascope.evaluate.detector import load_fields
        from hemascope.train.detector import tune_inference

        val = load_fields(load_dataset(keep["training"]["data"]), run.classes, split="val")
        base = keep["test_size"]
        sizes = args.sizes or sorted({32 * round(base * f / 32) for f in (0.8, 0.9, 1.0, 1.1, 1.2)})
        tuned = tune_inference(run, val, sizes=sizes)
        ref = dict(keep["size_reference"])  # working px scale with the working size
        ref["size"] = round(ref["size"] * tuned["test_size"] / keep["test_size"], 2)
        keep.update(test_size=tuned["test_size"], nms_thresh=tuned["nms_thresh"], size_reference=ref,
                    count_thresholds=tuned["count_thresholds"])
        keep["training"]["inference_tuned_on_val"] = tuned["grid"]
        print(f"val-tuned: test_size {tuned['test_size']}, nms {tuned['nms_thresh']} "
              f"(val mAP50:95 {tuned['val_map50_95']:.4f})")
    init = keep["training"]["config"].get("init", "")
    if init and (Path(init) / "config.json").is_file():
        prior = json.loads((Path(init) / "config.json").read_text())
        if prior.get("task") == "detection":  # fine-tuned from a detector: record its lineage
            pt = prior["training"]
            keep["training"]["initialised_from"] = pt.get("initialised_from") or {
                "command": pt["command"], "epochs": pt["config"]["epochs"],
                "best_epoch": pt["best_epoch"], "wall_time_s": pt["wall_time_s"],
                "device": pt["device"], "test_size": prior["test_size"],
                "init": pt["config"].get("init") or "random weights",
                "test_map50_95": prior["metrics"]["test"]["map50_95"],
                "weights_sha256": prior["weights_sha256"]}
    save_artifact(dest, run.model, keep, dtype="float16")
    cfg = json.loads((dest / "config.json").read_text())
    ds = load_dataset(cfg["training"]["data"])
    shipped = load_detector(dest)
    cfg["metrics"]["test"] = _brief(evaluate_detector([shipped], ds, split="test").report)
    (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if args.dest is None:
        (dest / "MODEL_CARD.md").write_text(card(cfg, history(args.run), benchmark("detector_cbc"),
                                                 args.name))
    print(f"{'wrote' if args.dest else 'shipped'} {dest}")


if __name__ == "__main__":
    main()
