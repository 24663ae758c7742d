"""``hemascope report``: figures that explain a model's behaviour on data."""

from __future__ import annotations

import argparse

from hemascope.cli._common import Formatter, add_json_option, emit_json, number


def register(groups: argparse._SubParsersAction) -> None:
    rep = groups.add_parser("report", help="analysis figures", formatter_class=Formatter)
    verbs = rep.add_subparsers(dest="verb", metavar="VERB", required=True)
    ad = verbs.add_parser(
        "adaptation", formatter_class=Formatter,
        help="t-SNE, PR curves and error gallery for an adaptation",
        description="Writes OUT/tsne_images.png (flattened images, raw and colour-standardised), "
                    "OUT/tsne_embeddings.png (base and adapted model), OUT/pr_curves.png, "
                    "OUT/errors.png (wrong target predictions with the second-best class) and "
                    "OUT/analysis.json. Shots of the adapted model are left out of the curves.")
    ad.add_argument("--target", required=True, help="labelled target set")
    ad.add_argument("--out", required=True, help="folder for the figures")
    ad.add_argument("--base", default="default", help="base model folder or 'default'")
    ad.add_argument("--adapted", default=None, help="adapted model (e.g. RUN/model of fewshot)")
    ad.add_argument("--source", default=None, help="labelled source set, drawn alongside")
    ad.add_argument("--max-per-set", type=number(int, 10), default=300, help="images per data set in t-SNE")
    ad.add_argument("--seed", type=int, default=0, help="seed of subsampling and t-SNE")
    add_json_option(ad)
    ad.set_defaults(handler=_adaptation)

    mg = verbs.add_parser(
        "merge", formatter_class=Formatter,
        help="join the output folders of `analyze --shard k/n` runs into one run",
        description="Checks that the parts belong together (finished, same models and "
                    "options, shards 1..n each once), copies their per-image files into --out "
                    "and writes cells.csv, differential.csv, COCO, CVAT, errors.csv, "
                    "manifest.json and report.html over all of them, as one run would have. "
                    "The parts are only read.")
    mg.add_argument("runs", nargs="+", help="the parts' output folders")
    mg.add_argument("--out", required=True, help="the merged run's folder (created)")
    mg.add_argument("--allow-missing", action="store_true",
                    help="merge even when shards are missing (the manifest lists them)")
    add_json_option(mg)
    mg.set_defaults(handler=_merge)


def _merge(args: argparse.Namespace) -> int:
    import sys

    from hemascope.pipeline.merge import merge_runs

    result = merge_runs(args.runs, args.out, allow_missing=args.allow_missing)
    summary = {"out": str(result.out_dir), "runs": len(args.runs), "images": len(result.images),
               "errors": len(result.errors), "counts": result.differential()}
    if args.json:
        emit_json(summary, args.json)
    if args.json != "-":
        print(f"merged {len(args.runs)} runs: {len(result.images)} images, {len(result.errors)} "
              f"unreadable; outputs in {result.out_dir}")
        for label, count in summary["counts"].items():
            print(f"  {label:<24}{count:>7}")
        print(f"report: {result.out_dir / 'report.html'}")
    if result.missing_shards:
        print(f"note: shards {', '.join(result.missing_shards)} are missing from this merge",
              file=sys.stderr)
    return 0


def _adaptation(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hemascope.adapt.fewshot import load_target
    from hemascope.models.artifact import load_classifier
    from hemascope.report.adaptation import adaptation_report

    base = load_classifier(args.base)
    adapted = load_classifier(args.adapted) if args.adapted else None
    target = load_target(args.target, base)
    source = load_target(args.source, base) if args.source else None
    summary = adaptation_report(target, args.out, base=base, adapted=adapted, source=source,
                                max_per_set=args.max_per_set, seed=args.seed,
                                source_name=Path(args.source).name if args.source else "source",
                                target_name=Path(args.target).name)
    if args.json:
        emit_json(summary, args.json)
    else:
        for name, path in summary["files"].items():
            print(f"{name}: {path}")
        print(f"{summary['n_wrong']} wrong of {summary['n_target_evaluated']} target images")
    return 0
