"""``hemascope analyze``: the main job, from smear images to a differential with evidence."""

from __future__ import annotations

import argparse
import json
import sys

from hemascope.cli._common import Formatter, add_json_option, emit_json, number
from hemascope.cli.detect import _scale, add_balance_option
from hemascope.pipeline.adaptation import ADAPTATIONS


def register(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser(
        "analyze", formatter_class=Formatter, help="smear images -> differential count with evidence",
        description="Find every cell on smear fields (or take single-cell crops as they are), "
                    "type each white cell, outline it, count red cells and platelets, and write "
                    "per-image JSON, cells.csv, differential.csv, COCO, CVAT XML, QuPath GeoJSON, "
                    "overlays and an HTML report to --out. Unreadable files go to errors.csv; "
                    "--resume skips images already done.")
    p.add_argument("paths", nargs="+", help="image files and/or folders (recursive)")
    p.add_argument("--out", required=True, help="output folder (created)")
    add_analysis_options(p)
    p.add_argument("--adapt", default="none", choices=ADAPTATIONS,
                   help="adapt the classifier to this run's own white cells before typing them, "
                        "with no label (for a lab other than the classifier's): 'bn' re-estimates "
                        "batch-norm statistics (seconds), 'shot' trains the encoder by SHOT "
                        "(minutes; give --classes). Needs 16+ white cells; the adapted model is "
                        "saved in OUT/adapted_classifier")
    p.add_argument("--adapt-seed", type=int, default=0, help="seed of --adapt")
    p.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="analyse the K-th of N interleaved parts of the inputs (1 <= K <= N), "
                        "e.g. one part per cluster job; join the parts' --out folders with "
                        "`hemascope report merge`")
    p.add_argument("--resume", action="store_true",
                   help="skip images whose result --out already holds (same file, same models "
                        "and options; other settings are refused). Without it an earlier run "
                        "in --out is replaced")
    add_json_option(p)
    p.set_defaults(handler=_analyze)


def _shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N (e.g. 2/8), got {text!r}")
    return int(k), int(n)


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """The models and settings of an analysis (shared by ``analyze`` and ``serve``)."""
    p.add_argument("--detector", default="default", help="detector folder or 'default'")
    p.add_argument("--classifier", default="default",
                   help="classifier folder or 'default' (e.g. RUN/model from `hemascope fewshot`)")
    p.add_argument("--refiner", default=None, metavar="DIR",
                   help="second-stage classifier (e.g. RUN/model of `hemascope fewshot`): types "
                        "again the cells whose first class it also knows")
    p.add_argument("--attributes", default=None, metavar="default|DIR",
                   help="attribute model ('default' or `hemascope train attributes` output): 11 "
                        "morphology attributes per white cell in the per-image JSON")
    p.add_argument("--parts", default="none", metavar="default|DIR|none",
                   help="cell-part model that outlines each white cell (nucleus and cytoplasm) "
                        "and gives its nucleus-to-cell area ratio ('default': the shipped "
                        "U-Net, about 0.02 s per white cell on 2 cores); 'none': the classical "
                        "outline of the stained region, mostly the nucleus")
    p.add_argument("--stain", default=None, metavar="REF",
                   help="colour reference (`hemascope stain fit`) applied to cells before typing")
    p.add_argument("--mode", default="auto", choices=("auto", "cells", "fields"),
                   help="'cells': single-cell crops; 'fields': smear fields; 'auto': images up to "
                        "400 px are cells")
    p.add_argument("--scale", type=_scale, default="auto",
                   help="detector scale: 'auto', 'none' or a factor field px -> working px")
    add_balance_option(p)
    p.add_argument("--review-below", type=number(float, 0, 1), default=0.6,
                   help="flag white cells typed with less confidence than this")
    p.add_argument("--tta", type=int, default=None, choices=(1, 2, 4, 8),
                   help="classifier test-time augmentation views; default: the classifier's "
                        "own (4 for the shipped one, 1 for a fine-tuned one)")
    p.add_argument("--detector-tta", type=int, default=1, choices=(1, 2, 4),
                   help="detector test-time augmentation: mirror views of each field, fused "
                        "by weighted boxes fusion (N times the detection time)")
    p.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                   help="the classes white cells may take, e.g. 'neutrophil lymphocyte monocyte "
                        "eosinophil basophil' for normal blood; none given: all of the "
                        "classifier's")


def analysis_options(args: argparse.Namespace):
    """:class:`~hemascope.pipeline.AnalysisOptions` from :func:`add_analysis_options`' flags."""
    from hemascope.pipeline import AnalysisOptions

    return AnalysisOptions(detector=args.detector, classifier=args.classifier,
                           refiner=args.refiner, attributes=args.attributes,
                           parts=None if args.parts == "none" else args.parts, stain=args.stain,
                           mode=args.mode, scale=args.scale, balance=args.balance,
                           review_below=args.review_below, tta=args.tta,
                           detector_tta=args.detector_tta, classes=args.classes)


def _progress():
    """A bar on a terminal, JSON lines on stderr otherwise (for logs and other programs)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bars: list = []  # a new bar for each pass over the files (two with --adapt)

        def tick(done: int, total: int, file: str) -> None:
            if not bars:
                bars.append(tqdm(unit="img", desc="analysing", leave=False))
            bar = bars[0]
            bar.total = total
            bar.n = done
            bar.refresh()
            if done == total:
                bars.pop().close()
        return tick

    def line(done: int, total: int, file: str) -> None:
        if done == total or done % 10 == 0:
            print(json.dumps({"progress": done, "total": total, "file": file}), file=sys.stderr,
                  flush=True)
    return line


def _analyze(args: argparse.Namespace) -> int:
    from hemascope.pipeline import analyze

    result = analyze(args.paths, out_dir=args.out, detector=args.detector,
                     classifier=args.classifier, refiner=args.refiner, attributes=args.attributes,
                     parts=None if args.parts == "none" else args.parts, stain=args.stain,
                     mode=args.mode, scale=args.scale, balance=args.balance,
                     review_below=args.review_below, overlays=not args.no_overlays, tta=args.tta,
                     detector_tta=args.detector_tta, classes=args.classes, adapt=args.adapt,
                     adapt_seed=args.adapt_seed, resume=args.resume, shard=args.shard,
                     progress=_progress(),
                     log=lambda s: print(s, file=sys.stderr, flush=True))
    summary = {"out": str(result.out_dir), "images": len(result.images), "resumed": result.resumed,
               "errors": result.errors, "counts": result.differential(), "seconds": result.seconds}
    if args.json:
        emit_json(summary, args.json)
    if args.json != "-":
        n = len(result.images)
        done = n - result.resumed
        speed = f"{result.seconds.get('total', 0) / done:.2f} s per image" if done else "nothing new"
        print(f"{n} images ({result.resumed} resumed), {len(result.errors)} unreadable, "
              f"{speed}; outputs in {result.out_dir}")
        counts = result.differential()
        width = max([16, *(len(label) + 2 for label in counts)])
        for label, count in counts.items():
            print(f"  {label:<{width}}{count:>7}")
        _review_line(result, args)
        _warning_lines(result)
        print(f"report: {result.out_dir / 'report.html'}")
    for path, reason in result.errors.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not result.images:
        print(f"error: none of the {len(result.errors)} input files could be read "
              f"(see {result.out_dir / 'errors.csv'})", file=sys.stderr)
        return 1
    return 0


def _warning_lines(result) -> None:
    """The images the models may not read (grayscale, blank, dark, tiny...), a few by name."""
    warned = [r for r in result.images if r.warnings]
    if not warned:
        return
    print(f"{len(warned)} image(s) the models may not read (their white cells are flagged "
          "for review):", file=sys.stderr)
    for r in warned[:10]:
        print(f"  {r.file}: {'; '.join(r.warnings)}", file=sys.stderr)
    if len(warned) > 10:
        print(f"  ... and {len(warned) - 10} more (see the report)", file=sys.stderr)


#: Share of white cells flagged for review above which a run suggests adapting: the default
#: classifier flags 1 % of its own lab's test cells and 27 % of CellaVision's (another lab;
#: benchmarks/results/review_share.md).
SHIFT_HINT = 0.2


def _review_line(result, args: argparse.Namespace) -> None:
    """How many white cells are flagged for review; when many are and nothing was adapted,
    a hint that the cells may come from another lab than the classifier's."""
    white = [c for c in result.cells if c.probability is not None]
    if not white:
        return
    flagged = sum(c.review for c in white)
    print(f"{flagged} of {len(white)} white cells flagged for review (see the report)")
    # the hint is about another lab's cells: images flagged as unreadable by the models
    # (grayscale, blank, ...) say nothing about that
    plain = [c for r in result.images if not r.warnings for c in r.cells if c.probability is not None]
    if plain and sum(c.review for c in plain) / len(plain) >= SHIFT_HINT and args.adapt == "none":
        print("hint: many white cells are uncertain; if they come from another lab than the "
              "classifier's, try --classes (the types your samples hold) with --adapt shot, or "
              "adapt with a few labels (`hemascope fewshot`)", file=sys.stderr)
