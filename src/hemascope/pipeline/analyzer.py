"""The main job: smear images -> cells with type, box, outline and score -> a differential.

For each image: read it; in *fields* mode detect every cell (tiled when large), cut each
white cell out with context, outline it with the classical extraction (HSV threshold,
watershed) or, given a part model (``parts``), as nucleus and cytoplasm
(:mod:`hemascope.segment.outline`), and classify it (after the optional colour
standardisation); red cells and
platelets are counted. In *cells* mode (single-cell crops, e.g. PBC or CellaVision images)
the whole image is one white cell. With ``adapt`` the classifier is first adapted to the
run's own white cells (:mod:`hemascope.pipeline.adaptation`). Everything is written to the
output folder as it goes (atomic writes, one JSON per image), so ``resume=True`` skips
images already done and a crash loses nothing. Unreadable files are listed, never fatal.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from hemascope.errors import HemascopeError, ImageReadError
from hemascope.model_classes import allowed_classes, restrict
from hemascope.pipeline.records import CellRecord, ImageResult

#: In ``mode="auto"``, images whose longer side is at most this are single-cell crops.
CELL_MAX_SIDE = 400
#: A white cell is cut out as a square this many times its box's longer side (PBC-like framing).
CONTEXT = 1.6
MODES = ("auto", "cells", "fields")


@dataclass
class AnalysisOptions:
    detector: str | Path = "default"
    classifier: str | Path = "default"
    refiner: str | Path | None = None
    attributes: str | Path | None = None
    parts: str | Path | None = None
    stain: str | Path | None = None
    mode: str = "auto"
    scale: float | str | None = "auto"
    balance: bool = True
    review_below: float = 0.6
    overlays: bool = True
    tta: int | None = None
    detector_tta: int = 1
    classes: Sequence[str] | None = None
    adapt: str = "none"
    adapt_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, (tuple, list)) else v)
                for k, v in self.__dict__.items()}


@dataclass
class AnalysisResult:
    """What a run produced: per-image results (done now or resumed), errors, where it went."""

    out_dir: Path
    images: list[ImageResult]
    errors: dict[str, str] = field(default_factory=dict)
    resumed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cells(self) -> list[CellRecord]:
        return [c for r in self.images for c in r.cells]

    def differential(self) -> dict[str, int]:
        from hemascope.pipeline.records import counts

        return counts(self.cells)


def image_key(path: Path, root: Path, *, keep_suffix: bool = False) -> str:
    """A file-name-safe key, unique within a run: the path below ``root``, without suffix
    (``keep_suffix``: with it, its dot made ``_``, so ``x.jpg`` and ``x.png`` differ)."""
    try:
        rel = path.resolve().relative_to(root)
    except ValueError:
        rel = Path(path.name)
    text = "__".join(rel.parts).replace(".", "_") if keep_suffix else "__".join(rel.with_suffix("").parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "image"


def crop_window(box: Sequence[float], *, context: float = CONTEXT) -> tuple[int, int, int]:
    """``(left, top, side)`` of :func:`crop_cell`'s square in image pixels (it may reach
    past the image edges)."""
    x0, y0, x1, y1 = box
    side = max(8, int(round(context * max(x1 - x0, y1 - y0))))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_cell(image: np.ndarray, box: Sequence[float], *, context: float = CONTEXT) -> np.ndarray:
    """A square crop centred on ``box``, ``context`` x its longer side, edges replicated."""
    import cv2

    l, t, side = crop_window(box, context=context)
    h, w = image.shape[:2]
    pad = [max(0, -t), max(0, t + side - h), max(0, -l), max(0, l + side - w)]
    src = image[max(t, 0):min(t + side, h), max(l, 0):min(l + side, w)]
    if any(pad):
        src = cv2.copyMakeBorder(np.ascontiguousarray(src), *pad, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(src)


def nucleated_classes(classes: Sequence[str]) -> list[int]:
    """Indices of the classes a white-cell box can hold: leukocytes and erythroblasts.

    A detector's WBC box is never a platelet or a red cell; a classifier trained on single
    cells (PBC) also knows those, so on fields its answer is restricted to the nucleated
    classes. All classes when none is recognised.
    """
    from hemascope.errors import UnknownLabelError
    from hemascope.taxonomy import ancestors

    keep = []
    for i, c in enumerate(classes):
        try:
            chain = ancestors(c)
        except UnknownLabelError:
            continue
        if "wbc" in chain or "erythroblast" in chain:
            keep.append(i)
    return keep or list(range(len(classes)))


def shared_classes(first: Sequence[str], second: Sequence[str]) -> dict[str, int]:
    """Classes of ``first`` that ``second`` also has (same taxonomy concept) -> index in ``second``."""
    from hemascope.errors import UnknownLabelError
    from hemascope.taxonomy import resolve

    def concept(c: str) -> str:
        try:
            return resolve(c)
        except UnknownLabelError:
            return c

    index = {concept(c): j for j, c in enumerate(second)}
    return {c: index[concept(c)] for c in first if concept(c) in index}


def cell_crops(image: np.ndarray, found: tuple[list, list[str], list[float]],
               mode: str) -> list[np.ndarray]:
    """The white cells of ``image`` as the classifier sees them: the whole image in cells
    mode, a :func:`crop_cell` around each white-cell box on a field."""
    boxes, kinds, _ = found
    white = [i for i, k in enumerate(kinds) if is_white_cell(k)]
    return [image if mode == "cells" else crop_cell(image, boxes[i]) for i in white]


def is_white_cell(name: str) -> bool:
    from hemascope.detect.data import _is_under

    return name.upper() == "WBC" or _is_under(name, "WBC")


class Analyzer:
    """Loads models once and analyses images one at a time (the API behind the CLI)."""

    def __init__(self, options: AnalysisOptions | None = None) -> None:
        from hemascope.models.artifact import load_classifier
        from hemascope.pipeline.adaptation import ADAPTATIONS

        self.options = options or AnalysisOptions()
        if self.options.mode not in MODES:
            raise HemascopeError(f"mode must be one of {', '.join(MODES)}")
        if self.options.adapt not in ADAPTATIONS:
            raise HemascopeError(f"adapt must be one of {', '.join(ADAPTATIONS)}")
        self.use_classifier(load_classifier(self.options.classifier))
        self.refiner, self.shared = None, {}
        if self.options.refiner:
            self.refiner = load_classifier(self.options.refiner)
            self.shared = shared_classes(self.classifier.classes, self.refiner.classes)
            if not self.shared:
                raise HemascopeError(f"the refiner {self.options.refiner} shares no class with the "
                                     f"classifier ({', '.join(self.classifier.classes)})")
        self.attribute_model = None
        if self.options.attributes:
            from hemascope.attributes import load_attribute_model

            self.attribute_model = load_attribute_model(self.options.attributes)
        self.part_model = None
        if self.options.parts not in (None, "none"):
            from hemascope.segment.predict import load_segmenter

            self.part_model = load_segmenter(self.options.parts)
        self._detector = None
        self.stain = None
        if self.options.stain:
            from hemascope.stain import load_reference

            self.stain = load_reference(self.options.stain)

    def use_classifier(self, model) -> None:
        """Type white cells with ``model`` (a loaded classifier), within ``options.classes``."""
        self.classifier = model
        self.allowed = allowed_classes(self.options.classes, model.classes)
        nucleated = nucleated_classes(model.classes)
        if self.allowed is not None:
            nucleated = [i for i in nucleated if i in self.allowed] or self.allowed
        self.field_classes = nucleated

    @property
    def detector(self):
        if self._detector is None:
            from hemascope.detect.predict import load_detector

            self._detector = load_detector(self.options.detector)
        return self._detector

    def mode_of(self, image: np.ndarray) -> str:
        if self.options.mode != "auto":
            return self.options.mode
        return "cells" if max(image.shape[:2]) <= CELL_MAX_SIDE else "fields"

    def find_cells(self, image: np.ndarray, mode: str) -> tuple[list, list[str], list[float]]:
        """``(boxes, kinds, scores)`` of the cells of ``image``: the detector's on a field,
        the whole image as one white cell in cells mode."""
        if mode == "cells":
            h, w = image.shape[:2]
            return [(0.0, 0.0, float(w), float(h))], ["WBC"], [1.0]
        from hemascope.detect.predict import counted

        d = self.detector
        det = counted(d, _detect(d, image, self.options.scale, self.options.detector_tta,
                                 balance=self.options.balance))
        return ([tuple(float(v) for v in b) for b in det.boxes],
                [d.classes[int(lab) - 1] for lab in det.labels], [float(s) for s in det.scores])

    def analyze_image(self, image: np.ndarray, *, file: str = "", key: str = "",
                      found: tuple[list, list[str], list[float]] | None = None) -> ImageResult:
        """All cells of one RGB uint8 image (``found``: its :meth:`find_cells`, if known)."""
        from hemascope.io.quality import image_warnings

        h, w = image.shape[:2]
        mode = self.mode_of(image)
        warnings = image_warnings(image)
        sec: dict[str, float] = {}
        t = time.perf_counter()
        boxes, kinds, scores = found if found is not None else self.find_cells(image, mode)
        sec["detect"] = time.perf_counter() - t
        white = [i for i, k in enumerate(kinds) if is_white_cell(k)]
        t = time.perf_counter()
        crops = cell_crops(image, (boxes, kinds, scores), mode)
        probs = self._classify(crops)
        if len(probs) and (mode == "fields" or self.allowed is not None):
            probs = restrict(probs, self.field_classes if mode == "fields" else self.allowed)
        refined = self._refine(crops, probs) if self.refiner is not None else {}
        sec["classify"] = time.perf_counter() - t
        attrs: list = [None] * len(crops)
        if self.attribute_model is not None and crops:
            from hemascope.attributes import predict_attributes

            t = time.perf_counter()
            attrs = [a.to_dict() for a in predict_attributes(self.attribute_model, crops)]
            sec["attributes"] = time.perf_counter() - t
        t = time.perf_counter()
        parts = self._parts(image, [boxes[i] for i in white], crops, mode)
        outlines = {i: (parts[k].polygon, parts[k].box) if parts[k] is not None
                    else _outline(image, boxes[i], whole=mode == "cells")
                    for k, i in enumerate(white)}
        sec["outline"] = time.perf_counter() - t
        cells = []
        classes = self.classifier.classes
        for n, i in enumerate(range(len(boxes))):
            box, polygon = boxes[i], None
            if i in outlines and outlines[i] is not None:
                polygon, obox = outlines[i]
                if mode == "cells":
                    box = obox
            if i in white:
                k = white.index(i)
                p, names = (refined[k], self.refiner.classes) if k in refined else (probs[k], classes)
                order = np.argsort(-p)
                top2 = [[names[j], float(p[j])] for j in order[:2]]
                label, prob = top2[0][0], top2[0][1]
                review = prob < self.options.review_below or scores[i] < 0.5 or bool(warnings)
                po = parts[k]
                cells.append(CellRecord(n + 1, kinds[i], label, scores[i], box, prob, top2,
                                        polygon, review, refined=k in refined,
                                        attributes=attrs[k],
                                        nucleus=None if po is None else po.nucleus,
                                        nc_ratio=None if po is None else po.nc_ratio))
            else:
                cells.append(CellRecord(n + 1, kinds[i], kinds[i], scores[i], box))
        return ImageResult(file, key, w, h, mode, cells, {k: round(v, 4) for k, v in sec.items()},
                           warnings=warnings)

    def _parts(self, image: np.ndarray, boxes: list, crops: list[np.ndarray], mode: str) -> list:
        """Per white cell, its :class:`~hemascope.segment.outline.PartOutline` in image
        pixels from the part model (on the classifier's crop), or ``None`` (no part model,
        or no cell found: the classical outline is used instead)."""
        if self.part_model is None or not crops:
            return [None] * len(crops)
        from hemascope.segment.outline import outline_from_parts
        from hemascope.segment.predict import segment_arrays

        h, w = image.shape[:2]
        out = []
        maps = segment_arrays(self.part_model, crops, at_input_size=True)
        for box, crop, lab in zip(boxes, crops, maps):
            found = outline_from_parts(lab, self.part_model.config["classes"])
            if found is not None:  # map pixels -> crop pixels -> image pixels
                left, top = (0, 0) if mode == "cells" else crop_window(box)[:2]
                found = found.placed(crop.shape[1] / lab.shape[1], crop.shape[0] / lab.shape[0],
                                     left, top, w, h)
            out.append(found)
        return out

    def _refine(self, crops: list[np.ndarray], probs: np.ndarray) -> dict[int, np.ndarray]:
        """Second stage (the smear study's two-stage pipeline): cells the first classifier put
        in a class the refiner also knows are typed again by the refiner, among the shared
        classes only. Returns the refiner's probabilities by white-cell index."""
        from hemascope.classify import predict_arrays

        first = [self.classifier.classes[j] for j in probs.argmax(1)] if len(probs) else []
        todo = [k for k, c in enumerate(first) if c in self.shared]
        if not todo:
            return {}
        batch = [crops[k] for k in todo]
        if self.stain is not None:
            from hemascope.stain import standardize

            batch = [standardize(c, reference=self.stain) for c in batch]
        p = restrict(predict_arrays(self.refiner, batch, tta=self.options.tta),
                     sorted(set(self.shared.values())))
        return dict(zip(todo, p))

    def _classify(self, crops: list[np.ndarray]) -> np.ndarray:
        from hemascope.classify import predict_arrays

        if not crops:
            return np.zeros((0, len(self.classifier.classes)))
        if self.stain is not None:
            from hemascope.stain import standardize

            crops = [standardize(c, reference=self.stain) for c in crops]
        return predict_arrays(self.classifier, crops, tta=self.options.tta)


def _detect(det, image, scale, views: int = 1, *, balance: bool = True):
    from hemascope.detect.predict import predict_ensemble

    return predict_ensemble([det], image, fusion="wbf", scale=scale, views=views, balance=balance)


def _outline(image: np.ndarray, box, *, whole: bool):
    """``(polygon, box)`` of the stained cell in ``box`` (classical extraction) or ``None``."""
    from hemascope.segment.classical import extract_cell, mask_in_box

    try:
        cell = extract_cell(image) if whole else mask_in_box(image, box)
    except ValueError:
        return None
    if cell is None or not cell.polygon:
        return None
    return list(cell.polygon), tuple(float(v) for v in cell.box)


def analyze(paths: Iterable[str | Path], *, out_dir: str | Path,
            options: AnalysisOptions | None = None, resume: bool = False,
            shard: tuple[int, int] | None = None,
            progress: Callable[[int, int, str], None] | None = None,
            log: Callable[[str], None] | None = None) -> AnalysisResult:
    """Analyse images and folders (recursive) into ``out_dir``; see the module doc.

    Folders are searched recursively, leaving out the output folder and the output folders
    of earlier runs found inside them. Without ``resume`` an earlier run's results in
    ``out_dir`` are replaced; with it, an image is skipped only when ``out_dir`` holds its
    result (same file) from a run with the same models and options.

    ``shard=(k, n)`` analyses the k-th of n interleaved parts of the inputs (1 <= k <= n;
    every n-th file of the sorted list), so that n jobs on n machines share an archive;
    each image keeps the key it has in a whole run, and ``hemascope report merge`` joins
    the n output folders into one run (:mod:`hemascope.pipeline.merge`).

    Returns:
        :class:`AnalysisResult`; the files in ``out_dir`` are described in the README.

    Raises:
        HemascopeError: a missing input path, no images found, models that do not load,
            the output folder cannot be written, or ``resume`` into a run made with other
            models or options.
    """
    from hemascope.pipeline import outputs

    out = Path(out_dir).resolve()
    options = options or AnalysisOptions()
    if shard is not None:
        check_shard(shard)
        if options.adapt != "none":
            raise HemascopeError("--shard with --adapt would adapt each part to its own cells; "
                                 "adapt once (`hemascope adapt`, `fewshot`) and pass --classifier")
    files = input_files(paths, out)
    keys = image_keys(files)
    if shard is not None:
        k, n = shard
        files, keys = files[k - 1::n], keys[k - 1::n]
        if not files:
            raise HemascopeError(f"shard {k}/{n} holds no image: there are fewer images than "
                                 "shards")
    analyzer = Analyzer(options)  # models load before anything is written
    found: dict[str, Any] = {}
    t_adapt = time.perf_counter()
    if options.adapt != "none":
        found = _adapt(analyzer, files, out, resume=resume, progress=progress,
                       log=log or (lambda s: None))
    else:
        outputs.prepare_out_dir(out)
    t_adapt = time.perf_counter() - t_adapt
    fingerprint = outputs.run_fingerprint(analyzer)
    if resume:
        outputs.check_resumable(out, fingerprint)
    else:
        outputs.clear_earlier_run(out)
    outputs.write_json(out / "manifest.json", outputs.start_manifest(analyzer, fingerprint, shard))
    t_start = time.perf_counter()
    results, errors, resumed = [], {}, 0
    totals = {"read": 0.0, "detect": 0.0, "classify": 0.0, "outline": 0.0, "write": 0.0}
    for n, (f, key) in enumerate(zip(files, keys)):
        source = str(f.resolve())
        if progress:
            progress(n, len(files), str(f))
        if resume:
            done = outputs.load_done(out, key)
            if done is not None and done.source == source:
                results.append(done)
                resumed += 1
                continue
        t = time.perf_counter()
        try:
            from hemascope.io.image import read_image

            image = read_image(f)
        except ImageReadError as e:
            errors[str(f)] = e.reason
            continue
        totals["read"] += time.perf_counter() - t
        r = analyzer.analyze_image(image, file=str(f), key=key, found=found.pop(source, None))
        r.source = source
        for k, v in r.seconds.items():
            totals[k] = totals.get(k, 0.0) + v
        t = time.perf_counter()
        outputs.write_image_outputs(out, r, image, overlay=options.overlays)
        totals["write"] += time.perf_counter() - t
        results.append(ImageResult.from_dict(r.to_dict()))  # as a resumed run reads it back
    if progress:
        progress(len(files), len(files), "")
    result = AnalysisResult(out, results, errors, resumed,
                            {k: round(v, 3) for k, v in totals.items()})
    if options.adapt != "none":
        result.seconds["adapt"] = round(t_adapt, 3)
    result.seconds["total"] = round(time.perf_counter() - t_start + t_adapt, 3)
    manifest = {**outputs.run_manifest(result, analyzer, files), "fingerprint": fingerprint}
    if shard is not None:
        manifest["shard"] = list(shard)
    outputs.write_run_outputs(out, result, manifest)
    return result


def check_shard(shard: tuple[int, int]) -> None:
    """Raise unless ``shard`` is ``(k, n)`` with ``1 <= k <= n``."""
    k, n = shard
    if not (isinstance(k, int) and isinstance(n, int) and 1 <= k <= n):
        raise HemascopeError(f"shard must be k/n with 1 <= k <= n, got {k}/{n}")


def image_keys(files: Sequence[Path]) -> list[str]:
    """The output key of every input (its path below the inputs' common folder, made safe);
    names that collide after sanitising get ``_2``, ``_3``... in input order. A shard's
    images keep the keys they have in the whole list."""
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    keys, seen = [], {}
    for f in files:
        key = image_key(f, root)
        if key in seen:
            seen[key] += 1
            key = f"{key}_{seen[key]}"
        seen.setdefault(key, 0)
        keys.append(key)
    return keys


def _adapt(analyzer: Analyzer, files: list[Path], out: Path, *, resume: bool,
           progress: Callable[[int, int, str], None] | None,
           log: Callable[[str], None]) -> dict[str, Any]:
    """Adapt ``analyzer``'s classifier to the white cells of ``files``
    (:mod:`hemascope.pipeline.adaptation`), or, resuming a run of the same inputs, re-use
    its adapted classifier. Returns the detections made on the way, by absolute path."""
    from hemascope.pipeline import adaptation, outputs

    opts = analyzer.options
    base = analyzer.classifier
    folder = out / adaptation.ADAPTED_DIR
    digest = adaptation.inputs_digest(files)
    settings = {"method": opts.adapt, "seed": opts.adapt_seed,
                "classes": None if opts.classes is None else list(opts.classes),
                "base_sha256": base.config.get("weights_sha256") or str(base.path)}
    if resume and (out / "manifest.json").is_file():
        done = adaptation.reusable(folder, digest, settings)
        if done is not None:
            log(f"re-using the classifier adapted to these inputs ({folder})")
            analyzer.use_classifier(done)
            return {}
        if (folder / "config.json").is_file():
            raise HemascopeError(
                f"cannot resume in {out}: its classifier was adapted to other input files or "
                "with other settings (or is damaged), and adaptation depends on every input; "
                "analyse into a new folder, or run without --resume to adapt again and replace "
                "the results")
    from hemascope.models.artifact import require_pytorch

    require_pytorch(base, f"--adapt {opts.adapt}")  # before the cells are collected
    if opts.adapt == "shot" and analyzer.allowed is not None and len(analyzer.allowed) < 2:
        raise HemascopeError("--adapt shot spreads the cells over two or more classes; "
                             f"--classes names {len(analyzer.allowed)}")
    if base.path.resolve() == folder.resolve():
        raise HemascopeError(f"the classifier {base.path} is the one this run would adapt and "
                             "replace; copy it elsewhere or analyse into another folder")
    sample = adaptation.collect_white_cells(analyzer, files, seed=opts.adapt_seed,
                                            progress=progress)
    adaptation.check_enough(sample, opts.adapt)  # before anything is written
    classes = adaptation.adaptation_classes(base.classes, analyzer.allowed, sample.modes)
    outputs.prepare_out_dir(out)
    log(f"adapting the classifier ({opts.adapt}) to {len(sample.images)} of the run's "
        f"{sample.n_found} white cells")
    adapted = adaptation.adapt_to_run(base, sample, method=opts.adapt, classes=classes,
                                      seed=opts.adapt_seed, out_dir=folder, digest=digest,
                                      settings=settings, log=log)
    analyzer.use_classifier(adapted)
    return sample.found


def input_files(paths: Iterable[str | Path], out: Path) -> list[Path]:
    """The images to analyse: files as given, folders searched recursively
    (:func:`hemascope.classify.expand_paths`).

    Left out: anything inside ``out``, and inside the output folder of an earlier run
    (a folder with a hemascope run ``manifest.json``) found below a folder given here.

    Raises:
        HemascopeError: a path that does not exist, or no image at all.
    """
    from hemascope.classify import expand_paths

    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    tops = [p.resolve() for p in paths if p.is_dir()]
    runs: dict[Path, bool] = {}
    files = []
    for f in expand_paths(paths):
        real = f.resolve()
        if out in real.parents or any(top in real.parents and _in_run_below(real, top, runs)
                                      for top in tops):
            continue
        files.append(f)
    if not files:
        raise HemascopeError("no images found in " + ", ".join(map(str, paths))
                             + f" (outside the output folder {out})")
    return files


def _in_run_below(f: Path, top: Path, cache: dict[Path, bool]) -> bool:
    """Whether a folder strictly between ``top`` and ``f`` holds an earlier run's outputs."""
    from hemascope.pipeline.outputs import is_run_folder

    for d in f.parents:
        if d == top:
            return False
        if d not in cache:
            cache[d] = is_run_folder(d)
        if cache[d]:
            return True
    return False
