"""The HTTP layer of ``hemascope serve`` (FastAPI): routes only; the work is in
:class:`hemascope.web.service.Service` and the HTML in :mod:`hemascope.web.page`.

Routes:
    ``GET /``: an upload form.
    ``POST /analyze``: form field ``files`` (one or more images) -> an HTML result page.
    ``POST /api/analyze``: the same form -> JSON ``{"images": [per-image result, as in
    analyze's images/<key>.json], "counts", "errors", "seconds"}``.
    ``GET /api/health``: version, models and limits.

A request with no file or too many is answered 400 with ``{"detail": reason}``; a file
that cannot be used (too large, not an image, truncated) is listed under ``errors`` and the
others are analysed. A POST larger than ``max_request_mb`` is refused 413 before its
body is read, and one without a ``Content-Length`` 411
(browsers, curl and HTTP libraries send it; the server holds the body to that length).
"""

# no `from __future__ import annotations`: FastAPI reads the route annotations at definition
# time, and UploadFile is imported inside create_app (FastAPI is an optional extra)
from typing import Any

from hemascope.errors import HemascopeError
from hemascope.web.page import result_page, upload_page
from hemascope.web.service import RequestError, Service


def create_app(service: Service) -> Any:
    """A FastAPI application serving ``service`` (needs the ``web`` extra)."""
    try:
        from fastapi import FastAPI, File, HTTPException, UploadFile
        from fastapi.responses import HTMLResponse
    except ImportError as e:  # pragma: no cover - depends on the install
        raise HemascopeError("the web service needs FastAPI: pip install 'hemascope[web]' "
                             f"({e})") from None

    app = FastAPI(title="hemascope", description="White-blood-cell differentials with evidence",
                  version=service.info()["version"])
    limit = service.limits.max_bytes

    def read(files: list[UploadFile] | None) -> list[tuple[str, bytes | None]]:
        if files is not None and len(files) > service.limits.max_files:
            raise HTTPException(400, f"{len(files)} files sent; at most "
                                     f"{service.limits.max_files} per request")
        out = []
        for f in files or []:
            data = f.file.read(limit + 1)
            out.append((f.filename or "", data if len(data) <= limit else None))
        return out

    def run(files: list[UploadFile] | None, overlays: bool):
        try:
            return service.run(read(files), overlays=overlays)
        except RequestError as e:
            raise HTTPException(400, str(e)) from None

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return upload_page(service.info(), max_files=service.limits.max_files,
                           max_mb=service.limits.max_mb,
                           max_request_mb=service.limits.max_request_mb)

    # plain `def` routes run in FastAPI's thread pool; Service serialises the analyses
    @app.post("/analyze", response_class=HTMLResponse)
    def analyze_page(files: list[UploadFile] | None = File(None)) -> str:
        r = run(files, overlays=True)
        return result_page(r.images, r.errors, r.counts, r.seconds)

    @app.post("/api/analyze")
    def analyze_json(files: list[UploadFile] | None = File(None)) -> dict[str, Any]:
        return run(files, overlays=False).to_dict()

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", **service.info()}

    return BodyLimit(app, int(service.limits.max_request_mb * 1_000_000))


class BodyLimit:
    """ASGI wrapper: a POST must declare its length, and at most ``limit`` bytes, before the
    framework spools the upload (FastAPI would otherwise write any size to disk)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT"):
            length = dict(scope.get("headers") or []).get(b"content-length", b"")
            if not length.isdigit():
                return await _refuse(send, 411, "send the request with a Content-Length")
            if int(length) > self.limit:
                return await _refuse(send, 413, f"request of {int(length)} bytes; at most "
                                                f"{self.limit} per request")
        await self.app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:  # app.routes, app.title, ... of the wrapped app
        return getattr(self.app, name)


async def _refuse(send: Any, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
