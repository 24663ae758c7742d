"""The PBC classifier exported to ONNX (float32 and int8) against PyTorch: accuracy and speed.

    python benchmarks/classifier_onnx.py [--model default] [--calibration-images 200] [--threads 2]

Exports ``--model`` with ``hemascope.models.onnx.export_classifier`` twice: float32, and
int8 calibrated on images spread evenly over the model's own *train* split (never test).
Each version is scored on the recorded test split (accuracy and macro-F1 with bootstrap
CIs); speed is cells/s through the network on 2 CPU threads, batch 64, as in
``classifier_pbc.py`` (EfficientNet-B0 at 224 px measured in the same run), plus cells/s
with decoding and preprocessing. Writes ``results/classifier_onnx.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import machine, shared_data, write_results
from classifier_pbc import throughput


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--calibration-images", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.classify import predict_arrays
    from hemascope.data.splits import load_split
    from hemascope.evaluate.classifier import evaluate_classifier
    from hemascope.io.image import read_image
    from hemascope.models.artifact import ONNX_WEIGHTS, WEIGHTS, load_classifier
    from hemascope.models.classifier import CellClassifier
    from hemascope.models.onnx import export_classifier

    pbc = shared_data() / "pbc" / "PBC_dataset_normal_DIB"
    source = load_classifier(args.model)
    size = int(source.config["image_size"])
    train = load_split(source.path / "split.json").keys("train")
    step = max(1, len(train) // args.calibration_images)
    calibration = [read_image(pbc / k) for k in train[::step][:args.calibration_images]]
    ref = throughput(CellClassifier("efficientnet_b0", len(source.classes)), 224)
    rows, sample = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"pytorch (float32)": source,
                    "onnx float32": load_classifier(export_classifier(source.path, Path(tmp) / "f32")),
                    "onnx int8": load_classifier(export_classifier(source.path, Path(tmp) / "int8",
                                                                   calibration=calibration))}
        for name, loaded in versions.items():
            ev = evaluate_classifier(pbc, model=loaded, split="test", tta=1)
            if sample is None:
                sample = [read_image(pbc / p.path) for p in ev.predictions[:256]]
            t = time.perf_counter()
            predict_arrays(loaded, sample, batch_size=64)
            with_pre = len(sample) / (time.perf_counter() - t)
            weights = loaded.path / (ONNX_WEIGHTS if name.startswith("onnx") else WEIGHTS)
            rows[name] = {"test": ev.report.to_dict(), "network_cells_per_s": throughput(loaded.model, size),
                          "with_preprocessing_cells_per_s": with_pre,
                          "file_mib": weights.stat().st_size / 2**20}
    payload = {"model": str(source.path), "arch": source.config["arch"], "image_size": size,
               "calibration_images": len(calibration), "calibration_split": "train",
               "versions": rows, "efficientnet_b0_224_network_cells_per_s": ref,
               "machine": machine()}
    lines = []
    for name, r in rows.items():
        t = r["test"]
        lo, hi = t["ci95"]["accuracy"]
        lines.append(f"| {name} | {t['accuracy']:.4f} ({lo:.4f}-{hi:.4f}) | {t['macro_f1']:.4f} | "
                     f"{r['network_cells_per_s']:.0f} | {r['with_preprocessing_cells_per_s']:.0f} | "
                     f"{r['network_cells_per_s'] / ref:.1f}x | {r['file_mib']:.1f} |")
    table = f"""## {source.config['arch']} @ {size} px on the PBC test split ({rows['onnx int8']['test']['n_images']} images): PyTorch vs ONNX Runtime

int8: static quantisation, per-channel weights, activations calibrated on {len(calibration)} images of the model's train split.

| version | accuracy (95% CI) | macro-F1 | cells/s, network ({machine()['threads']} CPU threads, batch 64) | cells/s with decoding and preprocessing | vs EfficientNet-B0 @ 224 px ({ref:.0f} cells/s, same run) | file MiB |
|---|---|---|---|---|---|---|
{chr(10).join(lines)}"""
    write_results("classifier_onnx", payload, table)


if __name__ == "__main__":
    main()
