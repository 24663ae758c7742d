"""Few-shot adaptation of the shipped PBC model to CellaVision (another lab and stain).

    python benchmarks/fewshot_cellavision.py [--shots 10 25] [--seeds 0 1 2 3 4] [--model M] [--name N]
        [--threads T] [--pseudo-rounds R]

For each K: the six conditions of the cross-lab ablation over the seeds (the same shots
per seed in every condition), tested on all CellaVision images that are not shots, with
paired Wilcoxon p-values against the full workflow. The mixed condition adds PBC images
from the *training* split only. Default settings of `hemascope fewshot` are used as they
are (nothing tuned on CellaVision), except that self-training is off unless
``--pseudo-rounds`` asks for it: the six conditions are the study's, and
``benchmarks/selftrain_cellavision.py`` measures self-training on its own. Writes
results/fewshot_cellavision.{json,md}.
"""

from __future__ import annotations

import time

from _common import REPO, fewshot_parser, machine, shared_data, write_results

ANCHORS = "published few-shot accuracy 0.81-0.92 per target lab (Chossegros et al. 2024); " \
          "ablation means 0.48 / 0.59 / 0.71 / 0.74 / 0.84 / 0.89"


def main() -> None:
    ap = fewshot_parser(__doc__.splitlines()[0])
    ap.add_argument("--name", default="fewshot_cellavision", help="results/NAME.{json,md}")
    ap.add_argument("--pseudo-rounds", type=int, default=0, help="self-training rounds (0: the study's)")
    args = ap.parse_args()

    from hemascope.adapt.ablation import ablation_markdown, run_ablation
    from hemascope.adapt.fewshot import FewShotConfig, load_target
    from hemascope.data.folder import read_class_folders
    from hemascope.data.splits import load_split
    from hemascope.models.artifact import load_classifier

    data = shared_data()
    base = load_classifier(args.model)
    target = load_target(data / "cellavision", base)
    pbc = read_class_folders(data / "pbc" / "PBC_dataset_normal_DIB")
    train_keys = set(load_split(REPO / "splits" / "pbc8_seed0.json").keys("train"))
    source = load_target(pbc.subset(paths=train_keys), base)
    t0 = time.time()
    payload, tables = {"by_shots": {}}, []
    for k in args.shots:
        cfg = FewShotConfig(shots=k, pseudo_rounds=args.pseudo_rounds, threads=args.threads)
        rows = run_ablation(target, base, cfg, seeds=args.seeds, source=source,
                            log=print)
        payload["by_shots"][str(k)] = [r.to_dict() for r in rows]
        tables.append(ablation_markdown(rows, shots=k, seeds=args.seeds))
    payload.update({"target": "cellavision (100 cells, 5 classes)", "n_target": len(target.labels),
                    "base": str(base.path), "seeds": args.seeds, "anchors": ANCHORS,
                    "minutes": (time.time() - t0) / 60, "machine": machine()})
    md = (f"## Few-shot adaptation: PBC model -> CellaVision ({len(target.labels)} cells; "
          f"test = all non-shot cells)\n\n" + "\n\n".join(tables) +
          f"\n\nAnchors: {ANCHORS}.")
    write_results(args.name, payload, md)


if __name__ == "__main__":
    main()
