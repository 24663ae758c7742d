"""`hemascope serve`: the service analyses good uploads, lists bad ones, refuses empty or
oversized requests; the pages escape what users send; the CLI starts uvicorn on the app."""

import io
import json

import numpy as np
import pytest

from hemascope.cli import main
from hemascope.errors import HemascopeError
from hemascope.pipeline import AnalysisOptions
from hemascope.synthetic import make_cell
from hemascope.web import RequestError, Service, ServiceLimits


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def service(tiny_model):
    return Service(AnalysisOptions(classifier=tiny_model, mode="cells"),
                   ServiceLimits(max_files=5, max_mb=0.5, max_request_mb=3.5))


@pytest.fixture(scope="module")
def cell_png():
    return _png(make_cell("lymphocyte", seed=2, size=96).image)


def test_service_analyses_good_uploads_and_lists_bad_ones(service, cell_png):
    gray = _png(make_cell("monocyte", seed=1, size=96).image.mean(axis=2).astype(np.uint8))
    r = service.run([("dir/a.png", cell_png), ("a.png", cell_png), ("bad.jpg", b"not an image"),
                     ("big.png", None), ("gray.png", gray)])
    assert [res.file for res, _ in r.images] == ["a.png", "a.png (2)", "gray.png"]
    assert set(r.errors) == {"bad.jpg", "big.png"} and "0.5 MB" in r.errors["big.png"]
    assert all(png is not None and png[:4] == b"\x89PNG" for _, png in r.images)
    assert sum(r.counts.values()) == 3 and r.images[2][0].warnings
    d = r.to_dict()
    assert json.dumps(d) and len(d["images"]) == 3 and d["images"][0]["cells"][0]["top2"]
    assert "source" not in d["images"][0]  # no server path leaks into the answer


def test_service_refuses_empty_and_too_many(service, cell_png):
    with pytest.raises(RequestError, match="no image"):
        service.run([])
    with pytest.raises(RequestError, match="at most 5"):
        service.run([("a.png", cell_png)] * 6)


def test_service_refuses_adaptation_and_bad_limits(tiny_model):
    with pytest.raises(HemascopeError, match="does not adapt"):
        Service(AnalysisOptions(classifier=tiny_model, adapt="bn"))
    with pytest.raises(HemascopeError, match="positive"):
        ServiceLimits(max_files=0)


def test_http_routes(service, cell_png):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from hemascope.web import create_app

    client = TestClient(create_app(service))
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and "up to 5 images" in page.text.lower()
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["limits"]["max_files"] == 5
    files = [("files", ("cell.png", cell_png, "image/png")),
             ("files", ("<b onclick=x>.png", b"junk", "image/png")),
             ("files", ("huge.png", b"\0" * 600_000, "image/png"))]
    r = client.post("/api/analyze", files=files)
    assert r.status_code == 200
    d = r.json()
    assert len(d["images"]) == 1 and d["images"][0]["file"] == "cell.png"
    assert set(d["errors"]) == {"<b onclick=x>.png", "huge.png"}
    html = client.post("/analyze", files=files).text
    assert "<b onclick" not in html and "&lt;b onclick=x&gt;.png" in html
    assert "data:image/png;base64," in html and "1 image(s) analysed" in html
    import base64
    import re

    link = re.search(r'download="differential.csv" href="data:text/csv;charset=utf-8;base64,([^"]+)"', html)
    table = base64.b64decode(link.group(1)).decode()
    assert table.startswith("image,") and "cell.png" in table and table.splitlines()[-1].startswith("ALL")
    assert 'download="cells.csv"' in html and 'download="results.json"' in html
    assert client.post("/api/analyze").status_code == 400
    many = client.post("/api/analyze", files=[("files", ("c.png", cell_png, "image/png"))] * 6)
    assert many.status_code == 400 and "at most 5" in many.json()["detail"]


def test_serve_cli_starts_uvicorn(monkeypatch, tiny_model, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    assert main(["serve", "--classifier", str(tiny_model), "--mode", "cells", "--host", "0.0.0.0",
                 "--port", "8123", "--max-files", "3"]) == 0
    assert calls["host"] == "0.0.0.0" and calls["port"] == 8123 and calls["app"] is not None
    err = capsys.readouterr().err
    assert "no login" in err and "http://0.0.0.0:8123/" in err


def test_serve_cli_bad_model_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("uvicorn")
    assert main(["serve", "--classifier", str(tmp_path / "missing")]) == 1
    assert "error:" in capsys.readouterr().err


def test_oversized_or_unsized_posts_are_refused_before_reading(service):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from hemascope.web import create_app

    client = TestClient(create_app(service))  # limit: 3.5 MB per request
    big = client.post("/api/analyze", files=[("files", ("x.png", b"\0" * 3_600_000, "image/png"))])
    assert big.status_code == 413 and "at most 3500000" in big.json()["detail"]

    def chunks():
        yield b"--x\r\n"

    unsized = client.post("/api/analyze", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=x"})
    assert unsized.status_code == 411
    assert client.get("/api/health").status_code == 200


def test_cell_table_shows_morphology_and_nc_ratio_when_present():
    from hemascope.pipeline.records import CellRecord
    from hemascope.web.page import _cell_table

    plain = CellRecord(1, "WBC", "lymphocyte", 1.0, (0, 0, 10, 10), 0.9,
                       [["lymphocyte", 0.9], ["monocyte", 0.05]])
    assert "morphology" not in _cell_table([plain]) and "N:C" not in _cell_table([plain])
    rich = CellRecord(2, "WBC", "monocyte", 1.0, (0, 0, 10, 10), 0.5,
                      [["monocyte", 0.5], ["lymphocyte", 0.3]], review=True,
                      attributes={"cell_size": {"value": "big", "probability": 0.8},
                                  "granule_colour": {"value": "<pink>", "probability": 0.6}},
                      nc_ratio=0.41)
    html = _cell_table([plain, rich])
    assert "cell size: big" in html and "&lt;pink&gt;" in html and "0.41" in html
    assert html.count("<tr>") == 3 and "<td>?</td>" in html
