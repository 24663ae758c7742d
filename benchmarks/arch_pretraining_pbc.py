"""Architecture x pre-training comparison on PBC, in the style of the bone-marrow study.

    python benchmarks/arch_pretraining_pbc.py [--archs resnet18 efficientnet_b0 ...]
        [--inits random ssl] [--image-size 64] [--epochs 8] [--ssl-epochs 10] [--seeds 0 1]

For every architecture: (random) train from random init; (ssl) SimCLR on the *training*
images only (test images are never seen, not even unlabelled), then fine-tune. Each
condition runs on the fixed split `splits/pbc8_seed0.json` with each seed; the table gives
mean +- std over seeds of test accuracy and macro-F1, plus training minutes. The CPU
budget forces a small input size and few epochs: the numbers compare conditions with
each other, they are not the shipped model's score. Writes results/arch_pretraining_pbc.*.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO, machine, shared_data, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["resnet18", "efficientnet_b0", "regnety_004",
                                                   "convnext_atto"])
    ap.add_argument("--inits", nargs="+", default=["random", "ssl"], choices=["random", "ssl"])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--ssl-epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--work", type=Path, default=None, help="run folder (default: a temp dir)")
    args = ap.parse_args()

    from hemascope.data.folder import read_class_folders
    from hemascope.data.splits import load_split
    from hemascope.train.classifier import train_classifier
    from hemascope.train.config import ClassifierTrainConfig
    from hemascope.train.ssl import SslConfig, pretrain_ssl

    pbc = shared_data() / "pbc" / "PBC_dataset_normal_DIB"
    ds = read_class_folders(pbc, vocabulary="pbc8")
    split = load_split(REPO / "splits" / "pbc8_seed0.json")
    train_files = [pbc / k for k in split.keys("train")]
    work = args.work or Path(tempfile.mkdtemp(prefix="hemascope-bench-"))
    rows = []
    for arch in args.archs:
        for init in args.inits:
            accs, f1s, minutes = [], [], []
            for seed in args.seeds:
                t0 = time.time()
                init_dir = ""
                if init == "ssl":
                    init_dir = str(work / f"ssl_{arch}_{seed}")
                    if not (Path(init_dir) / "config.json").is_file():
                        pretrain_ssl(train_files, SslConfig(arch=arch, image_size=args.image_size,
                                                            epochs=args.ssl_epochs, seed=seed),
                                     init_dir)
                cfg = ClassifierTrainConfig(arch=arch, image_size=args.image_size,
                                            epochs=args.epochs, seed=seed, init=init_dir)
                res = train_classifier(ds, cfg, work / f"{arch}_{init}_{seed}", split=split)
                accs.append(res.test.accuracy)
                f1s.append(res.test.macro_f1)
                minutes.append((time.time() - t0) / 60)
            rows.append({"arch": arch, "init": init, "seeds": args.seeds,
                         "accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
                         "macro_f1_mean": float(np.mean(f1s)), "macro_f1_std": float(np.std(f1s)),
                         "minutes_mean": float(np.mean(minutes)), "accuracy": accs, "macro_f1": f1s})
            print(rows[-1], flush=True)
    lines = [f"## PBC 8-class: architecture x pre-training ({args.image_size} px, {args.epochs} "
             f"epochs, seeds {args.seeds}, test split of splits/pbc8_seed0.json)", "",
             "| encoder | init | accuracy | macro-F1 | minutes (2 CPU cores) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['init']} | {r['accuracy_mean']:.4f} +- {r['accuracy_std']:.4f} "
                     f"| {r['macro_f1_mean']:.4f} +- {r['macro_f1_std']:.4f} | {r['minutes_mean']:.0f} |")
    lines += ["", "Cut for CPU time: ImageNet pre-training (no downloads here), the large "
              "models of the study (RegNetY-32GF, ViT-L/32), 224 px input, 5-fold CV."]
    write_results("arch_pretraining_pbc", {"rows": rows, "args": vars(args) | {"work": str(work)},
                                           "machine": machine()}, "\n".join(lines))


if __name__ == "__main__":
    main()
