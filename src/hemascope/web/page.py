"""The web page's HTML: an upload form and a result page (pure functions, no scripts).

Everything a user sent (file names, warnings quoting them) is escaped. Overlays are inline
PNG data URIs, so a result page is one self-contained document that can be saved.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any, Mapping, Sequence

from hemascope.pipeline.outputs import csv_text
from hemascope.pipeline.records import CELL_COLUMNS, OTHER_KINDS, ImageResult, cell_rows, differential

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.warn{color:#a04000}.err{color:#b00020}img{max-width:100%;border:1px solid #ddd}
form{padding:1em;border:1px solid #ccc;background:#fafafa}"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _document(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def upload_page(info: Mapping[str, Any], *, max_files: int, max_mb: float,
                max_request_mb: float) -> str:
    """The start page: what the service runs and a form to send images."""
    models = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in info.get("models", {}).items())
    body = f"""<h1>hemascope</h1>
<p>White-blood-cell differential with evidence: send smear photographs (fields) or single-cell
crops; every cell is found, typed and outlined, and the counts come back with the cells the
models are unsure of flagged for review.</p>
<form action="analyze" method="post" enctype="multipart/form-data">
<p><input type="file" name="files" multiple accept="image/*" required></p>
<p><button type="submit">Analyse</button></p>
<p><small>Up to {max_files} images of up to {max_mb:g} MB each, {max_request_mb:g} MB in all
(JPEG, PNG, BMP, TIFF, WebP, GIF).
Images are analysed on this machine and not kept.</small></p>
</form>
<h2>Models</h2><ul>{models}</ul>
<p><small>hemascope {_e(info.get("version", ""))}. Machine-readable: POST the same form to
<code>api/analyze</code> for JSON; <code>api/health</code> describes the service.</small></p>"""
    return _document("hemascope", body)


def _counts_table(counts: Mapping[str, int]) -> str:
    white = {k: v for k, v in counts.items() if k not in OTHER_KINDS}
    n_white = sum(white.values())
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td><td>{100 * v / n_white:.1f}</td></tr>"
                   for k, v in white.items())
    others = "".join(f"<tr><th>{_e(k)}</th><td>{counts[k]}</td><td></td></tr>"
                     for k in OTHER_KINDS if k in counts)
    return ("<table><tr><th>class</th><th>count</th><th>% of white cells</th></tr>"
            f"{rows}<tr><th>white cells</th><td>{n_white}</td><td></td></tr>{others}</table>")


def _downloads(results: Sequence[ImageResult], errors: Mapping[str, str]) -> str:
    """Links that save the tables as files (data URIs: nothing is kept on the server)."""
    header, rows = differential(results)
    files = {"differential.csv": ("text/csv", csv_text(header, rows)),
             "cells.csv": ("text/csv", csv_text(CELL_COLUMNS, cell_rows(results))),
             "results.json": ("application/json", json.dumps(
                 {"images": [r.to_dict() for r in results], "errors": dict(errors)}, indent=1))}
    links = " ".join(f'<a download="{name}" href="data:{mime};charset=utf-8;base64,'
                     f'{base64.b64encode(text.encode()).decode()}">{name}</a>'
                     for name, (mime, text) in files.items())
    return f"<p>Save: {links}</p>"


def _cell_table(white: Sequence[Any]) -> str:
    """One row per white cell; nucleus-to-cell ratio and morphology attributes when the
    service runs a part model or an attribute model."""
    nc = any(c.nc_ratio is not None for c in white)
    attrs = any(c.attributes for c in white)
    head = ("<tr><th>#</th><th>class</th><th>probability</th><th>second</th><th>box</th>"
            + ("<th>N:C ratio</th>" if nc else "") + ("<th>morphology</th>" if attrs else "")
            + "<th>review</th></tr>")
    rows = []
    for c in white:
        second = (f"{_e(c.top2[1][0])} {float(c.top2[1][1]):.2f}"
                  if c.top2 and len(c.top2) > 1 else "")
        row = (f"<tr><td>{c.id}</td><td>{_e(c.label)}</td><td>{c.probability:.2f}</td>"
               f"<td>{second}</td><td>{', '.join(f'{v:.0f}' for v in c.box)}</td>")
        if nc:
            row += f"<td>{'' if c.nc_ratio is None else f'{c.nc_ratio:.2f}'}</td>"
        if attrs:
            items = "; ".join(f"{_e(k.replace('_', ' '))}: {_e(v.get('value'))}"
                              for k, v in (c.attributes or {}).items())
            row += f"<td><small>{items}</small></td>"
        rows.append(row + f"<td>{'?' if c.review else ''}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def result_page(results: Sequence[tuple[ImageResult, bytes | None]], errors: Mapping[str, str],
                counts: Mapping[str, int], seconds: float) -> str:
    """One section per image (overlay, its cells, warnings), the overall differential, and
    the files that could not be read. ``results`` pairs each result with its overlay PNG."""
    n_review = sum(c.review for r, _ in results for c in r.cells if c.probability is not None)
    parts = [f"<h1>hemascope differential</h1><p>{len(results)} image(s) analysed in "
             f"{seconds:.1f} s, {len(errors)} unreadable, {n_review} white cell(s) flagged for "
             "review (marked ?). <a href=\"./\">Analyse more</a></p>",
             "<h2>All images</h2>", _counts_table(counts), _downloads([r for r, _ in results], errors)]
    if errors:
        parts.append("<h2>Files that could not be read</h2><ul>" + "".join(
            f'<li class="err">{_e(name)}: {_e(why)}</li>' for name, why in errors.items()) + "</ul>")
    for r, png in results:
        parts.append(f"<h2>{_e(r.file)}</h2><p>{r.width} x {r.height} px, {_e(r.mode)} mode</p>")
        parts += [f'<p class="warn">warning: {_e(w)}</p>' for w in r.warnings]
        if png is not None:
            parts.append(f'<img alt="cells found on {_e(r.file)}" '
                         f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')
        white = [c for c in r.cells if c.probability is not None]
        if white:
            parts.append(_cell_table(white))
        else:
            parts.append("<p>no white cell found</p>")
    return _document("hemascope differential", "".join(parts))
