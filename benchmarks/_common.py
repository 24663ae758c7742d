"""Helpers for benchmark scripts: where data lives, how results are written."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def shared_data() -> Path:
    root = Path(os.environ.get("HEMASCOPE_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        sys.exit(f"shared data not found at {root} (set HEMASCOPE_SHARED_DATA)")
    return root


def pbc_test_sample(n: int, *, seed: int = 0) -> list[tuple[Path, str]]:
    """A seeded sample of ``n`` cells of the shipped default classifier's own PBC test split,
    as ``(path, class folder name)`` in split order."""
    import numpy as np

    from hemascope.data.splits import load_split
    from hemascope.models.artifact import default_model_dir

    test = sorted(load_split(default_model_dir() / "split.json").keys("test"))
    pick = np.random.default_rng(seed).choice(len(test), size=min(n, len(test)), replace=False)
    root = shared_data() / "pbc" / "PBC_dataset_normal_DIB"
    return [(root / test[i], test[i].split("/")[0]) for i in sorted(pick)]


def machine() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads()}


def write_results(name: str, payload: dict, table: str) -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` and print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(table)


def paired_tables(runs: list[dict], conditions, shots, arms: tuple[str, str],
                  labels: tuple[str, str]) -> tuple[list[str], dict]:
    """Markdown lines and a summary for runs measured in two arms on the same shots.

    Each run is ``{"condition", "shots", arms[0]: {...}, arms[1]: {...}}`` with ``accuracy``
    and ``macro_f1`` per arm. Returns a per-(condition, K) table of means +- std, then a
    paired table over every K and seed of a condition: mean difference (second arm minus
    first), how often the second is better, and a two-sided Wilcoxon signed-rank p-value.
    """
    import numpy as np

    from hemascope.adapt.stats import wilcoxon_signed_rank

    a0, a1 = arms
    lines = [f"| condition | K | accuracy, {labels[0]} | accuracy, {labels[1]} | "
             f"macro-F1, {labels[0]} | macro-F1, {labels[1]} |", "|---|---|---|---|---|---|"]
    summary: dict = {}
    for name in conditions:
        for k in shots:
            sel = [r for r in runs if r["condition"] == name and r["shots"] == k]
            cells = [f"{np.mean(v):.4f} +- {np.std(v):.4f}"
                     for metric in ("accuracy", "macro_f1")
                     for v in ([r[a0][metric] for r in sel], [r[a1][metric] for r in sel])]
            lines.append(f"| {name} | {k} | {' | '.join(cells)} |")
        sel = [r for r in runs if r["condition"] == name]
        summary[name] = {}
        for metric in ("accuracy", "macro_f1"):
            a = [r[a0][metric] for r in sel]
            b = [r[a1][metric] for r in sel]
            summary[name][metric] = {
                f"mean_{a0}": float(np.mean(a)), f"mean_{a1}": float(np.mean(b)),
                "mean_difference": float(np.mean(np.subtract(b, a))),
                f"{a1}_better": int(np.sum(np.greater(b, a))),
                f"{a1}_worse": int(np.sum(np.less(b, a))), "pairs": len(a),
                "wilcoxon_p": wilcoxon_signed_rank(b, a)}
    lines += ["", f"Paired over every K and seed of a condition ({labels[1]} minus {labels[0]}):", "",
              f"| condition | accuracy difference | {a1.replace('_', ' ')} better / pairs | Wilcoxon p | "
              "macro-F1 difference | Wilcoxon p |", "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        a, f = s["accuracy"], s["macro_f1"]
        lines.append(f"| {name} | {a['mean_difference']:+.4f} | {a[a1 + '_better']} / {a['pairs']} | "
                     f"{a['wilcoxon_p']:.3f} | {f['mean_difference']:+.4f} | {f['wilcoxon_p']:.3f} |")
    return lines, summary


def fewshot_parser(description: str):
    """An argument parser with the options every paired few-shot benchmark takes."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--shots", type=int, nargs="+", default=[10, 25])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--model", default="default")
    ap.add_argument("--threads", type=int, default=0)
    return ap


def paired_fewshot_runs(args, conditions: dict[str, dict], arms: dict[str, dict]):
    """Adapt ``args.model`` to CellaVision for every condition x K x seed (``args`` from
    :func:`fewshot_parser`) in each of two arms, on the same shots.

    ``conditions`` and ``arms`` map names to :class:`FewShotConfig` changes, applied to
    the defaults with the SHOT start and label propagation off (``shot_epochs=0``,
    ``predict="head"``, ``pseudo_from="head"``: these benchmarks predate them and their
    results were measured so; a condition or arm can turn them on). Returns
    ``(base, target, runs, minutes)``; each run holds the condition, K, seed and, per arm,
    accuracy, macro-F1 and seconds (and ``head_only`` scores when labels were propagated).
    """
    import time
    from dataclasses import replace

    from hemascope.adapt.fewshot import FewShotConfig, load_target, run_fewshot
    from hemascope.models.artifact import load_classifier

    base = load_classifier(args.model)
    target = load_target(shared_data() / "cellavision", base)
    t0, runs = time.time(), []
    for name, change in conditions.items():
        for k in args.shots:
            for seed in args.seeds:
                cfg = replace(FewShotConfig(shots=k, seed=seed, threads=args.threads,
                                            shot_epochs=0, predict="head",
                                            pseudo_from="head"), **change)
                row = {"condition": name, "shots": k, "seed": seed}
                for arm, arm_change in arms.items():
                    res = run_fewshot(target, base, replace(cfg, **arm_change))
                    row[arm] = {"accuracy": res.report.accuracy, "macro_f1": res.report.macro_f1,
                                "seconds": res.seconds}
                    if res.head_only is not None:  # labels were propagated: the head alone
                        row[arm]["head_only"] = {"accuracy": res.head_only.accuracy,
                                                 "macro_f1": res.head_only.macro_f1}
                first, second = (row[a]["accuracy"] for a in arms)
                print(f"{name} K={k} seed={seed}: accuracy {first:.3f} -> {second:.3f}", flush=True)
                runs.append(row)
    return base, target, runs, (time.time() - t0) / 60


def paired_fewshot_benchmark(args, conditions: dict[str, dict], arms: dict[str, dict],
                             labels: tuple[str, str], title: str) -> None:
    """Run :func:`paired_fewshot_runs` and write ``results/<args.name>``: the paired tables
    of the transductive labels and of the saved model's head alone, and the seconds."""
    base, target, runs, minutes = paired_fewshot_runs(args, conditions, arms)
    table, summary = paired_tables(runs, conditions, args.shots, tuple(arms), labels)
    head_runs = [{**r, **{a: r[a]["head_only"] for a in arms}} for r in runs]
    head_table, head_summary = paired_tables(head_runs, conditions, args.shots, tuple(arms), labels)
    secs = [r[a]["seconds"] for r in runs for a in arms]
    lines = [f"## {title}: PBC model -> CellaVision "
             f"({len(target.labels)} cells; test = every non-shot cell; seeds {args.seeds})", "",
             "### Transductive labels (`--predict propagate`, what metrics.json reports)", "",
             *table, "", "### The saved model's head alone, on the same cells", "", *head_table,
             "", f"Seconds per run (2 threads unless said): {min(secs):.0f}-{max(secs):.0f}; "
             f"{minutes:.0f} min in all."]
    payload = {"runs": runs, "summary": summary, "head_only_summary": head_summary,
               "arms": arms, "conditions": conditions, "shots": args.shots, "seeds": args.seeds,
               "n_target": len(target.labels), "base": str(base.path), "minutes": minutes,
               "machine": machine()}
    write_results(args.name, payload, "\n".join(lines) + "\n")


def fold_unet(models: Path | None, fold: int, cfg, x, y, test_idx):
    """Fold ``fold``'s part U-Net (``cfg`` a ``SegmentationTrainConfig``, ``x``/``y`` its
    training cells, ``test_idx`` the held-out ones): read from ``models/fold<k>`` when it
    was trained there with this recipe (any thread count) on this fold, else trained (and saved there when
    ``models`` is given), so that a cross-validation can be scored again without training.
    The model's config says which (``reused``)."""
    from hemascope.models.artifact import LoadedModel, read_config, save_artifact
    from hemascope.segment.predict import load_segmenter
    from hemascope.train.config import same_segmentation_recipe
    from hemascope.train.segmentation import PARTS, fit_unet, reference_stats

    where = models / f"fold{fold}" if models else None
    stamp = {"recipe": cfg.to_dict(), "test_indices": [int(i) for i in test_idx]}
    if where and (where / "config.json").exists():
        saved = read_config(where)
        if (saved.get("recipe") and same_segmentation_recipe(saved["recipe"], stamp["recipe"])
                and saved.get("test_indices") == stamp["test_indices"]):
            loaded = load_segmenter(where)
            loaded.config["reused"] = True
            return loaded
        print(f"{where} holds another recipe or fold: training again", flush=True)
    model, mean, std, _ = fit_unet(x, y, cfg)
    config = {"task": "segmentation", "arch": "unet", "width": cfg.width, "depth": cfg.depth,
              "classes": PARTS, "image_size": cfg.image_size, "mean": mean.tolist(),
              "std": std.tolist(), **reference_stats(x, y), **stamp}
    if where:
        save_artifact(where, model, config)
    return LoadedModel(model.eval(), {**config, "reused": False}, where or Path("."))


def box_offset_parser(name: str, description: str):
    """The options of the box-offset benchmarks: threads, which edges move, results name."""
    import argparse

    from hemascope.detect.calibrate import KEEP

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", default=KEEP[0], choices=KEEP,
                    help="edges moved: those whose median is significant, or all (the first "
                         "runs, committed under the default names, used all)")
    ap.add_argument("--name", default=name)
    return ap


def cbc_detector(model: str = "default"):
    """The CBC set and a detector whose own box offsets (if any) are dropped, so that the
    benchmark fits and applies its own."""
    import copy

    from hemascope.data import load_dataset
    from hemascope.detect.predict import load_detector

    det = load_detector(model)
    det.config = copy.deepcopy(det.config)
    det.config.pop("box_offsets", None)
    return load_dataset(shared_data() / "cbc"), det
