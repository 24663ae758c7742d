"""PBC 8-class test score and CPU throughput of a classifier (the shipped default by default).

    python benchmarks/classifier_pbc.py [--model default|MODEL_DIR] [--threads 2]

Scores: the model's own held-out test split (``split.json`` in the artifact, 20 % per
class, never seen in training or model selection). Throughput: cells per second through
the network on the CPU (batch 64, preprocessing excluded and, separately, included), next
to the cross-lab study's configuration (EfficientNet-B0 at 224 px with the same head)
measured in the same run. Writes ``results/classifier_pbc.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import machine, shared_data, write_results

ANCHORS = {"DenseNet-121 ImageNet-pretrained, 224 px (best published on PBC)": 0.990,
           "best on BloodMNIST (28 px)": 0.966}


def throughput(model: torch.nn.Module, size: int, *, batch: int = 64, repeats: int = 5) -> float:
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    model = model.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)  # warm-up
        t = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return batch * repeats / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.classify import predict_arrays
    from hemascope.evaluate.classifier import evaluate_classifier
    from hemascope.io.image import read_image
    from hemascope.models.artifact import lineage, load_classifier
    from hemascope.models.classifier import CellClassifier

    pbc = shared_data() / "pbc" / "PBC_dataset_normal_DIB"
    loaded = load_classifier(args.model)
    ev = evaluate_classifier(pbc, model=loaded, split="test", tta=1)
    rep = ev.report
    tta = {n: evaluate_classifier(pbc, model=loaded, split="test", tta=n).report for n in (2, 8)}

    size = int(loaded.config["image_size"])
    ours = throughput(loaded.model, size)
    ref = throughput(CellClassifier("efficientnet_b0", len(loaded.classes)), 224)
    files = [pbc / p.path for p in ev.predictions[:256]]
    images = [read_image(f) for f in files]
    t = time.perf_counter()
    predict_arrays(loaded, images, batch_size=64)
    with_pre = len(images) / (time.perf_counter() - t)

    training = loaded.config.get("training", {})
    # a model fine-tuned from earlier ones: its training time includes theirs (oldest first)
    chain = lineage(training) + [training]
    stages = [s.get("wall_time_s") or 0 for s in chain]
    devices = [s.get("device") or "?" for s in chain]
    payload = {
        "model": str(loaded.path), "arch": loaded.config["arch"], "image_size": size,
        "test": rep.to_dict(),
        "test_tta": {str(n): r.to_dict() for n, r in tta.items()},
        "throughput_cells_per_s": {"network": ours, "with_preprocessing": with_pre,
                                   "efficientnet_b0_224_network": ref, "speedup_vs_effnet": ours / ref},
        "training_wall_time_s": sum(stages), "training_stages_wall_time_s": stages,
        "training_device": training.get("device"), "training_stages_device": devices,
        "anchors": ANCHORS, "machine": machine(),
    }
    lo, hi = rep.ci95["accuracy"]
    flo, fhi = rep.ci95["macro_f1"]
    rows = "\n".join(f"| {c} | {s.precision:.4f} | {s.recall:.4f} | {s.f1:.4f} | {s.support} |"
                     for c, s in rep.per_class.items())
    tta_rows = "\n".join(
        f"| same, test-time augmentation x{n} (`--tta {n}`) | {r.accuracy:.4f} "
        f"({r.ci95['accuracy'][0]:.4f}-{r.ci95['accuracy'][1]:.4f}) | {r.macro_f1:.4f} | "
        f"{r.balanced_accuracy:.4f} | {ours / n:.0f} |" for n, r in tta.items())
    table = f"""## PBC 8-class, held-out test split ({rep.n_images} images)

| model | accuracy (95% CI) | macro-F1 (95% CI) | balanced acc. | cells/s (2 CPU threads) |
|---|---|---|---|---|
| {loaded.config['arch']} @ {size} px (ours, random init) | {rep.accuracy:.4f} ({lo:.4f}-{hi:.4f}) | {rep.macro_f1:.4f} ({flo:.4f}-{fhi:.4f}) | {rep.balanced_accuracy:.4f} | {ours:.0f} (with preprocessing {with_pre:.0f}) |
{tta_rows}
| EfficientNet-B0 @ 224 px, cross-lab configuration | not trained here (CPU budget) | | | {ref:.0f} |
| anchor: DenseNet-121 ImageNet-pretrained @ 224 px | 0.990 (published) | | | |
| anchor: best on BloodMNIST @ 28 px | 0.966 (published) | | | |

Speed-up over EfficientNet-B0 @ 224 px: {ours / ref:.1f}x. Training wall time: {sum(stages) / 60:.0f} min{f" in {len(stages)} stages: " + "; ".join(f"{w / 60:.0f} min on {d}" for w, d in zip(stages, devices)) if len(stages) > 1 else f" on {devices[0]}"}.

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}"""
    write_results("classifier_pbc", payload, table)


if __name__ == "__main__":
    main()
