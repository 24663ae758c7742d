"""Plain vs cell-structure-aware attribute models on the WBCAtt official test split.

    python benchmarks/attributes_structure.py --plain MODEL_DIR --parts MODEL_DIR \
        [--name attributes_structure]

Both models must come from the same recipe (``scripts/gpu_attributes.sh`` trains them side
by side: ResNet-18, 224 px, same optimiser, augmentation and time box); the structure-aware
one sees the image masked by the shipped part segmenter's nucleus / cytoplasm / whole-cell
masks through one shared encoder, aggregated by attention. Scores: per-attribute accuracy
and macro-F1 on the 3,099 test cells, their averages, the best validation score each run
recorded, and test cells/s on this machine (segmentation included for the structure-aware
one). Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import machine, shared_data, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plain", required=True)
    ap.add_argument("--parts", required=True)
    ap.add_argument("--name", default="attributes_structure")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope import taxonomy
    from hemascope.attributes import load_attribute_model
    from hemascope.evaluate.attributes import evaluate_attributes

    test_csv = shared_data() / "wbcatt" / "pbc_attr_v1_test.csv"
    runs = {}
    for kind in ("plain", "parts"):
        loaded = load_attribute_model(getattr(args, kind))
        t = time.perf_counter()
        rep = evaluate_attributes(test_csv, model=loaded).report
        seconds = time.perf_counter() - t
        tr = loaded.config.get("training", {})
        runs[kind] = {"model": str(getattr(args, kind)), "arch": loaded.config["arch"],
                      "image_size": loaded.config["image_size"],
                      "structure_aware": bool(loaded.config.get("segmenter")),
                      "aggregate": loaded.config.get("aggregate"),
                      "val_average_macro_f1": loaded.config["metrics"]["val"]["average_macro_f1"],
                      "best_epoch": tr.get("best_epoch"),
                      "epochs_planned": tr.get("config", {}).get("epochs"),
                      "training_device": tr.get("device"), "training_wall_time_s": tr.get("wall_time_s"),
                      "test": rep.to_dict(), "cells_per_s": round(rep.n_images / seconds, 1)}
    p, s = runs["plain"]["test"], runs["parts"]["test"]
    rows = []
    for name in taxonomy.ATTRIBUTES:
        if name in p["attributes"] and name in s["attributes"]:
            a, b = p["attributes"][name]["macro_f1"], s["attributes"][name]["macro_f1"]
            rows.append(f"| {name} | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
    payload = {"runs": runs, "delta_average_macro_f1": s["average_macro_f1"] - p["average_macro_f1"],
               "machine": machine()}
    rp, rs = runs["plain"], runs["parts"]
    table = f"""## Plain vs structure-aware attribute model, WBCAtt test ({p['n_images']} cells)

Same recipe for both ({rp['arch']} @ {rp['image_size']} px, random init, trained side by side on {rp['training_device']});
the structure-aware model ({rs['aggregate']} over nucleus / cytoplasm / whole-cell views from the predicted part masks)
reached its best validation epoch {rs['best_epoch']} of {rs['epochs_planned']}, the plain one {rp['best_epoch']} of {rp['epochs_planned']}.

| attribute | plain macro-F1 | structure-aware macro-F1 | difference |
|---|---|---|---|
{chr(10).join(rows)}
| **average macro-F1** | {p['average_macro_f1']:.4f} | {s['average_macro_f1']:.4f} | {s['average_macro_f1'] - p['average_macro_f1']:+.4f} |
| average accuracy | {p['average_accuracy']:.4f} | {s['average_accuracy']:.4f} | {s['average_accuracy'] - p['average_accuracy']:+.4f} |
| best validation average macro-F1 | {rp['val_average_macro_f1']:.4f} | {rs['val_average_macro_f1']:.4f} | {rs['val_average_macro_f1'] - rp['val_average_macro_f1']:+.4f} |
| test cells/s ({machine()['threads']} CPU threads) | {rp['cells_per_s']:.0f} | {rs['cells_per_s']:.0f} | |"""
    write_results(args.name, payload, table)


if __name__ == "__main__":
    main()
