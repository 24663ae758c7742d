"""Files of an `analyze` run, all written atomically (a crash leaves no half file).

    OUT/images/<key>.json       per image, the smear study's shape (+ counts, timings)
    OUT/overlays/<key>.png      boxes, outlines, class and score drawn on the image
    OUT/geojson/<key>.geojson   QuPath objects
    OUT/review/<key>_<id>.png   crops of cells flagged for review
    OUT/cells.csv               one row per object
    OUT/differential.csv        counts and percentages per class, per image and overall
    OUT/coco.json               COCO instances (boxes, polygons, scores)
    OUT/cvat.xml                CVAT for images 1.1
    OUT/errors.csv              files that could not be read, and why
    OUT/manifest.json           versions, models (with weight hashes), options, timings
    OUT/report.html             counts, plots, low-confidence gallery, configuration
"""

from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hemascope.errors import HemascopeError
from hemascope.io.atomic import atomic_write, write_json, write_text
from hemascope.pipeline.records import (CELL_COLUMNS, RESULT_FORMAT, ImageResult, cell_rows,
                                        differential)

MAX_REVIEW_CROPS = 200


def prepare_out_dir(out: Path) -> None:
    """Create the output folders or fail with a clear message (read-only place, a file...)."""
    try:
        for sub in ("images", "overlays", "geojson", "review"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        probe = out / ".hemascope-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise HemascopeError(f"cannot write to the output folder {out}: {e.strerror or e}") from None


RUN_FORMAT = "hemascope-run/1"


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds the outputs of an `analyze` run (its ``manifest.json``)."""
    p = folder / "manifest.json"
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("format") == RUN_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def run_fingerprint(analyzer) -> dict[str, Any]:
    """What makes two runs' per-image results comparable: the options that change them
    and the weights (hashes) of every model used."""
    from hemascope.models.artifact import read_config, resolve_model_dir

    from hemascope.classify import model_views

    opts = analyzer.options.to_dict()
    opts.pop("overlays", None)
    # the views the classifier actually ran (None means its own): `--tta 4` and the default
    # of a 4-view model give the same results, a 1-view run made earlier does not
    opts["tta"] = model_views(analyzer.classifier, opts.get("tta"))
    models = {}
    for role, m in (("classifier", analyzer.classifier), ("refiner", analyzer.refiner),
                    ("attributes", analyzer.attribute_model), ("parts", analyzer.part_model)):
        models[role] = None if m is None else m.config.get("weights_sha256") or str(m.path)
        opts.pop(role, None)
    try:  # the detector loads lazily (not at all on single cells): its config tells its hash
        path = resolve_model_dir(opts["detector"], "detector")
        models["detector"] = read_config(path).get("weights_sha256") or str(path)
    except HemascopeError:
        models["detector"] = str(opts["detector"])
    opts.pop("detector")
    return {"options": opts, "models": models}


def check_resumable(out: Path, fingerprint: dict[str, Any]) -> None:
    """Raise unless the run in ``out`` (if any) used the same models and options."""
    p = out / "manifest.json"
    if not p.is_file():
        return
    try:
        old = json.loads(p.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        old = None
    if old is None or old == fingerprint:
        return
    raise HemascopeError(f"cannot resume in {out}: its results were made with other settings "
                         f"({'; '.join(fingerprint_diff(old, fingerprint))}); analyse into a new "
                         "folder, or run without --resume to replace them")


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two runs' fingerprints, in words (``option a -> b``, ``x model``)."""
    return [f"{k} {old.get(part, {}).get(k)!r} -> {new.get(part, {}).get(k)!r}" if part == "options"
            else f"{k} model"
            for part in ("options", "models")
            for k in sorted(set(old.get(part, {})) | set(new.get(part, {})))
            if old.get(part, {}).get(k) != new.get(part, {}).get(k)]


def clear_earlier_run(out: Path) -> None:
    """Remove the per-image outputs of an earlier run in ``out`` (files of other programs
    are left alone), so that a new run's folder holds its own results only."""
    for p in (out / "images").glob("*.json"):
        try:
            if json.loads(p.read_text(encoding="utf-8")).get("format") != RESULT_FORMAT:
                continue
        except (OSError, ValueError, AttributeError):
            continue
        key = p.stem
        for q in [p, out / "overlays" / f"{key}.png", out / "geojson" / f"{key}.geojson",
                  *(out / "review").glob(f"{key}_*.png")]:
            try:
                q.unlink(missing_ok=True)
            except OSError as e:
                raise HemascopeError(f"cannot replace the earlier result {q}: {e.strerror or e}") from None


def start_manifest(analyzer, fingerprint: dict[str, Any],
                   shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Written when a run starts, so that an interrupted run can be resumed safely."""
    m = {"format": RUN_FORMAT, "complete": False, "options": analyzer.options.to_dict(),
         "fingerprint": fingerprint}
    if shard is not None:
        m["shard"] = list(shard)
    return m


def load_done(out: Path, key: str) -> ImageResult | None:
    """The finished result of ``key`` from an earlier run, or ``None`` (absent or damaged)."""
    p = out / "images" / f"{key}.json"
    if not p.is_file():
        return None
    try:
        return ImageResult.from_dict(json.loads(p.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError):
        return None  # damaged: analyse again


def write_image_outputs(out: Path, r: ImageResult, image: np.ndarray, *, overlay: bool = True) -> None:
    from hemascope.io.geojson import to_geojson
    from hemascope.io.image import write_image

    review = [c for c in r.cells if c.review]
    if review:
        from hemascope.pipeline.analyzer import crop_cell

        room = MAX_REVIEW_CROPS - _count_review(out)
        for c in review[:max(room, 0)]:
            write_image(out / "review" / f"{r.key}_{c.id}.png", crop_cell(image, c.box, context=1.3),
                        png_compression=1)
    if overlay:
        write_image(out / "overlays" / f"{r.key}.png", draw_overlay(image, r), png_compression=1)
    write_json(out / "geojson" / f"{r.key}.geojson", to_geojson(to_annotation(r)))
    write_json(out / "images" / f"{r.key}.json", r.to_dict())  # last: marks the image done


def _count_review(out: Path) -> int:
    return sum(1 for _ in (out / "review").glob("*.png"))


def to_annotation(r: ImageResult):
    from hemascope.io.annotations import ImageAnnotation, Instance

    inst = []
    for c in r.cells:
        attrs = {"kind": c.kind}
        if c.top2 and len(c.top2) > 1:
            attrs["second"] = str(c.top2[1][0])
        inst.append(Instance(label=c.label, box=tuple(c.box),
                             polygons=(tuple(map(tuple, c.polygon)),) if c.polygon else (),
                             score=c.probability if c.probability is not None else c.score,
                             attributes=attrs))
    return ImageAnnotation(r.file, r.width, r.height, tuple(inst))


def draw_overlay(image: np.ndarray, r: ImageResult) -> np.ndarray:
    """Boxes (thin for red cells), outlines and ``class score`` labels on a copy of the image."""
    import cv2

    from hemascope.io.geojson import class_color

    canvas = np.ascontiguousarray(image.copy())
    scale = max(0.35, min(image.shape[:2]) / 900)
    for c in r.cells:
        colour = tuple(int(v) for v in class_color(c.label))
        x0, y0, x1, y1 = (int(round(v)) for v in c.box)
        thick = 1 if c.kind in ("RBC", "Platelets") else 2
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thick)
        if c.polygon:
            pts = np.round(np.array(c.polygon)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], True, colour, 1, cv2.LINE_AA)
        for piece in c.nucleus or ():  # the nucleus lobes, thin and white inside the outline
            pts = np.round(np.array(piece)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], True, (255, 255, 255), 1, cv2.LINE_AA)
        if c.kind not in ("RBC", "Platelets"):
            p = c.probability if c.probability is not None else c.score
            text = f"{c.label} {p:.2f}" + (" ?" if c.review else "")
            _label(canvas, text, x0, y0, colour, scale)
    return canvas


def _label(canvas: np.ndarray, text: str, x: int, y: int, colour: tuple, scale: float) -> None:
    """``text`` on a filled tag of ``colour`` just above ``(x, y)`` (below it at the top
    edge), inside the image, in black or white, whichever reads better on the tag. One
    pass of thin text: Hershey glyphs advance by their stroke width, so an outline drawn
    thicker would not line up with the text."""
    import cv2

    font, h, w = cv2.FONT_HERSHEY_SIMPLEX, canvas.shape[0], canvas.shape[1]
    (tw, th), base = cv2.getTextSize(text, font, scale, 1)
    x = int(np.clip(x, 0, max(0, w - tw - 4)))
    top = y - th - base - 4
    if top < 0:  # no room above the box: inside it, at its top
        top = max(0, y)
    top = int(min(top, max(0, h - th - base - 4)))
    cv2.rectangle(canvas, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
    ink = (0, 0, 0) if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 140 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 2, top + th + 2), font, scale, ink, 1, cv2.LINE_AA)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_run_outputs(out: Path, result, manifest: dict[str, Any]) -> None:
    """The run-level files (tables, COCO, CVAT, errors, manifest, report) of ``result``."""
    from hemascope.io.coco import to_coco_dict
    from hemascope.io.cvat import cvat_xml

    results = result.images
    write_text(out / "cells.csv", csv_text(CELL_COLUMNS, cell_rows(results)))
    header, rows = differential(results)
    write_text(out / "differential.csv", csv_text(header, rows))
    write_text(out / "errors.csv", csv_text(["file", "reason"], sorted(result.errors.items())))
    anns = [to_annotation(r) for r in results]
    classes = sorted({i.label for a in anns for i in a.instances})
    write_json(out / "coco.json", to_coco_dict(anns, classes))
    with atomic_write(out / "cvat.xml") as fh:
        fh.write(cvat_xml(anns, classes))
    write_json(out / "manifest.json", manifest)
    from hemascope.pipeline.html import render_report

    write_text(out / "report.html", render_report(result, manifest, header, rows))


def run_manifest(result, analyzer, files: Sequence[Path]) -> dict[str, Any]:
    import torch

    from hemascope import __version__

    def model_entry(m) -> dict[str, Any]:
        return {"path": str(m.path), "arch": m.config.get("arch"),
                "classes": m.config.get("classes") or list(m.config.get("attributes", {})),
                "weights_sha256": m.config.get("weights_sha256")}

    models = {"classifier": model_entry(analyzer.classifier)}
    for name, m in (("refiner", analyzer.refiner), ("attributes", analyzer.attribute_model)):
        if m is not None:
            models[name] = model_entry(m)
    if analyzer._detector is not None:
        models["detector"] = model_entry(analyzer._detector)
    n_done = len(result.images) - result.resumed
    return {
        "format": RUN_FORMAT, "complete": True,
        "versions": {"hemascope": __version__, "python": platform.python_version(),
                     "torch": torch.__version__, "numpy": np.__version__},
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads()},
        "options": analyzer.options.to_dict(), "models": models,
        "inputs": len(files), "analysed_now": n_done, "resumed": result.resumed,
        "errors": len(result.errors), "cells": len(result.cells),
        "seconds": result.seconds,
        "seconds_per_image": round(sum(v for k, v in result.seconds.items() if k != "total")
                                   / max(n_done, 1), 4),
    }
