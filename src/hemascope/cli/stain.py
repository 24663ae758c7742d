"""``hemascope stain``: fit a colour reference, standardise images to it."""

from __future__ import annotations

import argparse
from pathlib import Path

from hemascope.cli._common import (Formatter, add_json_option, emit_json, iter_images, number,
                                   finish_batch, output_stems, print_skipped)


def register(groups: argparse._SubParsersAction) -> None:
    from hemascope.stain import MASKS, METHODS

    st = groups.add_parser("stain", help="colour / stain standardisation", formatter_class=Formatter)
    verbs = st.add_subparsers(dest="verb", metavar="VERB", required=True)
    fit = verbs.add_parser("fit", formatter_class=Formatter, help="fit a reference style",
                           description="Pool the colour statistics of the given images into a "
                                       "reference style (JSON).")
    fit.add_argument("paths", nargs="+", help="reference images and/or folders")
    fit.add_argument("--out", required=True, help="reference file to write (JSON)")
    fit.add_argument("--method", default="reinhard", choices=METHODS, help="standardisation method")
    fit.add_argument("--mask", default="auto", choices=MASKS,
                     help="auto: statistics over stained pixels only (L* < 88)")
    fit.add_argument("--max-images", type=number(int, 1), default=200, help="use at most this many images")
    add_json_option(fit)
    fit.set_defaults(handler=_fit)
    app = verbs.add_parser("apply", formatter_class=Formatter, help="standardise images",
                           description="Write each image mapped onto the reference style to "
                                       "OUT (same file names, PNG). Inputs are never touched.")
    app.add_argument("paths", nargs="+", help="images and/or folders")
    app.add_argument("--reference", required=True, help="reference file from `stain fit`")
    app.add_argument("--out", required=True, help="output folder")
    add_json_option(app)
    app.set_defaults(handler=_apply)



def _fit(args: argparse.Namespace) -> int:
    from hemascope.errors import HemascopeError
    from hemascope.stain import fit_reference, save_reference

    images, errors = [], {}
    for f, img, err in iter_images(args.paths, desc="reading", limit=args.max_images):
        if img is None:
            errors[str(f)] = err
        else:
            images.append(img)
    if not images:
        raise HemascopeError("no readable images to fit a reference on")
    ref = fit_reference(images, method=args.method, mask=args.mask)
    save_reference(args.out, ref)
    if args.json:
        emit_json({"reference": ref.to_dict(), "errors": errors}, args.json)
    else:
        print(f"wrote {args.out}: {ref.method} reference from {ref.n_images} image(s)")
    print_skipped(errors)
    return 0


def _apply(args: argparse.Namespace) -> int:
    from hemascope.io.atomic import guard_inputs
    from hemascope.io.image import write_image
    from hemascope.stain import load_reference, standardize

    from hemascope.classify import expand_paths

    ref = load_reference(args.reference)
    out = Path(args.out)
    files = expand_paths(args.paths)
    stems = output_stems(files)
    for f in files:  # before anything is written
        guard_inputs(out / f"{stems[f]}.png", files)
    done, errors = [], {}
    for f, img, err in iter_images(files, desc="standardising"):
        if img is None:
            errors[str(f)] = err
            continue
        dest = out / f"{stems[f]}.png"
        guard_inputs(dest, files)  # an output must never land on any input
        write_image(dest, standardize(img, reference=ref))
        done.append(str(dest))
    if args.json:
        emit_json({"written": done, "errors": errors}, args.json)
    else:
        print(f"wrote {len(done)} image(s) to {out}")
    return finish_batch(errors, len(done))
