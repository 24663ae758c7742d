"""The main job for uploaded images, without the web framework (so it can be tested and
reused): models load once, uploads are checked one by one, one analysis runs at a time.

:class:`Service` takes ``(file name, bytes)`` pairs and returns what ``analyze`` finds for
each readable image, the files it could not use and why, and the overall counts. Nothing is
kept: each upload is decoded from a private temporary folder that is removed at once.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hemascope.errors import HemascopeError, ImageReadError
from hemascope.io.image import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, read_image
from hemascope.pipeline.analyzer import AnalysisOptions, Analyzer
from hemascope.pipeline.records import ImageResult, counts

log = logging.getLogger("hemascope.web")


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may send.

    Attributes:
        max_files: images per request.
        max_mb: size of one file in MB (10^6 bytes).
        max_request_mb: size of a whole request in MB (the uploads are held in memory
            while a request is analysed, so this bounds the service's memory).
        max_pixels: width x height of one image (refused before decoding).
        overlay_side: the longer side of the overlay PNGs on the result page.
    """

    max_files: int = 50
    max_mb: float = 50.0
    max_request_mb: float = 200.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    overlay_side: int = 1600

    def __post_init__(self) -> None:
        if (self.max_files < 1 or not self.max_mb > 0 or not self.max_request_mb > 0
                or self.max_pixels < 1 or self.overlay_side < 16):
            raise HemascopeError(f"service limits must be positive: {self}")

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1_000_000)


@dataclass
class ServiceResult:
    """One request's results: ``(result, overlay PNG or None)`` per readable image, in the
    order sent; ``errors`` by file name; overall ``counts``; seconds of the whole request."""

    images: list[tuple[ImageResult, bytes | None]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        return counts([c for r, _ in self.images for c in r.cells])

    def to_dict(self) -> dict[str, Any]:
        return {"images": [r.to_dict() for r, _ in self.images], "counts": self.counts,
                "errors": self.errors, "seconds": round(self.seconds, 3)}


class RequestError(HemascopeError):
    """A request the service refuses as a whole (no file, too many files)."""


class Service:
    """The analyser behind the web page.

    Args:
        options: the models and settings of every analysis (as for ``hemascope analyze``;
            ``adapt`` must stay ``"none"``: a request is too small to adapt on).
        limits: what one request may send.

    Raises:
        HemascopeError: models that do not load, or an adaptation asked for.
    """

    def __init__(self, options: AnalysisOptions | None = None,
                 limits: ServiceLimits | None = None) -> None:
        self.options = options or AnalysisOptions()
        if self.options.adapt != "none":
            raise HemascopeError("the web service does not adapt models per request; adapt "
                                 "first (`hemascope fewshot`, `analyze --adapt`) and serve the "
                                 "adapted classifier")
        self.limits = limits or ServiceLimits()
        self.analyzer = Analyzer(self.options)
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """Version, models and limits (for ``/api/health`` and the start page)."""
        from hemascope import __version__

        o = self.options
        models = {"detector": str(o.detector), "classifier": str(o.classifier),
                  "classes": ", ".join(self.analyzer.classifier.classes)}
        for name in ("refiner", "attributes", "parts", "stain"):
            value = getattr(o, name)
            if value not in (None, "none"):
                models[name] = str(value)
        return {"version": __version__, "models": models, "mode": o.mode,
                "limits": {"max_files": self.limits.max_files, "max_mb": self.limits.max_mb,
                           "max_request_mb": self.limits.max_request_mb,
                           "max_pixels": self.limits.max_pixels}}

    def run(self, uploads: Sequence[tuple[str, bytes | None]], *, overlays: bool = True) -> ServiceResult:
        """Analyse ``(file name, content)`` pairs; ``None`` content means the upload was
        cut off at the size limit. Bad files land in ``errors`` and the rest are analysed.

        Raises:
            RequestError: no file, or more than ``limits.max_files``.
        """
        if not uploads:
            raise RequestError("no image was sent")
        if len(uploads) > self.limits.max_files:
            raise RequestError(f"{len(uploads)} files sent; at most {self.limits.max_files} per request")
        t0 = time.perf_counter()
        result = ServiceResult()
        names = _display_names([name for name, _ in uploads])
        with tempfile.TemporaryDirectory(prefix="hemascope-web-") as tmp:
            for i, ((raw_name, data), name) in enumerate(zip(uploads, names)):
                if data is None:
                    result.errors[name] = f"larger than {self.limits.max_mb:g} MB"
                    continue
                suffix = Path(raw_name).suffix.lower()
                path = Path(tmp) / f"{i}{suffix if suffix in IMAGE_SUFFIXES else ''}"
                path.write_bytes(data)
                try:
                    image = read_image(path, max_pixels=self.limits.max_pixels)
                except ImageReadError as e:
                    result.errors[name] = e.reason
                    continue
                finally:
                    path.unlink(missing_ok=True)
                try:
                    with self._lock:
                        r = self.analyzer.analyze_image(image, file=name, key=_key(i, name))
                except Exception as e:  # one bad image must not take the request down
                    log.exception("analysis of %s failed", name)
                    result.errors[name] = f"analysis failed: {e}"
                    continue
                png = self._overlay(image, r) if overlays else None
                result.images.append((r, png))
        result.seconds = time.perf_counter() - t0
        return result

    def _overlay(self, image: np.ndarray, r: ImageResult) -> bytes:
        import cv2

        from hemascope.pipeline.outputs import draw_overlay

        canvas = draw_overlay(image, r)
        side = max(canvas.shape[:2])
        if side > self.limits.overlay_side:
            s = self.limits.overlay_side / side
            canvas = cv2.resize(canvas, (max(1, round(canvas.shape[1] * s)),
                                         max(1, round(canvas.shape[0] * s))),
                                interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(canvas[..., ::-1]))
        if not ok:  # pragma: no cover - cv2 encodes any uint8 image
            raise HemascopeError("could not encode the overlay")
        return buf.tobytes()


def _display_names(names: Sequence[str]) -> list[str]:
    """The uploads' base names (browsers may send paths), made unique: ``a.png``,
    ``a.png (2)``; an empty name becomes ``upload-N``."""
    out, seen = [], {}
    for i, n in enumerate(names):
        base = (n or "").replace("\\", "/").rsplit("/", 1)[-1].strip() or f"upload-{i + 1}"
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base} ({seen[base]})")
    return out


def _key(i: int, name: str) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(name).stem)[:60]
    return f"{i + 1:03d}_{stem or 'image'}"
